"""The ``guard`` command: the one composition root.

Each command group is one module (``policy``, ``attest``, ``terraform``,
``kube``); this is the only layer that wires the sides together, handing
collaborators in (the Kubernetes case-subject builder and the attestation
evaluator for ``guard policy test``, the operator's handlers for ``guard
serve``). Domain packages never import argparse or another side.

``guard`` loads only the module of the command it runs: the others are
listed from ``catalog`` (name and one-line help) without being imported, as
they pull in what their commands run (pydantic, the CEL library, the forge,
Sigstore and Kubernetes clients).

Exit codes are the same everywhere: 0 nothing that denies, 1 findings that
deny (or a rejected verification, a failing or unexercised policy test case),
2 bad input or usage. The options every command shares live in ``options``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli.catalog import COMMANDS, requested
from controller.cli.options import EXIT_INPUT, Console, HelpFormatter
from controller.errors import GuardError

EXAMPLES = """\
Examples:
  # in CI: a Terraform plan, with SARIF for code scanning
  guard tf-plan plan.bin --trust trust.yaml --attestation plan.intoto.json -o sarif=guard.sarif
  # in CI: rendered manifests, as the admission webhook would judge them
  guard kube check -f manifests.yaml --trust trust.yaml --attestation attestations/
  # the policies and their test cases
  guard policy lint policies/

Every command: -f/--filename or a positional names the input; --format FMT
for standard output and -o FMT=FILE (repeatable) for report files; -q/--quiet
prints nothing but errors; colour only on a terminal and never with NO_COLOR.
Exit codes: 0 ok, 1 findings that deny or failing cases, 2 bad input or usage.
"""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``guard`` parser. Without ``argv``, every command in full (for the
    tests and documents that walk the whole tree); with it, only the module of
    the command ``argv`` names is imported and registered, and every other
    command is a bare sub-parser with its name and help, so ``guard --help``
    lists them all and an unknown command is still argparse's usual error."""
    parser = argparse.ArgumentParser(
        prog="guard",
        description="Separation of duties for software delivery: no one ships alone.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"guard {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    wanted = requested(argv) if argv is not None else None
    registered: set[str] = set()
    for command in COMMANDS:
        if command.module in registered:
            continue  # registered with the other command of its module
        if argv is None or (wanted is not None and wanted.module == command.module):
            # By name from the catalog, so that only the command that runs
            # pays for its module; tests/cli/test_startup.py checks that each
            # name registers the command it lists.
            importlib.import_module(command.module).register(commands)
            registered.add(command.module)
        else:
            commands.add_parser(command.name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    console = Console.of(args)
    for warning in getattr(args, "deprecations", []):
        console.info(f"guard: warning: {warning}")
    try:
        code: int = args.handler(args)
    except GuardError as exc:
        console.error(f"guard: error: {exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
