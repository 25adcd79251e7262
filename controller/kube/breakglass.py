"""Governed break-glass: an emergency way past review, for named people only.

A workload asks for it with the annotation ``guard.dev/break-glass: <reason>``
on the object or on its pod template. It is honoured only for the
principals and groups a policy's ``review.breakGlass`` lists; principals are
compared after the GuardTrust identity map (``Trust.canonical``), groups
exactly as the API server sends them.

What it bypasses, deliberately little: only the **review** finding of the
policies that list the requester. Every other rule of those policies, and
every finding of the policies that do not list the requester, still
applies: break-glass answers "the reviewer is asleep and production is
down", not "let me run a privileged container". Each use is admitted with a
warning, recorded in the audit line and posted as a Kubernetes Event.

Who is refused: when a policy with a review requirement judges the object,
anyone that no such policy lists is denied (the annotation is a claim of
authority, and a false claim is worth stopping and recording). Where no
review policy applies there is nothing to break: the annotation is only
noted.

Objects that Kubernetes controllers create (identified by
``request.userInfo``, never by ``ownerReferences``) inherit the annotation
from the object a person applied: a Deployment's ReplicaSet copies its
annotations, and Pods copy the pod template's. That parent was itself judged,
so a controller's request that carries the annotation is honoured as
*inherited* by the policies that allow break-glass at all; without that, a
break-glass Deployment could never start its Pods. Put the annotation on the
pod template so the Pods carry it too.

That inheritance is only sound if the person was judged by every policy
that will honour it. So a person's request is judged by the policies that
judge what controllers make from it (``descendants``: a policy matching
only Pods, or labels only the pod template has), and is refused unless
those list the person too; otherwise anyone could launder an unreviewed
image through a Deployment that no review policy matches.

The annotation stays on the object until someone removes it: a later update
by anyone the policy does not list is refused until they remove it, which is
how an emergency change is brought back under review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.attest.trust import Trust
from controller.kube.request import AdmissionRequest
from controller.kube.subjects import (
    address_of,
    annotations_of,
    labels_of,
    template_annotations_of,
)
from controller.kube.text import printable
from controller.policy.documents import Action, BreakGlass, GuardPolicy, Target
from controller.policy.results import Finding, Result, Subject, Waiver, WaiverKind

ANNOTATION = "guard.dev/break-glass"
# The reason lands in warnings, events and audit lines: keep it a sentence.
MAX_REASON_CHARS = 512
REVIEW_RULE = "review"
REFUSAL_RULE = "break-glass"


class Outcome(StrEnum):
    """What became of a break-glass request (a closed vocabulary)."""

    honoured = "honoured"
    inherited = "inherited"
    refused = "refused"
    ignored = "ignored"


@dataclass(frozen=True)
class Bypass:
    """One finding that break-glass let through."""

    policy: str
    rule: str
    message: str


@dataclass(frozen=True)
class BreakGlassUse:
    """One request's use of break-glass: who, why, and what it bypassed."""

    outcome: Outcome
    user: str
    groups: tuple[str, ...]
    principal: str
    reason: str
    honoured_by: tuple[str, ...] = ()
    refused_by: tuple[str, ...] = ()
    bypassed: tuple[Bypass, ...] = ()
    problem: str = ""
    template_hint: bool = False
    # The baselined owner a controller's object inherited from, if any.
    owner: str = ""

    @property
    def admitted_by_glass(self) -> bool:
        return self.outcome in (Outcome.honoured, Outcome.inherited)

    def record(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "user": self.user,
            "groups": list(self.groups),
            "principal": self.principal,
            "reason": self.reason,
            "honouredBy": list(self.honoured_by),
            "refusedBy": list(self.refused_by),
            "bypassed": [{"policy": b.policy, "rule": b.rule} for b in self.bypassed],
            "problem": self.problem,
            "owner": self.owner or None,
        }

    def warning(self) -> str:
        """The AdmissionReview warning a break-glass user sees."""
        bypassed = ", ".join(f"{b.policy}/{b.rule}" for b in self.bypassed) or "nothing"
        how = "inherited from its owner" if self.outcome == Outcome.inherited else "used"
        # The reason is already escaped (``printable``): quoted, not repr'd again.
        text = (
            f"guard: break-glass {how} by {self.user or '(no user)'} "
            f"(reason: '{self.reason}'); bypassed: {bypassed}. This is audited; remove the "
            f"{ANNOTATION} annotation once the emergency is over"
        )
        if self.template_hint:
            text += (
                "; also put it on the pod template's annotations: the Pods that "
                "controllers create get only the template's annotations"
            )
        return text


