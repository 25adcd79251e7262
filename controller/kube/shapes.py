"""The shapes the API server guarantees for the workloads guard judges.

kube-apiserver decodes every workload into its typed Go struct before it
calls a webhook, and encodes that struct into the AdmissionReview: ``spec``
is always an object, ``containers`` always a list of objects with a name,
``image`` always a string, labels and annotations always maps of strings,
and no value is nested deeper than the types allow. A body that breaks one
of these did not come from the API server as it is, so it is refused with
the path and the type found, before any policy reads it: a policy must
never see ``containers`` as a map and conclude there are no containers.

``guard kube check`` reads manifests through the same checks, so a
manifest the API server would refuse to decode is reported, not judged.

Only the paths guard itself reads (and those the bundled policies read) are
typed; other fields are left to the rules, where a type mismatch is an
``error`` result, never a pass. ``null`` counts as absent, as it does for
the API server's optional fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Nesting, counted in objects and arrays from the top of what is checked.
# The deepest path of a typed workload (a CronJob's pod template, a
# projected volume's selector, and ``managedFields`` mirroring it) stays
# under 30; 64 leaves room and keeps every later recursion (CEL values,
# JSON rendering) far from Python's limit.
MAX_DEPTH = 64

_NESTING = (dict, list)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep.

    Level by level, without recursion, so a hostile body cannot exhaust the
    stack while it is measured.
    """
    level = [value] if type(value) in _NESTING else []
    for _ in range(limit):
        deeper: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            deeper.extend([c for c in children if type(c) is dict or type(c) is list])
        if not deeper:
            return False
        level = deeper
    return True


