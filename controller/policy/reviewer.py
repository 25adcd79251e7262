"""The review protocol: what the engine asks of whoever checks a ``review`` block.

The policy package defines it and never implements it: the attestation
verifier (``controller.attest.review``) does, and the composition roots hand
one in per request or per run. So the engine knows nothing of signatures,
and the attestation side may depend on policy documents, never the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.policy.documents import GuardPolicy
from controller.policy.results import Result, Subject


@dataclass(frozen=True)
class ReviewOutcome:
    """The review verdict for one subject under one policy.

    ``result`` is pass when every artifact is covered by an accepted
    attestation; ``reasons`` lists every failed check, per artifact;
    ``evidence`` records what was used (envelope digests, approvers,
    exemptions) for the audit trail.
    """

    result: Result
    reasons: tuple[str, ...] = ()
    fix: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


class ReviewEvaluator(Protocol):
    """Decides a policy's ``review`` block for a subject's artifacts."""

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome: ...


@dataclass
class RecordingReview:
    """An evaluator that keeps every outcome of the one it wraps, by subject
    address and policy name: the findings carry only failures, while the
    audit record and the reports name who approved what. Several recorders
    may share one ``outcomes`` dict."""

    inner: ReviewEvaluator
    outcomes: dict[tuple[str, str], ReviewOutcome] = field(default_factory=dict)

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome:
        outcome = self.inner.review(policy, subject)
        self.outcomes[(subject.address, policy.name)] = outcome
        return outcome

    def by_policy(self) -> dict[str, Any]:
        """Each policy's review result and evidence, for an audit record."""
        return {
            policy: {"result": outcome.result.value, **outcome.evidence}
            for (_address, policy), outcome in self.outcomes.items()
        }
