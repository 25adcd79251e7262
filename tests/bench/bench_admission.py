"""Admission throughput, latency and CPU: guard next to Kopf allow-all and bare aiohttp.

Three servers are started **at the same time**, each in its own process:

- **bare aiohttp**: an aiohttp TLS server that parses the review and answers
  "allowed" (the floor: HTTP, TLS and JSON only);
- **kopf allow-all**: the same Kopf version with its own webhook server and one
  async validating handler per kind that admits everything, against kmock;
- **guard**: ``guard serve``'s service (the real Kopf operator with guard's
  server and handlers) against kmock, with the default policy bundle, the demo
  trust, an indexed ReviewAttestation and its audit file.

They are then measured in **alternating rounds** (the order rotates every
round), so load from outside this run lands on all three alike, and the
figures are per-round ratios (min / median / max) rather than one run of each.
Every server reports its own process CPU time before and after each block:
CPU per request is steadier than wall time on a shared machine.

Two realistic workloads, each request a different object with its own uid (no
server may be flattered by seeing the same object twice):

- **deployment**: a person creates a Deployment with three containers, an init
  container, env, probes, volumes and a verified review attestation; each one
  has other memory limits, a field the rules read, so guard remembers no rule
  outcome from one to the next;
- **pod**: the ReplicaSet controller creates a Pod for such a Deployment (the
  most frequent request in a real cluster); like a ReplicaSet's Pods they
  differ in name, uid and owner, not in what the rules read.

Targets (printed, never asserted): guard >= 80% of Kopf allow-all's throughput
in the median round, no round under 60%, guard's CPU per request <= 1.3x Kopf
allow-all's, p99 < 3 ms in the median round.

``python -m tests.bench admission`` (``GUARD_BENCH_ROUNDS`` and
``GUARD_BENCH_REQUESTS`` change the number of rounds and of requests per block).
"""

from __future__ import annotations

import asyncio
import copy
import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("GUARD_BENCH_ROUNDS", "6"))
REQUESTS = int(os.environ.get("GUARD_BENCH_REQUESTS", "200"))
WARMUP = 100
IN_FLIGHT = (1, 32)
START_TIMEOUT = 60.0
SERVER_NAMES = ("bare aiohttp", "kopf allow-all", "guard")
POD_CREATOR = "system:serviceaccount:kube-system:replicaset-controller"


# --------------------------------------------------------------------------- payloads


def _container(name: str, image: str, index: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080 + index, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "REGION", "value": "eu-west-1"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
            },
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080 + index},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8080 + index},
            "periodSeconds": 5,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def pod_spec(image: str) -> dict[str, Any]:
    """A production-shaped pod spec: three containers, an init container, probes, volumes."""
    migrate = _container("migrate", image, 0)
    for key in ("ports", "livenessProbe", "readinessProbe"):
        migrate.pop(key)
    return {
        "initContainers": [migrate],
        "containers": [_container(name, image, i) for i, name in enumerate(("app", "worker", "metrics"))],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "app-config"}},
        ],
        "serviceAccountName": "web",
        "securityContext": {"runAsUser": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
    }  # fmt: skip


def workloads() -> dict[str, Callable[[int], tuple[dict[str, Any], str]]]:
    """Each workload makes its ``i``-th object and names who sends it."""
    demo = yaml.safe_load((ROOT / "examples" / "manifests" / "web.yaml").read_text())
    image = demo["spec"]["template"]["spec"]["containers"][0]["image"]
    spec = pod_spec(image)

    def deployment(i: int) -> tuple[dict[str, Any], str]:
        obj = copy.deepcopy(demo)
        obj["metadata"]["name"] = f"web-{i}"
        obj["metadata"]["labels"]["release"] = str(i)
        obj["spec"]["template"]["spec"] = copy.deepcopy(spec)
        # A field the rules read differs every time, so no rule outcome is
        # remembered from one Deployment to the next.
        for container in obj["spec"]["template"]["spec"]["containers"]:
            container["resources"]["limits"]["memory"] = f"{256 + i}Mi"
        obj["spec"]["template"]["metadata"]["annotations"] = {"build": str(i)}
        return obj, "carol@example.com"

    def pod(i: int) -> tuple[dict[str, Any], str]:
        labels = dict(demo["spec"]["template"]["metadata"]["labels"])
        labels["pod-template-hash"] = "5d8f7c9b4"
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"web-5d8f7c9b4-{i:05d}",
                "generateName": "web-5d8f7c9b4-",
                "namespace": "shop",
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "web-5d8f7c9b4",
                        "uid": str(uuid.UUID(int=i)),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(spec),
        }
        return obj, POD_CREATOR

    return {"deployment": deployment, "pod": pod}


def review_bodies(workload: str, count: int, start: int = 0) -> list[bytes]:
    """AdmissionReviews for ``count`` different objects, each with its own uid."""
    from tests.kube.helpers import admission_review

    make = workloads()[workload]
    bodies = []
    for i in range(start, start + count):
        obj, user = make(i)
        review = admission_review(obj, user=user)
        bodies.append(json.dumps(review).encode())
    return bodies


