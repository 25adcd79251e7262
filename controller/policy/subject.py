"""Subjects, findings and decisions: what both sides hand the engine and get back.

A *subject* is one thing that is judged: a Kubernetes object with its
request, or one Terraform resource change. The Kubernetes and Terraform
packages build subjects; the engine and the reports never look further.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.policy.documents import Action, Severity, Target


class Result(StrEnum):
    """A rule's outcome. ``error`` is never a pass."""

    passed = "pass"
    fail = "fail"
    unknown = "unknown"
    error = "error"


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
    ``change_actions`` is the source's own action list where it has one
    (Terraform's ``["delete", "create"]`` behind ``action`` ``replace``), and
    ``action_reason`` why the source chose that action (Terraform's
    ``action_reason``: ``tainted``, ``replace_because_cannot_update``...).
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
    request: Mapping[str, Any] | None = None
    unknowns: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Where the subject came from (file and line), for reports.
    location: str | None = None
    line: int | None = None
    change_actions: tuple[str, ...] = ()
    action_reason: str | None = None


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
    exception: str | None = None  # name of the exception that waived it
    location: str | None = None
    line: int | None = None

    @property
    def denies(self) -> bool:
        return self.action is Action.deny and self.exception is None

    @property
    def warns(self) -> bool:
        return self.action is Action.warn and self.exception is None

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
        return tuple(f for f in self.findings if f.exception is not None)

    @classmethod
    def of(
        cls, findings: Sequence[Finding], subjects: int = 0, notes: Sequence[str] = ()
    ) -> Decision:
        return cls(
            findings=tuple(sorted(findings, key=Finding.sort_key)),
            subjects=subjects,
            notes=tuple(notes),
        )
