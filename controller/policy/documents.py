"""The guard documents: one schema for files, custom resources and the CLI.

Every document is a Kubernetes object (``apiVersion``, ``kind``,
``metadata.name``, ``spec``). Server-set metadata is ignored, but unknown
``spec`` fields are errors: a typo such as ``minAprovals`` must never quietly
disable a guardrail. The CRD schemas are generated from these models, so the
API server keeps every field the engine reads.

A typo in a *value* must not disable one either. So every model is strict (a
string or a boolean is never coerced into a number, nor a number into a
string), every closed set is closed (``kinds: [Deploymnet]`` is an error that
names the nearest valid kind, not a policy that matches nothing), a pattern
that can never match what it filters (a namespace glob with an upper-case
letter) is an error, and identity-bearing fields accept one ASCII spelling
(see ``controller.policy.identity``). Fields are spelled in camelCase only:
the API server drops a ``min_approvals`` its schema lacks, so a file must
not accept it either.

Its size is deliberate: this is the one schema of every guard document,
from which the CRDs are generated and against which every reader validates;
split across modules, a field's constraint and the CRD rule generated from
it could drift apart unseen.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from controller.policy.identity import (
    DeployerEntry,
    GitRefGlob,
    KeyName,
    KubernetesName,
    PrincipalId,
    RepositoryGlob,
    UserEntry,
    not_one_of,
    visible_ascii,
)
from controller.policy.keyless import SigstoreIdentity, SigstoreRoot
from controller.policy.provenance import ProvenanceRequirements, SourceSummaries
from controller.policy.strictmodel import Strict
from controller.strict import nested_deeper_than

API_VERSION = "guard.dev/v1alpha1"
API_GROUP = "guard.dev"


def cel_rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for a model's CRD schema: (CEL rule,
    message) pairs that repeat a model validator, so the API server refuses
    what guard would refuse. Each rule is evaluated on examples in the tests."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


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


def one_of(choices: type[Enum] | Sequence[str], what: str) -> BeforeValidator:
    """A closed set: the value must be one of ``choices`` exactly, else the
    error names the nearest one (``'Deploymnet' is not ...: did you mean
    'Deployment'?``). Enum members come back as members, so strict mode holds."""
    enum = choices if isinstance(choices, type) else None
    values: tuple[str, ...] = (
        tuple(str(m.value) for m in enum) if enum is not None else tuple(map(str, choices))
    )

    def check(value: Any) -> Any:
        if enum is not None and isinstance(value, enum):
            return value
        if isinstance(value, str) and value in values:
            return enum(value) if enum is not None else value
        raise ValueError(not_one_of(value, values, what))

    return BeforeValidator(check)


SeverityField = Annotated[Severity, one_of(Severity, "a severity")]
ActionField = Annotated[Action, one_of(Action, "an action")]
TargetField = Annotated[Target, one_of(Target, "a target")]

NonEmptyStr = Annotated[str, Field(min_length=1)]

# Bounded digit counts keep int() cheap and the sum far from timedelta's
# limits; the bound below gives the clear error.
_DURATION_RE = re.compile(
    r"(?:([0-9]{1,9})d)?(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?"
)
DURATION_PATTERN = r"^([0-9]{1,9}d)?([0-9]{1,9}h)?([0-9]{1,9}m)?([0-9]{1,9}s)?$"
MAX_DURATION = dt.timedelta(days=3650)


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``30d``, ``720h``, ``1h30m`` or ``90s`` (Go-like, plus days).

    Zero and more than ten years are errors, not values: ``maxAge: 0s`` would
    refuse everything and ``9999999999999d`` would overflow every date sum.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string such as 30d, not {type(text).__name__}")
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(
            f"invalid duration {text!a}: use forms like 30d, 720h, 1h30m, 90s "
            "(at most 9 digits per unit, no spaces)"
        )
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise ValueError(f"duration {text!a} is zero: give a positive duration such as 30d")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(
            f"duration {text!a} is longer than the limit of {MAX_DURATION.days}d (ten years)"
        )
    return dt.timedelta(seconds=total)


def _duration_text(value: Any) -> Any:
    parse_duration(value)
    return value


Duration = Annotated[
    str, Field(pattern=DURATION_PATTERN, max_length=40), BeforeValidator(_duration_text)
]


# --------------------------------------------------------------------------- match

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"


def _label_key(value: Any) -> Any:
    """A label key that some object could carry; any other never matches."""
    visible_ascii(value, "label key", max_chars=317)
    prefix, slash, name = value.rpartition("/")
    if (slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))) or not (
        _LABEL_NAME.fullmatch(name)
    ):
        raise ValueError(
            f"label key {value!a} can never match a label: a key is [PREFIX/]NAME, NAME up to "
            "63 letters, digits, '-', '_', '.' (alphanumeric at both ends), PREFIX a lower-case "
            "DNS name"
        )
    return value


def _label_value(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"a label value must be a string, not {type(value).__name__}")
    if value and not _LABEL_NAME.fullmatch(value):
        raise ValueError(
            f"label value {value!a} can never match a label: up to 63 letters, digits, '-', "
            "'_', '.' (alphanumeric at both ends)"
        )
    return value


LabelKey = Annotated[
    str, Field(pattern=LABEL_KEY_PATTERN, max_length=317), BeforeValidator(_label_key)
]
LabelValue = Annotated[
    str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63), BeforeValidator(_label_value)
]
SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class LabelSelectorRequirement(Strict):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
                " : (!has(self.values) || size(self.values) == 0)",
                "operators In and NotIn need at least one value; Exists and DoesNotExist "
                "take no values",
            )
        )
    )

    key: LabelKey
    """The label key the requirement is about."""
    operator: Annotated[
        SelectorOperator, one_of(get_args(SelectorOperator), "a label selector operator")
    ]
    """How the label's value is compared with `values`."""
    values: list[LabelValue] = Field(default_factory=list)
    """The values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`."""

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Strict):
    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Labels the object must carry with exactly these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=64)
    """Label requirements the object must meet, all of them."""


