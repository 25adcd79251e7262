"""Kopf handlers only: the validating webhook, the indexes, the statuses.

The logic lives in ``controller.kube``; these handlers connect Kopf's events
and admission requests to it. Handlers are registered on a registry made by
``create_registry`` rather than on Kopf's global one, so the server and the
tests each run exactly the handlers they mean to.

Indexes (each handler's name is its index's name in handler kwargs):

- ``guard_attestations``: ReviewAttestation envelopes by claimed subject digest;
- ``guard_policies``, ``guard_trusts``, ``guard_exceptions``, ``guard_baselines``:
  documents by name;
- ``guard_owners``: workload owners (Deployments, ReplicaSets, StatefulSets,
  DaemonSets, Jobs, CronJobs, ReplicationControllers) by (namespace, uid),
  reduced to what inheritance reads (``kube.inherit.OwnerRecord``);
- ``guard_revisions``: ControllerRevisions by (namespace, name), for the Pods
  of older StatefulSet and DaemonSet revisions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from controller.kube.envelopes import IndexedEnvelope, index_entries
from controller.kube.inherit import OWNER_APIS, OwnerRecord, owner_record
from controller.kube.request import AdmissionRequest
from controller.kube.result import AdmissionResult
from controller.kube.runtime import GuardRuntime
from controller.kube.state import ResourceEntry, entry_from_body
from controller.policy.documents import API_GROUP

VERSION = "v1alpha1"
STATUS_KEY = "guard"
logger = logging.getLogger(__name__)


def _runtime(memo: Any) -> GuardRuntime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, GuardRuntime):
        raise kopf.PermanentError("guard's runtime is missing from the operator memo")
    return runtime


# --------------------------------------------------------------------------- login


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then a kubeconfig (for local runs)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


# --------------------------------------------------------------------------- admission


def serve_admissions(*, memo: Any, **kwargs: Any) -> None:
    """Start-up: give guard's webhook server what it judges with.

    guard's server answers ``/validate`` itself rather than through Kopf's
    admission machinery (which would rebuild a cause, a body, a diff and a
    memo per request, a quarter of the cost of an answer). Kopf still runs
    the process, the watches and the indexes: the indexes handed to this
    handler are live views, read afresh by every request.
    """
    runtime = _runtime(memo)

    async def validate(request: AdmissionRequest) -> AdmissionResult:
        return await runtime.admit(
            request,
            attestations=_index(kwargs, "guard_attestations"),
            resources=_resources(kwargs),
            owners=_index(kwargs, "guard_owners"),
            revisions=_index(kwargs, "guard_revisions"),
            baselines=_entries(_index(kwargs, "guard_baselines")),
        )

    runtime.judge = validate


def _index(kwargs: Mapping[str, Any], name: str) -> Mapping[str, Iterable[Any]]:
    # A missing index must fail loudly: an empty policy index would allow everything.
    index = kwargs.get(name)
    if not isinstance(index, Mapping):
        raise kopf.PermanentError(f"the operator index {name!r} is missing")
    return index


def _resources(kwargs: Mapping[str, Any]) -> list[ResourceEntry]:
    return _entries(
        *(_index(kwargs, n) for n in ("guard_policies", "guard_trusts", "guard_exceptions"))
    )


def _entries(*indexes: Mapping[str, Iterable[ResourceEntry]]) -> list[ResourceEntry]:
    return [entry for index in indexes for store in index.values() for entry in store]


# --------------------------------------------------------------------------- indexes


def guard_attestations(
    *, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> dict[str, IndexedEnvelope]:
    _runtime(memo).readiness.observe("ReviewAttestation", namespace, name)
    envelope = (body.get("spec") or {}).get("envelope")
    if not isinstance(envelope, str):
        return {}
    entries, _problem = index_entries(envelope, f"ReviewAttestation {namespace}/{name}", namespace)
    return entries


def _index_resource(kind: str, body: kopf.Body, name: str, memo: Any) -> dict[str, ResourceEntry]:
    _runtime(memo).readiness.observe(kind, None, name)
    return {name: entry_from_body(kind, body)}


def guard_policies(*, body: kopf.Body, name: str, memo: Any, **_: Any) -> dict[str, ResourceEntry]:
    return _index_resource("GuardPolicy", body, name, memo)


def guard_trusts(*, body: kopf.Body, name: str, memo: Any, **_: Any) -> dict[str, ResourceEntry]:
    return _index_resource("GuardTrust", body, name, memo)


def guard_exceptions(
    *, body: kopf.Body, name: str, memo: Any, **_: Any
) -> dict[str, ResourceEntry]:
    return _index_resource("GuardException", body, name, memo)


def guard_baselines(*, body: kopf.Body, name: str, memo: Any, **_: Any) -> dict[str, ResourceEntry]:
    return _index_resource("GuardBaseline", body, name, memo)


def _owner_indexer(kind: str) -> Any:
    """The ``guard_owners`` handler of one owner kind (list items carry no kind)."""

    def guard_owners(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], OwnerRecord]:
        record = owner_record(kind, body)
        return {} if record is None else {(record.namespace, record.uid): record}

    return guard_owners


def guard_revisions(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], OwnerRecord]:
    record = owner_record("ControllerRevision", body)
    return {} if record is None else {(record.namespace, record.name): record}


# --------------------------------------------------------------------------- statuses


def _record(memo: Any, kind: str, body: kopf.Body, type: str | None) -> None:
    # Runs after the indexes took the event in: "processed" means "indexed".
    metadata = body.get("metadata") or {}
    _runtime(memo).watch_log.record(
        kind, metadata.get("namespace"), str(metadata.get("name", "")), type or "LISTED"
    )


def _set_status(body: kopf.Body, patch: kopf.Patch, status: dict[str, Any]) -> None:
    # Patch only on change: every patch is a new watch event for this object.
    current = (body.get("status") or {}).get(STATUS_KEY)
    if current != status:
        patch.setdefault("status", {})[STATUS_KEY] = status


async def _document_status(
    kind: str,
    body: kopf.Body,
    patch: kopf.Patch,
    type: str | None,
    memo: Any,
    indexes: Mapping[str, Any],
) -> None:
    # Recompile now rather than on the next admission: the load-error gauge
    # (and the compile cost) should not wait for traffic.
    _runtime(memo).policy_set(_resources(indexes))
    _record(memo, kind, body, type)
    if type == "DELETED":
        return
    entry = entry_from_body(kind, body)
    if entry.error:
        logger.error("%s %s is broken: %s", kind, entry.name, entry.error)
        enforced = "enforced as an error until fixed" if entry.enforced_as_error else "not enforced"
        status = {"valid": False, "message": f"{entry.error} ({enforced})"}
        if type != "DELETED":
            _runtime(memo).report_broken(entry)
    else:
        status = {"valid": True, "message": "accepted"}
    _set_status(body, patch, status)


async def policy_status(
    *, body: kopf.Body, patch: kopf.Patch, type: str | None, memo: Any, **kwargs: Any
) -> None:
    await _document_status("GuardPolicy", body, patch, type, memo, kwargs)


async def trust_status(
    *, body: kopf.Body, patch: kopf.Patch, type: str | None, memo: Any, **kwargs: Any
) -> None:
    await _document_status("GuardTrust", body, patch, type, memo, kwargs)


async def exception_status(
    *, body: kopf.Body, patch: kopf.Patch, type: str | None, memo: Any, **kwargs: Any
) -> None:
    await _document_status("GuardException", body, patch, type, memo, kwargs)


async def baseline_status(
    *, body: kopf.Body, patch: kopf.Patch, type: str | None, memo: Any, **kwargs: Any
) -> None:
    """Valid or why not, and an Event plus an audit line on every change."""
    runtime = _runtime(memo)
    runtime.baselines(_entries(_index(kwargs, "guard_baselines")))
    await _document_status("GuardBaseline", body, patch, type, memo, kwargs)
    runtime.baseline_changed(body, type)


def attestation_status(
    *, body: kopf.Body, patch: kopf.Patch, type: str | None, memo: Any, **kwargs: Any
) -> None:
    """Informational only (for ``kubectl get``): admission never reads it."""
    _record(memo, "ReviewAttestation", body, type)
    if type == "DELETED":
        return
    envelope = (body.get("spec") or {}).get("envelope")
    status = _runtime(memo).attestation_status(envelope, _resources(kwargs))
    _set_status(body, patch, status)


# --------------------------------------------------------------------------- registry


def create_registry(*, login_handler: bool = True) -> kopf.OperatorRegistry:
    """A registry with every guard handler (and the production login)."""
    registry = kopf.OperatorRegistry()
    if login_handler:
        kopf.on.login(registry=registry)(login)
    kopf.on.startup(id="serve-admissions", registry=registry)(serve_admissions)
    kinds = (
        ("reviewattestations", guard_attestations, attestation_status),
        ("guardpolicies", guard_policies, policy_status),
        ("guardtrusts", guard_trusts, trust_status),
        ("guardexceptions", guard_exceptions, exception_status),
        ("guardbaselines", guard_baselines, baseline_status),
    )
    for plural, index_fn, status_fn in kinds:
        kopf.index(API_GROUP, VERSION, plural, registry=registry)(index_fn)
        kopf.on.event(API_GROUP, VERSION, plural, id=f"status-{plural}", registry=registry)(
            status_fn
        )
    # The owners inheritance looks up (one index over every owner kind).
    for kind, api in OWNER_APIS.items():
        group, _, version = api.api_version.rpartition("/")
        if kind == "ControllerRevision":
            kopf.index(group, version, api.plural, id="guard_revisions", registry=registry)(
                guard_revisions
            )
        else:
            kopf.index(group, version, api.plural, id="guard_owners", registry=registry)(
                _owner_indexer(kind)
            )
    return registry