# --------------------------------------------------------------------------- servers (child processes)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _control(conn: multiprocessing.connection.Connection) -> None:
    """Answer the parent until it says stop: ``cpu`` gets this process's CPU seconds."""
    while True:
        message = conn.recv()
        if message == "stop":
            return
        conn.send(time.process_time())


def start_guard(tls_dir: Path) -> tuple[Any, Any]:
    """kmock and ``guard serve`` (the default bundle, the demo trust), started."""
    from tests.operator.harness import EmulatedApi, RunningGuard, make_tls, serve_settings

    tls = make_tls(tls_dir)
    api = EmulatedApi()
    api.start()
    settings = serve_settings(
        ROOT / "policies",
        ROOT / "examples" / "keys" / "demo-trust.yaml",
        tls,
        tls_dir / "audit.jsonl",
    )
    return api, RunningGuard(api, tls, settings).start()


def _serve_guard(tls_dir: Path, conn: multiprocessing.connection.Connection) -> None:
    # What ``guard serve`` does once its modules and files are loaded.
    from controller.kube.service import freeze_start_up_objects
    from tests.operator import harness  # noqa: F401  (loaded before the freeze, as in guard serve)

    freeze_start_up_objects()
    api, guard = start_guard(tls_dir)
    attestation = yaml.safe_load((ROOT / "examples/attestations/app-reviewed.yaml").read_text())
    attestation["metadata"]["namespace"] = "shop"
    api.create("reviewattestations", attestation)
    name = attestation["metadata"]["name"]
    if not guard.runtime.watch_log.wait_for("ReviewAttestation", "shop", name, "ADDED", 30):
        raise RuntimeError("the attestation was not indexed")
    conn.send((guard.port, "/validate"))
    _control(conn)
    guard.stop()
    api.stop()


def _serve_kopf_allow_all(tls_dir: Path, conn: multiprocessing.connection.Connection) -> None:
    import kopf

    from tests.operator.harness import EmulatedApi, make_tls

    tls = make_tls(tls_dir)
    api = EmulatedApi()
    api.start()
    listening = threading.Event()

    class Server(kopf.WebhookServer):  # type: ignore[misc]
        async def __call__(self, fn: Any) -> Any:
            async for config in super().__call__(fn):
                listening.set()
                yield config

    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url, insecure=True)

    async def allow(**_: Any) -> None:
        return None

    for group, plural in (("apps", "deployments"), ("", "pods")):
        kopf.on.validate(group, "v1", plural, id="allow", registry=registry)(allow)

    port = _free_port()
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.posting.enabled = False
    settings.admission.server = Server(
        addr="127.0.0.1", port=port, certfile=str(tls.cert), pkeyfile=str(tls.key)
    )
    stop = threading.Event()

    def run() -> None:
        asyncio.run(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=True,
                stop_flag=stop,
            )
        )

    thread = threading.Thread(target=run, name="kopf-allow-all", daemon=True)
    thread.start()
    if not listening.wait(START_TIMEOUT):
        raise RuntimeError("Kopf's webhook server did not start")
    conn.send((port, "/allow"))
    _control(conn)
    stop.set()
    thread.join(START_TIMEOUT)
    api.stop()


def _serve_bare(tls_dir: Path, conn: multiprocessing.connection.Connection) -> None:
    from aiohttp import web

    from tests.operator.harness import make_tls

    tls = make_tls(tls_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert), str(tls.key))

    async def answer(request: web.Request) -> web.Response:
        review = await request.json()
        uid = review["request"]["uid"]
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True},
            }
        )

    async def serve() -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/validate", answer)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        conn.send((port, "/validate"))
        await asyncio.get_running_loop().run_in_executor(None, _control, conn)
        await runner.cleanup()

    asyncio.run(serve())


SERVERS = {
    "bare aiohttp": _serve_bare,
    "kopf allow-all": _serve_kopf_allow_all,
    "guard": _serve_guard,
}


@dataclass
class Running:
    name: str
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    url: str
    ca: Path

    def cpu(self) -> float:
        """The server process's CPU seconds so far (user + system, all threads)."""
        self.conn.send("cpu")
        return float(self.conn.recv())

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(START_TIMEOUT)
        if self.process.is_alive():
            self.process.terminate()


def start_all(directory: Path) -> list[Running]:
    """Start every server at once; return when each listens (and guard is ready)."""
    context = multiprocessing.get_context("spawn")
    pending = []
    for name in SERVER_NAMES:
        parent, child = context.Pipe()
        tls_dir = directory / name.replace(" ", "-")
        process = context.Process(target=SERVERS[name], args=(tls_dir, child), name=name)
        process.start()
        pending.append((name, process, parent, tls_dir))
    running = []
    for name, process, parent, tls_dir in pending:
        if not parent.poll(START_TIMEOUT):
            for _, other, _, _ in pending:
                other.terminate()
            raise RuntimeError(f"{name} did not start")
        port, path = parent.recv()
        url = f"https://127.0.0.1:{port}{path}"
        running.append(Running(name, process, parent, url, tls_dir / "ca.crt"))
    return running