def requested_reason(kind: str, obj: Mapping[str, Any] | None) -> str | None:
    """The break-glass reason the object carries, or None when it asks for none.

    The object's own annotation wins over its pod template's. An empty reason
    is returned as ``""`` (and refused): an emergency without a reason is
    not auditable.
    """
    for found in annotations_of(kind, obj):
        value = found.get(ANNOTATION)
        if value is None:
            continue
        # Escaped, so a reason cannot forge lines or hide text wherever it is shown.
        text = printable(value.strip()) if isinstance(value, str) else ""
        if len(text) > MAX_REASON_CHARS:
            text = text[: MAX_REASON_CHARS - 1] + "…"
        return text
    return None


# What Kubernetes controllers make from each kind, and where in the parent
# the made object's metadata comes from (its labels decide which policies
# judge it, its annotations carry the inherited break-glass).
_DESCENDANTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "Deployment": (("ReplicaSet", ("spec", "template")), ("Pod", ("spec", "template"))),
    "StatefulSet": (("Pod", ("spec", "template")),),
    "DaemonSet": (("Pod", ("spec", "template")),),
    "ReplicaSet": (("Pod", ("spec", "template")),),
    "ReplicationController": (("Pod", ("spec", "template")),),
    "Job": (("Pod", ("spec", "template")),),
    "CronJob": (
        ("Job", ("spec", "jobTemplate")),
        ("Pod", ("spec", "jobTemplate", "spec", "template")),
    ),
}


def descendants(subject: Subject) -> list[Subject]:
    """The objects controllers will make from this one, as far as policy
    matching can tell (kind, namespace, labels), for break-glass: they
    inherit the annotation, so whoever asks for it must be allowed by the
    policies that will judge them too."""
    found: list[Subject] = []
    for kind, template in descendant_templates(subject):
        found.append(
            Subject(
                target=Target.kubernetes,
                address=address_of(kind, subject.namespace, f"(made from {subject.name})"),
                kind=kind,
                type=kind,
                name="",
                namespace=subject.namespace,
                action="create",
                object=template,
                requester=subject.requester,
                labels=labels_of(template),
            )
        )
    return found


def descendant_templates(subject: Subject) -> list[tuple[str, Mapping[str, Any]]]:
    """The kind of each object controllers make from this one, and the
    template it is made from (empty where the object has none)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for kind, path in _DESCENDANTS.get(subject.kind, ()):
        node: Any = subject.object
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        found.append((kind, node if isinstance(node, Mapping) else {}))
    return found


def _on_template(kind: str, obj: Mapping[str, Any] | None) -> bool:
    return any(ANNOTATION in a for a in template_annotations_of(kind, obj))


def lists(glass: BreakGlass, trust: Trust, username: str, groups: Iterable[str]) -> bool:
    """Whether a policy's breakGlass names this user (after the identity map) or a group."""
    # An allow-list: a look-alike of a listed name (other case, full-width
    # letters, an invisible character) is somebody else, so only exact
    # spellings, or spellings the trust itself lists, are followed.
    if username:
        if username in glass.principals:
            return True
        principal = trust.principal_of(username)
        if principal is not None and any(
            trust.principal_of(p) == principal or p == principal for p in glass.principals
        ):
            return True
    return bool(set(glass.groups) & set(groups))


def _opted_in(glass: BreakGlass) -> bool:
    return bool(glass.principals or glass.groups)


