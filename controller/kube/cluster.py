"""Read a live cluster's workloads through the user's kubeconfig.

The official ``kubernetes`` client reads the kubeconfig exactly as kubectl
does (contexts, exec plugins, client certificates, tokens), so whoever can
``kubectl get`` the workloads can inventory them; nobody has to assemble a
dump by hand. Lists are paged (``limit``/``continue``) so a large cluster
is read in bounded pieces, and every failure is one line naming the
resource and the API server's answer.

This module imports the client at its top; the CLI imports it only for the
commands that read a cluster, since the client takes seconds to import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import kubernetes
import urllib3

from controller.errors import InputError
from controller.kube.inventory import Inventory
from controller.kube.manifests import Manifest
from controller.kube.owners import OWNER_APIS

PAGE_SIZE = 500
REQUEST_TIMEOUT = 30.0
# What an inventory reads by default: every owner kind and the
# ControllerRevisions that keep StatefulSets' and DaemonSets' older templates.
INVENTORY_KINDS = tuple(OWNER_APIS)
_POD_API = ("v1", "pods")


def _path(api_version: str, plural: str, namespace: str | None = None) -> str:
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}"


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl uses for this context when given no ``-n``."""
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot use {where}: {detail}") from None
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
    details = (chosen or {}).get("context") or {}
    namespace = details.get("namespace") if isinstance(details, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def _client(kubeconfig: str | None, context: str | None) -> Any:
    try:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot use {where}: {detail}") from None


def read_cluster(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    kinds: Iterable[str] = INVENTORY_KINDS,
    pods: bool = False,
    page_size: int = PAGE_SIZE,
    namespace: str | None = None,
) -> Inventory:
    """Every object of ``kinds`` (and Pods with ``pods``) in ``namespace``, or
    in every namespace."""
    client = _client(kubeconfig, context)
    host = str(client.configuration.host)
    objects: list[Manifest] = []
    apis = [(OWNER_APIS[kind].api_version, OWNER_APIS[kind].plural, kind) for kind in kinds]
    if pods:
        apis.append((*_POD_API, "Pod"))
    try:
        for api_version, plural, kind in apis:
            for item in _list(client, _path(api_version, plural, namespace), plural, page_size):
                body = {"apiVersion": api_version, "kind": kind, **item}
                objects.append(Manifest(body, f"{host} {plural}", 0))
    finally:
        client.close()
    return Inventory(tuple(objects), host)


def _list(client: Any, path: str, plural: str, page_size: int) -> Iterator[Mapping[str, Any]]:
    token = ""
    while True:
        query: list[tuple[str, Any]] = [("limit", page_size)]
        if token:
            query.append(("continue", token))
        data = _get(client, path, query)
        items = data.get("items")
        if not isinstance(items, list):
            raise InputError(f"listing {plural}: the API server's answer has no items list")
        yield from (item for item in items if isinstance(item, Mapping))
        metadata = data.get("metadata")
        token = metadata.get("continue", "") if isinstance(metadata, Mapping) else ""
        if not token:
            return


def _get(client: Any, path: str, query: list[tuple[str, Any]]) -> Mapping[str, Any]:
    try:
        method, url, headers, body, post = client.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = client.call_api(
            method, url, header_params=headers, body=body, post_params=post,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        raw = response.read()
    except kubernetes.client.exceptions.ApiException as exc:
        raise InputError(f"GET {path}: the API server answered {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise InputError(f"GET {path}: cannot reach the API server: {exc}") from None
    if not 200 <= response.status < 300:
        raise InputError(f"GET {path}: the API server answered {response.status} {response.reason}")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"GET {path}: the answer is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InputError(f"GET {path}: the answer is not a JSON object")
    return data
