"""GuardPolicyTest: run policy test cases, like ``kyverno test`` or ``gator verify``.

Rules are type-checked when they are loaded, but objects have no schema (every
variable is dynamic), so a type error on a field's value surfaces only when a
rule runs on a case that has it; the coverage this records lets lint fail a
rule that no case exercises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.policy.documents import GuardPolicy, Target, TestCase
from controller.policy.engine import Engine
from controller.policy.loader import Bundle, Loaded
from controller.policy.results import Finding, Result, Subject
from controller.policy.reviewer import ReviewEvaluator

# Builds the review evaluator for a test document: (trust file, envelope files) -> evaluator.
ReviewFactory = Callable[[Path | None, Sequence[Path]], ReviewEvaluator]
# Builds a Kubernetes case's subject the way admission does. The Kubernetes
# side provides it and the CLI hands it in: policy never imports kube.
CaseSubject = Callable[[TestCase], Subject]


def terraform_subject(case: TestCase) -> Subject:
    resource = case.resource
    assert resource is not None
    address = resource.address or f"{resource.type}.test"
    obj = case.old_object if resource.action == "delete" else case.object
    return Subject(
        target=Target.terraform,
        address=address,
        kind="resource",
        type=resource.type,
        name=address.rsplit(".", 1)[-1],
        namespace=None,
        action=resource.action,
        object=obj,
        old_object=case.old_object,
        unknowns=tuple(case.unknowns),
    )


@dataclass(frozen=True)
class CaseResult:
    test: str
    case: str
    source: str
    passed: bool
    expected: str
    actual: str
    findings: tuple[Finding, ...]
    problems: tuple[str, ...] = ()


@dataclass
class TestRun:
    results: list[CaseResult] = field(default_factory=list)
    # (policy, rule) -> number of cases that evaluated it without error
    exercised: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def overall(findings: Sequence[Finding]) -> str:
    results = {f.result for f in findings}
    if results & {Result.fail, Result.error}:
        return "fail"
    if Result.unknown in results:
        return "unknown"
    return "pass"


def _check(case: TestCase, findings: Sequence[Finding]) -> list[str]:
    problems: list[str] = []
    actual = overall(findings)
    if actual != case.expect.result:
        problems.append(f"expected result {case.expect.result}, got {actual}")
    if case.expect.findings:
        got = {(f.policy, f.rule, f.result.value) for f in findings}
        for expected in case.expect.findings:
            if not any(
                p == expected.policy
                and (expected.rule is None or r == expected.rule)
                and res == expected.result
                for p, r, res in got
            ):
                rule = f"/{expected.rule}" if expected.rule else ""
                problems.append(f"expected a {expected.result} finding {expected.policy}{rule}")
        for policy, rule, result in sorted(got):
            if not any(
                e.policy == policy and (e.rule is None or e.rule == rule) and e.result == result
                for e in case.expect.findings
            ):
                problems.append(f"unexpected {result} finding {policy}/{rule}")
    return problems


def run_tests(
    bundle: Bundle,
    *,
    kubernetes_subject: CaseSubject,
    review_factory: ReviewFactory | None = None,
    tests: Sequence[Loaded] | None = None,
) -> TestRun:
    """Run every GuardPolicyTest case of the bundle against its policies."""
    run = TestRun()
    # Compiled once for the whole run; a case naming some policies gets a
    # narrower engine over the same compiled rules.
    engine = Engine(bundle.policies)
    policies = {p.name: p for p in bundle.policies}
    for loaded in tests if tests is not None else bundle.tests:
        document = loaded.document
        base = Path(loaded.source).parent
        trust = base / document.spec.trust if document.spec.trust else None  # type: ignore[union-attr]
        for case in document.spec.cases:  # type: ignore[union-attr]
            run.results.append(
                _run_case(document.name, loaded.source, case, engine, policies, base, trust,
                          review_factory, kubernetes_subject, run)
            )  # fmt: skip
    return run


def _run_case(
    test_name: str,
    source: str,
    case: TestCase,
    engine: Engine,
    policies: Mapping[str, GuardPolicy],
    base: Path,
    trust: Path | None,
    review_factory: ReviewFactory | None,
    kubernetes_subject: CaseSubject,
    run: TestRun,
) -> CaseResult:
    missing = [name for name in case.policies if name not in policies]
    if missing:
        problem = f"unknown policy {', '.join(missing)}"
        return CaseResult(test_name, case.name, source, False, case.expect.result, "error", (),
                          (problem,))  # fmt: skip
    if case.policies:
        engine = engine.restricted_to([policies[n] for n in case.policies])
    review = None
    if review_factory is not None and (trust is not None or case.attestations):
        review = review_factory(trust, [base / a for a in case.attestations])
    subject = (
        terraform_subject(case) if case.target is Target.terraform else kubernetes_subject(case)
    )
    evaluation = engine.evaluate(subject, review=review)
    findings = evaluation.findings
    errored = {(f.policy, f.rule) for f in findings if f.result is Result.error}
    for policy in evaluation.matched:
        for rule in policy.spec.rules:
            if rule.target is subject.target and (policy.name, rule.name) not in errored:
                key = (policy.name, rule.name)
                run.exercised[key] = run.exercised.get(key, 0) + 1
    problems = _check(case, findings)
    return CaseResult(
        test=test_name,
        case=case.name,
        source=source,
        passed=not problems,
        expected=case.expect.result,
        actual=overall(findings),
        findings=findings,
        problems=tuple(problems),
    )


def unexercised_rules(bundle: Bundle, run: TestRun) -> list[tuple[GuardPolicy, str]]:
    """Rules that no test case evaluated without error."""
    return [
        (policy, rule.name)
        for policy in bundle.policies
        for rule in policy.spec.rules
        if run.exercised.get((policy.name, rule.name), 0) == 0
    ]
