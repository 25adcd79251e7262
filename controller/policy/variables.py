"""The CEL variables contract, the same for both sides.

``object``/``oldObject`` (Terraform: ``after``/``before``), ``resource``,
and for Kubernetes ``request``, ``podSpec`` and ``containers`` (containers,
initContainers and ephemeralContainers together) for every workload kind,
so a rule is written once for Pod, Deployment and CronJob alike. The
pod-spec helpers live here because the contract defines them; the
Kubernetes side imports them from here to find images the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.policy.documents import Target
from controller.policy.results import Subject


def pod_spec_of(kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The pod template of any workload kind, so a rule is written once.

    A part of the path that is not a mapping (bad input the API server would
    reject) gives an empty pod spec rather than an exception.
    """
    path = ("spec",) if kind == "Pod" else (
        ("spec", "jobTemplate", "spec", "template", "spec")
        if kind == "CronJob"
        else ("spec", "template", "spec")
    )  # fmt: skip
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping):
            return {}
        node = node.get(part)
    return node if isinstance(node, Mapping) else {}


def containers_of(pod_spec: Mapping[str, Any]) -> list[Any]:
    """containers, initContainers and ephemeralContainers together."""
    found: list[Any] = []
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = pod_spec.get(key) or []
        if isinstance(items, list):
            found.extend(items)
    return found


def _without_managed_fields(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The object without ``metadata.managedFields``.

    Server-side apply bookkeeping is often larger than the spec itself, no
    guardrail reads it, and converting it into CEL values is most of the cost
    of an evaluation.
    """
    if not obj:
        return obj
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or "managedFields" not in metadata:
        return obj
    trimmed = {k: v for k, v in metadata.items() if k != "managedFields"}
    return {**obj, "metadata": trimmed}


def request_variable(subject: Subject) -> dict[str, Any]:
    """``request`` as a ValidatingAdmissionPolicy rule sees it, rendered from
    the typed requester."""
    requester = subject.requester
    return {
        "operation": subject.action.upper(),
        "userInfo": requester.user_info() if requester is not None else {},
        "dryRun": subject.dry_run,
        "subResource": subject.sub_resource,
    }


def variables_for(subject: Subject, obj: Mapping[str, Any] | None) -> dict[str, Any]:
    resource = {
        "target": subject.target.value,
        "kind": subject.kind,
        "type": subject.type,
        "name": subject.name,
        "namespace": subject.namespace,
        "address": subject.address,
        "action": subject.action,
        "actionReason": subject.action_reason,
    }
    old = subject.old_object
    if subject.target is Target.kubernetes:
        obj, old = _without_managed_fields(obj), _without_managed_fields(old)
    variables: dict[str, Any] = {
        "object": obj,
        "oldObject": old,
        "resource": resource,
    }
    if subject.target is Target.kubernetes:
        pod_spec = pod_spec_of(subject.kind, obj if obj is not None else old)
        variables["request"] = request_variable(subject)
        variables["podSpec"] = pod_spec
        variables["containers"] = containers_of(pod_spec)
    else:
        variables["after"] = obj
        variables["before"] = subject.old_object
    return variables
