"""The guard documents: one schema for files, custom resources and the CLI.

Every document is a Kubernetes object (``apiVersion``, ``kind``,
``metadata.name``, ``spec``). Server-set metadata is ignored, but unknown
``spec`` fields are errors: a typo such as ``minAprovals`` must never quietly
disable a guardrail. The CRD schemas are generated from these models, so the
API server keeps every field the engine reads.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "guard.dev/v1alpha1"
API_GROUP = "guard.dev"


class Strict(BaseModel):
    """Base of every spec model: camelCase fields, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.low: 0, Severity.medium: 1, Severity.high: 2, Severity.critical: 3}


class Action(StrEnum):
    """What a failing policy does. The only thing that decides a verdict."""

    deny = "deny"
    warn = "warn"
    audit = "audit"

    @property
    def strength(self) -> int:
        return _ACTION_STRENGTH[self]

    def capped(self, cap: Action) -> Action:
        """The weaker of this action and an enforcement cap (deny > warn > audit)."""
        return self if self.strength <= cap.strength else cap


_ACTION_STRENGTH = {Action.audit: 0, Action.warn: 1, Action.deny: 2}


class Target(StrEnum):
    kubernetes = "kubernetes"
    terraform = "terraform"


NonEmptyStr = Annotated[str, Field(min_length=1)]

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``30d``, ``720h``, ``1h30m`` or ``90s`` (Go-like, plus days)."""
    match = _DURATION_RE.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r}: use forms like 30d, 720h, 1h30m, 90s")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


# --------------------------------------------------------------------------- match


class LabelSelectorRequirement(Strict):
    key: NonEmptyStr
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Strict):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class NamespaceFilter(Strict):
    """Namespace globs. An empty ``include`` means every namespace."""

    include: list[NonEmptyStr] = Field(default_factory=list)
    exclude: list[NonEmptyStr] = Field(default_factory=list)


WORKLOAD_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
)


class KubernetesMatch(Strict):
    """Which Kubernetes objects a policy judges. Empty ``kinds`` means every kind."""

    kinds: list[NonEmptyStr] = Field(default_factory=list)
    namespaces: NamespaceFilter = Field(default_factory=NamespaceFilter)
    label_selector: LabelSelector | None = None


TerraformAction = Literal["create", "update", "delete", "replace", "forget", "no-op", "read"]
DEFAULT_TERRAFORM_ACTIONS: tuple[TerraformAction, ...] = (
    "create",
    "update",
    "delete",
    "replace",
    "forget",
)


class TerraformMatch(Strict):
    """Which resource changes a policy judges.

    ``types`` are globs over resource types (``aws_s3_*``). ``actions``
    defaults to every action that changes infrastructure; ``no-op`` and
    ``read`` are judged only when a policy asks for them.
    """

    types: list[NonEmptyStr] = Field(default_factory=lambda: ["*"])
    actions: list[TerraformAction] = Field(
        default_factory=lambda: list[TerraformAction](DEFAULT_TERRAFORM_ACTIONS)
    )


class Match(Strict):
    kubernetes: KubernetesMatch | None = None
    terraform: TerraformMatch | None = None


# --------------------------------------------------------------------------- review


class RequiredCheck(Strict):
    """A CI check that must have passed, optionally with a minimum value."""

    name: NonEmptyStr
    min: Annotated[float, Field(allow_inf_nan=False)] | None = None


class DeployerRules(Strict):
    """Who may deploy a reviewed change (Kubernetes ``request.userInfo``)."""

    not_author: bool = False
    allowed: list[NonEmptyStr] = Field(default_factory=list)


class BreakGlass(Strict):
    """Who may bypass this policy in an emergency; every use is audited."""

    principals: list[NonEmptyStr] = Field(default_factory=list)
    groups: list[NonEmptyStr] = Field(default_factory=list)


class Review(Strict):
    """The separation-of-duties requirement: a signed, independent review.

    ``repositories`` and ``targetRefs`` are required: an attestation made for
    another repository or branch must never count.
    """

    min_approvals: int = Field(default=1, ge=1, le=100)
    attesters: list[NonEmptyStr] = Field(min_length=1)
    repositories: list[NonEmptyStr] = Field(min_length=1)
    target_refs: list[NonEmptyStr] = Field(min_length=1)
    max_age: str | None = None
    allow_bots: bool = False
    required_checks: list[RequiredCheck] = Field(default_factory=list)
    exempt_images: list[NonEmptyStr] = Field(default_factory=list)
    deployer: DeployerRules = Field(default_factory=DeployerRules)
    break_glass: BreakGlass = Field(default_factory=BreakGlass)

    @field_validator("max_age")
    @classmethod
    def _valid_max_age(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def max_age_delta(self) -> dt.timedelta | None:
        return parse_duration(self.max_age) if self.max_age else None


# --------------------------------------------------------------------------- rules


class Rule(Strict):
    """One CEL check. The expression must evaluate to ``true`` for a pass.

    ``message`` (or ``messageExpression``, evaluated on failure) says what is
    wrong; ``fix`` says what to do about it.
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    target: Target
    expression: NonEmptyStr
    message: str | None = None
    message_expression: str | None = None
    fix: str | None = None

    @model_validator(mode="after")
    def _has_message(self) -> Rule:
        if not self.message and not self.message_expression:
            raise ValueError("a rule needs a message or a messageExpression")
        return self


