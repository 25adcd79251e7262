"""The running-operator harness: kmock's emulated API server, the real Kopf
operator with guard's handlers, TLS made for the test, and an HTTPS client
that plays kube-apiserver.

Each part runs on its own thread with its own event loop and stops through
a flag (never a sleep): the emulator's loop is stopped by an event set from
the test thread, the operator by Kopf's ``stop_flag``. Every request the
operator makes to the emulated API is recorded as ``(method, path?query)``
in ``EmulatedApi.requests``, for RBAC least-privilege checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import ipaddress
import json
import ssl
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import kmock
import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.kube.service import GuardService
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs
from controller.operator import create_registry

T = TypeVar("T")
START_TIMEOUT = 30.0
# Requests made by the tests themselves carry this header and are not recorded.
TEST_CLIENT_HEADER = "X-Guard-Test-Client"

GUARD_RESOURCES = {
    "guardpolicies": ("GuardPolicy", False),
    "guardtrusts": ("GuardTrust", False),
    "guardexceptions": ("GuardException", False),
    "reviewattestations": ("ReviewAttestation", True),
    "guardbaselines": ("GuardBaseline", False),
}
REPORT_RESOURCES = {
    "openreports.io/v1alpha1/reports": "Report",
    "wgpolicyk8s.io/v1alpha2/policyreports": "PolicyReport",
}
# Where the emulated API serves the workload kinds the owner index watches.
WORKLOAD_PLURALS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "ReplicaSet": "replicasets",
    "ReplicationController": "replicationcontrollers",
    "Job": "jobs",
    "CronJob": "cronjobs",
    "ControllerRevision": "controllerrevisions",
    "Pod": "pods",
}


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = True
        return context


def make_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Tls:
    """A throwaway CA and a server certificate for the webhook."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard.guard.svc")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = Tls(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


# --------------------------------------------------------------------------- emulated API


class RecordingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator that records the operator's requests and can hold
    the listing of a resource back (to test readiness)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorded: list[tuple[str, str]] = []
        self.held: dict[str, asyncio.Event] = {}

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if TEST_CLIENT_HEADER not in raw.headers:
            self.recorded.append((raw.method, raw.path_qs))
            plural = raw.path.rstrip("/").rsplit("/", 1)[-1]
            gate = self.held.get(plural)
            if gate is not None and raw.method == "GET" and "watch" not in raw.query:
                await gate.wait()
        return await super().__call__(raw)


class EmulatedApi:
    """kmock on its own thread; objects are created through its HTTP API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator = RecordingEmulator()
        self.emulator.resources.load_bundled()
        for plural, (kind, namespaced) in GUARD_RESOURCES.items():
            self.emulator.resources[f"guard.dev/v1alpha1/{plural}"] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                subresources={"status"},
            )
        # Policy reports (kmock bundles coordination.k8s.io Leases but no reports).
        for resource, kind in REPORT_RESOURCES.items():
            self.emulator.resources[resource] = kmock.ResourceInfo(
                kind=kind,
                namespaced=True,
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
            )
        self.url = ""
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="kmock", daemon=True)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every ``(method, path?query)`` the operator sent, in order."""
        return list(self.emulator.recorded)

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise RuntimeError("the emulated API server did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the emulated API server did not stop")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._started.set()
            await self._stop.wait()
            for gate in self.emulator.held.values():
                gate.set()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def hold_listing(self, plural: str) -> None:
        self.emulator.held[plural] = self.run(_new_event())

    def release_listing(self, plural: str) -> None:
        gate = self.emulator.held.pop(plural)
        self.loop.call_soon_threadsafe(gate.set)

    def _path(self, plural: str, namespace: str | None, name: str | None = None) -> str:
        base = "/apis/guard.dev/v1alpha1"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def create(self, plural: str, obj: Mapping[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        self.run(self._send("POST", self._path(plural, namespace), obj))

    def store_silently(self, plural: str, obj: Mapping[str, Any]) -> None:
        """Store an object without a watch event (as if the stream lagged)."""
        key = (
            f"guard.dev/v1alpha1/{plural}",
            obj["metadata"].get("namespace"),
            obj["metadata"]["name"],
        )

        async def store() -> None:
            async with self.emulator._lock:
                self.emulator.objects[key] = dict(obj)

        self.run(store())

    def _workload_path(self, obj: Mapping[str, Any]) -> tuple[str, str]:
        api_version = str(obj["apiVersion"])
        plural = WORKLOAD_PLURALS[str(obj["kind"])]
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        return f"{base}/namespaces/{obj['metadata']['namespace']}/{plural}", plural

    def create_workload(self, obj: Mapping[str, Any]) -> None:
        """Create a workload (any kind the owner index watches), with a watch event."""
        self.run(self._send("POST", self._workload_path(obj)[0], obj))

    def store_workload_silently(self, obj: Mapping[str, Any]) -> None:
        """Store a workload without a watch event (as if the stream lagged)."""
        key = (
            f"{obj['apiVersion']}/{self._workload_path(obj)[1]}",
            obj["metadata"]["namespace"],
            obj["metadata"]["name"],
        )

        async def store() -> None:
            async with self.emulator._lock:
                self.emulator.objects[key] = dict(obj)

        self.run(store())

    def delete(self, plural: str, name: str, namespace: str | None = None) -> None:
        self.run(self._send("DELETE", self._path(plural, namespace, name), None))

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.run(self._send("GET", self._path(plural, namespace, name), None))

    def send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Any request to the emulated API, as a test client (not recorded)."""
        return self.run(self._send(method, path, body))

    def delete_workload(self, obj: Mapping[str, Any]) -> None:
        path = self._workload_path(obj)[0] + "/" + obj["metadata"]["name"]
        self.run(self._send("DELETE", path, None))

    def events(self, namespace: str = "default") -> list[dict[str, Any]]:
        """The core/v1 Events stored in a namespace."""
        listing = self.run(self._send("GET", f"/api/v1/namespaces/{namespace}/events", None))
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    async def _send(self, method: str, path: str, body: Any) -> dict[str, Any]:
        headers = {TEST_CLIENT_HEADER: "1"}
        async with self.emulator.request(method, path, json=body, headers=headers) as response:
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            data: dict[str, Any] = await response.json()
            return data


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


# --------------------------------------------------------------------------- operator


@dataclass(frozen=True)
class Answer:
    """What the webhook said: HTTP status, and the AdmissionReview response if any."""

    status: int
    body: dict[str, Any]

    @property
    def response(self) -> dict[str, Any]:
        response: dict[str, Any] = self.body.get("response", {})
        return response

    @property
    def allowed(self) -> bool:
        return bool(self.response.get("allowed"))

    @property
    def message(self) -> str:
        return str(self.response.get("status", {}).get("message", self.body.get("message", "")))

    @property
    def code(self) -> int | None:
        code = self.response.get("status", {}).get("code")
        return int(code) if code is not None else None

    @property
    def warnings(self) -> list[str]:
        return list(self.response.get("warnings", []))


class RunningGuard:
    """``guard serve`` on its own thread, logged in to the emulated API."""

    def __init__(self, api: EmulatedApi, tls: Tls, settings: ServeSettings) -> None:
        self.api = api
        self.tls = tls
        registry = create_registry(login_handler=False, reports=bool(settings.reports))

        @kopf.on.login(registry=registry)
        def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
            # Test-only: the emulated API server speaks plain HTTP, no auth.
            return kopf.ConnectionInfo(server=api.url, insecure=True)

        files = FileInputs.load(settings.policy_paths, settings.trust_paths)
        self.service = GuardService(settings, files, registry=registry)
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="guard-operator", daemon=True)

    @property
    def runtime(self) -> Any:
        return self.service.runtime

    @property
    def port(self) -> int:
        port = self.service.server.bound_port
        assert port is not None
        return port

    @property
    def probes_port(self) -> int:
        port = self.service.probes_port
        assert port is not None
        return port

    def start(self, *, wait_ready: bool = True) -> RunningGuard:
        self._thread.start()
        if not self.service.server.listening.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the webhook server did not start: {self.error!r}")
        if wait_ready and not self.runtime.ready_flag.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("guard did not become ready")
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop")

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by start()/the tests
            self.error = exc

    async def _run(self) -> None:
        # The operator's loop, for work that must run where its clients live.
        self.loop = asyncio.get_running_loop()
        await self.service.run(stop_flag=self.stop_flag)

    # ----------------------------------------------------------- the API server's part

    def post(
        self,
        review: Mapping[str, Any] | bytes,
        path: str = "/validate",
        *,
        method: str = "POST",
    ) -> Answer:
        """Send a review over HTTPS with the CA verified, as kube-apiserver does."""
        body = review if isinstance(review, bytes) else json.dumps(review).encode()
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.tls.client_context(), timeout=START_TIMEOUT
        )
        try:
            connection.request(
                method, path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            parsed = json.loads(data) if data else {}
        except json.JSONDecodeError:
            parsed = {"message": data.decode(errors="replace")}
        return Answer(response.status, parsed)

    def probe(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.probes_port, timeout=START_TIMEOUT
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


def serve_settings(
    policies: Path, trust: Path | None, tls: Tls, audit: Path, **overrides: Any
) -> ServeSettings:
    settings = ServeSettings(
        policy_paths=(policies,),
        trust_paths=(trust,) if trust is not None else (),
        tls_cert=tls.cert,
        tls_key=tls.key,
        webhook_host="127.0.0.1",
        webhook_port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        audit_file=audit,
        audit_stdout=False,
        tls_check_interval=0.2,
        # Many tests deny unattested images, each with a fallback read; the
        # rate limit itself is tested with its own operator.
        fallback_burst=10_000.0,
        # Likewise for Events: every denial is posted; the limits have their own tests.
        event_burst=10_000.0,
        event_global_burst=10_000.0,
        # And for the audit detail: tests read the full records of one user.
        audit_detail_burst=10_000,
    )
    return replace(settings, **overrides)
