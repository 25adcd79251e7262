"""What inheritance costs: the owner index's memory, and admission while it churns.

1. **State**: the owner index as the operator holds it (guard's
   ``OwnerIndex`` of ``OwnerRecord`` values, and the memory Kopf keeps of
   every object it watches) for 10,000 Deployments with
   10 ReplicaSets each (110,000 owners), measured with ``tracemalloc``:
   bytes per owner and the total. Each ReplicaSet runs its own image (old
   revisions differ), with the labels a real one carries.
2. **Admission under churn**: ``guard serve`` (the real Kopf operator)
   against kmock in a child process, with a GuardBaseline naming a
   Deployment and its ReplicaSet; the client sends 2,000 Pod creations by
   the replicaset-controller (each admitted as inherited), first with a
   quiet API, then while 50 ReplicaSet updates a second stream into the
   owner index. Latencies are the client's, per request.

The numbers are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import multiprocessing
import multiprocessing.connection
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = 10_000
REPLICASETS_EACH = 10
REQUESTS = 2000
WARMUP = 200
UPDATES_PER_SECOND = 50
START_TIMEOUT = 60.0
IMAGE = "registry.example/acme/web@sha256:"


def _image(n: int) -> str:
    return IMAGE + f"{n:064x}"


def _owner(
    kind: str, name: str, uid: str, image: str, owner: dict[str, Any] | None
) -> dict[str, Any]:
    from tests.kube.helpers import owned, workload

    body = workload(kind, name, "shop", image, labels={"app": name.split("-")[0], "team": "web"})
    body["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = uid[:10]
    return owned(body, owner, uid)


# --------------------------------------------------------------------------- state


def measure_state() -> tuple[int, int, int]:
    """Bytes per owner of the owner index (guard's records in Kopf's indexer),
    bytes per owner of Kopf's own memory of every watched object, and the
    total of both."""
    return asyncio.run(_measure_state())


async def _measure_state() -> tuple[int, int, int]:
    import kopf
    from kopf._core.reactor.inventory import ResourceMemories

    from controller.kube.owners import OwnerIndex

    # The runtime's owner index, and the memory Kopf keeps of every object
    # it watches (a copy of the operator's memo).
    index = OwnerIndex()
    memories = ResourceMemories()
    memo = kopf.Memo(runtime=object())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    count = 0
    memory_bytes = 0
    for d in range(DEPLOYMENTS):
        deployment = _owner("Deployment", f"app{d}", str(uuid.uuid4()), _image(d), None)
        bodies = [deployment] + [
            _owner("ReplicaSet", f"app{d}-{r}", str(uuid.uuid4()), _image(d * 100 + r), deployment)
            for r in range(REPLICASETS_EACH)
        ]
        for body in bodies:
            index.observe(str(body["kind"]), body, deleted=False)
            start = tracemalloc.get_traced_memory()[0]
            await memories.recall(body, memobase=memo, noticed_by_listing=True)
            memory_bytes += tracemalloc.get_traced_memory()[0] - start
            count += 1
        # The bodies go, as the watch stream's do: what stays is what is kept.
        del bodies, deployment
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(index) == count
    return (total - memory_bytes) // count, memory_bytes // count, total


# --------------------------------------------------------------------------- churn


def _serve_api(conn: multiprocessing.connection.Connection) -> None:
    """The API server's part, in its own process as in a cluster: kmock with
    the baselined Deployment and ReplicaSet, and the ReplicaSet stream."""
    from tests.kube.helpers import baseline_document
    from tests.operator.harness import EmulatedApi

    api = EmulatedApi()
    api.start()
    deployment = _owner("Deployment", "legacy", str(uuid.uuid4()), _image(1), None)
    replicaset = _owner("ReplicaSet", "legacy-1", str(uuid.uuid4()), _image(1), deployment)
    for body in (deployment, replicaset):
        api.create_workload(body)
    api.create("guardbaselines", baseline_document("bench", [deployment, replicaset]))
    stop = threading.Event()
    streaming = threading.Event()
    sent = [0]
    updates = [0]

    def done(future: Any) -> None:
        # Writes still pending when the run ends are cancelled: not counted.
        if not future.cancelled() and future.exception() is None:
            updates[0] += 1

    def stream() -> None:
        # 50 ReplicaSet writes a second (new ones and changes of earlier ones),
        # each a watch event guard's owner index takes in.
        written: list[str] = []
        tick = 1.0 / UPDATES_PER_SECOND
        next_at = time.perf_counter()
        while not stop.is_set():
            if not streaming.is_set():
                streaming.wait(0.1)
                next_at = time.perf_counter()
                continue
            n = sent[0]
            if n % 2 == 0 or not written:
                body = _owner("ReplicaSet", f"churn-{n}", str(uuid.uuid4()), _image(n), deployment)
                path = "/apis/apps/v1/namespaces/shop/replicasets"
                write = api._send("POST", path, body)
                written.append(body["metadata"]["name"])
            else:
                name = written[n % len(written)]
                path = f"/apis/apps/v1/namespaces/shop/replicasets/{name}"
                write = api._send("PATCH", path, {"spec": {"replicas": n % 7}})
            # Sent without waiting, as many clients write to an API server at
            # once: the rate is the one asked for, whatever one write takes.
            future = asyncio.run_coroutine_threadsafe(write, api.loop)
            future.add_done_callback(done)
            sent[0] += 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))

    streamer = threading.Thread(target=stream, name="churn", daemon=True)
    streamer.start()
    conn.send((api.url, replicaset))
    while True:
        message = conn.recv()
        if message == "stream":
            streaming.set()
            conn.send("streaming")
        elif message == "count":
            conn.send((sent[0], updates[0]))
        else:
            break
    stop.set()
    streaming.set()
    streamer.join(START_TIMEOUT)
    api.stop()


@dataclasses.dataclass(frozen=True)
class _RemoteApi:
    """What ``RunningGuard`` needs of the emulated API: where it is."""

    url: str


def _serve_guard(tls_dir: Path, api_url: str, conn: multiprocessing.connection.Connection) -> None:
    from tests.operator.harness import RunningGuard, make_tls, serve_settings

    tls = make_tls(tls_dir)
    settings = serve_settings(
        ROOT / "policies", ROOT / "examples" / "keys" / "demo-trust.yaml", tls,
        tls_dir / "audit.jsonl",
    )  # fmt: skip
    guard = RunningGuard(_RemoteApi(api_url), tls, settings).start()  # type: ignore[arg-type]
    if not guard.runtime.watch_log.wait_for("GuardBaseline", None, "bench", "LISTED", 30):
        raise RuntimeError("the baseline was not indexed")
    conn.send(guard.port)
    conn.recv()
    guard.stop()


def _bodies(replicaset: dict[str, Any], count: int) -> list[bytes]:
    from tests.kube.helpers import CONTROLLER_USER, admission_review

    template = replicaset["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "legacy-1-x",
            "namespace": "shop",
            "labels": template["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "legacy-1",
                    "uid": replicaset["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }
    review = admission_review(pod, user=CONTROLLER_USER, groups=("system:serviceaccounts",))
    bodies = []
    for _ in range(count):
        review["request"]["uid"] = str(uuid.uuid4())
        bodies.append(json.dumps(review).encode())
    return bodies


async def _latencies(url: str, ca: Path, bodies: list[bytes]) -> tuple[list[float], int]:
    import ssl

    import aiohttp

    context = ssl.create_default_context(cafile=str(ca))
    allowed = 0
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for position, body in enumerate(bodies):
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                data = await r.read()
            if position >= WARMUP:
                latencies.append(time.perf_counter() - started)
                allowed += bool(json.loads(data)["response"]["allowed"])
    return latencies, allowed


def _summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, statistics.quantiles(ordered, n=100)[98] * 1000


def measure_churn() -> list[tuple[str, float, float, int, float, float]]:
    rows = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as scratch:
        api_conn, api_child = context.Pipe()
        guard_conn, guard_child = context.Pipe()
        api = context.Process(target=_serve_api, args=(api_child,), name="kmock")
        api.start()
        guard: multiprocessing.process.BaseProcess | None = None
        try:
            if not api_conn.poll(START_TIMEOUT):
                raise RuntimeError("kmock did not start")
            api_url, replicaset = api_conn.recv()
            tls_dir = Path(scratch) / "guard"
            guard = context.Process(
                target=_serve_guard, args=(tls_dir, api_url, guard_child), name="guard"
            )
            guard.start()
            if not guard_conn.poll(START_TIMEOUT):
                raise RuntimeError("guard did not start")
            url = f"https://127.0.0.1:{guard_conn.recv()}/validate"
            ca = tls_dir / "ca.crt"
            bodies = _bodies(replicaset, WARMUP + REQUESTS)
            latencies, allowed = asyncio.run(_latencies(url, ca, bodies))
            rows.append(("quiet API", *_summary(latencies), allowed, 0.0, 0.0))
            api_conn.send("stream")
            api_conn.recv()
            api_conn.send("count")
            sent_before, done_before = api_conn.recv()
            started = time.perf_counter()
            latencies, allowed = asyncio.run(_latencies(url, ca, bodies))
            elapsed = time.perf_counter() - started
            api_conn.send("count")
            sent, done = api_conn.recv()
            issued = (sent - sent_before) / elapsed
            completed = (done - done_before) / elapsed
            rows.append(("ReplicaSet churn", *_summary(latencies), allowed, issued, completed))
        finally:
            for conn, process in ((guard_conn, guard), (api_conn, api)):
                if process is None:
                    continue
                conn.send("stop")
                process.join(START_TIMEOUT)
                if process.is_alive():
                    process.terminate()
    return rows


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    per_owner, kopf_per_owner, total = measure_state()
    owners = DEPLOYMENTS * (REPLICASETS_EACH + 1)
    print(
        f"owner index: {per_owner} bytes per owner (guard's record in its index) + "
        f"{kopf_per_owner} bytes of Kopf's memory of each watched object; "
        f"{total / 2**20:.1f} MiB for {DEPLOYMENTS:,} Deployments x {REPLICASETS_EACH} "
        f"ReplicaSets ({owners:,} owners)"
    )
    print(f"{REQUESTS} inherited Pod creations by the replicaset-controller, HTTPS, one at a time")
    print(
        f"{'API':<18} {'p50 ms':>8} {'p99 ms':>8} {'allowed':>8} {'writes/s sent':>14} {'done':>6}"
    )
    for name, p50, p99, allowed, issued, completed in measure_churn():
        print(f"{name:<18} {p50:>8.2f} {p99:>8.2f} {allowed:>8} {issued:>14.1f} {completed:>6.1f}")


if __name__ == "__main__":
    main()
