"""The plan-level review: the same verifier as in the cluster, plus one rule.

The attestation's subject is the sha256 of the binary plan file that
``terraform apply`` consumes. When guard was given only the JSON rendering,
the digest it can compute is that of the JSON, which says nothing about the
binary plan that will be applied: such a review passes only when the user
says explicitly that a JSON-level review is acceptable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.policy.documents import GuardPolicy
from controller.policy.results import Result, Subject
from controller.policy.reviewer import ReviewEvaluator, ReviewOutcome

JSON_ONLY_REASON = (
    "only the plan JSON was given: a review of the JSON says nothing about the binary "
    "plan that terraform apply will consume"
)
JSON_ONLY_FIX = (
    "pass the binary plan file (guard runs terraform show -json itself), or accept a "
    "review of the JSON explicitly with --accept-json-review"
)
NO_TRUST_REASON = "no trust configuration was given, so no attestation can be verified"
NO_TRUST_FIX = "pass --trust FILE (GuardTrust) and --attestation FILE for the plan"


@dataclass(frozen=True)
class PlanReview:
    """Wraps the attestation verifier with the JSON-only rule.

    ``verifier`` is ``None`` when no trust was given: review then fails
    closed with the reason, never passes.
    """

    verifier: ReviewEvaluator | None
    json_only: bool
    accept_json_review: bool

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome:
        if subject.kind == "plan" and self.json_only and not self.accept_json_review:
            return ReviewOutcome(Result.fail, (JSON_ONLY_REASON,), fix=JSON_ONLY_FIX)
        if self.verifier is None:
            return ReviewOutcome(Result.fail, (NO_TRUST_REASON,), fix=NO_TRUST_FIX)
        return self.verifier.review(policy, subject)


def attestation_verifier(
    trust_paths: Sequence[Path], attestation_paths: Sequence[Path], now: dt.datetime
) -> ReviewEvaluator | None:
    """The cluster's attestation verifier over the given files, or ``None`` without trust.

    In CI there is no Kubernetes request, so no controller identities and no
    deployer: every check (signature, subject, expiry, separation of duties)
    applies to the plan.
    """
    if not trust_paths:
        return None
    # The verifier's stack (signatures, certificates, provenance) is loaded
    # only when there is something to verify: a plan judged without trust
    # never needs it, and it is a sixth of the command's start-up.
    from controller.attest.review import AttestationReview, EnvelopeList
    from controller.attest.trust import load_trust

    trust = load_trust(list(trust_paths))
    envelopes = EnvelopeList.from_files(attestation_paths)
    return AttestationReview(trust, envelopes, now=lambda: now)
