"""A loopback stand-in for the API server, just enough for Helm's ``lookup``.

``helm template --dry-run=server`` asks the cluster for its API discovery and
answers ``lookup`` calls from it. kmock cannot serve Helm (see DESIGN.md), so
this tiny read-only server answers discovery for the kinds the chart renders
and GETs of the Secrets a test puts in it. That is what lets the tests check
that the Helm-generated certificate survives upgrades and rotates cleanly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# group/version -> [(resource, kind, namespaced)]
DISCOVERY: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "admissionregistration.k8s.io/v1": [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)
    ],
}


@dataclass
class FakeCluster:
    """Secrets by (namespace, name); the server reads them on each request."""

    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    kubeconfig: str = ""

    def put_secret(self, secret: dict[str, Any]) -> None:
        metadata = secret["metadata"]
        self.secrets[(metadata["namespace"], metadata["name"])] = secret


def _resource_list(group_version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list"],
            }
            for name, kind, namespaced in DISCOVERY[group_version]
        ],
    }


def _group_list() -> dict[str, Any]:
    groups = []
    for group_version in DISCOVERY:
        if "/" not in group_version:
            continue
        name, version = group_version.split("/")
        entry = {"groupVersion": group_version, "version": version}
        groups.append({"name": name, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows failures, not access logs."""

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            parts = path.strip("/").split("/")
            if path == "/version":
                self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
            elif path == "/api":
                self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
            elif path == "/apis":
                self._send(200, _group_list())
            elif path == "/api/v1":
                self._send(200, _resource_list("v1"))
            elif len(parts) == 3 and parts[0] == "apis" and "/".join(parts[1:]) in DISCOVERY:
                self._send(200, _resource_list("/".join(parts[1:])))
            elif (
                len(parts) == 6
                and parts[:3] == ["api", "v1", "namespaces"]
                and parts[4] == "secrets"
            ):
                secret = cluster.secrets.get((parts[3], parts[5]))
                if secret is None:
                    self._send(
                        404,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "NotFound",
                            "code": 404,
                        },
                    )
                else:
                    self._send(200, secret)
            else:
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

    return Handler


@contextmanager
def fake_cluster(directory: Path) -> Iterator[FakeCluster]:
    """Serve a FakeCluster on loopback; ``kubeconfig`` points Helm at it."""
    cluster = FakeCluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "test", "user": {"token": "test"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test"}}],
                "current-context": "fake",
            }
        )
    )
    cluster.kubeconfig = str(kubeconfig)
    try:
        yield cluster
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
