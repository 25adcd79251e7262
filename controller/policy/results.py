"""Subjects, findings and decisions: what both sides hand the engine and get back.

Also who asks (``Requester``) and what waived a finding (``Waiver``): typed
values, so no layer parses a request dictionary or a message prefix back.

A *subject* is one thing that is judged: a Kubernetes object with its
request, or one Terraform resource change. The Kubernetes and Terraform
packages build subjects; the engine and the reports never look further.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.policy.documents import Action, GuardPolicy, Severity, Target


class Result(StrEnum):
    """A rule's outcome. ``error`` is never a pass."""

    passed = "pass"
    fail = "fail"
    unknown = "unknown"
    error = "error"


@dataclass(frozen=True)
class Requester:
    """Who asks: a Kubernetes request's ``userInfo``, typed once where the
    subject is built.

    ``controller`` says whether the username is one of the Kubernetes
    controllers' own identities (decided once, from ``request.userInfo``,
    never from ``ownerReferences``, which users can set); ``principal`` is
    the principal the trust's identity map gives the username, if any.
    """

    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, Any] | None = None
    controller: bool = False
    principal: str | None = None

    def user_info(self) -> dict[str, Any]:
        """``request.userInfo`` as the API server sends it (for CEL rules)."""
        info: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = dict(self.extra)
        return info


@dataclass(frozen=True)
class Artifact:
    """Something that needs a review attestation: an image or a plan file.

    ``digest`` is ``sha256:<hex>`` taken from the deployed object itself (or
    the plan file's bytes), or ``None`` when the reference is not pinned, which
    is denied. ``introduced`` says whether this request brings the artifact
    in (CREATE, or UPDATE that changes images): expiry and maxAge apply only
    then.
    """

    reference: str
    digest: str | None
    introduced: bool = True
    kind: str = "image"  # "image" | "plan"


@dataclass(frozen=True)
class Subject:
    """One judged thing.

    For Kubernetes ``object``/``old_object`` are the new and old objects; for
    Terraform they are ``after``/``before``. ``unknowns`` holds the dotted
    paths of ``object`` that Terraform only knows after apply.
    """

    target: Target
    address: str
    kind: str
    type: str
    name: str
    namespace: str | None
    action: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    # Kubernetes only: who asks, and the request's dry-run flag and subresource.
    requester: Requester | None = None
    dry_run: bool = False
    sub_resource: str | None = None
    unknowns: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Where the subject came from (file and line), for reports.
    location: str | None = None
    line: int | None = None
    change_actions: tuple[str, ...] = ()
    action_reason: str | None = None
    # Paths the source marks sensitive, with their variable (``after.password``,
    # ``before`` for all of it): rules judge the real values, reports never
    # show them, and a finding of a rule that reads one uses its static message.
    sensitive: tuple[str, ...] = ()


class WaiverKind(StrEnum):
    exception = "exception"
    break_glass = "break-glass"
    # Admitted through a baselined owner (``GuardBaseline``): named by the entry.
    inherited = "inherited"


@dataclass(frozen=True)
class Waiver:
    """What let a finding through: a GuardException by name, or an audited
    break-glass use by the named user."""

    kind: WaiverKind
    name: str

    @property
    def label(self) -> str:
        if self.kind is WaiverKind.exception:
            return f"exception {self.name}"
        if self.kind is WaiverKind.inherited:
            return f"inherited from {self.name}"
        return f"break-glass by {self.name}"


@dataclass(frozen=True)
class Finding:
    """One result that is not a pass, from one policy rule on one subject.

    ``rule`` is ``review`` for the review requirement. ``action`` is what
    this finding does, already resolved: the policy's action, capped by the
    enforcement mode, and for ``unknown`` results by the unknown-value
    setting. ``reasons`` lists every reason (for review, each failed check
    per artifact).
    """

    policy: str
    rule: str
    severity: Severity
    action: Action
    result: Result
    target: Target
    address: str
    message: str
    fix: str = ""
    reasons: tuple[str, ...] = ()
    waiver: Waiver | None = None
    location: str | None = None
    line: int | None = None

    @classmethod
    def of(
        cls,
        policy: GuardPolicy,
        rule: str,
        result: Result,
        subject: Subject,
        message: str,
        *,
        enforcement: Action,
        unknown_action: Action = Action.warn,
        fix: str = "",
        reasons: tuple[str, ...] = (),
        waiver: Waiver | None = None,
    ) -> Finding:
        """A finding of ``policy`` on ``subject``: its action is the policy's,
        capped by ``enforcement`` and, for unknown results, by ``unknown_action``."""
        action = policy.spec.action.capped(enforcement)
        if result is Result.unknown:
            action = action.capped(unknown_action)
        return cls(
            policy=policy.name,
            rule=rule,
            severity=policy.spec.severity,
            action=action,
            result=result,
            target=subject.target,
            address=subject.address,
            message=message,
            fix=fix,
            reasons=reasons,
            waiver=waiver,
            location=subject.location,
            line=subject.line,
        )

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data: one form for the JSON report and
        the audit record."""
        return {
            "policy": self.policy,
            "rule": self.rule,
            "severity": self.severity.value,
            "action": self.action.value,
            "result": self.result.value,
            "denies": self.denies,
            "target": self.target.value,
            "address": self.address,
            "message": self.message,
            "fix": self.fix,
            "reasons": list(self.reasons),
            "exception": self.exception,
            "waiver": (
                {"kind": self.waiver.kind.value, "name": self.waiver.name}
                if self.waiver is not None
                else None
            ),
            "location": self.location,
            "line": self.line,
        }

    @property
    def exception(self) -> str | None:
        """The name of the GuardException that waived this finding, if one did."""
        if self.waiver is not None and self.waiver.kind is WaiverKind.exception:
            return self.waiver.name
        return None

    @property
    def denies(self) -> bool:
        return self.action is Action.deny and self.waiver is None

    @property
    def warns(self) -> bool:
        return self.action is Action.warn and self.waiver is None

    def sort_key(self) -> tuple[int, str, str, str]:
        return (-self.severity.rank, self.address, self.policy, self.rule)


@dataclass(frozen=True)
class Decision:
    """The verdict on a set of subjects: findings, allowed, warnings."""

    findings: tuple[Finding, ...]
    subjects: int = 0
    notes: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not any(f.denies for f in self.findings)

    @property
    def denials(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.denies)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.warns)

    @property
    def waived(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.waiver is not None)

    @classmethod
    def of(
        cls, findings: Sequence[Finding], subjects: int = 0, notes: Sequence[str] = ()
    ) -> Decision:
        return cls(
            findings=tuple(sorted(findings, key=Finding.sort_key)),
            subjects=subjects,
            notes=tuple(notes),
        )
