"""What every ``guard`` command shares: exit codes, the policy options, the
guard against judging with no policy at all."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from controller.errors import InputError
from controller.policy.bundled import bundled_policies_path
from controller.policy.documents import GuardPolicy

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_INPUT = 2


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


def non_negative(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value
