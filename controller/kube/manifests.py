"""``guard kube check``: manifests through the admission decision, offline.

Every workload in the input (multi-document YAML, ``List`` objects, ``helm
template`` output) is played as a CREATE by ``--user`` in its own namespace
(or ``--namespace`` when it names none, as ``kubectl apply -n`` does) and
judged by the same ``decide.judge`` the webhook uses, with envelopes from
``--attestation`` files and from the objects' own annotations, after the same
shape checks the webhook makes. What is not judged is said: objects that are
not workloads are listed in the notes, an object whose controlling owner is
in the input is judged through it, and a workload kind at an apiVersion
guard does not judge is a denying finding, so a run never passes on
something nobody judged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.attest.verify import SignatureCache
from controller.errors import InputError
from controller.kube import decide
from controller.kube.envelopes import (
    IndexedEnvelope,
    annotation_envelopes,
    built_from,
    combine,
    gather,
    index_entries,
)
from controller.kube.inherit import Inheritance
from controller.kube.request import WORKLOADS, AdmissionRequest, Workload, valid_namespace
from controller.kube.result import AdmissionResult
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from controller.kube.shapes import MAX_DEPTH, ShapeError, check_workload, too_deep
from controller.kube.state import PolicySet
from controller.kube.subjects import address_of, images_of
from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Requester, Result
from controller.policy.reviewer import ReviewEvaluator
from controller.strict import (
    StrictJSONError,
    YAMLDocumentError,
    load_json_or_yaml,
    read_yaml_documents,
)

_KINDS = {w.kind: w for w in WORKLOADS if w.sub_resource is None}
# The API groups Kubernetes has served its workload kinds from (``extensions``
# and ``apps/v1beta*`` before apps/v1, ``batch/v1beta1`` for CronJob). A kind
# of another group is a custom resource that happens to share the name.
_KUBERNETES_GROUPS = frozenset({"", "apps", "batch", "extensions"})
MAX_INPUT_BYTES = 64 * 1024 * 1024
# The namespace ``kubectl`` uses for objects that name none.
DEFAULT_NAMESPACE = "default"
# Objects that are not workloads are listed by name up to this many.
MAX_LISTED_OBJECTS = 50


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object from the input, with where it starts."""

    obj: Mapping[str, Any]
    source: str
    line: int


