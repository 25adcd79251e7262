"""``guard policy lint`` and ``guard policy test``.

The composition root for policy tests: Kubernetes cases are built by the
Kubernetes side's own subject builder (so a test can never pass where the
webhook would deny), and reviews are checked by the attestation verifier.

Both commands exit alike: 0 clean, 1 a failing (or, for lint, unexercised)
case, 2 a document that does not load or compile.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.attest.review import evaluator_for_files
from controller.attest.statement import check_names_in_file
from controller.cli.catalog import help_for
from controller.cli.options import (
    EXIT_DENIED,
    EXIT_INPUT,
    EXIT_OK,
    Commands,
    Console,
    add_command,
    add_group,
    add_report_options,
)
from controller.errors import InputError
from controller.kube.subjects import case_subject
from controller.policy.engine import PolicyError, compile_policy
from controller.policy.lint import lint_findings
from controller.policy.loader import Bundle, DocumentError, Loaded, iter_files, load_path
from controller.policy.testing import CaseResult, TestRun, run_tests, unexercised_rules
from controller.report.output import parse_outputs, write_outputs

FORMATS = ("text", "json")


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    sub = add_group(
        commands,
        "policy",
        help=help_for("policy"),
        description="Lint and test guard documents (GuardPolicy, GuardException, "
        "GuardPolicyTest...) before they reach CI or the cluster.",
        examples=[("lint the bundled policies", "guard policy lint policies/")],
        dest="policy_command",
    )

    lint = add_command(
        sub,
        "lint",
        help="check documents, CEL rules and test coverage (exit 0, 1 or 2)",
        description="Validate every document, compile every CEL rule, run the test cases "
        "and fail any rule no case exercises (objects have no schema, so a type error on "
        "a field's value surfaces only when a rule runs on a case that has it). Exit 0 "
        "when clean, 1 when a case fails or a rule is unexercised, 2 when a document does "
        "not load or compile.",
        examples=[
            ("lint a folder of policies and their tests", "guard policy lint policies/"),
            (
                "several paths, a JSON result for tooling",
                "guard policy lint policies/ extra-policy.yaml --format json",
            ),
        ],
    )
    lint.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="document files or folders"
    )
    add_report_options(lint, FORMATS, what="result")
    lint.set_defaults(handler=lint_command)

    test = add_command(
        sub,
        "test",
        help="run GuardPolicyTest cases (exit 0, 1 or 2)",
        description="Run every GuardPolicyTest case against the policies found in PATH "
        "(like `conftest verify`, `kyverno test` or `gator verify`). Exit 0 when every "
        "case passes, 1 when one fails, 2 when a document does not load.",
        examples=[
            ("run the bundled policies' cases", "guard policy test policies/"),
            ("every case, passing ones too", "guard policy test policies/ --verbose"),
            (
                "a JSON result for tooling, and the text kept as a file",
                "guard policy test policies/ --format json -o text=policy-tests.txt",
            ),
        ],
    )
    test.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="document files or folders"
    )
    test.add_argument(
        "-v", "--verbose", action="store_true", help="list passing cases too (text format)"
    )
    add_report_options(test, FORMATS, what="result")
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
        if not files:
            errors.append(f"{path}: no YAML or JSON files")
        for file in files:
            try:
                loaded.extend(load_path(file))
            except DocumentError as exc:
                errors.append(str(exc))
    return loaded, errors


@dataclass(frozen=True)
class LintResult:
    """``errors``: documents that do not load or compile (exit 2);
    ``failures``: failing or unexercised cases (exit 1); ``warnings``: what
    lint finds suspicious but legal (an allow-list that accepts everything, a
    required check no test attestation carries), printed, never failing."""

    errors: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def lint(paths: Sequence[Path]) -> LintResult:
    loaded, errors = _load_all(paths)
    try:
        bundle = Bundle.of(loaded)
    except DocumentError as exc:
        return LintResult(errors=(*errors, str(exc)))
    warnings: list[str] = []
    for message in lint_findings(bundle, check_names=check_names_in_file):
        (errors if message.level == "error" else warnings).append(str(message))
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
        return LintResult(errors=tuple(errors), warnings=tuple(warnings))
    run = run_tests(bundle, kubernetes_subject=case_subject, review_factory=evaluator_for_files)
    failures = [
        f"{result.source}: test {result.test!r}, case {result.case!r}: "
        + "; ".join(result.problems)
        for result in run.failed
    ]
    for policy, rule in unexercised_rules(bundle, run):
        failures.append(
            f"{bundle.sources[('GuardPolicy', policy.name)]}: policy {policy.name!r}, "
            f"rule {rule!r}: no GuardPolicyTest case exercises this rule "
            "(add a case whose object it matches)"
        )
    return LintResult(errors=tuple(errors), failures=tuple(failures), warnings=tuple(warnings))


def lint_command(args: argparse.Namespace) -> int:
    console = Console.of(args)
    outputs = parse_outputs(args.format, args.output, FORMATS, quiet=console.quiet)
    result = lint(args.paths)
    for warning in result.warnings:
        console.info(warning)
    if result.errors:
        for error in result.errors:
            console.error(error)
        console.error(f"lint: {len(result.errors)} document error(s)")
        return EXIT_INPUT
    summary = f"lint: {len(result.failures)} failure(s)" if result.failures else "lint: ok"

    def render(name: str, colour: bool) -> str:
        if name == "json":
            document = {
                "ok": not result.failures,
                "failures": list(result.failures),
                "warnings": list(result.warnings),
            }
            return json.dumps(document, indent=2) + "\n"
        return "".join(f"{line}\n" for line in (*result.failures, summary))

    write_outputs(render, outputs, summary=summary, quiet=console.quiet)
    return EXIT_DENIED if result.failures else EXIT_OK


def test_command(args: argparse.Namespace) -> int:
    console = Console.of(args)
    outputs = parse_outputs(args.format, args.output, FORMATS, quiet=console.quiet)
    loaded, errors = _load_all(args.paths)
    if errors:
        raise InputError("\n".join(errors))
    bundle = Bundle.of(loaded)
    if not bundle.tests:
        raise InputError(f"{', '.join(map(str, args.paths))}: no GuardPolicyTest documents found")
    run = run_tests(bundle, kubernetes_subject=case_subject, review_factory=evaluator_for_files)
    passed = len(run.results) - len(run.failed)
    summary = f"{passed} passed, {len(run.failed)} failed"

    def render(name: str, colour: bool) -> str:
        if name == "json":
            return json.dumps(_test_document(run), indent=2) + "\n"
        return _test_text(run, verbose=args.verbose, summary=summary)

    write_outputs(render, outputs, summary=summary, quiet=console.quiet)
    return EXIT_DENIED if run.failed else EXIT_OK


def _test_text(run: TestRun, *, verbose: bool, summary: str) -> str:
    lines: list[str] = []
    for result in run.results:
        if result.passed and not verbose:
            continue
        status = "PASS" if result.passed else "FAIL"
        lines.append(f"{status} {result.test} / {result.case}  ({result.source})")
        if not result.passed:
            lines.append(f"     expected: {result.expected}")
            lines.append(f"     got:      {result.actual}")
            lines.extend(f"     - {problem}" for problem in result.problems)
            lines.extend(
                f"       {f.result.value}: {f.policy}/{f.rule}: {f.message}"
                for f in result.findings
            )
    lines.append(summary)
    return "\n".join(lines) + "\n"


def _test_document(run: TestRun) -> dict[str, Any]:
    """The JSON result: the same keys in every run, every case listed."""
    return {
        "passed": len(run.results) - len(run.failed),
        "failed": len(run.failed),
        "cases": [_case(result) for result in run.results],
    }


def _case(result: CaseResult) -> dict[str, Any]:
    return {
        "test": result.test,
        "case": result.case,
        "source": result.source,
        "passed": result.passed,
        "expected": result.expected,
        "actual": result.actual,
        "problems": list(result.problems),
        "findings": [
            {
                "result": f.result.value,
                "policy": f.policy,
                "rule": f.rule,
                "address": f.address,
                "message": f.message,
            }
            for f in result.findings
        ],
    }
