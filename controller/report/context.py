"""What a report needs besides the findings: where they came from and notes.

Kept separate from :class:`~controller.policy.results.Decision` because it
describes the run (input file, review summary, roll-out switches), not the
verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.policy.documents import GuardException
from controller.policy.results import Decision, Subject


@dataclass(frozen=True)
class AppliedException:
    """A governed exception that waived at least one finding in this run."""

    name: str
    policy: str
    target: str
    reason: str
    owner: str
    expires: str
    addresses: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "policy": self.policy,
            "target": self.target,
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires,
            "addresses": list(self.addresses),
        }


@dataclass(frozen=True)
class ReportContext:
    """The run a decision belongs to.

    ``source`` is the input (plan file, manifest); findings without their own
    location point at it. ``subject_count`` overrides the decision's count
    when some subjects are bookkeeping (the plan-level subject is not a
    resource). ``unknown_values`` counts values that are known only after
    apply (or that the HCL reader could not resolve). ``review`` is a
    one-line verdict of the review requirement. ``subjects`` are the
    subjects the command judged (for Terraform, one per ``resource_changes``
    entry): reports list them with their own verdict, passes included, and
    show each finding's action and ``action_reason``.
    """

    command: str
    source: str
    subjects_label: str = "resources"
    subject_count: int | None = None
    notes: tuple[str, ...] = ()
    review: str = "not required"
    unknown_values: int = 0
    exceptions: tuple[AppliedException, ...] = ()
    warn_only: bool = False
    colour: bool = False
    subjects: tuple[Subject, ...] = ()
    # Set when the input held nothing the command judges: never "PASSED".
    nothing_judged: bool = False

    def count(self, decision: Decision) -> int:
        return decision.subjects if self.subject_count is None else self.subject_count


def applied_exceptions(
    decision: Decision, documents: Iterable[GuardException]
) -> tuple[AppliedException, ...]:
    """The exceptions that waived a finding, with the addresses they waived."""
    waived: dict[str, list[str]] = {}
    for finding in decision.waived:
        # Break-glass waivers are the cluster's and are recorded there.
        if finding.exception is not None:
            waived.setdefault(finding.exception, []).append(finding.address)
    applied: list[AppliedException] = []
    for document in sorted(documents, key=lambda d: d.name):
        if document.name not in waived:
            continue
        spec = document.spec
        applied.append(
            AppliedException(
                name=document.name,
                policy=spec.policy,
                target=spec.target,
                reason=spec.reason,
                owner=spec.owner,
                expires=spec.expires.isoformat(),
                addresses=tuple(sorted(set(waived[document.name]))),
            )
        )
    return tuple(applied)
