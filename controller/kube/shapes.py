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

from controller.errors import InputError
from controller.strict import nested_deeper_than

# Nesting, counted in objects and arrays from the top of what is checked.
# The deepest path of a typed workload (a CronJob's pod template, a
# projected volume's selector, and ``managedFields`` mirroring it) stays
# under 30; 64 leaves room and keeps every later recursion (CEL values,
# JSON rendering) far from Python's limit.
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep
    (measured level by level, without recursion, so a hostile body cannot
    exhaust the stack while it is measured: the strict reader's measure)."""
    return nested_deeper_than(value, limit)


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


class ShapeError(InputError, ValueError):
    """A value of a type the API server never sends at a path.

    The path is built while the error unwinds (``within``), so checking a
    well-formed object builds no path strings at all.
    """

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def within(self, segment: str) -> ShapeError:
        """The same error, one level further out (``segment`` is ``.name`` or ``[i]``)."""
        self.path = segment + self.path
        return self

    def __str__(self) -> str:
        return f"{self.path.removeprefix('.') or 'the object'}{self.problem}"


@dataclass(frozen=True)
class Scalar:
    """A string, a boolean, a whole number, or a Kubernetes quantity (a
    string on the wire, a number in a manifest). Exact types: a boolean is
    not a number."""

    name: str
    types: frozenset[type]

    def check(self, value: Any) -> None:
        if type(value) not in self.types:
            raise ShapeError(f" must be {_article(self.name)}, not {json_type(value)}")


@dataclass(frozen=True)
class Obj:
    """An object whose named fields have shapes; other fields are not typed here."""

    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def check(self, value: Any) -> None:
        if type(value) is not dict:
            raise ShapeError(f" must be an object, not {json_type(value)}")
        for name in self.required:
            if value.get(name) is None:
                raise ShapeError(" is missing").within(f".{name}")
        fields = self.fields
        for name, child in value.items():
            shape = fields.get(name)
            if shape is not None and child is not None:
                try:
                    shape.check(child)
                except ShapeError as exc:
                    raise exc.within(f".{name}") from None


@dataclass(frozen=True)
class ListOf:
    item: Shape
    min_items: int = 0

    def check(self, value: Any) -> None:
        if type(value) is not list:
            raise ShapeError(f" must be an array, not {json_type(value)}")
        if len(value) < self.min_items:
            raise ShapeError(f" must list at least {self.min_items}")
        check = self.item.check
        for position, item in enumerate(value):
            try:
                if item is None:
                    raise ShapeError(" must not be null")
                check(item)
            except ShapeError as exc:
                raise exc.within(f"[{position}]") from None


@dataclass(frozen=True)
class MapOf:
    """An object of string keys to values of one shape (labels, annotations)."""

    value: Shape

    def check(self, value: Any) -> None:
        if type(value) is not dict:
            raise ShapeError(f" must be an object, not {json_type(value)}")
        check = self.value.check
        for key, item in value.items():
            if type(key) is not str:
                raise ShapeError(f" has a key that is not a string ({key!r})")
            if item is None:
                continue
            try:
                check(item)
            except ShapeError as exc:
                raise exc.within(f"[{key[:60]!r}]") from None


Shape = Scalar | Obj | ListOf | MapOf


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


STRING = Scalar("string", frozenset({str}))
BOOLEAN = Scalar("boolean", frozenset({bool}))
INTEGER = Scalar("integer", frozenset({int}))
QUANTITY = Scalar("quantity", frozenset({str, int, float}))
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
                ("apiVersion", "kind", "name", "uid"),
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
        "env": ListOf(Obj({"name": STRING, "value": STRING}, ("name",))),
        "ports": ListOf(Obj({"name": STRING, "containerPort": INTEGER, "protocol": STRING})),
        "resources": Obj({"limits": MapOf(QUANTITY), "requests": MapOf(QUANTITY)}),
        "securityContext": _SECURITY_CONTEXT,
        "volumeMounts": ListOf(Obj({"name": STRING, "mountPath": STRING})),
    },
    ("name",),
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
                ("name",),
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
    ("containers",),
)

_TEMPLATE = Obj({"metadata": METADATA, "spec": POD_SPEC}, ("spec",))
_TEMPLATED = Obj({"template": _TEMPLATE}, ("template",))
_SPECS: dict[str, Shape] = {
    "Pod": POD_SPEC,
    "Deployment": _TEMPLATED,
    "StatefulSet": _TEMPLATED,
    "DaemonSet": _TEMPLATED,
    "ReplicaSet": _TEMPLATED,
    "ReplicationController": _TEMPLATED,
    "Job": _TEMPLATED,
    "CronJob": Obj(
        {"jobTemplate": Obj({"metadata": METADATA, "spec": _TEMPLATED}, ("spec",))},
        ("jobTemplate",),
    ),
}


def check_workload(kind: str, obj: Any, path: str) -> None:
    """Raise ``ShapeError`` naming the first field of ``obj`` (a workload of
    ``kind``) whose type the API server would never send. (Nesting is
    measured by the caller, once for the whole input: ``too_deep``.)"""
    try:
        _OBJECTS.get(kind, _ANY_OBJECT).check(obj)
    except ShapeError as exc:
        raise exc.within(path) from None


def _object(spec: Shape) -> Obj:
    return Obj(
        {"apiVersion": STRING, "kind": STRING, "metadata": METADATA, "spec": spec}, ("spec",)
    )


_OBJECTS = {kind: _object(spec) for kind, spec in _SPECS.items()}
_ANY_OBJECT = Obj({"apiVersion": STRING, "kind": STRING, "metadata": METADATA})