_NAMESPACE_GLOB = re.compile(r"[a-z0-9*?\[\]!-]+")
NAMESPACE_GLOB_PATTERN = r"^[a-z0-9*?\[\]!-]+$"


def _namespace_glob(value: Any) -> Any:
    """A namespace glob that can match a namespace (a DNS-1123 label)."""
    visible_ascii(value, "namespace pattern", max_chars=253)
    if not _NAMESPACE_GLOB.fullmatch(value):
        fixed = value.lower().replace("_", "-").replace(".", "-")
        hint = f" (did you mean {fixed!a}?)" if _NAMESPACE_GLOB.fullmatch(fixed) else ""
        raise ValueError(
            f"namespace pattern {value!a} can never match a namespace: namespace names are "
            f"lower-case letters, digits and '-'{hint}"
        )
    return value


NamespaceGlob = Annotated[
    str,
    Field(pattern=NAMESPACE_GLOB_PATTERN, max_length=253),
    BeforeValidator(_namespace_glob),
]


class NamespaceFilter(Strict):
    """Namespace globs. An empty ``include`` means every namespace."""

    include: list[NamespaceGlob] = Field(default_factory=list)
    """Namespace globs the policy judges; empty means every namespace."""
    exclude: list[NamespaceGlob] = Field(default_factory=list)
    """Namespace globs the policy never judges, even when included."""


# The kinds guard judges. ``controller.kube.request.WORKLOADS`` must list
# exactly these (a test checks it): a kind guard does not judge can only be
# a typo, and a typo here would switch a guardrail off.
WorkloadKind = Literal[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
]
WORKLOAD_KINDS: tuple[str, ...] = get_args(WorkloadKind)


class KubernetesMatch(Strict):
    """Which Kubernetes objects a policy judges. Empty ``kinds`` means every kind."""

    kinds: list[Annotated[WorkloadKind, one_of(WORKLOAD_KINDS, "a kind guard judges")]] = Field(
        default_factory=list
    )
    """The workload kinds the policy judges; empty means every kind guard judges."""
    namespaces: NamespaceFilter = Field(default_factory=NamespaceFilter)
    """Which namespaces the policy judges, by glob."""
    label_selector: LabelSelector | None = None
    """Only objects whose labels match."""


