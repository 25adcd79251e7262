"""`make demo` runs the whole product on bundled defaults and every step behaves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_every_step_behaves() -> None:
    environment = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo: every step behaved as expected" in done.stdout
    assert "alice approved their own change" in done.stdout
