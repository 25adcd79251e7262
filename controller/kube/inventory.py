"""What runs in a cluster: read from a dump or from the cluster, then baselined.

An inventory is every workload object of a cluster, read either from a dump
(``kubectl get deploy,sts,ds,rs,rc,cronjob,job,pod,controllerrevision -A -o
yaml``) or from the cluster itself (``kube.cluster``, through the user's
kubeconfig). Both give ``Manifest`` objects, so every command that reads a
cluster (``guard kube baseline`` here, a background audit later) reads both
the same way.

``baseline`` judges every owner as the Kubernetes controllers' requests for
it would be judged today, and writes a ``GuardBaseline`` entry for each one
that would be denied: those are the workloads whose Pods could not be
recreated after a drain once enforcement denies. ``baseline_report`` says,
for every entry of existing baselines, whether its workload still runs as
baselined, changed, was re-created, or is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from controller.errors import InputError
from controller.kube.envelopes import IndexedEnvelope
from controller.kube.manifests import Manifest, judge_one, manifests, read_text
from controller.kube.owners import OWNER_APIS, template_digest
from controller.kube.request import valid_namespace
from controller.kube.state import PolicySet
from controller.kube.subjects import images_of
from controller.policy.baseline import MAX_ENTRIES, OWNER_KINDS, GuardBaseline
from controller.policy.documents import API_VERSION
from controller.policy.results import Finding, Requester

# The command that makes a dump ``guard kube baseline -f`` reads.
DUMP_COMMAND = "kubectl get deploy,sts,ds,rs,rc,cronjob,job,pod,controllerrevision -A -o yaml"
# A controller's identity: baselining judges what the controllers' requests
# for each owner would meet (only those are blocked by a drain).
BASELINE_REQUESTER = Requester(
    username="system:serviceaccount:kube-system:replicaset-controller",
    groups=("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
)


@dataclass(frozen=True)
class Inventory:
    """Every object read, and where it was read from."""

    objects: tuple[Manifest, ...]
    source: str

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [m for m in self.objects if m.obj.get("kind") in kinds]


def read_dump(path: str) -> Inventory:
    """A dump file (or ``-`` for stdin): YAML or JSON, Lists flattened."""
    text, source = read_text(path)
    return Inventory(tuple(manifests(text, source)), source)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


@dataclass(frozen=True)
class Denied:
    """One owner whose controllers' requests would be denied, and why."""

    item: Manifest
    kind: str
    namespace: str
    name: str
    uid: str
    findings: tuple[Finding, ...]

    @property
    def address(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def denied_owners(
    inventory: Inventory,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    *,
    now: dt.datetime | None = None,
) -> tuple[list[Denied], list[str]]:
    """The owners that would be denied today, and notes on what was skipped."""
    denied: list[Denied] = []
    notes: list[str] = []
    for item in inventory.of_kind(*OWNER_KINDS):
        obj = item.obj
        kind = str(obj.get("kind"))
        metadata = _metadata(obj)
        namespace, name, uid = (metadata.get(k) for k in ("namespace", "name", "uid"))
        where = f"{item.source}:{item.line}: {kind} {namespace}/{name}"
        if obj.get("apiVersion") != OWNER_APIS[kind].api_version:
            notes.append(f"{where}: apiVersion {obj.get('apiVersion')} is not judged; skipped")
            continue
        if not (isinstance(uid, str) and uid and isinstance(name, str) and name):
            raise InputError(f"{where}: no metadata.uid (a dump of live objects has one)")
        if not valid_namespace(namespace):
            raise InputError(f"{where}: metadata.namespace is missing or not a namespace name")
        assert isinstance(namespace, str)
        decision = judge_one(
            item,
            policies,
            attestations,
            BASELINE_REQUESTER,
            namespace=namespace,
            controller_identities=frozenset({BASELINE_REQUESTER.username}),
            now=now,
        )
        if decision is None or decision.allowed:
            continue
        denied.append(Denied(item, kind, namespace, name, uid, decision.denials))
    return denied, notes


def _revision_digests(inventory: Inventory) -> dict[str, set[str]]:
    """Owner uid -> the template digests of its ControllerRevisions."""
    found: dict[str, set[str]] = {}
    for item in inventory.of_kind("ControllerRevision"):
        for reference in _metadata(item.obj).get("ownerReferences") or ():
            if isinstance(reference, Mapping) and reference.get("controller") is True:
                uid = str(reference.get("uid") or "")
                found.setdefault(uid, set()).add(template_digest("ControllerRevision", item.obj))
    return found


def baseline_documents(
    denied: Sequence[Denied],
    inventory: Inventory,
    *,
    name: str,
    owner: str,
    reason: str,
    expires: dt.date,
) -> list[dict[str, Any]]:
    """GuardBaseline documents for the denied owners, at most ``MAX_ENTRIES``
    entries each (``NAME``, ``NAME-2``, ...), validated by the model."""
    revisions = _revision_digests(inventory)
    entries: list[dict[str, Any]] = []
    for owner_item in sorted(denied, key=lambda d: (d.namespace, d.kind, d.name)):
        digest = template_digest(owner_item.kind, owner_item.item.obj)
        entry: dict[str, Any] = {
            "kind": owner_item.kind,
            "namespace": owner_item.namespace,
            "name": owner_item.name,
            "uid": owner_item.uid,
            "images": images_of(owner_item.kind, owner_item.item.obj),
            "templateDigest": digest,
        }
        older = sorted(revisions.get(owner_item.uid, set()) - {digest})
        if older:
            entry["revisions"] = older
        entries.append(entry)
    documents: list[dict[str, Any]] = []
    for position in range(0, len(entries), MAX_ENTRIES):
        number = position // MAX_ENTRIES + 1
        document = {
            "apiVersion": API_VERSION,
            "kind": "GuardBaseline",
            "metadata": {"name": name if number == 1 else f"{name}-{number}"},
            "spec": {
                "owner": owner,
                "reason": reason,
                "expires": expires.isoformat(),
                "entries": entries[position : position + MAX_ENTRIES],
            },
        }
        # The model refuses what the API server (and guard) would refuse.
        GuardBaseline.model_validate(document)
        documents.append(document)
    return documents


def render_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all(list(documents), sort_keys=False, width=100)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class EntryState:
    """What became of one baselined workload."""

    baseline: str
    address: str
    state: str  # baselined | changed | recreated | gone | expired
    detail: str = ""


def baseline_report(
    baselines: Sequence[GuardBaseline], inventory: Inventory, today: dt.date
) -> list[EntryState]:
    """Every entry of ``baselines`` against what runs now: listed until its
    workload is gone, so the end date forces the leftovers to be reviewed."""
    running: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for item in inventory.of_kind(*OWNER_KINDS):
        metadata = _metadata(item.obj)
        key = (str(item.obj.get("kind")), str(metadata.get("namespace")), str(metadata.get("name")))
        running[key] = item.obj
    states: list[EntryState] = []
    for document in baselines:
        expired = document.spec.expired(today)
        for entry in document.spec.entries:
            obj = running.get((entry.kind, entry.namespace, entry.name))
            if obj is None:
                states.append(EntryState(document.name, entry.address, "gone"))
                continue
            if _metadata(obj).get("uid") != entry.uid:
                state, detail = "recreated", "another object of that name: judged in full"
            elif template_digest(entry.kind, obj) != entry.template_digest:
                state, detail = "changed", "its template changed: judged in full"
            elif expired:
                state, detail = "expired", f"expired on {document.spec.expires}: review it"
            else:
                state, detail = "baselined", f"until {document.spec.expires}"
            states.append(EntryState(document.name, entry.address, state, detail))
    return states
