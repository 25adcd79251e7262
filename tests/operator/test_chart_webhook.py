"""The chart's own webhook configuration, played as the API server plays it,
reaches guard's direct admission path and gets its verdicts.

The rendered ValidatingWebhookConfiguration decides which webhooks a request
reaches (rules, namespaceSelector, matchConditions: ``tests.chart.admission``),
its ``clientConfig`` names the Service, port and path, and its ``caBundle``
must verify the certificate guard serves for the Service's name. The
operator runs with the chart's generated certificate; its port is the only
thing mapped (the Service's 443 to the container's 8443, to loopback here).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.admission import AdmissionRequest, webhooks_for
from tests.chart.helm import NAMESPACE, render_chart
from tests.kube.helpers import (
    DEPLOYER,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    envelope,
    workload,
)
from tests.operator.harness import EmulatedApi, RunningGuard, Tls, serve_settings
from tests.operator.test_admission import attest


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rendered = render_chart({})
    secret = rendered.one("Secret", "-tls")
    directory = tmp_path_factory.mktemp("chart-tls")
    config = rendered.one("ValidatingWebhookConfiguration")
    [bundle] = {w["clientConfig"]["caBundle"] for w in config["webhooks"]}
    tls = Tls(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    tls.ca.write_bytes(base64.b64decode(bundle))
    tls.cert.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    tls.key.write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    return {"config": config, "tls": tls, "rendered": rendered}


@pytest.fixture(scope="module")
def served(
    chart: dict[str, Any],
    guard_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    cast: Cast,
) -> Iterator[RunningGuard]:
    api = EmulatedApi()
    api.start()
    policies, trust = guard_files
    audit = tmp_path_factory.mktemp("chart-audit") / "audit.jsonl"
    running = RunningGuard(api, chart["tls"], serve_settings(policies, trust, chart["tls"], audit))
    running.start()
    attest(running, "web-v1", "prod", envelope(cast.ci, [WEB_DIGEST]))
    yield running
    running.stop()
    api.stop()


def _post(guard: RunningGuard, webhook: dict[str, Any], review: Any) -> tuple[int, Any]:
    """POST as the API server: to the Service's path, verifying its name with the caBundle."""
    service = webhook["clientConfig"]["service"]
    host = f"{service['name']}.{service['namespace']}.svc"
    context = ssl.create_default_context(
        cadata=base64.b64decode(webhook["clientConfig"]["caBundle"]).decode()
    )

    class ServiceConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            http.client.HTTPConnection.connect(self)
            self.sock = context.wrap_socket(self.sock, server_hostname=host)

    connection = ServiceConnection("127.0.0.1", guard.port, timeout=30)
    try:
        connection.request(
            "POST",
            service["path"],
            body=json.dumps(review).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_chart_points_at_port_8443_and_path_validate(chart: dict[str, Any]) -> None:
    rendered = chart["rendered"]
    deployment = rendered.one("Deployment")
    [container] = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if any(p.get("name") == "webhook" for p in c.get("ports", []))
    ]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["webhook"] == 8443
    for webhook in chart["config"]["webhooks"]:
        assert webhook["clientConfig"]["service"]["path"] == "/validate"
        assert webhook["clientConfig"]["service"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(("image", "allowed"), [(WEB, True), (UNATTESTED, False)])
def test_a_deployment_through_the_charts_webhooks_gets_guards_verdict(
    served: RunningGuard, chart: dict[str, Any], image: str, allowed: bool
) -> None:
    request = AdmissionRequest(
        group="apps",
        version="v1",
        resource="deployments",
        operation="CREATE",
        namespace="prod",
        username=DEPLOYER,
        groups=("system:authenticated",),
    )
    reached = webhooks_for(chart["config"], request)
    assert reached, "the chart sends no Deployment to guard"
    for webhook in reached:
        review = admission_review(workload("Deployment", "web", "prod", image))
        status, body = _post(served, webhook, review)
        assert status == 200
        assert body["response"]["uid"] == review["request"]["uid"]
        assert body["response"]["allowed"] is allowed, body["response"].get("status")
        if not allowed:
            assert "review" in body["response"]["status"]["message"].lower()