TerraformAction = Literal["create", "update", "delete", "replace", "forget", "no-op", "read"]
TERRAFORM_ACTIONS: tuple[str, ...] = get_args(TerraformAction)
TerraformActionField = Annotated[TerraformAction, one_of(TERRAFORM_ACTIONS, "a Terraform action")]
DEFAULT_TERRAFORM_ACTIONS: tuple[TerraformAction, ...] = (
    "create",
    "update",
    "delete",
    "replace",
    "forget",
)
_TYPE_GLOB = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")


def _type_glob(value: Any) -> Any:
    """A resource type glob that can match a Terraform type (an identifier)."""
    visible_ascii(value, "resource type pattern", max_chars=253)
    if not _TYPE_GLOB.fullmatch(value):
        raise ValueError(
            f"resource type pattern {value!a} can never match a Terraform resource type: "
            "types are letters, digits, '_' and '-'"
        )
    return value


class TerraformMatch(Strict):
    """Which resource changes a policy judges.

    ``types`` are globs over resource types (``aws_s3_*``). ``actions``
    defaults to every action that changes infrastructure; ``no-op`` and
    ``read`` are judged only when a policy asks for them.
    """

    types: list[
        Annotated[
            str,
            Field(pattern=r"^[A-Za-z0-9_*?\[\]!-]+$", max_length=253),
            BeforeValidator(_type_glob),
        ]
    ] = Field(default_factory=lambda: ["*"])
    """Resource type globs the policy judges (`aws_s3_*`); default every type."""
    actions: list[TerraformActionField] = Field(
        default_factory=lambda: list[TerraformAction](DEFAULT_TERRAFORM_ACTIONS)
    )
    """The planned actions the policy judges; default every action that changes infrastructure."""


class Match(Strict):
    kubernetes: KubernetesMatch | None = None
    """Which Kubernetes objects the policy judges; absent, it judges none."""
    terraform: TerraformMatch | None = None
    """Which Terraform resource changes the policy judges; absent, it judges none."""


# --------------------------------------------------------------------------- review


class RequiredCheck(Strict):
    """A CI check that must have passed, optionally with a minimum value."""

    name: NonEmptyStr
    """The CI check the attestation must record as passed."""
    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    """The lowest value the check may record (coverage 80), when it records one."""


class DeployerRules(Strict):
    """Who may deploy a reviewed change (Kubernetes ``request.userInfo``).

    ``notAuthor`` must be proven: the deployer's Kubernetes username must be
    mapped to a principal in a GuardTrust (``kubernetes:USERNAME`` among the
    principal's aliases), or be listed by name in ``allowed`` (CD service
    accounts); anyone else is denied. ``allowed`` entries are usernames,
    ``group:NAME`` or principal ids.
    """

    not_author: bool = False
    """Deny a deployer who is an author of the change, or whom the trust cannot map to a principal."""
    allowed: list[DeployerEntry] = Field(default_factory=list)
    """Deployers that may deploy whatever the change (CD service accounts), by Kubernetes username or principal."""


class BreakGlass(Strict):
    """Who may bypass this policy in an emergency; every use is audited."""

    principals: list[UserEntry] = Field(default_factory=list)
    """Principals (or names the trust maps to them) who may ship an unreviewed change with the break-glass annotation."""
    groups: list[KubernetesName] = Field(default_factory=list)
    """Kubernetes groups (`request.userInfo.groups`) whose members may break glass."""


# The repository permissions a policy may ask of reviewers (GitLab access
# levels map onto them: developer is write, maintainer is maintain, owner is admin).
REVIEWER_PERMISSIONS = ("write", "maintain", "admin")
# ORG/TEAM on GitHub, a group's full path on GitLab.
TeamName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$", max_length=255),
]


