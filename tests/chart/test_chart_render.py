"""The chart renders and lints for each supported Kubernetes version and each
documented way to install it, and every object is one the API server accepts
as written (strict: no field it would reject or silently prune)."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.policy.loader import load_bundle
from tests.chart.helm import CHART, NAMESPACE, HelmError, helm_binary, render_chart, run_helm
from tests.chart.scenarios import KUBE_VERSIONS, scenarios
from tests.chart.validation import InvalidManifest, validate, validate_custom

SCENARIOS = scenarios()
VERSIONED_SCENARIOS = (
    "defaults",
    "cert-manager",
    "existing-secret",
    "warn",
    "replicas-1",
    "replicas-3",
    "exclusions",
)
GUARD_KINDS_WITH_CRDS = ("GuardPolicy", "GuardTrust", "GuardException", "ReviewAttestation")


def test_helm_is_the_fetched_binary() -> None:
    result = run_helm("version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("v3.", "v4.")), result.stdout


def test_missing_helm_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_HELM", "/nonexistent/helm")
    with pytest.raises(FileNotFoundError, match="make helm"):
        helm_binary()


@pytest.mark.parametrize("name", ["defaults", "cert-manager", "existing-secret", "everything"])
def test_lint_strict(name: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
        json.dump(SCENARIOS[name], values)
        values.flush()
        result = run_helm(
            "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", values.name
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


# Each way to install on each recent Kubernetes version; the oldest supported
# version with the defaults; every other scenario on the newest.
MATRIX = sorted(
    {(name, version) for name in VERSIONED_SCENARIOS for version in KUBE_VERSIONS[1:]}
    | {("defaults", KUBE_VERSIONS[0])}
    | {(name, KUBE_VERSIONS[-1]) for name in SCENARIOS}
)


@pytest.mark.parametrize(("name", "kube_version"), MATRIX)
def test_every_object_is_valid(name: str, kube_version: str) -> None:
    rendered = render_chart(SCENARIOS[name], kube_version=kube_version)
    kinds = {m["kind"] for m in rendered.manifests}
    assert {"Deployment", "ValidatingWebhookConfiguration", "ClusterRole", "Service"} <= kinds
    for manifest in rendered.manifests:
        validate(manifest, kube_version)


def test_too_old_kubernetes_is_refused() -> None:
    # matchConditions, which keep controllers fail-open, need 1.28.
    with pytest.raises(HelmError, match="kubeVersion"):
        render_chart({}, kube_version="1.27.0")


def test_strict_validation_catches_a_pruned_field() -> None:
    """The validators are strict: a field the schema lacks is an error, not a silent drop."""
    rendered = render_chart(SCENARIOS["everything"])
    monitor = json.loads(json.dumps(rendered.one("ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(InvalidManifest, match="intervall"):
        validate(monitor, "1.33.0")
    deployment = json.loads(json.dumps(rendered.one("Deployment")))
    deployment["spec"]["template"]["spec"]["securityContxt"] = {}
    with pytest.raises(InvalidManifest, match="securityContxt"):
        validate(deployment, "1.33.0")


def _secret_files(secret: dict[str, object]) -> dict[str, str]:
    data = secret.get("data") or {}
    assert isinstance(data, dict)
    return {name: base64.b64decode(value).decode() for name, value in data.items()}


def _guard_documents(rendered_data: dict[str, str]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for text in rendered_data.values():
        # As kubectl sends them: YAML dates become strings in JSON.
        documents.extend(
            json.loads(json.dumps(d, default=str)) for d in yaml.safe_load_all(text) if d
        )
    return documents


@pytest.mark.parametrize("name", ["defaults", "everything"])
def test_configuration_documents_match_the_crds(name: str) -> None:
    """Policies and trust the chart installs are valid custom resources too, so
    the same text works as a file and as a GuardPolicy/GuardTrust object."""
    rendered = render_chart(SCENARIOS[name])
    documents = _guard_documents(rendered.one("ConfigMap", "-policies")["data"])
    documents += _guard_documents(_secret_files(rendered.one("Secret", "-trust")))
    checked = [d for d in documents if d["kind"] in GUARD_KINDS_WITH_CRDS]
    assert checked, "no guard documents rendered"
    if name == "everything":
        assert {"GuardTrust", "GuardException"} <= {d["kind"] for d in checked}
    for document in checked:
        validate_custom(document)


def test_operator_loads_the_mounted_configuration(tmp_path: Path) -> None:
    """The operator reads policies and trust as the kubelet mounts them: every
    file twice (a ``..<timestamp>`` folder and a link to it), which must not
    define each document twice."""
    rendered = render_chart(SCENARIOS["everything"])
    mounts = {
        "policies": rendered.one("ConfigMap", "-policies")["data"],
        "trust": _secret_files(rendered.one("Secret", "-trust")),
    }
    for mount, files in mounts.items():
        stamped = tmp_path / mount / "..2025_01_01_00_00_00.000000001"
        stamped.mkdir(parents=True)
        (tmp_path / mount / "..data").symlink_to(stamped.name)
        for file_name, text in files.items():
            (stamped / file_name).write_text(text)
            (tmp_path / mount / file_name).symlink_to(f"..data/{file_name}")

    bundle = load_bundle(tmp_path / "policies", tmp_path / "trust")

    documents = _guard_documents(mounts["policies"])
    policy_names = sorted(d["metadata"]["name"] for d in documents if d["kind"] == "GuardPolicy")
    assert [p.name for p in bundle.policies] == policy_names
    assert [t.name for t in bundle.trusts] == ["policy-guard-values"]
    assert [len(t.spec.keys) for t in bundle.trusts] == [2]
    assert [e.name for e in bundle.exceptions] == ["legacy-app"]
    assert not [s for s in bundle.sources.values() if "/.." in s]