def apply(
    request: AdmissionRequest,
    subject: Subject,
    policies: Sequence[GuardPolicy],
    trust: Trust,
    findings: Sequence[Finding],
    *,
    enforcement: Action,
    inheriting: Sequence[GuardPolicy] = (),
) -> tuple[list[Finding], BreakGlassUse | None]:
    """The findings after break-glass, and the use to record (None when not asked).

    ``policies`` are the policies that judge the subject (they match it).
    ``inheriting`` are the policies that judge what controllers make from it
    (see ``descendants``): a person's request must be allowed by those too,
    or the objects made from it would get past them as *inherited*.
    """
    reason = requested_reason(request.kind, request.object)
    if reason is None:
        return list(findings), None
    requester = request.requester
    base = BreakGlassUse(
        outcome=Outcome.ignored,
        user=requester.username,
        groups=requester.groups,
        principal=trust.canonical(requester.username) if requester.username else "",
        reason=reason,
        template_hint=request.kind != "Pod" and not _on_template(request.kind, request.object),
    )
    controller = subject.requester is not None and subject.requester.controller
    reviewed = [p for p in policies if p.spec.review is not None]
    # A controller's request was judged at its parent, descendants included.
    downstream = (
        []
        if controller
        else [p for p in inheriting if p.spec.review is not None and p not in reviewed]
    )
    if not reviewed and not downstream:
        problem = "no policy with a review requirement judges this object: nothing to bypass"
        return list(findings), dataclasses.replace(base, problem=problem)
    honouring: list[GuardPolicy] = []
    for policy in (*reviewed, *downstream):
        assert policy.spec.review is not None
        glass = policy.spec.review.break_glass
        allowed = (
            _opted_in(glass)
            if controller
            else lists(glass, trust, requester.username, requester.groups)
        )
        if allowed:
            honouring.append(policy)
    refusing = [p for p in (*reviewed, *downstream) if p not in honouring]
    who = requester.username or "(no user)"
    problem = ""
    if not reason:
        problem = f"the {ANNOTATION} annotation must say why (an empty reason is refused)"
        refusing, honouring = [*reviewed, *downstream], []
    elif not honouring:
        problem = (
            f"{who} may not break glass here: "
            + ", ".join(f"GuardPolicy {p.name}" for p in refusing)
            + " lists neither this principal nor any of its groups in review.breakGlass"
        )
        if any(p in downstream for p in refusing):
            problem += f" (and judges what controllers make from this {request.kind})"
    result = list(findings)
    if not honouring:
        result.extend(_refusal(p, subject, problem, enforcement) for p in refusing)
        use = dataclasses.replace(
            base, outcome=Outcome.refused, refused_by=_names(refusing), problem=problem
        )
        return result, use
    honoured_names = set(_names(honouring))
    waiver = Waiver(WaiverKind.break_glass, requester.username or "(no user)")
    bypassed: list[Bypass] = []
    for position, finding in enumerate(result):
        if finding.rule == REVIEW_RULE and finding.policy in honoured_names:
            bypassed.append(Bypass(finding.policy, finding.rule, finding.message))
            result[position] = dataclasses.replace(finding, waiver=waiver)
    # A policy that does not list the requester keeps its review finding;
    # say plainly why break-glass did not get past it.
    failing = {f.policy for f in result if f.rule == REVIEW_RULE and f.waiver is None}
    for policy in refusing:
        if policy in downstream:
            why = (
                f"GuardPolicy {policy.name} judges what controllers make from this "
                f"{request.kind} and does not allow break-glass by {who}: they would "
                "inherit the annotation"
            )
            result.append(_refusal(policy, subject, why, enforcement))
        elif policy.name in failing:
            why = (
                f"GuardPolicy {policy.name} does not allow break-glass by "
                f"{who}: its review requirement still applies"
            )
            result.append(_refusal(policy, subject, why, enforcement))
    use = dataclasses.replace(
        base,
        outcome=Outcome.inherited if controller else Outcome.honoured,
        honoured_by=_names(honouring),
        refused_by=_names(refusing),
        bypassed=tuple(bypassed),
    )
    return result, use


def _names(policies: Iterable[GuardPolicy]) -> tuple[str, ...]:
    return tuple(p.name for p in policies)


def _refusal(policy: GuardPolicy, subject: Subject, problem: str, enforcement: Action) -> Finding:
    return Finding.of(
        policy,
        REFUSAL_RULE,
        Result.fail,
        subject,
        f"break-glass refused: {problem}",
        enforcement=enforcement,
        fix=f"remove the {ANNOTATION} annotation, or ask someone listed in the policy's "
        "review.breakGlass",
    )
