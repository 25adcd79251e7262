"""The chart's background scan: report CRDs behind reports.installCRDs (kept on
uninstall), the report API chosen by reports.api, and the RBAC and Lease only
when reports are on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, NAMESPACE, render_chart

CRDS = Path(CHART) / "files" / "report-crds"
API_CRDS = {
    "openreports": ("reports.openreports.io", "clusterreports.openreports.io"),
    "wgpolicy": ("policyreports.wgpolicyk8s.io", "clusterpolicyreports.wgpolicyk8s.io"),
}


def _crds(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rendered = render_chart(values)
    return {
        m["metadata"]["name"]: m
        for m in rendered.manifests
        if m["kind"] == "CustomResourceDefinition"
        and not m["metadata"]["name"].endswith("guard.dev")
    }


def _args(values: dict[str, Any]) -> list[str]:
    deployment = render_chart(values).one("Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = render_chart(values)
    return [rule for m in rendered.manifests if m["kind"] in ("ClusterRole", "Role")
            for rule in m["rules"]]  # fmt: skip


def test_by_default_no_reports_no_crds_no_extra_rights() -> None:
    assert _crds({}) == {}
    assert "--reports" not in _args({})
    rules = _rules({})
    assert not any("pods" in r["resources"] for r in rules)
    assert not any(g in ("openreports.io", "coordination.k8s.io") for r in rules
                   for g in r["apiGroups"])  # fmt: skip


@pytest.mark.parametrize("api", ["openreports", "wgpolicy"])
def test_the_crds_are_the_published_ones_and_kept_on_uninstall(api: str) -> None:
    crds = _crds({"reports": {"installCRDs": True, "api": api}})
    assert set(crds) == set(API_CRDS[api])
    published = {}
    for path in CRDS.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        published[document["metadata"]["name"]] = document
    for name, crd in crds.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"] == published[name]["spec"]


@pytest.mark.parametrize(("api", "group", "plural"), [
    ("openreports", "openreports.io", "reports"),
    ("wgpolicy", "wgpolicyk8s.io", "policyreports"),
])  # fmt: skip
def test_reports_on_run_the_scan_with_its_rights(api: str, group: str, plural: str) -> None:
    values = {"reports": {"enabled": True, "api": api, "scanPeriod": "5m"}}
    args = _args(values)
    assert args[args.index("--reports") + 1] == api
    assert args[args.index("--scan-period") + 1] == "5m"
    assert args[args.index("--lease-namespace") + 1] == NAMESPACE
    rules = _rules(values)
    report_rules = [r for r in rules if r["apiGroups"] == [group]]
    assert [(r["resources"], sorted(r["verbs"])) for r in report_rules] == [
        ([plural], ["create", "delete", "list", "patch"])
    ]
    role = render_chart(values).one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {(tuple(r.get("resourceNames", ())), tuple(r["verbs"])) for r in role["rules"]} == {
        ((), ("create",)),
        (("guard-report-writer",), ("get", "patch")),
    }
