"""Kubernetes objects into the engine's subjects.

One function serves both the admission webhook and ``guard kube check``, so
a manifest is judged offline exactly as the cluster would judge it. Images
come from every container list of the pod template (containers,
initContainers, ephemeralContainers) and from its image volumes
(``volumes[].image.reference``: an OCI image mounted into the pod, whose
files an approved container can run); the digest is taken from the deployed
reference itself, never looked up, so a tag-only image has no digest and the
review check denies it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from controller.errors import InputError
from controller.kube.request import WORKLOADS, requester_of
from controller.kube.shapes import ShapeError, check_workload, json_type
from controller.policy.documents import KUBERNETES_OPERATIONS, Target, TestCase
from controller.policy.results import Artifact, Requester, Subject
from controller.policy.variables import containers_of, pod_spec_of

# A digest-pinned reference: one name (with an optional tag), one ``@``, a
# sha256 digest in lower-case hex, and nothing else. Only sha256 is accepted:
# it is what attestations name, and an unknown algorithm must never match.
# Anything odder (two ``@``, upper-case hex, whitespace) is not pinned: a
# runtime could read it differently from guard, so it is denied as unpinned.
_PINNED_RE = re.compile(r"[^@\s]+@(sha256:[0-9a-f]{64})")


def image_digest(image: str) -> str | None:
    """``sha256:<hex>`` when the reference is pinned by digest, else ``None``."""
    match = _PINNED_RE.fullmatch(image)
    return match.group(1) if match else None


def images_of(kind: str, obj: Mapping[str, Any] | None) -> list[str]:
    """Every image the object runs, in order of first appearance, without repeats."""
    seen: dict[str, None] = {}
    pod_spec = pod_spec_of(kind, obj)
    for container in containers_of(pod_spec):
        if isinstance(container, Mapping):
            image = container.get("image")
            if isinstance(image, str) and image:
                seen.setdefault(image, None)
    for image in _volume_images(pod_spec):
        seen.setdefault(image, None)
    return list(seen)


def _volume_images(pod_spec: Mapping[str, Any]) -> Iterable[str]:
    volumes = pod_spec.get("volumes")
    for volume in volumes if isinstance(volumes, list) else ():
        source = volume.get("image") if isinstance(volume, Mapping) else None
        reference = source.get("reference") if isinstance(source, Mapping) else None
        if isinstance(reference, str) and reference:
            yield reference


def address_of(kind: str, namespace: str | None, name: str) -> str:
    """``Deployment prod/web``; cluster-scoped objects have no namespace part."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    metadata = (obj or {}).get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def workload_subject(
    *,
    kind: str,
    name: str,
    namespace: str | None,
    operation: str,
    obj: Mapping[str, Any] | None,
    old_obj: Mapping[str, Any] | None,
    requester: Requester,
    dry_run: bool = False,
    sub_resource: str | None = None,
    location: str | None = None,
    line: int | None = None,
) -> Subject:
    """The subject of one admission request (or one manifest, played as CREATE).

    Images are *introduced* on CREATE, and on UPDATE when the set of images
    differs from the old object's: only then do expiry and maxAge apply, so
    scaling or relabelling an old workload never fails because its
    attestation aged.
    """
    images = images_of(kind, obj if obj is not None else old_obj)
    old_images = set(images_of(kind, old_obj)) if old_obj is not None else set()
    introduced = operation == "CREATE" or (operation == "UPDATE" and set(images) != old_images)
    artifacts = tuple(
        Artifact(
            reference=image,
            digest=image_digest(image),
            # On an UPDATE that changes images, the images that were already
            # running are not newly introduced either.
            introduced=introduced and (operation != "UPDATE" or image not in old_images),
            kind="image",
        )
        for image in images
    )
    return Subject(
        target=Target.kubernetes,
        address=address_of(kind, namespace, name),
        kind=kind,
        type=kind,
        name=name,
        namespace=namespace,
        action=operation.lower(),
        object=obj,
        old_object=old_obj,
        requester=requester,
        dry_run=dry_run,
        sub_resource=sub_resource,
        artifacts=artifacts,
        labels=labels_of(obj if obj is not None else old_obj),
        location=location,
        line=line,
    )


