"""Each certificate mode gives the API server a caBundle that verifies the
certificate guard serves, for the name the API server calls."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509

from tests.chart.helm import NAMESPACE, render_chart
from tests.chart.scenarios import scenarios, throwaway_ca_pem

SCENARIOS = scenarios()


def _service_host(rendered_name: str) -> str:
    return f"{rendered_name}.{NAMESPACE}.svc"


def test_helm_mode_certificate_verifies_over_tls(tmp_path: Path) -> None:
    """Serve the generated certificate on loopback and connect as the API server does."""
    rendered = render_chart({})
    secret = rendered.one("Secret", "-tls")
    config = rendered.one("ValidatingWebhookConfiguration")
    deployment = rendered.one("Deployment")
    tls_volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"
    )
    assert tls_volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["type"] == "kubernetes.io/tls"
    (cert_file := tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    (key_file := tmp_path / "tls.key").write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    bundles = {base64.b64decode(w["clientConfig"]["caBundle"]) for w in config["webhooks"]}
    assert len(bundles) == 1
    host = _service_host(config["webhooks"][0]["clientConfig"]["service"]["name"])

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cadata=bundles.pop().decode())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=10)


def test_helm_mode_certificate_names_and_generation() -> None:
    rendered = render_chart({"certificates": {"helm": {"generation": 4, "validityDays": 365}}})
    secret = rendered.one("Secret", "-tls")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    service = rendered.one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"][
        "service"
    ]["name"]
    assert _service_host(service) in names
    assert f"{service}.{NAMESPACE}.svc.cluster.local" in names
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    assert secret["metadata"]["annotations"]["guard.dev/certificate-generation"] == "4"
    # A first install has no earlier CA to keep trusting.
    assert "ca-previous.crt" not in secret["data"]
    assert "ca.key" not in secret["data"], "the CA key is never stored"


def test_existing_secret_mode_uses_the_given_ca() -> None:
    rendered = render_chart(SCENARIOS["existing-secret"])
    config = rendered.one("ValidatingWebhookConfiguration")
    for webhook in config["webhooks"]:
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]).decode() == throwaway_ca_pem()
    assert not rendered.of_kind("Certificate")
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == ["guard-trust"]
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == "guard-serving"


def test_cert_manager_mode_injects_the_serving_ca() -> None:
    rendered = render_chart(SCENARIOS["cert-manager"])
    config = rendered.one("ValidatingWebhookConfiguration")
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    namespace, name = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    serving = rendered.one("Certificate", "-serving")
    assert (namespace, name) == (NAMESPACE, serving["metadata"]["name"])
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert (
        next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"]
        == serving["spec"]["secretName"]
    )
    service = config["webhooks"][0]["clientConfig"]["service"]["name"]
    assert _service_host(service) in serving["spec"]["dnsNames"]
    # The serving certificate renews under a long-lived private CA, so caBundle stays put.
    ca_issuer = rendered.one("Issuer", "-ca")
    assert serving["spec"]["issuerRef"]["name"] == ca_issuer["metadata"]["name"]
    ca = rendered.one("Certificate", "-ca")
    assert (
        ca["spec"]["isCA"] is True
        and ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    )
    assert not [s for s in rendered.of_kind("Secret") if s["metadata"]["name"].endswith("-tls")]


def test_cert_manager_mode_with_your_issuer() -> None:
    rendered = render_chart(SCENARIOS["cert-manager-issuer"])
    assert rendered.of_kind("Issuer") == []
    assert rendered.one("Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
