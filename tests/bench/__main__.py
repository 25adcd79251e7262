"""Run every benchmark module (``bench_*.py``) in this folder, in name order.

``python -m tests.bench [NAME ...]`` runs only the named ones (``engine``,
``attest``...). Each module has a ``main() -> None`` that prints its table.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    folder = Path(__file__).parent
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")
    )
    wanted = {f"bench_{a}" if not a.startswith("bench_") else a for a in argv}
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name.removeprefix('bench_')} ==", flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        module.main()
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
