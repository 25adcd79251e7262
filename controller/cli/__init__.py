"""The ``guard`` command: the one composition root.

Each command group is one module (``policy``, ``attest``, ``terraform``,
``kube``); this is the only layer that wires the sides together, handing
collaborators in (the Kubernetes case-subject builder and the attestation
evaluator for ``guard policy test``, the operator's handlers for ``guard
serve``). Domain packages never import argparse or another side.

Exit codes are the same everywhere: 0 nothing that denies, 1 findings that
deny (or a rejected verification, or a failed policy test), 2 bad input or
usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli import attest, keygen, kube, policy, terraform
from controller.cli.options import EXIT_INPUT
from controller.errors import GuardError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guard",
        description="Separation of duties for software delivery: no one ships alone.",
    )
    parser.add_argument("--version", action="version", version=f"guard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for group in (policy, keygen, attest, terraform, kube):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except GuardError as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
