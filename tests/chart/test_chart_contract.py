"""The chart and `guard serve` agree: the container's arguments parse with the
real command line, the webhook path is the one the server serves, and the
default controller identities are the server's own defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.cli import build_parser
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES, WEBHOOK_PATH
from tests.chart.helm import render_chart
from tests.chart.scenarios import scenarios

SCENARIOS = scenarios()


def _args(values: dict[str, Any]) -> list[str]:
    pod = render_chart(values).one("Deployment")["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"]
    return args


@pytest.mark.parametrize(
    "name", ["defaults", "warn", "audit", "everything", "no-controller-identities"]
)
def test_container_arguments_parse_with_guard_serve(name: str) -> None:
    values = SCENARIOS[name]
    parsed = build_parser().parse_args(_args(values))
    assert parsed.command == "serve"
    assert parsed.policies == [Path("/etc/guard/policies")]
    assert parsed.trust == [Path("/etc/guard/trust")]
    assert parsed.enforcement == values.get("enforcement", "deny")
    assert (parsed.webhook_port, parsed.metrics_port) == (8443, 9090)
    assert parsed.all_namespaces is True and parsed.namespace == []
    identities = values.get("webhook", {}).get(
        "controllerIdentities", DEFAULT_CONTROLLER_IDENTITIES
    )
    assert parsed.controller_identity == list(identities)


def test_chart_defaults_are_the_server_defaults() -> None:
    config = render_chart({}).one("ValidatingWebhookConfiguration")
    assert {w["clientConfig"]["service"]["path"] for w in config["webhooks"]} == {WEBHOOK_PATH}
    parsed = build_parser().parse_args(_args({}))
    assert tuple(parsed.controller_identity) == DEFAULT_CONTROLLER_IDENTITIES
