"""Workload owners as the owner index keeps them, and their templates.

A Pod a controller recreates is judged through its owner (``kube.inherit``);
this module says what an owner is reduced to for that: its identity (kind,
apiVersion, namespace, name, uid), its labels (policy matching), its own
controlling owner, and its pod template's security-relevant fields as
digests (``TemplateShape``), so 100,000 owners stay small in memory. The same
digest pins an owner in a ``GuardBaseline`` entry.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.kube.subjects import address_of, labels_of
from controller.policy.documents import Target
from controller.policy.results import Subject
from controller.policy.variables import pod_spec_of

# Which owner kinds make objects of which kind. Never Node (mirror pods are
# the kubelet's, see ``mirror_pod``) and never a custom resource.
CHAIN: Mapping[str, frozenset[str]] = {
    "Pod": frozenset({"ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}),
    "ReplicaSet": frozenset({"Deployment"}),
    "Job": frozenset({"CronJob"}),
}


@dataclass(frozen=True)
class OwnerApi:
    api_version: str
    group: str
    plural: str


# Where the API serves each owner kind (and the ControllerRevisions that
# hold a StatefulSet's or DaemonSet's older templates).
OWNER_APIS: Mapping[str, OwnerApi] = {
    "Deployment": OwnerApi("apps/v1", "apps", "deployments"),
    "StatefulSet": OwnerApi("apps/v1", "apps", "statefulsets"),
    "DaemonSet": OwnerApi("apps/v1", "apps", "daemonsets"),
    "ReplicaSet": OwnerApi("apps/v1", "apps", "replicasets"),
    "ReplicationController": OwnerApi("v1", "", "replicationcontrollers"),
    "Job": OwnerApi("batch/v1", "batch", "jobs"),
    "CronJob": OwnerApi("batch/v1", "batch", "cronjobs"),
    "ControllerRevision": OwnerApi("apps/v1", "apps", "controllerrevisions"),
}

# --------------------------------------------------------------------------- shapes


def _present(value: Any) -> bool:
    # The API server defaults some fields to empty or false; absent and
    # empty mean the same here, so a defaulted Pod matches its template.
    return value not in (None, False, "", {}, [])


def container_fields(container: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one container that decide what runs and with what rights."""
    return {
        key: container[key]
        for key in ("image", "command", "args", "securityContext")
        if _present(container.get(key))
    }


