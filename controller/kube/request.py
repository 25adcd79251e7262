"""AdmissionReview requests: parsed, checked, and refused precisely when bad.

The API server sends ``admission.k8s.io/v1`` AdmissionReview objects. A
request guard cannot read is denied with a message that names the missing or
malformed field; the uid is echoed whenever it can be found, so the API
server can match the answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import InputError
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
        raise ValueError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _mapping(container: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def valid_uid(uid: Any) -> bool:
    return isinstance(uid, str) and _UID_RE.fullmatch(uid) is not None


def parse_review(data: Any) -> AdmissionRequest:
    """Check an AdmissionReview body and return its request, or raise BadReview."""
    if not isinstance(data, Mapping):
        raise BadReview(f"an AdmissionReview must be a JSON object, not {type(data).__name__}")
    api_version = data.get("apiVersion")
    request = data.get("request")
    uid = ""
    if isinstance(request, Mapping) and valid_uid(request.get("uid")):
        uid = request["uid"]
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
    user = _mapping(request, "userInfo", where)
    if user is None:
        raise ValueError("request.userInfo is missing")
    groups = user.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError("request.userInfo.groups must be a list of strings")
    extra = user.get("extra")
    requester = Requester(
        username=_text(user, "username", f"{where}.userInfo", required=False),
        groups=tuple(groups),
        uid=_text(user, "uid", f"{where}.userInfo", required=False),
        extra=extra if isinstance(extra, Mapping) else None,
    )
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise ValueError("request.dryRun must be a boolean")
    namespace = _text(request, "namespace", where, required=False) or None
    if namespace is not None and not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(f"request.namespace {namespace[:80]!r} is not a namespace name")
    obj = _mapping(request, "object", where)
    old = _mapping(request, "oldObject", where)
    group = _text(resource, "group", f"{where}.resource", required=False)
    version = _text(resource, "version", f"{where}.resource")
    plural = _text(resource, "resource", f"{where}.resource")
    sub_resource = _text(request, "subResource", where, required=False) or None
    if namespace is None and find_workload(group, version, plural, sub_resource) is not None:
        # Every workload guard judges is namespaced; without a namespace the
        # policies' namespace matching (and the fallback read) cannot work.
        raise ValueError("request.namespace is missing (the workloads guard judges are namespaced)")
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
        kind=_text(kind, "kind", f"{where}.kind"),
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