class GuardPolicySpec(Strict):
    description: str = ""
    severity: Severity = Severity.medium
    action: Action = Action.deny
    match: Match = Field(default_factory=Match)
    review: Review | None = None
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> GuardPolicySpec:
        if not self.rules and self.review is None:
            raise ValueError("a policy needs rules, a review block, or both")
        names = [rule.name for rule in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        for rule in self.rules:
            if getattr(self.match, rule.target.value) is None:
                raise ValueError(
                    f"rule {rule.name!r} targets {rule.target.value} but "
                    f"match.{rule.target.value} is not set"
                )
        if self.match.kubernetes is None and self.match.terraform is None:
            raise ValueError("match needs kubernetes, terraform, or both")
        return self


# --------------------------------------------------------------------------- trust


class TrustedKey(Strict):
    """A public key. ``attester`` keys vouch for predicates; a ``person`` key's
    signature is one approval by its ``principal``."""

    name: NonEmptyStr
    public_key: NonEmptyStr
    role: Literal["attester", "person"]
    principal: str | None = None

    @model_validator(mode="after")
    def _person_has_principal(self) -> TrustedKey:
        if self.role == "person" and not self.principal:
            raise ValueError(f"person key {self.name!r} needs a principal")
        return self


class Principal(Strict):
    """One human or bot, by immutable id, with the other ids it is known by."""

    id: NonEmptyStr
    aliases: list[NonEmptyStr] = Field(default_factory=list)


class GuardTrustSpec(Strict):
    keys: list[TrustedKey] = Field(default_factory=list)
    principals: list[Principal] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> GuardTrustSpec:
        names = [k.name for k in self.keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"key names must be unique: {', '.join(duplicates)}")
        return self


# --------------------------------------------------------------------------- exceptions


class GuardExceptionSpec(Strict):
    """A governed waiver of one policy for one target, with an owner and an end.

    ``target`` is a Terraform address or glob, or ``namespace/name`` (globs
    allowed) on the Kubernetes side. Never applies to a policy with a review
    block: the only way past review is the audited break-glass.
    """

    policy: NonEmptyStr
    target: NonEmptyStr
    reason: NonEmptyStr
    owner: NonEmptyStr
    expires: dt.date


# --------------------------------------------------------------------------- tests


class ExpectedFinding(Strict):
    policy: NonEmptyStr
    rule: str | None = None
    result: Literal["fail", "unknown", "error"] = "fail"


class Expectation(Strict):
    result: Literal["pass", "fail", "unknown"]
    findings: list[ExpectedFinding] = Field(default_factory=list)


class TestResource(Strict):
    """Terraform resource identity for a test case (Kubernetes reads it from the object)."""

    type: NonEmptyStr
    address: str | None = None
    action: TerraformAction = "create"


class TestCase(Strict):
    """One case. ``object``/``oldObject`` are the Kubernetes object or the
    Terraform ``after``/``before``; ``unknowns`` lists dotted paths of
    ``object`` that are unknown at plan time."""

    name: NonEmptyStr
    policies: list[NonEmptyStr] = Field(default_factory=list)
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    resource: TestResource | None = None
    unknowns: list[NonEmptyStr] = Field(default_factory=list)
    attestations: list[NonEmptyStr] = Field(default_factory=list)
    expect: Expectation

    @model_validator(mode="after")
    def _has_object(self) -> TestCase:
        if self.object is None and self.old_object is None:
            raise ValueError("a case needs object, oldObject, or both")
        return self

    @property
    def target(self) -> Target:
        return Target.terraform if self.resource is not None else Target.kubernetes


class GuardPolicyTestSpec(Strict):
    description: str = ""
    trust: str | None = None
    cases: list[TestCase] = Field(min_length=1)


# --------------------------------------------------------------------------- envelope


class Metadata(BaseModel):
    """Object metadata. Only the name matters; server-set fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=253)]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: Literal["guard.dev/v1alpha1"] = Field(alias="apiVersion")
    metadata: Metadata
    # Kubernetes adds ``status`` to custom resources; it is never trusted.
    status: dict[str, Any] | None = Field(default=None, exclude=True)

    @property
    def name(self) -> str:
        return self.metadata.name


class GuardPolicy(_Document):
    kind: Literal["GuardPolicy"]
    spec: GuardPolicySpec


class GuardTrust(_Document):
    kind: Literal["GuardTrust"]
    spec: GuardTrustSpec


class GuardException(_Document):
    kind: Literal["GuardException"]
    spec: GuardExceptionSpec


class GuardPolicyTest(_Document):
    kind: Literal["GuardPolicyTest"]
    spec: GuardPolicyTestSpec


DOCUMENT_KINDS: dict[str, type[_Document]] = {
    "GuardPolicy": GuardPolicy,
    "GuardTrust": GuardTrust,
    "GuardException": GuardException,
    "GuardPolicyTest": GuardPolicyTest,
}


# --------------------------------------------------------------------------- attestations


class ReviewAttestationSpec(Strict):
    """A DSSE envelope, kept as the exact JSON text that was written.

    Stored as text, not as an object, so that the bytes the verifier reads
    are the bytes that were signed and duplicate keys stay detectable.
    """

    envelope: Annotated[str, Field(min_length=2, max_length=262144)]


class ReviewAttestation(_Document):
    kind: Literal["ReviewAttestation"]
    spec: ReviewAttestationSpec


DOCUMENT_KINDS["ReviewAttestation"] = ReviewAttestation
AnyDocument = GuardPolicy | GuardTrust | GuardException | GuardPolicyTest | ReviewAttestation
