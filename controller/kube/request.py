"""AdmissionReview requests: parsed, checked, and refused precisely when bad.

The API server sends ``admission.k8s.io/v1`` AdmissionReview objects. A
request guard cannot read is denied with a message that names the missing or
malformed field; the uid is echoed whenever it can be found, so the API
server can match the answer (an HTTP error instead would leave the verdict
to the webhook's ``failurePolicy``, which may be ``Ignore``). Even a body
``json`` cannot load (a nesting bomb, a number too long to convert, a
truncated tail) has its uid read from its start when it is there.

The objects of a workload request are checked against the shapes the API
server guarantees (``kube.shapes``) before any policy reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from controller.errors import InputError
from controller.kube.shapes import MAX_DEPTH, ShapeError, check_workload, json_type, too_deep
from controller.kube.text import printable
from controller.policy.results import Requester

ADMISSION_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


@dataclass(frozen=True)
class Workload:
    """A resource guard judges: where it lives in the API and its kind."""

    group: str
    version: str
    resource: str
    sub_resource: str | None
    kind: str

    @property
    def label(self) -> str:
        group = f"{self.group}/" if self.group else ""
        sub = f"/{self.sub_resource}" if self.sub_resource else ""
        return f"{group}{self.version} {self.resource}{sub}"


# Every resource the webhook judges, and nothing else. The chart's webhook
# rules list exactly these; anything else that arrives is denied.
WORKLOADS: tuple[Workload, ...] = (
    Workload("apps", "v1", "deployments", None, "Deployment"),
    Workload("apps", "v1", "statefulsets", None, "StatefulSet"),
    Workload("apps", "v1", "daemonsets", None, "DaemonSet"),
    Workload("apps", "v1", "replicasets", None, "ReplicaSet"),
    Workload("", "v1", "replicationcontrollers", None, "ReplicationController"),
    Workload("", "v1", "pods", None, "Pod"),
    Workload("", "v1", "pods", "ephemeralcontainers", "Pod"),
    Workload("batch", "v1", "jobs", None, "Job"),
    Workload("batch", "v1", "cronjobs", None, "CronJob"),
)

JUDGED_OPERATIONS = ("CREATE", "UPDATE")

# A namespace is a DNS-1123 label. The namespace becomes part of an API path
# (the fallback read): anything else is refused before it can steer one.
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# The API server's uids are UUIDs; a uid is echoed and logged, so it must be
# one short printable token.
_UID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def find_workload(
    group: str, version: str, resource: str, sub_resource: str | None
) -> Workload | None:
    for workload in WORKLOADS:
        if (workload.group, workload.version, workload.resource, workload.sub_resource) == (
            group,
            version,
            resource,
            sub_resource or None,
        ):
            return workload
    return None


class BadReview(InputError, ValueError):
    """An AdmissionReview guard cannot judge; ``uid`` is echoed when known."""

    def __init__(self, message: str, uid: str = "", api_version: str = ADMISSION_API_VERSIONS[0]):
        super().__init__(message)
        self.uid = uid
        self.api_version = api_version


@dataclass(frozen=True)
class AdmissionRequest:
    """The fields of ``AdmissionReview.request`` guard reads, already checked."""

    api_version: str
    uid: str
    group: str
    version: str
    kind: str
    resource: str
    sub_resource: str | None
    name: str
    namespace: str | None
    operation: str
    requester: Requester
    dry_run: bool
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None

    @property
    def resource_label(self) -> str:
        group = f"{self.group}/" if self.group else ""
        sub = f"/{self.sub_resource}" if self.sub_resource else ""
        return f"{group}{self.version} {self.resource}{sub}"

    @property
    def workload(self) -> Workload | None:
        return find_workload(self.group, self.version, self.resource, self.sub_resource)


def _text(container: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = container.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}.{key} is missing")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string, not {json_type(value)}")
    return value


def _mapping(container: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key} must be an object, not {json_type(value)}")
    return value


def valid_namespace(name: Any) -> bool:
    """A DNS-1123 label, as every Kubernetes namespace name is."""
    return isinstance(name, str) and _NAMESPACE_RE.fullmatch(name) is not None


def valid_uid(uid: Any) -> bool:
    return isinstance(uid, str) and _UID_RE.fullmatch(uid) is not None


def identity_of(data: Any) -> tuple[str, str]:
    """The request's uid (empty when unreadable) and the review's apiVersion."""
    api_version = ADMISSION_API_VERSIONS[0]
    if not isinstance(data, Mapping):
        return "", api_version
    if data.get("apiVersion") in ADMISSION_API_VERSIONS:
        api_version = str(data["apiVersion"])
    request = data.get("request")
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return (uid if isinstance(uid, str) and valid_uid(uid) else ""), api_version


def requester_of(user: Any, where: str) -> Requester:
    """``userInfo`` as the API server sends it (``where`` names it in errors)."""
    if not isinstance(user, Mapping):
        raise ValueError(f"{where} must be an object, not {json_type(user)}")
    groups = user.get("groups")
    groups = [] if groups is None else groups
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError(f"{where}.groups must be a list of strings")
    extra = user.get("extra")
    if extra is not None and not (
        isinstance(extra, Mapping)
        and all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in extra.values())
    ):
        raise ValueError(f"{where}.extra must map names to lists of strings")
    return Requester(
        username=_text(user, "username", where, required=False),
        groups=tuple(groups),
        uid=_text(user, "uid", where, required=False),
        extra=extra,
    )


# --------------------------------------------------------------------------- the body


def decode_review(body: bytes) -> Any:
    """The JSON of a review body, or BadReview saying why it is not JSON,
    with the uid when the body's start holds one.

    orjson reads it: only the API server sends reviews, and it writes them
    from objects it has already stored. It refuses all the standard reader
    refuses (NaN, infinities, invalid UTF-8, depth) and more (lone
    surrogates); integers past 64 bits, which Kubernetes cannot store, read
    as doubles. The standard reader runs only on a body orjson refused, to
    say why in the same words as always.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        refused = exc
    try:
        _DECODER.decode(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        problem = "nested too deeply"
    except ValueError as exc:  # a number too long to convert, NaN
        problem = printable(str(exc))[:200]
    else:
        # What only orjson refuses: a lone surrogate, a number past a double, depth.
        problem = "nested too deeply" if "depth" in refused.msg else printable(refused.msg)[:200]
    uid, api_version = readable_identity(body.decode("utf-8", errors="replace"))
    raise BadReview(
        f"AdmissionReview body is not valid JSON: {problem}; the request is denied",
        uid,
        api_version,
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every request (``json.loads`` with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


# One JSON token after optional whitespace: a string, a punctuation mark, or
# a literal (numbers are not converted, so no length can trouble them).
_TOKEN = re.compile(
    r'[ \t\r\n]*(?:("(?:[^"\\\x00-\x1f]|\\.)*")|([{}\[\]:,])|(true|false|null|-?[0-9][0-9.eE+-]*))'
)
# Reading stops here: the API server writes ``request.uid`` near the start.
MAX_SCAN_TOKENS = 4096


def readable_identity(text: str) -> tuple[str, str]:
    """``request.uid`` and ``apiVersion`` of a JSON text that may be broken
    further on, read token by token (no recursion) up to the first syntax
    error. A uid that appears twice is not read: which one would count?"""
    uids: list[str] = []
    api_version = ADMISSION_API_VERSIONS[0]
    # Each open container: "{" or "[", and for an object the key being read.
    stack: list[tuple[str, str | None]] = []
    expect = "value"  # value | key | key-or-close | value-or-close | colon | next
    position = 0
    for _ in range(MAX_SCAN_TOKENS):
        match = _TOKEN.match(text, position)
        if match is None:
            break
        position = match.end()
        string, mark, literal = match.groups()
        try:
            value = json.loads(string) if string is not None else None
        except ValueError:  # an invalid escape: the text ends being readable here
            break
        if expect in ("key", "key-or-close") and isinstance(value, str):
            stack[-1] = ("{", value)
            expect = "colon"
        elif expect == "colon" and mark == ":":
            expect = "value"
        elif expect in ("value", "value-or-close") and (string or literal) is not None:
            keys = [key for _, key in stack]
            if isinstance(value, str) and keys == ["apiVersion"]:
                api_version = value
            if isinstance(value, str) and keys == ["request", "uid"]:
                uids.append(value)
            expect = "next"
        elif expect in ("value", "value-or-close") and mark in ("{", "["):
            stack.append((mark, None))
            expect = "key-or-close" if mark == "{" else "value-or-close"
        elif mark in ("}", "]") and (
            (expect in ("next", "key-or-close") and mark == "}" and stack[-1][0] == "{")
            or (expect in ("next", "value-or-close") and mark == "]" and stack[-1][0] == "[")
        ):
            stack.pop()
            expect = "next"
        elif expect == "next" and mark == "," and stack:
            expect = "key" if stack[-1][0] == "{" else "value"
        else:
            break
        if not stack and expect == "next":
            break
    uid = uids[0] if len(uids) == 1 and valid_uid(uids[0]) else ""
    if api_version not in ADMISSION_API_VERSIONS:
        api_version = ADMISSION_API_VERSIONS[0]
    return uid, api_version


# --------------------------------------------------------------------------- the review


def parse_review(data: Any) -> AdmissionRequest:
    """Check an AdmissionReview body and return its request, or raise BadReview."""
    if not isinstance(data, Mapping):
        raise BadReview(f"an AdmissionReview must be a JSON object, not {json_type(data)}")
    api_version = data.get("apiVersion")
    request = data.get("request")
    uid, _ = identity_of(data)
    if too_deep(data, MAX_DEPTH + 2):
        # The review and its request add two levels around the object.
        raise BadReview(
            f"malformed AdmissionReview: nested more than {MAX_DEPTH} levels deep",
            uid,
            api_version if api_version in ADMISSION_API_VERSIONS else ADMISSION_API_VERSIONS[0],
        )
    if data.get("kind") != "AdmissionReview" or api_version not in ADMISSION_API_VERSIONS:
        raise BadReview(
            f"expected kind AdmissionReview with apiVersion admission.k8s.io/v1, got "
            f"kind {data.get('kind')!r} apiVersion {api_version!r}",
            uid,
        )
    assert isinstance(api_version, str)
    if not isinstance(request, Mapping):
        raise BadReview("AdmissionReview.request is missing or not an object", uid, api_version)
    try:
        return _parse_request(api_version, request)
    except ValueError as exc:
        raise BadReview(f"malformed AdmissionReview: {exc}", uid, api_version) from None


def _parse_request(api_version: str, request: Mapping[str, Any]) -> AdmissionRequest:
    where = "request"
    uid = _text(request, "uid", where)
    if not uid:
        raise ValueError("request.uid is empty")
    if not valid_uid(uid):
        raise ValueError("request.uid is not a UUID-like token")
    kind = _mapping(request, "kind", where)
    resource = _mapping(request, "resource", where)
    if kind is None:
        raise ValueError("request.kind is missing")
    if resource is None:
        raise ValueError("request.resource is missing")
    user = request.get("userInfo")
    if user is None:
        raise ValueError("request.userInfo is missing")
    requester = requester_of(user, f"{where}.userInfo")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise ValueError("request.dryRun must be a boolean")
    namespace = _text(request, "namespace", where, required=False) or None
    if namespace is not None and not valid_namespace(namespace):
        raise ValueError(f"request.namespace {namespace[:80]!r} is not a namespace name")
    obj = _mapping(request, "object", where)
    old = _mapping(request, "oldObject", where)
    group = _text(resource, "group", f"{where}.resource", required=False)
    version = _text(resource, "version", f"{where}.resource")
    plural = _text(resource, "resource", f"{where}.resource")
    sub_resource = _text(request, "subResource", where, required=False) or None
    workload = find_workload(group, version, plural, sub_resource)
    if namespace is None and workload is not None:
        # Every workload guard judges is namespaced; without a namespace the
        # policies' namespace matching (and the fallback read) cannot work.
        raise ValueError("request.namespace is missing (the workloads guard judges are namespaced)")
    kind_name = _text(kind, "kind", f"{where}.kind")
    if workload is not None and kind_name == workload.kind:
        # (Another kind is refused as unsupported, by ``decide.unsupported_reason``.)
        kind_group = _text(kind, "group", f"{where}.kind", required=False)
        kind_version = _text(kind, "version", f"{where}.kind")
        api = f"{kind_group}/{kind_version}" if kind_group else kind_version
        for key, value in (("object", obj), ("oldObject", old)):
            if value is not None:
                _check_object(value, f"{where}.{key}", workload, api, namespace)
    name = _text(request, "name", where, required=False)
    if not name:
        # On CREATE with generateName the name is not known yet.
        metadata = (obj or old or {}).get("metadata")
        if isinstance(metadata, Mapping):
            name = str(metadata.get("name") or metadata.get("generateName") or "")
    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        group=group,
        version=version,
        kind=kind_name,
        resource=plural,
        sub_resource=sub_resource,
        name=name or "(unnamed)",
        namespace=namespace,
        operation=_text(request, "operation", where),
        requester=requester,
        dry_run=dry_run,
        object=obj,
        old_object=old,
    )


def _check_object(
    obj: Mapping[str, Any],
    where: str,
    workload: Workload,
    api_version: str,
    namespace: str | None,
) -> None:
    """The object of a workload request has the shape the API server
    guarantees, and is the object the request is about: its kind and
    namespace are the request's (kube-apiserver refuses a body whose
    namespace differs from the request's before any webhook is called)."""
    try:
        check_workload(workload.kind, obj, where)
    except ShapeError as exc:
        raise ValueError(f"{exc} (the API server never sends this shape)") from None
    kind = workload.kind
    if obj.get("kind") not in (None, kind):
        raise ValueError(f"{where}.kind {str(obj['kind'])[:80]!r} is not the request's {kind}")
    if obj.get("apiVersion") not in (None, api_version):
        raise ValueError(
            f"{where}.apiVersion {str(obj['apiVersion'])[:80]!r} is not the request's {api_version}"
        )
    metadata = obj.get("metadata") or {}
    if metadata.get("namespace") not in (None, "", namespace):
        raise ValueError(
            f"{where}.metadata.namespace {metadata['namespace'][:80]!r} is not the request's "
            f"namespace {namespace!r}"
        )
