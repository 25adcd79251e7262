"""What every ``guard`` command shares, so that each one reads the same way.

- Exit codes: 0 ok, 1 findings that deny (or failing cases, a rejected
  verification), 2 bad input or usage.
- Help: every flag has help text and shows its default; every command ends
  with an ``Examples`` epilog (:func:`add_command`).
- Input: ``-f``/``--filename`` or a positional; never anything else.
- Reports: ``--format FMT`` for standard output, repeatable ``-o/--output
  FMT=FILE`` for files (:func:`add_report_options`); ``-q/--quiet`` prints
  nothing but errors.
- Attestations: repeatable ``--attestation PATH``, files or folders
  (:func:`add_attestation_option`); the old ``--attestations DIR`` still
  works and warns.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.errors import InputError
from controller.policy.bundled import bundled_policies_path

if TYPE_CHECKING:
    # For the annotations only: every command imports this module, and
    # ``guard --help`` should not load pydantic's models to print a list.
    from controller.policy.documents import GuardPolicy

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_INPUT = 2

# A folder given to --attestation contributes these files (recursively), so a
# README or a .gitkeep beside the envelopes is never read as one.
ATTESTATION_SUFFIXES = (".json", ".yaml", ".yml")

Commands = argparse._SubParsersAction  # the type argparse gives add_subparsers


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help when it has a real default
    and the help does not already say it; wraps prose paragraphs and keeps
    the Examples paragraph's lines as written (they are command lines)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if paragraph.startswith("Examples:"):
                paragraphs.append("\n".join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" not in text and shows_default(action):
            text += " (default: %(default)s)"
        return text


def shows_default(action: argparse.Action) -> bool:
    """Whether a flag's default is a value worth printing (not None, False or empty)."""
    if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
        return False
    return not (isinstance(action.default, (list, tuple)) and not action.default)


def add_command(
    commands: Commands[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[tuple[str, str]],
    quiet: bool = True,
) -> argparse.ArgumentParser:
    """A command (or command group) with help, an Examples epilog and ``--quiet``.

    ``examples`` are (comment, command line) pairs; a test parses every line.
    """
    lines = ["Examples:"]
    for comment, command in examples:
        lines.append(f"  # {comment}")
        lines.append(f"  {command}")
    parser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog="\n".join(lines),
        formatter_class=HelpFormatter,
    )
    if quiet:
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="print nothing but errors: the exit code tells the verdict",
        )
    return parser


def add_group(
    commands: Commands[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[tuple[str, str]],
    dest: str,
) -> Commands[argparse.ArgumentParser]:
    """A command group (``guard policy``, ``guard attest``...) and its subcommands."""
    group = add_command(
        commands, name, help=help, description=description, examples=examples, quiet=False
    )
    sub = group.add_subparsers(dest=dest, metavar="COMMAND")
    sub.required = True
    return sub


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class Console:
    """Where a command's own messages go; ``--quiet`` silences all but errors."""

    quiet: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Console:
        return cls(quiet=bool(getattr(args, "quiet", False)))

    def out(self, text: str) -> None:
        """A line of the command's result, on standard output."""
        if not self.quiet:
            print(text)

    def info(self, text: str) -> None:
        """A message about what was done (a file written), on standard error."""
        if not self.quiet:
            print(text, file=sys.stderr)

    def error(self, text: str) -> None:
        """An error: always printed."""
        print(text, file=sys.stderr)


def add_warn_only_option(parser: argparse.ArgumentParser) -> None:
    """``--warn-only``: the roll-out switch of every command that judges."""
    parser.add_argument(
        "--warn-only",
        action="store_true",
        help="roll-out switch: report denials as warnings and exit 0",
    )


def add_report_options(
    parser: argparse.ArgumentParser, formats: Sequence[str], what: str = "report"
) -> None:
    """``--format FMT`` for standard output and ``-o/--output FMT=FILE`` for files."""
    parser.add_argument(
        "--format",
        choices=formats,
        default="text",
        help=f"the {what} on standard output",
    )
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="FORMAT=FILE",
        help=f"also write the {what} in FORMAT to FILE (repeatable, e.g. -o json=out.json; "
        "FORMAT=- replaces the standard output)",
    )


# --------------------------------------------------------------------------- policies


def add_policies_option(parser: argparse.ArgumentParser) -> None:
    """``--policies PATH`` (repeatable), the same on every command that judges."""
    parser.add_argument(
        "--policies",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="policy files or folders (repeatable; default: the bundled policies)",
    )


def policy_paths(given: Sequence[Path]) -> tuple[Path, ...]:
    """The policies to judge with: the given paths, or the bundled ones."""
    return tuple(given) or (bundled_policies_path(),)


def require_matching(policies: Sequence[GuardPolicy], paths: Sequence[Path], side: str) -> None:
    """Refuse to judge with no policy for ``side`` (kubernetes or terraform):
    a check with no policies would pass everything."""
    if side == "kubernetes":
        found = any(p.spec.match.kubernetes is not None for p in policies)
        label = "Kubernetes"
    else:
        found = any(p.spec.match.terraform is not None for p in policies)
        label = "Terraform"
    if not found:
        raise InputError(
            f"{', '.join(str(p) for p in paths)}: no policy matches {label} "
            "(a check with no policies would pass everything)"
        )


def add_trust_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--trust PATH`` (repeatable): the GuardTrust documents. Never defaulted:
    the example keys are never picked up implicitly."""
    parser.add_argument(
        "--trust",
        action="append",
        type=Path,
        required=required,
        default=[],
        metavar="PATH",
        help="GuardTrust files or folders (repeatable)"
        if required
        else "GuardTrust files or folders (repeatable; default none: nothing verifies, "
        "so a review requirement fails closed)",
    )


# --------------------------------------------------------------------------- attestations


class DeprecatedAlias(argparse.Action):
    """An old spelling of a repeatable flag: it still works, and says what replaces it.

    The warning is collected on the namespace, not printed here, so that
    ``--quiet`` (which may come later on the line) can silence it.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.replacement: str = kwargs.pop("replacement")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        # New lists, never the default's: argparse shares defaults between parses.
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])
        warning = f"{option_string} is deprecated: use {self.replacement}"
        seen = list(getattr(namespace, "deprecations", None) or [])
        if warning not in seen:
            namespace.deprecations = [*seen, warning]


def add_attestation_option(parser: argparse.ArgumentParser) -> None:
    """``--attestation PATH`` (repeatable; files or folders), and its old spelling."""
    parser.add_argument(
        "--attestation",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="review attestations: DSSE envelope or ReviewAttestation files, or folders of "
        f"them ({', '.join(ATTESTATION_SUFFIXES)} files, recursively); repeatable",
    )
    parser.add_argument(
        "--attestations",
        action=DeprecatedAlias,
        dest="attestation",
        type=Path,
        metavar="DIR",
        replacement="--attestation PATH (repeatable, files or folders)",
        help="deprecated spelling of --attestation",
    )


def attestation_files(
    paths: Sequence[Path], flag: str | None = "--attestation"
) -> tuple[Path, ...]:
    """Every attestation file named: files as given, folders expanded.

    A folder contributes its envelope-like files, sorted, so runs are
    repeatable; a missing path is bad input, never an empty set. ``flag``
    names the option in errors (None for a positional).
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix in ATTESTATION_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            where = f"{flag} {path}" if flag else f"{path}: cannot read envelope"
            raise InputError(f"{where}: no such file or folder")
    return tuple(dict.fromkeys(found))


def non_negative(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value
