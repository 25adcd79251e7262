"""Admission throughput and latency: guard next to Kopf allow-all and bare aiohttp.

2,000 AdmissionReviews (a Deployment running the demo image, attested by a
ReviewAttestation; the default policy bundle; the demo trust) are sent over
HTTPS with a kept-alive connection, one at a time and then with 32 in
flight, to three servers started in the same run:

- **guard**: ``guard serve`` (the real Kopf operator with guard's server and
  handlers) against kmock, writing its audit file;
- **kopf allow-all**: the same Kopf version with its own webhook server and
  one async validating handler that admits everything, against kmock;
- **bare aiohttp**: an aiohttp TLS server that parses the review and
  answers "allowed" (the floor: HTTP, TLS and JSON only).

Each server runs in its own process so the client (this process) does not
share its interpreter lock; on a 2-core machine client and server get one
core each. Latencies are measured by the client, per request. The target:
guard at 70% or more of Kopf allow-all's throughput, p99 under 5 ms
sequentially. The numbers are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 2000
WARMUP = 200
IN_FLIGHT = 32
START_TIMEOUT = 60.0


# --------------------------------------------------------------------------- payloads


def review_bodies(count: int) -> list[bytes]:
    """AdmissionReviews for the demo Deployment by a person, each with its own uid."""
    from tests.kube.helpers import admission_review

    deployment = yaml.safe_load((ROOT / "examples" / "manifests" / "web.yaml").read_text())
    template = admission_review(deployment, user="carol@example.com")
    bodies = []
    for _ in range(count):
        template["request"]["uid"] = str(uuid.uuid4())
        bodies.append(json.dumps(template).encode())
    return bodies


# --------------------------------------------------------------------------- servers (child processes)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    api, guard = start_guard(tls_dir)
    attestation = yaml.safe_load((ROOT / "examples/attestations/app-reviewed.yaml").read_text())
    attestation["metadata"]["namespace"] = "shop"
    api.create("reviewattestations", attestation)
    name = attestation["metadata"]["name"]
    if not guard.runtime.watch_log.wait_for("ReviewAttestation", "shop", name, "ADDED", 30):
        raise RuntimeError("the attestation was not indexed")
    conn.send((guard.port, "/validate"))
    conn.recv()
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

    @kopf.on.validate("apps", "v1", "deployments", id="allow", registry=registry)
    async def allow(**_: Any) -> None:
        return None

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
    conn.recv()
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
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await runner.cleanup()

    asyncio.run(serve())


SERVERS = {
    "bare aiohttp": _serve_bare,
    "kopf allow-all": _serve_kopf_allow_all,
    "guard": _serve_guard,
}


@dataclass
class Running:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    url: str
    ca: Path

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(START_TIMEOUT)
        if self.process.is_alive():
            self.process.terminate()


def start(name: str, directory: Path) -> Running:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    tls_dir = directory / name.replace(" ", "-")
    process = context.Process(target=SERVERS[name], args=(tls_dir, child), name=name)
    process.start()
    if not parent.poll(START_TIMEOUT):
        process.terminate()
        raise RuntimeError(f"{name} did not start")
    port, path = parent.recv()
    return Running(process, parent, f"https://127.0.0.1:{port}{path}", tls_dir / "ca.crt")


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Measured:
    rate: float
    p50_ms: float
    p99_ms: float
    allowed: int


async def _send(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        data = await r.read()
    elapsed = time.perf_counter() - started
    return elapsed, bool(json.loads(data).get("response", {}).get("allowed"))


async def _measure(running: Running, bodies: list[bytes], in_flight: int) -> Measured:
    context = ssl.create_default_context(cafile=str(running.ca))
    connector = aiohttp.TCPConnector(ssl=context, limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        for body in bodies[:WARMUP]:
            await _send(session, running.url, body)
        measured = bodies[WARMUP:]
        queue: Iterator[bytes] = iter(measured)
        results: list[tuple[float, bool]] = []

        async def worker() -> None:
            for body in queue:
                results.append(await _send(session, running.url, body))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in results)
    quantiles = statistics.quantiles(latencies, n=100)
    return Measured(
        rate=len(results) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=quantiles[98] * 1000,
        allowed=sum(1 for _, ok in results if ok),
    )


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    bodies = review_bodies(WARMUP + REQUESTS)
    table: dict[tuple[str, int], Measured] = {}
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as scratch:
        for name in SERVERS:
            running = start(name, Path(scratch))
            try:
                for in_flight in (1, IN_FLIGHT):
                    table[(name, in_flight)] = asyncio.run(_measure(running, bodies, in_flight))
            finally:
                running.stop()
    print(f"{REQUESTS} AdmissionReviews per run (after {WARMUP} warm-up), HTTPS, keep-alive")
    print(
        f"{'server':<16} {'in flight':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'allowed':>8}"
    )
    for (name, in_flight), m in table.items():
        print(
            f"{name:<16} {in_flight:>9} {m.rate:>8.0f} {m.p50_ms:>8.2f} {m.p99_ms:>8.2f} "
            f"{m.allowed:>8}"
        )
    for in_flight in (1, IN_FLIGHT):
        guard, kopf_ = table[("guard", in_flight)], table[("kopf allow-all", in_flight)]
        bare = table[("bare aiohttp", in_flight)]
        print(
            f"in flight {in_flight:>2}: guard / kopf allow-all = {guard.rate / kopf_.rate:.0%} "
            f"(target >= 70%), kopf allow-all / bare aiohttp = {kopf_.rate / bare.rate:.0%}, "
            f"guard p99 {guard.p99_ms:.2f} ms" + (" (target < 5 ms)" if in_flight == 1 else "")
        )
    if table[("guard", 1)].allowed != REQUESTS:
        print("WARNING: guard did not allow every review: the workload is not what was meant")


if __name__ == "__main__":
    main()