def pod_fields(pod_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pod-level fields that decide its rights: security context, host
    namespaces, host paths and image volumes, identity and runtime."""
    found = {
        key: pod_spec[key]
        for key in (
            "securityContext",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "automountServiceAccountToken",
            "runtimeClassName",
        )
        if _present(pod_spec.get(key))
    }
    # The ServiceAccount admission plugin sets "default" on Pods that name none.
    account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
    found["serviceAccountName"] = account
    volumes = pod_spec.get("volumes")
    kept = [
        {"name": v.get("name"), **{k: v[k] for k in ("hostPath", "image") if k in v}}
        for v in (volumes if isinstance(volumes, list) else ())
        if isinstance(v, Mapping) and ("hostPath" in v or "image" in v)
    ]
    if kept:
        found["volumes"] = sorted(kept, key=_canonical)
    return found


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


# 16 bytes of sha256 per field set: a child must match its template's, and
# forging one is a second preimage on 128 bits; the index holds 110,000
# owners in a large cluster, so every byte per owner counts.
_DIGEST_BYTES = 16


def _digest(value: Any) -> bytes:
    return hashlib.sha256(_canonical(value)).digest()[:_DIGEST_BYTES]


def _shared(text: str) -> str:
    # Kinds, apiVersions, namespaces, labels and container names repeat
    # across owners, and a ReplicaSet names its Deployment's name and uid:
    # one copy each instead of one per watch event.
    return sys.intern(text)


@dataclass(frozen=True, slots=True)
class TemplateShape:
    """A pod spec reduced to what inheritance compares: one digest of the
    pod-level fields and one per container, by name."""

    pod: bytes
    containers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, pod_spec: Mapping[str, Any]) -> TemplateShape:
        containers: dict[str, bytes] = {}
        for key in ("initContainers", "containers"):
            items = pod_spec.get(key)
            for container in items if isinstance(items, list) else ():
                if isinstance(container, Mapping):
                    name = _shared(str(container.get("name") or ""))
                    containers[name] = _digest(container_fields(container))
        return cls(_digest(pod_fields(pod_spec)), tuple(sorted(containers.items())))

    @property
    def digest(self) -> str:
        """``sha256:<hex>``: what a baseline entry pins (images included)."""
        hasher = hashlib.sha256(self.pod)
        for name, digest in self.containers:
            hasher.update(name.encode("utf-8") + b"\0" + digest)
        return "sha256:" + hasher.hexdigest()

    def produces(self, child: TemplateShape) -> tuple[bool, tuple[str, ...]]:
        """Whether ``child`` is what this template makes, and the names of
        the child's containers the template does not have (injected)."""
        if child.pod != self.pod:
            return False, ()
        own = dict(self.containers)
        injected: list[str] = []
        for name, digest in child.containers:
            expected = own.get(name)
            if expected is None:
                injected.append(name)
            elif expected != digest:
                return False, ()
        return True, tuple(injected)


def template_digest(kind: str, obj: Mapping[str, Any]) -> str:
    """The digest a baseline entry pins for an owner of ``kind``."""
    return TemplateShape.of(_template_of(kind, obj)).digest


def _template_of(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if kind == "ControllerRevision":
        node: Any = obj.get("data")
        for part in ("spec", "template", "spec"):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}
    return pod_spec_of(kind, obj)


# --------------------------------------------------------------------------- owners


@dataclass(frozen=True, slots=True)
class Reference:
    """An ``ownerReferences`` entry with ``controller: true``."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class OwnerRecord:
    """What the owner index keeps of one workload owner (or ControllerRevision):
    only what the decision reads, so 100,000 owners stay small."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str
    # Keys and values in turn (k1, v1, k2, v2...): one tuple, not one per label.
    labels: tuple[str, ...]
    controller: Reference | None
    shape: TemplateShape

    @property
    def address(self) -> str:
        return address_of(self.kind, self.namespace, self.name)

    def subject(self) -> Subject:
        """The owner as policy matching sees it (kind, namespace, labels)."""
        # In field order: target, address, kind, type, name, namespace, action, object.
        where = (self.address, self.kind, self.kind, self.name, self.namespace)
        return Subject(
            Target.kubernetes,
            *where,
            "create",
            None,
            labels=dict(zip(self.labels[::2], self.labels[1::2], strict=True)),
        )


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def controlling_reference(obj: Mapping[str, Any]) -> tuple[Reference | None, str]:
    """The one controlling owner an object names, or why there is none."""
    references = metadata_of(obj).get("ownerReferences")
    found = [
        r
        for r in (references if isinstance(references, list) else ())
        if isinstance(r, Mapping) and r.get("controller") is True
    ]
    if len(found) != 1:
        return None, f"it names {len(found)} controlling owners (exactly one is inherited from)"
    ref = found[0]
    fields = [ref.get(k) for k in ("apiVersion", "kind", "name", "uid")]
    if not all(isinstance(v, str) and v for v in fields):
        return None, "its controlling ownerReference is incomplete"
    api_version, kind, name, uid = (str(v) for v in fields)
    return Reference(_shared(api_version), _shared(kind), _shared(name), _shared(uid)), ""


def owner_record(kind: str, obj: Mapping[str, Any]) -> OwnerRecord | None:
    """The index entry for one owner body, or None when it has no uid."""
    metadata = metadata_of(obj)
    uid, name = metadata.get("uid"), metadata.get("name")
    if not (isinstance(uid, str) and uid and isinstance(name, str) and name):
        return None
    reference, _ = controlling_reference(obj)
    api = OWNER_APIS.get(kind)
    return OwnerRecord(
        kind=_shared(kind),
        api_version=_shared(str(obj.get("apiVersion") or (api.api_version if api else ""))),
        namespace=_shared(str(metadata.get("namespace") or "")),
        name=_shared(name),
        uid=_shared(uid),
        labels=tuple(_shared(text) for pair in sorted(labels_of(obj).items()) for text in pair),
        controller=reference,
        shape=TemplateShape.of(_template_of(kind, obj)),
    )


Key = tuple[str, str]


class OwnerIndex:
    """Owners by (namespace, uid) and ControllerRevisions by (namespace,
    name), fed by the operator's watch events.

    Plain dicts, not Kopf indexes: a Kopf index keeps a store and a mapping
    per object besides the value, which doubled what each owner costs; here
    an owner is one dict entry. Written and read on the operator's event
    loop only.
    """

    def __init__(self) -> None:
        self.owners: dict[Key, OwnerRecord] = {}
        self.revisions: dict[Key, OwnerRecord] = {}

    def observe(self, kind: str, body: Mapping[str, Any], *, deleted: bool) -> None:
        record = owner_record(kind, body)
        if record is None:
            return
        revision = kind == "ControllerRevision"
        table = self.revisions if revision else self.owners
        key = (record.namespace, record.name if revision else record.uid)
        if deleted:
            table.pop(key, None)
        else:
            table[key] = record

    def __len__(self) -> int:
        return len(self.owners) + len(self.revisions)


class OwnerSource:
    """Owners and ControllerRevisions: from the index, else one bounded
    read by name (``read``; None when it finds nothing or is not allowed)."""

    def __init__(
        self,
        owners: Mapping[Key, OwnerRecord],
        revisions: Mapping[Key, OwnerRecord],
        read: Callable[[str, str, str], Awaitable[OwnerRecord | None]] | None = None,
    ) -> None:
        self._owners = owners
        self._revisions = revisions
        self._read = read
        self.reads: list[str] = []

    async def owner(self, namespace: str, reference: Reference) -> OwnerRecord | None:
        found = self._owners.get((namespace, reference.uid))
        if found is not None:
            return found
        return await self._read_by_name(reference.kind, namespace, reference.name)

    async def revision(self, namespace: str, name: str) -> OwnerRecord | None:
        found = self._revisions.get((namespace, name))
        if found is not None:
            return found
        return await self._read_by_name("ControllerRevision", namespace, name)

    async def _read_by_name(self, kind: str, namespace: str, name: str) -> OwnerRecord | None:
        if self._read is None:
            return None
        self.reads.append(address_of(kind, namespace, name))
        return await self._read(kind, namespace, name)
