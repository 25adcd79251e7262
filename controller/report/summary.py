"""The one-line summary every format carries, so CI logs agree with reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from controller.policy.documents import Action, Severity
from controller.policy.results import Decision, Result
from controller.report.context import ReportContext

SEVERITIES_HIGH_FIRST = (Severity.critical, Severity.high, Severity.medium, Severity.low)


@dataclass(frozen=True)
class Counts:
    """Counts of one decision, computed once for every format."""

    subjects: int
    by_severity: dict[Severity, int]
    denied: int
    warned: int
    audited: int
    waived: int
    unknown_results: int
    unknown_values: int
    allowed: bool

    @classmethod
    def of(cls, decision: Decision, context: ReportContext) -> Counts:
        severities = Counter(f.severity for f in decision.findings)
        active = [f for f in decision.findings if f.waiver is None]
        return cls(
            subjects=context.count(decision),
            by_severity={s: severities.get(s, 0) for s in SEVERITIES_HIGH_FIRST},
            denied=sum(1 for f in active if f.action is Action.deny),
            warned=sum(1 for f in active if f.action is Action.warn),
            audited=sum(1 for f in active if f.action is Action.audit),
            waived=len(decision.waived),
            unknown_results=sum(1 for f in decision.findings if f.result is Result.unknown),
            unknown_values=context.unknown_values,
            allowed=decision.allowed,
        )


def verdict(decision: Decision, nothing_judged: bool = False) -> str:
    """The word CI logs are searched for: what the policies' actions decided.
    Never "PASSED" for a run that judged nothing."""
    if not decision.allowed:
        return "DENIED"
    return "NOTHING JUDGED" if nothing_judged else "PASSED"


def summary_line(decision: Decision, context: ReportContext) -> str:
    """``12 resources; findings: 1 critical, ...; unknown: ...; review: ...; PASSED``."""
    counts = Counts.of(decision, context)
    severities = ", ".join(f"{n} {s.value}" for s, n in counts.by_severity.items())
    actions = f"{counts.denied} deny, {counts.warned} warn, {counts.audited} audit"
    if counts.waived:
        actions += f", {counts.waived} waived"
    parts = [
        _plural(counts.subjects, context.subjects_label.removesuffix("s")),
        f"findings: {severities} ({actions})",
        f"unknown: {_plural(counts.unknown_results, 'result')}, "
        f"{_plural(counts.unknown_values, 'value')}",
        f"review: {context.review}",
        verdict(decision, context.nothing_judged),
    ]
    line = "; ".join(parts)
    if context.warn_only:
        line += " (warn-only roll-out: denials are reported as warnings)"
    return f"{context.command}: {line}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
