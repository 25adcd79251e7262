"""``guard policy lint`` and ``guard policy test``.

The composition root for policy tests: Kubernetes cases are built by the
Kubernetes side's own subject builder (so a test can never pass where the
webhook would deny), and reviews are checked by the attestation verifier.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.attest.review import evaluator_for_files
from controller.attest.statement import check_names_in_file
from controller.errors import InputError
from controller.kube.subjects import case_subject
from controller.policy.engine import PolicyError, compile_policy
from controller.policy.lint import lint_findings
from controller.policy.loader import Bundle, DocumentError, Loaded, iter_files, load_path
from controller.policy.testing import run_tests, unexercised_rules


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="lint and test policy documents")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    sub.required = True

    lint = sub.add_parser(
        "lint",
        help="check documents, CEL expressions and test coverage (exit 0 or 2)",
        description="Validate every document, compile every CEL rule, run the test cases "
        "and fail any rule no case exercises. Exit 0 when clean, 2 with the errors.",
    )
    lint.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    lint.set_defaults(handler=lint_command)

    test = sub.add_parser(
        "test",
        help="run GuardPolicyTest cases (exit 1 on a failed case)",
        description="Run every GuardPolicyTest case against the policies found in PATH.",
    )
    test.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    test.add_argument("-v", "--verbose", action="store_true", help="print passing cases too")
    test.set_defaults(handler=test_command)


def _load_all(paths: Sequence[Path]) -> tuple[list[Loaded], list[str]]:
    """Every loadable document, and one error line per file that is not."""
    loaded: list[Loaded] = []
    errors: list[str] = []
    for path in paths:
        try:
            files = iter_files(path)
        except DocumentError as exc:
            errors.append(str(exc))
            continue
        for file in files:
            try:
                loaded.extend(load_path(file))
            except DocumentError as exc:
                errors.append(str(exc))
    return loaded, errors


def lint_errors(paths: Sequence[Path], warnings: list[str] | None = None) -> list[str]:
    """Every error lint finds; non-fatal findings go to ``warnings``."""
    loaded, errors = _load_all(paths)
    try:
        bundle = Bundle.of(loaded)
    except DocumentError as exc:
        return [*errors, str(exc)]
    for message in lint_findings(bundle, check_names=check_names_in_file):
        if message.level == "error":
            errors.append(str(message))
        elif warnings is not None:
            warnings.append(str(message))
    broken: set[str] = set()
    for policy in bundle.policies:
        try:
            compile_policy(policy)
        except PolicyError as exc:
            broken.add(policy.name)
            errors.append(f"{bundle.sources[('GuardPolicy', policy.name)]}: {exc}")
    policy_names = {p.name for p in bundle.policies}
    reviewed = {p.name for p in bundle.policies if p.spec.review is not None}
    for exception in bundle.exceptions:
        where = bundle.sources[("GuardException", exception.name)]
        if exception.spec.policy in reviewed:
            errors.append(
                f"{where}: exception {exception.name!r}: spec.policy {exception.spec.policy!r} "
                "has a review block; exceptions never waive review (use break-glass)"
            )
        elif exception.spec.policy not in policy_names:
            errors.append(
                f"{where}: exception {exception.name!r}: spec.policy "
                f"{exception.spec.policy!r} is not a policy in {', '.join(map(str, paths))}"
            )
    if broken:
        return errors
    run = run_tests(bundle, kubernetes_subject=case_subject, review_factory=evaluator_for_files)
    for result in run.failed:
        errors.append(
            f"{result.source}: test {result.test!r}, case {result.case!r}: "
            + "; ".join(result.problems)
        )
    for policy, rule in unexercised_rules(bundle, run):
        errors.append(
            f"{bundle.sources[('GuardPolicy', policy.name)]}: policy {policy.name!r}, "
            f"rule {rule!r}: no GuardPolicyTest case exercises this rule "
            "(add a case whose object it matches)"
        )
    return errors


def lint_command(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    errors = lint_errors(args.paths, warnings)
    for warning in warnings:
        print(warning, file=sys.stderr)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"lint: {len(errors)} error(s)", file=sys.stderr)
        return 2
    print("lint: ok")
    return 0


def test_command(args: argparse.Namespace) -> int:
    loaded, errors = _load_all(args.paths)
    if errors:
        raise InputError("\n".join(errors))
    bundle = Bundle.of(loaded)
    if not bundle.tests:
        print("no GuardPolicyTest documents found", file=sys.stderr)
        return 2
    run = run_tests(bundle, kubernetes_subject=case_subject, review_factory=evaluator_for_files)
    for result in run.results:
        if result.passed and not args.verbose:
            continue
        status = "PASS" if result.passed else "FAIL"
        print(f"{status} {result.test} / {result.case}  ({result.source})")
        if not result.passed:
            print(f"     expected: {result.expected}")
            print(f"     got:      {result.actual}")
            for problem in result.problems:
                print(f"     - {problem}")
            for finding in result.findings:
                print(
                    f"       {finding.result.value}: {finding.policy}/{finding.rule}: "
                    f"{finding.message}"
                )
    passed = len(run.results) - len(run.failed)
    print(f"{passed} passed, {len(run.failed)} failed")
    return 1 if run.failed else 0
