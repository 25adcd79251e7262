"""Controller-made objects judged through their owner, for baselined owners.

A Pod that the replicaset-controller recreates after a drain was not made
by a person: what a person made is its owner, and if that owner predates
enforcement (a ``GuardBaseline`` entry names it), the Pod is what already
ran. It is admitted as *inherited from its owner* when all of this holds:

- the request comes from a Kubernetes controller's identity (decided from
  ``request.userInfo``, never from ``ownerReferences``, which users set);
- the object has exactly one controlling ``ownerReference``, of a kind that
  makes objects of the request's kind (``CHAIN``), at the apiVersion the
  API serves it, found in the object's namespace with the same kind, name
  and uid (the owner index, or one bounded read by name on a miss);
- the owner is on an applying entry (uid, template digest, not expired),
  or is a ReplicaSet or Job whose own controlling owner is, with the same
  template (a rollout restart makes a new ReplicaSet from an unchanged
  template);
- the object's pod spec is what the owner's template produces, compared on
  the security-relevant fields only (``pod_fields``, ``container_fields``);
  a StatefulSet's or DaemonSet's Pod of an older revision is compared with
  the ``ControllerRevision`` its ``controller-revision-hash`` label names.

Containers the template does not have (a mesh's sidecar) are judged on
their own. Nothing here admits anything: ``decide.judge`` waives the
findings of the policies that match the owner and still judges the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.kube.breakglass import REVIEW_RULE
from controller.kube.owners import (
    CHAIN,
    OWNER_APIS,
    OwnerRecord,
    OwnerSource,
    TemplateShape,
    controlling_reference,
    metadata_of,
    owner_record,
)
from controller.kube.request import AdmissionRequest
from controller.kube.subjects import labels_of
from controller.policy.baseline import BaselineEntry, GuardBaseline
from controller.policy.engine import Engine
from controller.policy.results import Finding, Subject, Waiver, WaiverKind
from controller.policy.reviewer import ReviewEvaluator
from controller.policy.variables import pod_spec_of

REVISION_LABEL = "controller-revision-hash"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class BaselineMatch:
    entry: BaselineEntry
    baseline: str
    expires: dt.date


class Baselines:
    """Every baseline entry in force, by owner (kind, namespace, name)."""

    def __init__(self, documents: Iterable[GuardBaseline] = ()) -> None:
        self.documents = tuple(documents)
        self._entries: dict[tuple[str, str, str], list[BaselineMatch]] = {}
        for document in self.documents:
            for entry in document.spec.entries:
                key = (entry.kind, entry.namespace, entry.name)
                match = BaselineMatch(entry, document.name, document.spec.expires)
                self._entries.setdefault(key, []).append(match)

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def applying(self, owner: OwnerRecord, today: dt.date) -> tuple[BaselineMatch | None, str]:
        """The entry that applies to this owner now (same uid, same template,
        not expired), or why none does."""
        candidates = self._entries.get((owner.kind, owner.namespace, owner.name))
        if not candidates:
            return None, f"{owner.address} is on no GuardBaseline"
        digest = owner.shape.digest
        reasons: list[str] = []
        for match in candidates:
            entry = match.entry
            if entry.uid != owner.uid:
                reasons.append(f"GuardBaseline {match.baseline} names an earlier {owner.kind}")
            elif match.expires < today:
                reasons.append(f"GuardBaseline {match.baseline} expired on {match.expires}")
            elif entry.template_digest != digest:
                reasons.append(
                    f"its template changed since GuardBaseline {match.baseline} was made"
                )
            else:
                return match, ""
        return None, f"{owner.address}: " + "; ".join(reasons)


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Inheritance:
    """Why a request is admitted through its owner's baseline entry.

    ``scope`` is ``owner`` (a controller's object inherits every finding of
    the policies matching its owner) or ``unchanged`` (a person's update of
    a baselined owner that changes no security-relevant field: its review
    is waived, its guardrails run).
    """

    scope: str
    owner: OwnerRecord
    match: BaselineMatch
    # The baselined owner when it is the owner's own owner (a Deployment for
    # a Pod of its ReplicaSet).
    via: OwnerRecord | None = None
    revision: str = ""
    injected: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        entry = self.match.entry
        return f"{entry.address} (GuardBaseline {self.match.baseline})"

    def record(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "owner": self.owner.address,
            "ownerUid": self.owner.uid,
            "baseline": self.match.baseline,
            "entry": self.match.entry.address,
            "expires": self.match.expires.isoformat(),
            "via": self.via.address if self.via is not None else None,
            "revision": self.revision or None,
            "injectedContainers": list(self.injected),
        }


@dataclass(frozen=True)
class Resolution:
    inheritance: Inheritance | None
    # Why the request is judged in full (a note in its audit record), or "".
    reason: str = ""


def _no(reason: str) -> Resolution:
    return Resolution(None, reason)


async def resolve(
    request: AdmissionRequest,
    subject: Subject,
    owners: OwnerSource,
    baselines: Baselines,
    today: dt.date,
) -> Resolution:
    """Whether this request inherits from a baselined owner (see the module)."""
    if not len(baselines) or request.object is None:
        return _no("")
    requester = subject.requester
    if requester is None or not requester.controller:
        return await _unchanged_update(request, baselines, today)
    if request.sub_resource is not None:
        return _no("pods/ephemeralcontainers never inherits from an owner")
    allowed = CHAIN.get(request.kind)
    if allowed is None:
        return _no("")
    reference, problem = controlling_reference(request.object)
    where = f"not inherited: {subject.address}"
    if reference is None:
        return _no(f"{where}: {problem}")
    api = OWNER_APIS.get(reference.kind)
    if reference.kind not in allowed or api is None or reference.api_version != api.api_version:
        return _no(
            f"{where}: a {request.kind} is not made by {reference.api_version} {reference.kind}"
        )
    namespace = request.namespace or ""
    owner = await owners.owner(namespace, reference)
    if owner is None or (owner.kind, owner.name, owner.uid, owner.api_version) != (
        reference.kind,
        reference.name,
        reference.uid,
        reference.api_version,
    ):
        found = "not found" if owner is None else "has another uid"
        return _no(f"{where}: its owner {reference.kind} {namespace}/{reference.name} {found}")
    match, via, problem = await _owner_entry(owner, owners, baselines, today)
    if match is None:
        return _no(f"{where}: {problem}")
    child = TemplateShape.of(pod_spec_of(request.kind, request.object))
    produced, injected = owner.shape.produces(child)
    revision = ""
    if not produced and request.kind == "Pod" and owner.kind in ("StatefulSet", "DaemonSet"):
        produced, injected, revision = await _from_revision(
            request.object, owner, match, owners, child
        )
    if not produced:
        return _no(f"{where}: its pod spec is not what {owner.address}'s template makes")
    injected_images = _images_of_containers(request.kind, request.object, injected)
    return Resolution(Inheritance("owner", owner, match, via, revision, injected_images))


async def _owner_entry(
    owner: OwnerRecord, owners: OwnerSource, baselines: Baselines, today: dt.date
) -> tuple[BaselineMatch | None, OwnerRecord | None, str]:
    match, problem = baselines.applying(owner, today)
    if match is not None:
        return match, None, ""
    parent_ref = owner.controller
    if owner.kind not in ("ReplicaSet", "Job") or parent_ref is None:
        return None, None, problem
    parent_api = OWNER_APIS.get(parent_ref.kind)
    if (
        parent_ref.kind not in CHAIN[owner.kind]
        or parent_api is None
        or parent_ref.api_version != parent_api.api_version
    ):
        return None, None, problem
    parent = await owners.owner(owner.namespace, parent_ref)
    if parent is None or (parent.kind, parent.name, parent.uid) != (
        parent_ref.kind,
        parent_ref.name,
        parent_ref.uid,
    ):
        return None, None, problem
    # The parent's current template, and the owner's, must be the pinned one.
    if parent.shape.digest != owner.shape.digest:
        return None, None, f"{problem}; {owner.address} runs another template than {parent.address}"
    parent_match, parent_problem = baselines.applying(parent, today)
    if parent_match is None:
        return None, None, f"{problem}; {parent_problem}"
    return parent_match, parent, ""


async def _from_revision(
    obj: Mapping[str, Any],
    owner: OwnerRecord,
    match: BaselineMatch,
    owners: OwnerSource,
    child: TemplateShape,
) -> tuple[bool, tuple[str, ...], str]:
    """A StatefulSet's or DaemonSet's Pod made from an older revision: the
    ControllerRevision its label names, controlled by the owner, pinned by
    the entry."""
    label = labels_of(obj).get(REVISION_LABEL)
    if not label:
        return False, (), ""
    # StatefulSets label Pods with the revision's name, DaemonSets with its hash.
    name = label if label.startswith(f"{owner.name}-") else f"{owner.name}-{label}"
    revision = await owners.revision(owner.namespace, name)
    if revision is None or revision.controller is None or revision.controller.uid != owner.uid:
        return False, (), ""
    pinned = {match.entry.template_digest, *match.entry.revisions}
    if revision.shape.digest not in pinned:
        return False, (), ""
    produced, injected = revision.shape.produces(child)
    return produced, injected, name if produced else ""


def _images_of_containers(
    kind: str, obj: Mapping[str, Any], names: Sequence[str]
) -> tuple[str, ...]:
    if not names:
        return ()
    pod_spec = pod_spec_of(kind, obj)
    images: dict[str, None] = {}
    for key in ("initContainers", "containers"):
        items = pod_spec.get(key)
        for container in items if isinstance(items, list) else ():
            if isinstance(container, Mapping) and container.get("name") in names:
                image = container.get("image")
                if isinstance(image, str) and image:
                    images.setdefault(image, None)
    return tuple(images)


async def _unchanged_update(
    request: AdmissionRequest, baselines: Baselines, today: dt.date
) -> Resolution:
    """A person's UPDATE of a baselined owner that changes no security-relevant
    field (a rollout restart, labels): its review is waived, its guardrails run."""
    if request.operation != "UPDATE" or request.old_object is None or request.object is None:
        return _no("")
    if request.kind not in OWNER_APIS or request.kind == "ControllerRevision":
        return _no("")
    old = owner_record(request.kind, request.old_object)
    new = owner_record(request.kind, request.object)
    if old is None or new is None or old.uid != new.uid:
        return _no("")
    if new.shape.digest != old.shape.digest:
        return _no("")
    match, _ = baselines.applying(old, today)
    if match is None:
        return _no("")
    return Resolution(Inheritance("unchanged", new, match))


# --------------------------------------------------------------------------- findings


def inherited_findings(
    engine: Engine,
    subject: Subject,
    findings: Sequence[Finding],
    inheritance: Inheritance,
    review: ReviewEvaluator | None,
) -> list[Finding]:
    """The findings once the inheritance is applied.

    ``owner`` scope: every finding of a policy that also matches the owner
    is waived (the owner is baselined), except that images the template
    does not have are reviewed on their own; policies that match only the
    object judge it in full. ``unchanged`` scope: only review is waived.
    """
    waiver = Waiver(WaiverKind.inherited, inheritance.label)
    if inheritance.scope == "unchanged":
        return [
            dataclasses.replace(f, waiver=waiver) if f.rule == REVIEW_RULE else f for f in findings
        ]
    owner_policies = engine.matching(inheritance.owner.subject())
    names = {p.name for p in owner_policies}
    result = [dataclasses.replace(f, waiver=waiver) if f.policy in names else f for f in findings]
    injected = set(inheritance.injected)
    artifacts = tuple(a for a in subject.artifacts if a.reference in injected)
    if artifacts:
        own = dataclasses.replace(subject, artifacts=artifacts)
        judged = {p.name for p in engine.matching(subject)}
        for policy in owner_policies:
            if policy.spec.review is not None and policy.name in judged:
                result.extend(
                    engine.review_findings(
                        policy, own, review, " (a container its owner's template does not have)"
                    )
                )
    return result


# --------------------------------------------------------------------------- mirror pods


def mirror_pod(request: AdmissionRequest) -> str | None:
    """The node of a mirror pod the kubelet creates for a static pod, or None.

    The kubelet runs a static pod whatever the API server says; denying its
    mirror only hides a running Pod from the API. So it is admitted with a
    warning and an audit line: static pods cannot be governed by admission.
    """
    username = request.requester.username
    if request.kind != "Pod" or request.sub_resource is not None or request.object is None:
        return None
    if not username.startswith("system:node:"):
        return None
    node = username.removeprefix("system:node:")
    annotations = metadata_of(request.object).get("annotations")
    if not isinstance(annotations, Mapping) or MIRROR_ANNOTATION not in annotations:
        return None
    reference, _ = controlling_reference(request.object)
    if reference is None or reference.kind != "Node" or reference.name != node:
        return None
    return node