def read_text(path: str) -> tuple[str, str]:
    """The input's text and a name for it (``-`` is stdin)."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8"), path
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def manifests(text: str, source: str) -> list[Manifest]:
    """Every object of a multi-document YAML text, Lists flattened, read by
    the same strict reader as policies (a duplicate key is an input error)."""
    try:
        documents = read_yaml_documents(text, source)
    except YAMLDocumentError as exc:
        raise InputError(str(exc)) from None
    found: list[Manifest] = []
    for document in documents:
        found.extend(_flatten(document.data, document.node, source))
    return found


def _flatten(obj: Any, node: yaml.Node, source: str) -> Iterator[Manifest]:
    line = node.start_mark.line + 1
    if obj is None:
        return
    if not isinstance(obj, Mapping):
        raise InputError(f"{source}:{line}: a manifest must be a mapping (an object)")
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        items_node = next(
            (v for k, v in getattr(node, "value", []) if getattr(k, "value", None) == "items"),
            None,
        )
        for position, item in enumerate(obj["items"]):
            item_node = node
            if isinstance(items_node, yaml.SequenceNode) and position < len(items_node.value):
                item_node = items_node.value[position]
            yield from _flatten(item, item_node, source)
        return
    yield Manifest(obj, source, line)


def read_attestations(files: Sequence[Path]) -> dict[str, list[IndexedEnvelope]]:
    """Envelope files and ReviewAttestation documents, by claimed digest."""
    index: dict[str, list[IndexedEnvelope]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
        for envelope_text, source in _envelopes_in(text, str(path)):
            entries, problem = index_entries(envelope_text, source)
            if problem is not None:
                raise InputError(f"{source}: not a usable attestation: {problem}")
            for digest, entry in entries.items():
                index.setdefault(digest, []).append(entry)
    return index


def _envelopes_in(text: str, source: str) -> Iterator[tuple[str, str]]:
    stripped = text.lstrip()
    if stripped.startswith("{") and '"payloadType"' in text:
        yield text, source
        return
    for position, document in enumerate(text.split("\n---")):
        try:
            data = load_json_or_yaml(document)
        except StrictJSONError as exc:
            raise InputError(f"{source}: {exc}") from None
        if data is None:
            continue
        if not isinstance(data, Mapping) or data.get("kind") != "ReviewAttestation":
            raise InputError(
                f"{source} (document {position + 1}): expected a DSSE envelope or a "
                "ReviewAttestation"
            )
        envelope = (data.get("spec") or {}).get("envelope")
        if not isinstance(envelope, str):
            raise InputError(f"{source} (document {position + 1}): spec.envelope must be text")
        name = (data.get("metadata") or {}).get("name", "")
        yield envelope, f"{source} ReviewAttestation {name}"


@dataclass(frozen=True)
class _Object:
    """One manifest, classified: what it is and where it will be judged."""

    item: Manifest
    kind: str
    api_version: str
    namespace: str
    name: str
    workload: Workload | None  # a kind guard judges, at the apiVersion it judges
    unsupported: str | None  # a workload kind at another apiVersion: what is supported

    @property
    def address(self) -> str:
        return address_of(self.kind, self.namespace, self.name)


def check_manifests(
    items: Sequence[Manifest],
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    requester: Requester,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    controller_identities: frozenset[str] = frozenset(DEFAULT_CONTROLLER_IDENTITIES),
    now: dt.datetime | None = None,
    wrap_review: Callable[[ReviewEvaluator], ReviewEvaluator] | None = None,
) -> tuple[Decision, int]:
    """Judge every workload; returns the combined decision and how many
    objects were not judged (not workloads, or judged through their owner).

    Each is built and judged exactly as the webhook does (``decide``), with
    the same controller identities, so a manifest passes here only where the
    cluster would admit it. ``namespace`` stands in for objects that name
    none, as ``kubectl apply -n`` would. A workload kind at an apiVersion
    guard does not judge is a denying finding, never a silent skip: the run
    must not pass on something nobody judged. ``wrap_review`` wraps each
    workload's review evaluator (the CLI records who approved, for its
    summary).
    """
    if not valid_namespace(namespace):
        raise InputError(f"--namespace {namespace[:80]!r}: not a namespace name")
    objects = [_classify(item, namespace) for item in items]
    owners = _judged_through_owner(objects)
    findings: list[Finding] = []
    notes: list[str] = []
    judged = 0
    moment = now or dt.datetime.now(dt.UTC)
    enforcement = policies.engine.enforcement
    for position, current in enumerate(objects):
        if current.unsupported is not None:
            findings.append(_unsupported(current, enforcement))
            continue
        if current.workload is None:
            continue
        owner = owners.get(position)
        if owner is not None:
            notes.append(f"{current.address}: judged through its owner {owner.address}")
            continue
        decision = _decision(*_admission(current, position, policies, attestations, requester,
                                         controller_identities, moment, wrap_review, None))  # fmt: skip
        judged += 1
        findings.extend(decision.findings)
        notes.extend(n for n in decision.notes if n not in notes)
    notes.extend(_run_notes(objects, namespace, judged, findings))
    skipped = sum(1 for o in objects if o.workload is None and o.unsupported is None) + len(owners)
    return Decision.of(findings, subjects=judged, notes=notes), skipped


@dataclass(frozen=True)
class Selection:
    """What a run judges, as ``check_manifests`` decides it: each workload
    on its own, or through its owner in the input; what is not judged."""

    alone: tuple[Manifest, ...]
    # (address, owner's address) of the objects judged through their owner.
    through_owner: tuple[tuple[str, str], ...]
    # Workload kinds at an apiVersion guard does not judge: denying findings.
    unsupported: tuple[Finding, ...]
    # "Kind namespace/name (apiVersion)" of every object that is not a workload.
    not_workloads: tuple[str, ...]


def select(
    items: Sequence[Manifest], enforcement: Action, namespace: str = DEFAULT_NAMESPACE
) -> Selection:
    """Classify every object of the input (``guard kube audit`` and the
    background scan judge what this selects, one workload at a time)."""
    objects = [_classify(item, namespace) for item in items]
    owners = _judged_through_owner(objects)
    return Selection(
        alone=tuple(
            o.item
            for position, o in enumerate(objects)
            if o.workload is not None and position not in owners
        ),
        through_owner=tuple(
            (objects[position].address, owner.address) for position, owner in owners.items()
        ),
        unsupported=tuple(_unsupported(o, enforcement) for o in objects if o.unsupported),
        not_workloads=tuple(
            f"{o.address} ({o.api_version})"
            for o in objects
            if o.workload is None and o.unsupported is None
        ),
    )


def judge_one(
    item: Manifest,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    requester: Requester,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    controller_identities: frozenset[str] = frozenset(DEFAULT_CONTROLLER_IDENTITIES),
    now: dt.datetime | None = None,
) -> Decision | None:
    """One object judged as ``check_manifests`` judges each (a CREATE by
    ``requester``), or None when it is not a workload guard judges."""
    judged = judge_manifest(item, policies, attestations, requester, namespace=namespace,
                            now=now or dt.datetime.now(dt.UTC),
                            controller_identities=controller_identities)  # fmt: skip
    return None if judged is None else _decision(*judged)


def _decision(result: AdmissionResult, notes: Sequence[str]) -> Decision:
    decision = result.decision
    assert decision is not None  # a judged request always has one
    return Decision.of(decision.findings, subjects=1, notes=[*notes, *decision.notes])


def _classify(item: Manifest, namespace: str) -> _Object:
    obj = item.obj
    where = f"{item.source}:{item.line}"
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{where}: the object has no kind (a string)")
    if not isinstance(api_version, str) or not api_version:
        raise InputError(f"{where}: {kind} has no apiVersion (a string)")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = metadata.get("name") or metadata.get("generateName") or "(unnamed)"
    own_namespace = metadata.get("namespace")
    if own_namespace is not None and not valid_namespace(own_namespace):
        raise InputError(
            f"{where}: {kind} {str(name)[:80]}: metadata.namespace is not a namespace name"
        )
    found = _Object(item, kind, api_version, own_namespace or namespace, str(name), None, None)
    workload = _KINDS.get(kind)
    if workload is None:
        return found
    expected = f"{workload.group}/{workload.version}" if workload.group else workload.version
    group = api_version.rpartition("/")[0]
    if api_version != expected:
        if group not in _KUBERNETES_GROUPS:
            return found  # a custom resource that shares the kind's name
        return dataclasses.replace(found, unsupported=expected)
    if too_deep(obj):
        raise InputError(f"{where}: {found.address}: nested more than {MAX_DEPTH} levels deep")
    try:
        check_workload(kind, obj, "")
    except ShapeError as exc:
        raise InputError(f"{where}: {found.address}: {exc}") from None
    return dataclasses.replace(found, workload=workload)


def _unsupported(current: _Object, enforcement: Action) -> Finding:
    return Finding(
        policy="guard",
        rule="supported-api-version",
        severity=Severity.high,
        action=Action.deny.capped(enforcement),
        result=Result.error,
        target=Target.kubernetes,
        address=current.address,
        message=f"not judged: guard judges {current.kind} at apiVersion {current.unsupported} "
        f"only, not {current.api_version}",
        fix=f"write the manifest as apiVersion {current.unsupported} (the version the API "
        "server serves and the webhook judges)",
        location=current.item.source,
        line=current.item.line,
    )


def _judged_through_owner(objects: Sequence[_Object]) -> dict[int, _Object]:
    """The objects whose controlling owner is in the same input and will be
    judged, mapped to that owner.

    What a controller makes from its owner's template is judged through the
    owner, as admission does for a controller's request: the owner must be
    a workload in the same namespace, named by kind, name *and* uid by an
    ``ownerReferences`` entry with ``controller: true``, and every image the
    object runs must be one its owner runs (an old ReplicaSet left from an
    earlier rollout runs images its owner no longer names: it is judged on
    its own). Owners that name each other in a loop are each judged.
    """
    by_key = {
        (o.namespace, o.kind, o.name, _uid(o.item.obj)): position
        for position, o in enumerate(objects)
        if (o.workload is not None or o.unsupported is not None) and _uid(o.item.obj)
    }
    parent: dict[int, int] = {}
    for position, current in enumerate(objects):
        if current.workload is None:
            continue
        for reference in _owner_references(current.item.obj):
            if reference.get("controller") is not True:
                continue
            key = (current.namespace, reference["kind"], reference["name"], reference["uid"])
            owner = by_key.get(key)
            if (
                owner is not None
                and owner != position
                and _runs_only_owner_images(current, objects[owner])
            ):
                parent[position] = owner
            break  # one controlling owner at most
    through: dict[int, _Object] = {}
    for position, owner in parent.items():
        seen = {position}
        root = owner
        while root in parent and root not in seen:
            seen.add(root)
            root = parent[root]
        if root not in seen:  # the chain ends at an object judged on its own
            through[position] = objects[owner]
    return through


def _uid(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    return uid if isinstance(uid, str) else ""


def _owner_references(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # Shapes are checked: a list of objects with string kind, name and uid.
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return list(references)


def _runs_only_owner_images(current: _Object, owner: _Object) -> bool:
    owned = set(images_of(current.kind, current.item.obj))
    return owned <= set(images_of(owner.kind, owner.item.obj))


def judge_manifest(
    item: Manifest,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    requester: Requester,
    *,
    now: dt.datetime,
    namespace: str = DEFAULT_NAMESPACE,
    controller_identities: frozenset[str] = frozenset(),
    wrap_review: Callable[[ReviewEvaluator], ReviewEvaluator] | None = None,
    inheritance: Inheritance | None = None,
    cache: SignatureCache | None = None,
) -> tuple[AdmissionResult, list[str]] | None:
    """One object played as a CREATE by ``requester``, with the whole answer
    (subject, matched policies, decision) and the notes on its envelopes;
    None when it is not a workload guard judges. ``inheritance`` is passed
    to ``decide.judge`` (a baselined owner, for the background scan);
    ``cache`` keeps signature verdicts across calls, as the webhook does."""
    current = _classify(item, namespace)
    if current.workload is None:
        return None
    return _admission(current, 0, policies, attestations, requester, controller_identities,
                      now, wrap_review, inheritance, cache)  # fmt: skip


def _admission(
    current: _Object,
    position: int,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    requester: Requester,
    controller_identities: frozenset[str],
    moment: dt.datetime,
    wrap_review: Callable[[ReviewEvaluator], ReviewEvaluator] | None,
    inheritance: Inheritance | None,
    cache: SignatureCache | None = None,
) -> tuple[AdmissionResult, list[str]]:
    workload = current.workload
    assert workload is not None
    obj = current.item.obj
    request = AdmissionRequest(
        api_version="admission.k8s.io/v1",
        uid=f"check-{position + 1}",
        group=workload.group,
        version=workload.version,
        kind=workload.kind,
        resource=workload.resource,
        sub_resource=None,
        name=current.name,
        namespace=current.namespace,
        operation="CREATE",
        requester=requester,
        dry_run=True,
        object=obj,
        old_object=None,
    )
    subject = decide.subject_of(
        request,
        controller_identities=controller_identities,
        trust=policies.trust,
        location=current.item.source,
        line=current.item.line,
    )
    reviewer: ReviewEvaluator | None = None
    notes: list[str] = []
    if decide.needs_review(policies, subject):
        digests = [a.digest for a in subject.artifacts if a.digest is not None]
        inline, problems = annotation_envelopes(workload.kind, obj)
        notes.extend(f"{subject.address}: {p}" for p in problems)
        candidates = gather(digests, attestations, inline)
        # The reviews of the commits build provenance names (the chain).
        commits = built_from(candidates)
        if commits:
            candidates = combine(candidates, gather(commits, attestations, inline))
        reviewer = decide.reviewer_for(policies, candidates, now=lambda: moment, cache=cache)
        if wrap_review is not None:
            reviewer = wrap_review(reviewer)
    result = decide.judge(request, policies, reviewer, subject=subject, inheritance=inheritance)
    return result, notes


def _run_notes(
    objects: Sequence[_Object], namespace: str, judged: int, findings: Sequence[Finding]
) -> list[str]:
    """What the run did not judge, and which namespace stood in."""
    notes: list[str] = []
    defaulted = sum(1 for o in objects if o.workload is not None and _names_no_namespace(o))
    if defaulted:
        notes.append(
            f"{defaulted} workload(s) name no namespace: judged in namespace {namespace!r} "
            "(--namespace)"
        )
    others = [o for o in objects if o.workload is None and o.unsupported is None]
    for other in others[:MAX_LISTED_OBJECTS]:
        named = f"{other.kind} {other.name}" if _names_no_namespace(other) else other.address
        notes.append(f"{named} ({other.api_version}): not judged (not a workload)")
    if len(others) > MAX_LISTED_OBJECTS:
        notes.append(
            f"and {len(others) - MAX_LISTED_OBJECTS} more object(s) not judged (not a workload)"
        )
    if judged == 0 and not findings:
        what = "no object" if not objects else "no workload guard judges"
        notes.append(f"nothing was judged: the input holds {what}")
    return notes


def _names_no_namespace(current: _Object) -> bool:
    metadata = current.item.obj.get("metadata")
    return not (isinstance(metadata, Mapping) and metadata.get("namespace"))