class ForgeRules(Strict):
    """What a review read from a forge must show (``guard attest review
    --from``). A policy with this block accepts only attestations whose
    facts were read from a forge; attestations written from flags never count.

    ``reviewerPermission``: the least repository permission an approver must
    hold (write at least, always: anyone can approve on a public repository).
    ``requireLastPushApproval`` (GitHub): the target branch's rules must
    require approval of the most recent push. ``requireResetOnPush``
    (GitLab): the project must reset approvals when commits are pushed.
    ``denyUnresolvedAuthors``: an author the forge could not link to an
    account (an e-mail in a commit or a Co-authored-by trailer) denies,
    since nobody can prove that person did not approve. ``approverTeams``:
    only members of these teams (GitHub ORG/TEAM) or groups (GitLab path)
    count as approvers; second accounts of one person cannot be detected
    from a forge, a curated team can vouch for. ``repositoryIds``: the
    forge's immutable repository ids (``github:123``): a renamed or
    re-created repository of the same name does not inherit trust.
    """

    reviewer_permission: Annotated[
        Literal["write", "maintain", "admin"],
        one_of(REVIEWER_PERMISSIONS, "a reviewer permission"),
    ] = "write"
    """The least permission an approver holds on the repository: write, maintain or admin."""
    require_last_push_approval: bool = False
    """GitHub: the target branch's rules must require approval of the most recent push."""
    require_reset_on_push: bool = False
    """GitLab: the project must reset approvals when commits are pushed."""
    deny_unresolved_authors: bool = False
    """Deny a change with an author the forge could not link to an account."""
    approver_teams: list[TeamName] = Field(default_factory=list, max_length=64)
    """Only members of these teams (GitHub ORG/TEAM) or groups (GitLab path) count as approvers."""
    repository_ids: list[PrincipalId] = Field(default_factory=list, max_length=64)
    """The forge's repository ids (`github:123`) attestations must come from."""


def _image_glob(value: Any) -> Any:
    return visible_ascii(value, "image pattern")


# ``builder`` keys vouch for build provenance only, ``verifier`` keys for
# source verification summaries only: a role never vouches for another's
# predicate.
KeyRole = Literal["attester", "person", "builder", "verifier"]
KEY_ROLES: tuple[str, ...] = get_args(KeyRole)


class Review(Strict):
    """The separation-of-duties requirement: a signed, independent review.

    ``repositories`` and ``targetRefs`` are required: an attestation made for
    another repository or branch must never count.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.acceptSourceVSA) || has(self.provenance)",
                "acceptSourceVSA needs provenance",
            ),
            ("!has(self.acceptSourceVSA) || has(self.maxAge)", "acceptSourceVSA needs maxAge"),
        )
    )

    min_approvals: int = Field(default=1, ge=1, le=100)
    """How many approvals by reviewers who are not authors the change needs."""
    attesters: list[KeyName] = Field(min_length=1)
    """Names of the trusted attester keys that may vouch for the review."""
    repositories: list[RepositoryGlob] = Field(min_length=1)
    """Repositories (globs) whose reviews count; an attestation for another repository never does."""
    target_refs: list[GitRefGlob] = Field(min_length=1)
    """Branches (full refs, globs) whose reviews count, e.g. `refs/heads/main`."""
    max_age: Duration | None = None
    """The oldest an attestation may be when its image is introduced."""
    allow_bots: bool = False
    """Whether approvals by bots count."""
    required_checks: list[RequiredCheck] = Field(default_factory=list)
    """CI checks the attestation must record as passed."""
    exempt_images: list[
        Annotated[str, Field(pattern=r"^[!-~]+$", max_length=1024), BeforeValidator(_image_glob)]
    ] = Field(default_factory=list)
    """Image globs that need no review (injected sidecars); every use is audited."""
    deployer: DeployerRules = Field(default_factory=DeployerRules)
    """Rules about who may deploy the reviewed change."""
    break_glass: BreakGlass = Field(default_factory=BreakGlass)
    """Who may ship an unreviewed change in an emergency, with an audited annotation."""
    # The chain from image to review (see ``controller.policy.provenance``).
    provenance: ProvenanceRequirements | None = None
    """The chain from image to reviewed commit through signed build provenance."""
    accept_source_vsa: SourceSummaries | None = Field(default=None, alias="acceptSourceVSA")
    """Accept a signed SLSA source verification summary for a commit instead of guard's own review."""
    forge: ForgeRules | None = None
    """Rules for reviews read from a forge (`guard attest review --from`); with this block only those count."""
    require_keyless: list[Annotated[KeyRole, one_of(KEY_ROLES, "a key role")]] = Field(
        default_factory=list, max_length=4
    )
    """Roles whose signatures count only when keyless (a Sigstore bundle verified as a trusted identity), e.g. `[builder]`; a listed key of such a role is refused."""

    @model_validator(mode="after")
    def _summaries_need_the_chain(self) -> Review:
        if self.accept_source_vsa is not None and self.provenance is None:
            raise ValueError(
                "acceptSourceVSA needs provenance: a source summary covers a commit, and only "
                "build provenance links an image to its commit"
            )
        if self.accept_source_vsa is not None and self.max_age is None:
            raise ValueError(
                "acceptSourceVSA needs maxAge: a source summary older than maxAge must not count"
            )
        return self

    @property
    def max_age_delta(self) -> dt.timedelta | None:
        return parse_duration(self.max_age) if self.max_age else None