# --------------------------------------------------------------------------- client


@dataclass
class Block:
    """One server's figures for one block of requests."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    allowed: int
    count: int


@dataclass
class Series:
    blocks: list[Block] = field(default_factory=list)


async def _send(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        data = await r.read()
    elapsed = time.perf_counter() - started
    return elapsed, bool(json.loads(data).get("response", {}).get("allowed"))


async def _block(
    running: Running, session: aiohttp.ClientSession, bodies: list[bytes], in_flight: int
) -> Block:
    queue: Iterator[bytes] = iter(bodies)
    results: list[tuple[float, bool]] = []

    async def worker() -> None:
        for body in queue:
            results.append(await _send(session, running.url, body))

    cpu_before = running.cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    cpu = running.cpu() - cpu_before
    latencies = sorted(seconds for seconds, _ in results)
    return Block(
        rate=len(results) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=statistics.quantiles(latencies, n=100)[98] * 1000,
        cpu_us=cpu / len(results) * 1e6,
        allowed=sum(1 for _, ok in results if ok),
        count=len(results),
    )


async def _run(
    servers: list[Running], bodies: dict[str, list[bytes]]
) -> dict[tuple[str, int, str], Series]:
    series: dict[tuple[str, int, str], Series] = {}
    sessions = {}
    for running in servers:
        context = ssl.create_default_context(cafile=str(running.ca))
        connector = aiohttp.TCPConnector(ssl=context, limit=max(IN_FLIGHT))
        sessions[running.name] = aiohttp.ClientSession(connector=connector)
    try:
        for running in servers:
            for items in bodies.values():
                for body in items[:WARMUP]:
                    await _send(sessions[running.name], running.url, body)
        for round_ in range(ROUNDS):
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for workload, items in bodies.items():
                for in_flight in IN_FLIGHT:
                    offset = WARMUP + REQUESTS * (2 * round_ + IN_FLIGHT.index(in_flight))
                    block_bodies = items[offset : offset + REQUESTS]
                    for running in order:
                        block = await _block(
                            running, sessions[running.name], block_bodies, in_flight
                        )
                        key = (workload, in_flight, running.name)
                        series.setdefault(key, Series()).blocks.append(block)
    finally:
        for session in sessions.values():
            await session.close()
    return series


def _spread(values: list[float]) -> str:
    return f"{min(values):.0%} / {statistics.median(values):.0%} / {max(values):.0%}"


def report(series: dict[tuple[str, int, str], Series]) -> None:
    print(
        f"{ROUNDS} alternating rounds x {REQUESTS} AdmissionReviews per server, workload and "
        "concurrency; HTTPS, keep-alive; every object different"
    )
    print(
        f"{'workload':<10} {'in flight':>9} {'server':<15} {'req/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU us/req':>10} {'allowed':>8}"
    )
    for (workload, in_flight, name), s in series.items():
        # The median round by throughput, so p50/p99 belong to one real round.
        ranked = sorted(s.blocks, key=lambda b: b.rate)
        mid = ranked[len(ranked) // 2]
        cpu = sum(b.cpu_us * b.count for b in s.blocks) / sum(b.count for b in s.blocks)
        allowed = sum(b.allowed for b in s.blocks)
        total = sum(b.count for b in s.blocks)
        print(
            f"{workload:<10} {in_flight:>9} {name:<15} {mid.rate:>7.0f} {mid.p50_ms:>7.2f} "
            f"{mid.p99_ms:>7.2f} {cpu:>10.0f} {allowed:>4}/{total:<4}"
        )
    print(
        "per-round throughput ratios, min / median / max (target: guard/kopf median >= 80%, min >= 60%)"
    )
    for workload in {k[0] for k in series}:
        for in_flight in IN_FLIGHT:
            g = series[(workload, in_flight, "guard")].blocks
            k = series[(workload, in_flight, "kopf allow-all")].blocks
            b = series[(workload, in_flight, "bare aiohttp")].blocks
            cpu_g = statistics.median(x.cpu_us for x in g)
            cpu_k = statistics.median(x.cpu_us for x in k)
            print(
                f"  {workload:<10} in flight {in_flight:>2}: guard/kopf "
                f"{_spread([x.rate / y.rate for x, y in zip(g, k, strict=True)])}; "
                f"kopf/bare {_spread([x.rate / y.rate for x, y in zip(k, b, strict=True)])}; "
                f"CPU guard/kopf {cpu_g / cpu_k:.2f}x (target <= 1.3x)"
            )
    for (workload, _, name), s in series.items():
        if name != "bare aiohttp" and sum(b.allowed for b in s.blocks) != sum(
            b.count for b in s.blocks
        ):
            print(f"WARNING: {name} did not allow every {workload} review: not the workload meant")


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    per_workload = WARMUP + REQUESTS * 2 * ROUNDS
    bodies = {name: review_bodies(name, per_workload) for name in workloads()}
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as scratch:
        servers = start_all(Path(scratch))
        try:
            series = asyncio.run(_run(servers, bodies))
        finally:
            for running in servers:
                running.stop()
    report(series)


if __name__ == "__main__":
    main()
