"""guard's own API calls, through the operator's API session.

Kopf keeps the credentials (the login handlers, re-authentication on 401) in
a per-operator vault that only its internal client can use; the public
surface has no "list these objects" call. This module is the one place that
touches that internal client (kopf is pinned to 1.45.x in pyproject), so an
upgrade has one file to check. The calls: lists of guard.dev resources, the
bounded read of one workload owner by name (a list with a field selector,
so the list and watch the owner index needs are all the permission it
takes), creation of core/v1 Events (see ``events``), and the report
writer's reads and writes of policy reports and of its Lease (``call``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors

from controller.errors import GuardError
from controller.policy.documents import API_GROUP

API_VERSION = "v1alpha1"
logger = logging.getLogger(__name__)


# Path segments guard puts into a URL: a name the API server could have made.
_SEGMENT_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def list_path(plural: str, namespace: str | None = None) -> str:
    """The list URL of a guard resource; refuses segments that could steer it
    elsewhere (``..``, ``/``, ``?``): the namespace comes from a request."""
    for segment in (plural, namespace):
        if segment and (".." in segment or not _SEGMENT_RE.fullmatch(segment)):
            raise ValueError(f"{segment[:80]!r} is not a valid path segment")
    base = f"/apis/{API_GROUP}/{API_VERSION}"
    if namespace:
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


async def list_objects(
    settings: kopf.OperatorSettings,
    plural: str,
    namespace: str | None = None,
    *,
    timeout: float = 10.0,
) -> list[Mapping[str, Any]]:
    """One list request, no retries (callers decide whether to retry)."""
    response = await kopf_api.request(
        "get",
        list_path(plural, namespace),
        settings=settings,
        timeout=aiohttp.ClientTimeout(total=timeout),
        backoffs=[],
        logger=logger,
    )
    async with response:
        data = await response.json()
    items = data.get("items") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ValueError(f"listing {plural} returned no items list")
    return [item for item in items if isinstance(item, Mapping)]


def named_list_path(api_version: str, plural: str, namespace: str, name: str) -> str:
    """The list URL of one object by name (``fieldSelector=metadata.name=``),
    for any API group; every segment is checked as in ``list_path``."""
    for segment in (plural, namespace, name, *api_version.split("/")):
        if not segment or ".." in segment or not _SEGMENT_RE.fullmatch(segment):
            raise ValueError(f"{segment[:80]!r} is not a valid path segment")
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}?fieldSelector=metadata.name%3D{name}"


async def read_named(
    settings: kopf.OperatorSettings,
    api_version: str,
    plural: str,
    namespace: str,
    name: str,
    *,
    timeout: float = 2.0,
) -> Mapping[str, Any] | None:
    """One object by name, or None; one request, no retries. Items with
    another name are ignored (a server that ignores the selector)."""
    response = await kopf_api.request(
        "get",
        named_list_path(api_version, plural, namespace, name),
        settings=settings,
        timeout=aiohttp.ClientTimeout(total=timeout),
        backoffs=[],
        logger=logger,
    )
    async with response:
        data = await response.json()
    items = data.get("items") if isinstance(data, Mapping) else None
    for item in items if isinstance(items, list) else ():
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        if isinstance(metadata, Mapping) and metadata.get("name") == name:
            return dict(item)
    return None


async def post_event(
    settings: kopf.OperatorSettings,
    namespace: str,
    body: Mapping[str, Any],
    *,
    timeout: float = 5.0,
) -> None:
    """Create one core/v1 Event, no retries (events are auxiliary)."""
    await kopf_api.post(
        f"/api/v1/namespaces/{namespace}/events",
        payload=dict(body),
        headers={"Content-Type": "application/json"},
        settings=settings,
        timeout=aiohttp.ClientTimeout(total=timeout),
        backoffs=[],
        logger=logger,
    )


# --------------------------------------------------------------------------- objects
# The report writer's calls: policy reports and its Lease. Each is one request,
# no retries: the writer's next round retries, and admission never waits on them.


class ApiConflict(GuardError):
    """The object changed (or was created) since it was read: 409."""


def object_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """The URL of a namespaced collection or of one object in it, any API group;
    every segment is checked as in ``list_path``."""
    for segment in (plural, namespace, *api_version.split("/"), *([name] if name else [])):
        if not segment or ".." in segment or not _SEGMENT_RE.fullmatch(segment):
            raise ValueError(f"{segment[:80]!r} is not a valid path segment")
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


async def call(
    settings: kopf.OperatorSettings,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None = None,
    *,
    content_type: str = "application/json",
    timeout: float = 5.0,
) -> Mapping[str, Any] | None:
    """One request; the answer's JSON object, None on 404, ``ApiConflict`` on 409."""
    try:
        response = await kopf_api.request(
            method,
            path,
            payload=dict(payload) if payload is not None else None,
            headers={"Content-Type": content_type} if payload is not None else None,
            settings=settings,
            timeout=aiohttp.ClientTimeout(total=timeout),
            backoffs=[],
            logger=logger,
        )
    except kopf_errors.APINotFoundError:
        return None
    except kopf_errors.APIConflictError as exc:
        raise ApiConflict(f"{method.upper()} {path}: conflict") from exc
    async with response:
        data = await response.json()
    return data if isinstance(data, Mapping) else {}
