"""The ``guard`` command: a thin shell over the packages.

Exit codes are the same everywhere: 0 nothing that denies, 1 findings that
deny (or a rejected verification, or a failed policy test), 2 bad input or
usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from controller import __version__
from controller.errors import InputError
from controller.policy.engine import PolicyError
from controller.policy.loader import DocumentError

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_INPUT = 2

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Register]:
    # Imported here so `guard --help` stays fast and each area owns its commands.
    from controller.policy import commands as policy_commands

    registrars: list[Register] = [policy_commands.register]
    for module in (
        "controller.attest.commands",
        "controller.terraform.commands",
        "controller.kube.commands",
    ):
        try:
            imported = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registrars.append(imported.register)
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guard",
        description="Separation of duties for software delivery: no one ships alone.",
    )
    parser.add_argument("--version", action="version", version=f"guard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for register in _registrars():
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except (InputError, DocumentError, PolicyError) as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
