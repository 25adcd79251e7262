"""The Helm-generated certificate across upgrades, with ``lookup`` answered
by a loopback API server: an upgrade keeps the certificate, a new generation
rotates it while the replaced CA stays trusted, and only one CA back."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.chart.fake_apiserver import FakeCluster, fake_cluster
from tests.chart.helm import CHART, NAMESPACE, RELEASE, run_helm


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        yield running


def _upgrade(
    cluster: FakeCluster, generation: int
) -> tuple[dict[str, Any], list[x509.Certificate]]:
    """Render as `helm upgrade` would against the cluster; store the Secret as the upgrade would."""
    result = run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=server",
        "--disable-openapi-validation",
        "--set",
        f"certificates.helm.generation={generation}",
        kubeconfig=cluster.kubeconfig,
    )
    assert result.returncode == 0, result.stderr
    manifests = [m for m in yaml.safe_load_all(result.stdout) if m]
    secret = next(
        m for m in manifests if m["kind"] == "Secret" and m["metadata"]["name"].endswith("-tls")
    )
    config = next(m for m in manifests if m["kind"] == "ValidatingWebhookConfiguration")
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    _store(cluster, secret)
    return secret, x509.load_pem_x509_certificates(bundle)


def _store(cluster: FakeCluster, secret: dict[str, Any]) -> None:
    """Store the Secret as an install leaves it: owned by the release, so Helm may update it."""
    stored = {**secret, "metadata": {**secret["metadata"]}}
    stored["metadata"]["annotations"] = {
        **secret["metadata"].get("annotations", {}),
        "meta.helm.sh/release-name": RELEASE,
        "meta.helm.sh/release-namespace": NAMESPACE,
    }
    cluster.put_secret(stored)


def _cert(secret: dict[str, Any], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def _verifies(serving: x509.Certificate, bundle: list[x509.Certificate]) -> bool:
    for ca in bundle:
        try:
            serving.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def test_upgrade_keeps_the_certificate(cluster: FakeCluster) -> None:
    first, first_bundle = _upgrade(cluster, generation=1)
    again, again_bundle = _upgrade(cluster, generation=1)
    assert again["data"] == first["data"]
    assert again_bundle == first_bundle and len(first_bundle) == 1
    assert _verifies(_cert(first, "tls.crt"), first_bundle)


def test_new_generation_rotates_and_trusts_the_previous_ca(cluster: FakeCluster) -> None:
    first, _ = _upgrade(cluster, generation=1)
    rotated, bundle = _upgrade(cluster, generation=2)
    old_ca, new_ca = _cert(first, "ca.crt"), _cert(rotated, "ca.crt")
    assert old_ca != new_ca
    assert rotated["data"]["ca-previous.crt"] == first["data"]["ca.crt"]
    # Replicas still serving the old certificate and those with the new one both verify.
    assert bundle == [new_ca, old_ca]
    assert _verifies(_cert(first, "tls.crt"), bundle)
    assert _verifies(_cert(rotated, "tls.crt"), bundle)
    assert rotated["metadata"]["annotations"]["guard.dev/certificate-generation"] == "2"

    kept, kept_bundle = _upgrade(cluster, generation=2)
    assert kept["data"] == rotated["data"] and kept_bundle == bundle

    third, third_bundle = _upgrade(cluster, generation=3)
    assert third_bundle == [_cert(third, "ca.crt"), new_ca], "only one CA back stays trusted"
    assert not _verifies(_cert(first, "tls.crt"), third_bundle)


def test_incomplete_secret_is_replaced(cluster: FakeCluster) -> None:
    first, _ = _upgrade(cluster, generation=1)
    broken = {**first, "data": {k: v for k, v in first["data"].items() if k != "tls.key"}}
    _store(cluster, broken)
    repaired, bundle = _upgrade(cluster, generation=1)
    assert repaired["data"]["tls.key"] and repaired["data"]["tls.crt"] != first["data"]["tls.crt"]
    assert _verifies(_cert(repaired, "tls.crt"), bundle)