def json_type(value: Any) -> str:
    """A value's JSON type name, for messages people read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class ShapeError(ValueError):
    """A value of a type the API server never sends at this path."""


@dataclass(frozen=True)
class Scalar:
    """A string, a boolean, a whole number, or a Kubernetes quantity."""

    name: str

    def check(self, value: Any, path: str) -> None:
        if self.name == "string":
            ok = isinstance(value, str)
        elif self.name == "boolean":
            ok = isinstance(value, bool)
        elif self.name == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:  # a quantity: a string on the wire, a number in a manifest
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        if not ok:
            raise ShapeError(f"{path} must be {_article(self.name)}, not {json_type(value)}")


@dataclass(frozen=True)
class Obj:
    """An object whose named fields have shapes; other fields are not typed here."""

    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise ShapeError(f"{path} must be an object, not {json_type(value)}")
        for name in sorted(self.required):
            if value.get(name) is None:
                raise ShapeError(f"{_join(path, name)} is missing")
        for name, shape in self.fields.items():
            child = value.get(name)
            if child is not None:
                shape.check(child, _join(path, name))


@dataclass(frozen=True)
class ListOf:
    item: Shape
    min_items: int = 0

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise ShapeError(f"{path} must be an array, not {json_type(value)}")
        if len(value) < self.min_items:
            raise ShapeError(f"{path} must list at least {self.min_items}")
        for position, item in enumerate(value):
            if item is None:
                raise ShapeError(f"{path}[{position}] must not be null")
            self.item.check(item, f"{path}[{position}]")


@dataclass(frozen=True)
class MapOf:
    """An object of string keys to values of one shape (labels, annotations)."""

    value: Shape

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise ShapeError(f"{path} must be an object, not {json_type(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise ShapeError(f"{path} has a key that is not a string ({key!r})")
            if item is None:
                continue
            self.value.check(item, f"{path}[{key[:60]!r}]")


Shape = Scalar | Obj | ListOf | MapOf


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


STRING = Scalar("string")
BOOLEAN = Scalar("boolean")
INTEGER = Scalar("integer")
QUANTITY = Scalar("quantity")
STRINGS = ListOf(STRING)
STRING_MAP = MapOf(STRING)

METADATA = Obj(
    {
        "name": STRING,
        "generateName": STRING,
        "namespace": STRING,
        "uid": STRING,
        "resourceVersion": STRING,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": STRINGS,
        "ownerReferences": ListOf(
            Obj(
                {
                    "apiVersion": STRING,
                    "kind": STRING,
                    "name": STRING,
                    "uid": STRING,
                    "controller": BOOLEAN,
                    "blockOwnerDeletion": BOOLEAN,
                },
                frozenset({"apiVersion", "kind", "name", "uid"}),
            )
        ),
        "managedFields": ListOf(Obj()),
    }
)

_SECURITY_CONTEXT = Obj(
    {
        "privileged": BOOLEAN,
        "allowPrivilegeEscalation": BOOLEAN,
        "readOnlyRootFilesystem": BOOLEAN,
        "runAsNonRoot": BOOLEAN,
        "runAsUser": INTEGER,
        "runAsGroup": INTEGER,
        "capabilities": Obj({"add": STRINGS, "drop": STRINGS}),
        "seccompProfile": Obj({"type": STRING, "localhostProfile": STRING}),
    }
)

_CONTAINER = Obj(
    {
        "name": STRING,
        "image": STRING,
        "imagePullPolicy": STRING,
        "command": STRINGS,
        "args": STRINGS,
        "workingDir": STRING,
        "env": ListOf(Obj({"name": STRING, "value": STRING}, frozenset({"name"}))),
        "ports": ListOf(Obj({"name": STRING, "containerPort": INTEGER, "protocol": STRING})),
        "resources": Obj({"limits": MapOf(QUANTITY), "requests": MapOf(QUANTITY)}),
        "securityContext": _SECURITY_CONTEXT,
        "volumeMounts": ListOf(Obj({"name": STRING, "mountPath": STRING})),
    },
    frozenset({"name"}),
)

_CONTAINERS = ListOf(_CONTAINER)

POD_SPEC = Obj(
    {
        "containers": ListOf(_CONTAINER, min_items=1),
        "initContainers": _CONTAINERS,
        "ephemeralContainers": _CONTAINERS,
        "volumes": ListOf(
            Obj(
                {"name": STRING, "image": Obj({"reference": STRING, "pullPolicy": STRING})},
                frozenset({"name"}),
            )
        ),
        "hostNetwork": BOOLEAN,
        "hostPID": BOOLEAN,
        "hostIPC": BOOLEAN,
        "hostUsers": BOOLEAN,
        "serviceAccountName": STRING,
        "automountServiceAccountToken": BOOLEAN,
        "nodeName": STRING,
        "nodeSelector": STRING_MAP,
        "priorityClassName": STRING,
        "runtimeClassName": STRING,
        "securityContext": _SECURITY_CONTEXT,
        "imagePullSecrets": ListOf(Obj({"name": STRING})),
        "tolerations": ListOf(Obj()),
        "affinity": Obj(),
    },
    frozenset({"containers"}),
)

_TEMPLATE = Obj({"metadata": METADATA, "spec": POD_SPEC}, frozenset({"spec"}))
_TEMPLATED = Obj({"template": _TEMPLATE}, frozenset({"template"}))
_SPECS: dict[str, Shape] = {
    "Pod": POD_SPEC,
    "Deployment": _TEMPLATED,
    "StatefulSet": _TEMPLATED,
    "DaemonSet": _TEMPLATED,
    "ReplicaSet": _TEMPLATED,
    "ReplicationController": _TEMPLATED,
    "Job": _TEMPLATED,
    "CronJob": Obj(
        {"jobTemplate": Obj({"metadata": METADATA, "spec": _TEMPLATED}, frozenset({"spec"}))},
        frozenset({"jobTemplate"}),
    ),
}


def check_workload(kind: str, obj: Any, path: str) -> None:
    """Raise ``ShapeError`` naming the first field of ``obj`` (a workload of
    ``kind``) whose type the API server would never send, or a nesting
    deeper than ``MAX_DEPTH``."""
    if too_deep(obj):
        raise ShapeError(f"{path or 'the object'} is nested more than {MAX_DEPTH} levels deep")
    spec = _SPECS.get(kind)
    shape = Obj(
        {"apiVersion": STRING, "kind": STRING, "metadata": METADATA, "spec": spec or Obj()},
        frozenset({"spec"}) if spec is not None else frozenset(),
    )
    shape.check(obj, path)