# --------------------------------------------------------------------------- rules


class Rule(Strict):
    """One CEL check. The expression must evaluate to ``true`` for a pass.

    ``message`` (or ``messageExpression``, evaluated on failure) says what is
    wrong; ``fix`` says what to do about it.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "(has(self.message) && size(self.message) > 0) || "
                "(has(self.messageExpression) && size(self.messageExpression) > 0)",
                "a rule needs a message or a messageExpression",
            )
        )
    )

    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ]
    """The rule's name, unique in its policy; findings name it."""
    target: TargetField
    """Whether the rule judges Kubernetes objects or Terraform resource changes."""
    expression: NonEmptyStr
    """A CEL expression that is true when the object passes."""
    message: str | None = None
    """What a failure says; also what is printed when the rule reads a sensitive value."""
    message_expression: str | None = None
    """A CEL expression for a failure's message, evaluated on the object."""
    fix: str | None = None
    """How to fix a failure, printed under it."""

    @model_validator(mode="after")
    def _has_message(self) -> Rule:
        if not self.message and not self.message_expression:
            raise ValueError("a rule needs a message or a messageExpression")
        return self


class GuardPolicySpec(Strict):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.review) || (has(self.rules) && size(self.rules) > 0)",
                "a policy needs rules, a review block, or both",
            ),
            (
                "has(self.match) && (has(self.match.kubernetes) || has(self.match.terraform))",
                "match needs kubernetes, terraform, or both",
            ),
            (
                "!has(self.rules) || (has(self.match) && self.rules.all(r, "
                "r.target == 'kubernetes' ? has(self.match.kubernetes) "
                ": has(self.match.terraform)))",
                "every rule's target needs the same key under match",
            ),
        )
    )

    description: str = ""
    """What the policy is for, shown by `guard policy lint` and in reports."""
    severity: SeverityField = Severity.medium
    """Orders findings and sets their SARIF level; it never decides."""
    action: ActionField = Action.deny
    match: Match = Field(default_factory=Match)
    """Which objects and resource changes the policy judges."""
    review: Review | None = None
    """The separation-of-duties requirement: a signed, independent review."""
    rules: list[Rule] = Field(default_factory=list, max_length=256)
    """CEL rules; each must hold for the object to pass."""

    @model_validator(mode="after")
    def _consistent(self) -> GuardPolicySpec:
        if not self.rules and self.review is None:
            raise ValueError("a policy needs rules, a review block, or both")
        names = [rule.name for rule in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        if self.match.kubernetes is None and self.match.terraform is None:
            raise ValueError("match needs kubernetes, terraform, or both")
        for rule in self.rules:
            if getattr(self.match, rule.target.value) is None:
                raise ValueError(
                    f"rule {rule.name!r} targets {rule.target.value} but "
                    f"match.{rule.target.value} is not set"
                )
        return self


# --------------------------------------------------------------------------- trust


class TrustedKey(Strict):
    """A public key. ``attester`` keys vouch for review predicates; a
    ``person`` key's signature is one approval by its ``principal``;
    ``builder`` keys vouch for build provenance and ``verifier`` keys for
    source verification summaries, nothing else."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.role != 'person' || (has(self.principal) && size(self.principal) > 0)",
                "a person key needs a principal",
            )
        )
    )

    name: KeyName
    """The key's name, as policies' `review.attesters` list it."""
    public_key: NonEmptyStr
    """The public key, PEM."""
    role: Annotated[KeyRole, one_of(KEY_ROLES, "a key role")]
    """What the key may vouch for."""
    principal: PrincipalId | None = None
    """Whose key it is (a `person` key: its signature is one approval by this principal)."""

    @model_validator(mode="after")
    def _person_has_principal(self) -> TrustedKey:
        if self.role == "person" and not self.principal:
            raise ValueError(f"person key {self.name!r} needs a principal")
        return self


class Principal(Strict):
    """One human or bot, by immutable id, with the other ids it is known by.

    A Kubernetes username is an alias ``kubernetes:USERNAME`` (exactly as the
    API server reports it, OIDC prefix included): that is how the deployer
    rules know who deploys.
    """

    id: PrincipalId
    """The principal's immutable id, `SYSTEM:VALUE` (`github:1001`)."""
    aliases: list[PrincipalId] = Field(default_factory=list)
    """Every other id of the same principal (another forge, an e-mail, `kubernetes:USERNAME`)."""


class GuardTrustSpec(Strict):
    keys: list[TrustedKey] = Field(default_factory=list, max_length=256)
    """The keys guard trusts, each with its role."""
    principals: list[Principal] = Field(default_factory=list)
    """The identity map: who is who across systems."""
    # Keyless signing (see ``controller.policy.keyless``).
    trusted_roots: list[SigstoreRoot] = Field(default_factory=list, max_length=16)
    """Sigstore trusted roots, as data: never fetched, so verification works offline."""
    identities: list[SigstoreIdentity] = Field(default_factory=list, max_length=256)
    """Keyless signers: Sigstore identities, each with its role and trusted root."""

    @model_validator(mode="after")
    def _unique_names(self) -> GuardTrustSpec:
        names = [k.name for k in self.keys] + [i.name for i in self.identities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"key names must be unique: {', '.join(duplicates)}")
        roots = [r.name for r in self.trusted_roots]
        if len(set(roots)) != len(roots):
            raise ValueError("trusted root names must be unique")
        for identity in self.identities:
            if identity.root not in roots:
                raise ValueError(
                    f"identity {identity.name!r} names trusted root {identity.root!r}, which "
                    "spec.trustedRoots does not define"
                )
        return self


# --------------------------------------------------------------------------- exceptions

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: Any) -> Any:
    """A calendar date: YAML gives a ``date``, JSON (the cluster) a string."""
    if isinstance(value, dt.datetime):
        raise ValueError("give a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    shown = f"{value!a}" if isinstance(value, str) else type(value).__name__
    raise ValueError(f"{shown} is not a date: use YYYY-MM-DD")


class GuardExceptionSpec(Strict):
    """A governed waiver of one policy for one target, with an owner and an end.

    ``target`` is a Terraform address or glob, or ``namespace/name`` (globs
    allowed) on the Kubernetes side. Never applies to a policy with a review
    block: the only way past review is the audited break-glass.
    """

    policy: NonEmptyStr
    """The policy whose findings it waives (never one with a `review` block)."""
    target: NonEmptyStr
    """What it waives: a Terraform address or glob, or Kubernetes `namespace/name`."""
    reason: NonEmptyStr
    """Why the finding is accepted, for the audit trail."""
    owner: NonEmptyStr
    """Who answers for the exception."""
    expires: Annotated[dt.date, BeforeValidator(_date)]
    """The last day it applies (`YYYY-MM-DD`); after it, the finding counts again."""


# --------------------------------------------------------------------------- tests


class ExpectedFinding(Strict):
    policy: NonEmptyStr
    """The policy of the expected finding."""
    rule: str | None = None
    """The rule of the expected finding (any rule when absent)."""
    result: Annotated[
        Literal["fail", "unknown", "error"],
        one_of(("fail", "unknown", "error"), "a finding result"),
    ] = "fail"
    """The expected result of that rule."""


class Expectation(Strict):
    result: Annotated[
        Literal["pass", "fail", "unknown"], one_of(("pass", "fail", "unknown"), "a result")
    ]
    """The case's expected overall result."""
    findings: list[ExpectedFinding] = Field(default_factory=list)
    """Findings the case must produce."""


class TestResource(Strict):
    """Terraform resource identity for a test case (Kubernetes reads it from the object)."""

    type: NonEmptyStr
    """The Terraform resource type of the case."""
    address: str | None = None
    """The resource address findings name (default: `TYPE.test`)."""
    action: TerraformActionField = "create"
    """The planned action the case plays."""


KUBERNETES_OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")


# The deepest a test case's values may nest: as deep as a plan's values
# (controller.terraform.normalize), deeper than any admission request.
CASE_MAX_DEPTH = 100


class TestCase(Strict):
    """One case. ``object``/``oldObject`` are the Kubernetes object or the
    Terraform ``after``/``before``; ``unknowns`` lists dotted paths of
    ``object`` that are unknown at plan time."""

    name: NonEmptyStr
    """The case's name, unique in its test."""
    policies: list[NonEmptyStr] = Field(default_factory=list)
    """The only policies the case runs (default: every policy loaded with it)."""
    object: dict[str, Any] | None = None
    """The new object (Kubernetes) or `after` values (Terraform)."""
    old_object: dict[str, Any] | None = None
    """The old object (Kubernetes) or `before` values (Terraform)."""
    request: dict[str, Any] | None = None
    """The admission request fields the case plays (operation, userInfo, dryRun)."""
    resource: TestResource | None = None
    """A Terraform resource change to play instead of a Kubernetes object."""
    unknowns: list[NonEmptyStr] = Field(default_factory=list)
    """Paths in the object whose values are known only after apply."""
    attestations: list[NonEmptyStr] = Field(default_factory=list)
    """Envelope files, relative to the test file, offered to the review."""
    expect: Expectation
    """What the case must produce."""

    @model_validator(mode="after")
    def _has_object(self) -> TestCase:
        if self.object is None and self.old_object is None:
            raise ValueError("a case needs object, oldObject, or both")
        # YAML anchors can nest a case far deeper than any request or plan
        # guard reads, and the CEL runtime walks values recursively.
        for field_name, value in (
            ("object", self.object),
            ("oldObject", self.old_object),
            ("request", self.request),
        ):
            if nested_deeper_than(value, CASE_MAX_DEPTH):
                raise ValueError(f"{field_name}: nested more than {CASE_MAX_DEPTH} levels deep")
        operation = (self.request or {}).get("operation")
        if operation is not None and operation not in KUBERNETES_OPERATIONS:
            raise ValueError(
                "request.operation: "
                + not_one_of(operation, KUBERNETES_OPERATIONS, "an admission operation")
            )
        return self

    @property
    def target(self) -> Target:
        return Target.terraform if self.resource is not None else Target.kubernetes


class GuardPolicyTestSpec(Strict):
    description: str = ""
    """What the test covers."""
    trust: str | None = None
    """A GuardTrust file, relative to the test file, for cases with attestations."""
    cases: list[TestCase] = Field(min_length=1)
    """The cases, each one object or resource change with its expectation."""


# --------------------------------------------------------------------------- envelope


class Metadata(BaseModel):
    """Object metadata. Only the name matters; server-set fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, defer_build=True)

    name: Annotated[str, Field(min_length=1, max_length=253)]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

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
    """The DSSE envelope, as JSON text."""


class ReviewAttestation(_Document):
    kind: Literal["ReviewAttestation"]
    spec: ReviewAttestationSpec


DOCUMENT_KINDS["ReviewAttestation"] = ReviewAttestation
AnyDocument = GuardPolicy | GuardTrust | GuardException | GuardPolicyTest | ReviewAttestation
