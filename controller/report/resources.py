"""Every judged subject with its own verdict, passes included.

A decision holds findings only, so a resource that passed every policy would
be nothing but a count. Reports list each subject the command judged (its
address, type, action, Terraform's action list and ``action_reason``) with
the worst result of its findings, so a tainted replacement or a read that
found nothing is still visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.policy.results import Decision, Finding, Result, Subject

# Worst first: an error is never a pass, a failure outranks an unknown.
_RANK = {Result.error: 3, Result.fail: 2, Result.unknown: 1, Result.passed: 0}


@dataclass(frozen=True)
class SubjectResult:
    """One subject and what its findings decided.

    ``result`` is the worst result among findings no exception waived
    (``pass`` when there are none); ``denies`` whether any of them denies.
    """

    subject: Subject
    result: Result
    denies: bool
    findings: int
    waived: int

    def as_dict(self) -> dict[str, Any]:
        subject = self.subject
        return {
            "address": subject.address,
            "kind": subject.kind,
            "type": subject.type,
            "action": subject.action,
            "actions": list(subject.change_actions),
            "actionReason": subject.action_reason,
            "result": self.result.value,
            "denies": self.denies,
            "findings": self.findings,
            "waived": self.waived,
            "location": subject.location,
            "line": subject.line,
        }


def subject_results(decision: Decision, subjects: Sequence[Subject]) -> list[SubjectResult]:
    """Each subject, in the order judged, with the verdict of its findings."""
    by_address: dict[str, list[Finding]] = {}
    for finding in decision.findings:
        by_address.setdefault(finding.address, []).append(finding)
    results: list[SubjectResult] = []
    for subject in subjects:
        found = by_address.get(subject.address)
        if not found:  # most subjects: nothing to rank
            results.append(SubjectResult(subject, Result.passed, False, 0, 0))
            continue
        active = [f for f in found if f.waiver is None]
        worst = max((f.result for f in active), key=_RANK.__getitem__, default=Result.passed)
        results.append(
            SubjectResult(
                subject=subject,
                result=worst,
                denies=any(f.denies for f in active),
                findings=len(found),
                waived=len(found) - len(active),
            )
        )
    return results


def subjects_by_address(subjects: Iterable[Subject]) -> Mapping[str, Subject]:
    return {subject.address: subject for subject in subjects}


def describe_change(subject: Subject | None) -> str:
    """``replace (tainted)``, ``create``, or empty when the subject is unknown."""
    if subject is None:
        return ""
    if subject.action_reason:
        return f"{subject.action} ({subject.action_reason})"
    return subject.action


def action_counts(subjects: Iterable[Subject]) -> dict[str, int]:
    """How many subjects each action has, most common first."""
    counts: dict[str, int] = {}
    for subject in subjects:
        counts[subject.action] = counts.get(subject.action, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
