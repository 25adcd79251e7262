"""The one structured answer to an AdmissionReview.

Every answer the webhook gives, including refusals of requests it does not
judge, is an ``AdmissionResult``: the AdmissionReview response is rendered
from it and so is the audit record (``kube.record``), so the two can never
disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.kube.breakglass import BreakGlassUse
from controller.kube.request import AdmissionRequest
from controller.policy.documents import Action
from controller.policy.results import Decision, Subject


class Reason(StrEnum):
    """Why an answer is what it is (a closed vocabulary for audit and metrics)."""

    judged = "judged"
    unsupported = "unsupported"
    malformed = "malformed"
    not_ready = "not-ready"
    not_judged = "not-judged"
    too_large = "too-large"
    error = "error"
    # A static pod's mirror, which admission cannot govern (``inherit.mirror_pod``).
    mirror_pod = "mirror-pod"


@dataclass(frozen=True)
class AdmissionResult:
    """The answer to one AdmissionReview, with everything an audit line needs."""

    uid: str
    allowed: bool
    code: int
    message: str
    reason: Reason
    warnings: tuple[str, ...] = ()
    api_version: str = "admission.k8s.io/v1"
    request: AdmissionRequest | None = None
    subject: Subject | None = None
    decision: Decision | None = None
    enforcement: Action = Action.deny
    notes: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # The policies that judged the subject (matched it), in name order.
    matched: tuple[str, ...] = ()
    break_glass: BreakGlassUse | None = None
    # Digests of the policies and trust in force (see ``PolicySet``).
    policy_digest: str = ""
    trust_digest: str = ""
    decided_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    )

    @property
    def verdict(self) -> str:
        if not self.allowed:
            return "deny"
        return "warn" if self.warnings else "allow"

    def response(self) -> dict[str, Any]:
        """The AdmissionReview the API server expects back."""
        body: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if not self.allowed:
            body["status"] = {"code": self.code, "message": self.message}
        if self.warnings:
            body["warnings"] = list(self.warnings)
        return {"apiVersion": self.api_version, "kind": "AdmissionReview", "response": body}


def refuse(
    uid: str,
    reason: Reason,
    message: str,
    *,
    code: int = 403,
    request: AdmissionRequest | None = None,
    api_version: str = "admission.k8s.io/v1",
    enforcement: Action = Action.deny,
) -> AdmissionResult:
    """A denial that did not come from policies (unsupported, malformed, not ready)."""
    return AdmissionResult(
        uid=uid,
        allowed=False,
        code=code,
        message=message,
        reason=reason,
        api_version=api_version,
        request=request,
        enforcement=enforcement,
    )