def annotations_of(kind: str, obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The object's annotations and its pod template's, where envelopes may ride.

    A Deployment's annotations are copied to its ReplicaSets, but Pods only
    get the template's: reading both lets controller-created objects carry
    the same evidence as the object a person applied.
    """
    found: list[Mapping[str, Any]] = []
    if not obj:
        return found
    for holder in _metadata_holders(kind, obj):
        metadata = holder.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        if isinstance(annotations, Mapping):
            found.append(annotations)
    return found


def template_annotations_of(kind: str, obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The annotations of the object's templates only (what controllers copy)."""
    found: list[Mapping[str, Any]] = []
    if not obj:
        return found
    for position, holder in enumerate(_metadata_holders(kind, obj)):
        metadata = holder.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        if position and isinstance(annotations, Mapping):
            found.append(annotations)
    return found


def _metadata_holders(kind: str, obj: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield obj
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or kind == "Pod":
        return
    if kind == "CronJob":
        job = spec.get("jobTemplate")
        if isinstance(job, Mapping):
            yield job
            spec = job.get("spec")
            if not isinstance(spec, Mapping):
                return
    template = spec.get("template")
    if isinstance(template, Mapping):
        yield template


def case_subject(case: TestCase) -> Subject:
    """A GuardPolicyTest case's object, judged exactly as admission judges it.

    The request defaults to a CREATE (UPDATE with an old object, DELETE with
    only one) by a user called ``policy-test``; the case's ``request`` may
    set the operation, ``userInfo``, ``dryRun`` and ``subResource``, read
    with the webhook's own rules. A field the API server would never send
    in that shape is an input error naming the case and the field, as a
    request with it would be refused.
    """
    try:
        return _case_subject(case)
    except ValueError as exc:
        raise InputError(f"GuardPolicyTest case {case.name!r}: {exc}") from None


_WORKLOAD_KINDS = frozenset(w.kind for w in WORKLOADS)


def _case_subject(case: TestCase) -> Subject:
    obj, old = case.object, case.old_object
    for where, value in (("object", obj), ("oldObject", old)):
        kind = value.get("kind") if value is not None else None
        if isinstance(kind, str) and kind in _WORKLOAD_KINDS:
            try:
                check_workload(kind, value, where)
            except ShapeError as exc:
                raise ValueError(f"{exc} (the API server never sends this shape)") from None
    body = obj if obj is not None else old or {}
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"object.metadata must be an object, not {json_type(metadata)}")
    namespace = metadata.get("namespace")
    request: dict[str, Any] = {
        "operation": "CREATE" if old is None else ("DELETE" if obj is None else "UPDATE"),
        "userInfo": {"username": "policy-test", "groups": []},
    }
    request.update(case.request or {})
    operation = request.get("operation")
    if operation not in KUBERNETES_OPERATIONS:  # the document model refuses it first
        raise ValueError(
            f"request.operation must be one of {', '.join(KUBERNETES_OPERATIONS)}, "
            f"not {operation!r}"
        )
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise ValueError(f"request.dryRun must be a boolean, not {json_type(dry_run)}")
    sub_resource = request.get("subResource")
    if sub_resource is not None and not isinstance(sub_resource, str):
        raise ValueError(f"request.subResource must be a string, not {json_type(sub_resource)}")
    requester = requester_of(request.get("userInfo") or {}, "request.userInfo")
    return workload_subject(
        kind=str(body.get("kind") or ""),
        name=str(metadata.get("name") or ""),
        namespace=str(namespace) if namespace else None,
        operation=operation,
        obj=obj,
        old_obj=old,
        requester=requester,
        dry_run=bool(dry_run),
        sub_resource=sub_resource,
    )
