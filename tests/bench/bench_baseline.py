"""What inheritance costs: the owner index's memory, and admission while it churns.

1. **State**: the owner index as the operator holds it (Kopf's own indexer
   structures, guard's ``OwnerRecord`` values) for 10,000 Deployments with
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
    from kopf._core.engines.indexing import OperatorIndexer
    from kopf._core.reactor.inventory import ResourceMemories

    from controller.kube.owners import owner_record

    # The indexer Kopf keeps for the ``guard_owners`` handler, and the memory
    # it keeps of every object it watches (a copy of the operator's memo).
    index = OperatorIndexer()
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
            record = owner_record(str(body["kind"]), body)
            assert record is not None
            key = (body["metadata"]["namespace"], body["metadata"]["name"], record.uid)
            index.replace(key, {(record.namespace, record.uid): record})
            start = tracemalloc.get_traced_memory()[0]
            await memories.recall(body, memobase=memo, noticed_by_listing=True)
            memory_bytes += tracemalloc.get_traced_memory()[0] - start
            count += 1
        # The bodies go, as the watch stream's do: what stays is what is kept.
        del bodies, deployment
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(index.index) == count
    return (total - memory_bytes) // count, memory_bytes // count, total


# --------------------------------------------------------------------------- churn


def _serve(tls_dir: Path, conn: multiprocessing.connection.Connection) -> None:
    import yaml

    from tests.bench.bench_admission import start_guard
    from tests.kube.helpers import baseline_document

    api, guard = start_guard(tls_dir)
    deployment = _owner("Deployment", "legacy", str(uuid.uuid4()), _image(1), None)
    replicaset = _owner("ReplicaSet", "legacy-1", str(uuid.uuid4()), _image(1), deployment)
    for body in (deployment, replicaset):
        api.create_workload(body)
    api.create("guardbaselines", baseline_document("bench", [deployment, replicaset]))
    if not guard.runtime.watch_log.wait_for("GuardBaseline", None, "bench", "ADDED", 30):
        raise RuntimeError("the baseline was not indexed")
    stop = threading.Event()
    streaming = threading.Event()
    updates = [0]

    def stream() -> None:
        # 50 ReplicaSet writes a second (new ones and updates of earlier ones),
        # each a watch event the owner index takes in.
        written: list[dict[str, Any]] = []
        tick = 1.0 / UPDATES_PER_SECOND
        next_at = time.perf_counter()
        while not stop.is_set():
            if not streaming.is_set():
                streaming.wait(0.1)
                next_at = time.perf_counter()
                continue
            n = updates[0]
            if n % 2 == 0 or not written:
                body = _owner("ReplicaSet", f"churn-{n}", str(uuid.uuid4()), _image(n), deployment)
                api.create_workload(body)
                written.append(body)
            else:
                name = written[n % len(written)]["metadata"]["name"]
                api.run(
                    api._send(
                        "PATCH",
                        f"/apis/apps/v1/namespaces/shop/replicasets/{name}",
                        {"spec": {"replicas": n % 7}},
                    )
                )
            updates[0] += 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))

    streamer = threading.Thread(target=stream, name="churn", daemon=True)
    streamer.start()
    conn.send((guard.port, yaml.safe_dump(replicaset)))
    while True:
        message = conn.recv()
        if message == "stream":
            streaming.set()
            conn.send("streaming")
        elif message == "count":
            conn.send(updates[0])
        else:
            break
    stop.set()
    streaming.set()
    streamer.join(START_TIMEOUT)
    guard.stop()
    api.stop()


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


def measure_churn() -> list[tuple[str, float, float, int, float]]:
    import yaml

    rows = []
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as scratch:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        tls_dir = Path(scratch) / "guard"
        process = context.Process(target=_serve, args=(tls_dir, child), name="guard")
        process.start()
        try:
            if not parent.poll(START_TIMEOUT):
                raise RuntimeError("guard did not start")
            port, replicaset_yaml = parent.recv()
            bodies = _bodies(yaml.safe_load(replicaset_yaml), WARMUP + REQUESTS)
            url = f"https://127.0.0.1:{port}/validate"
            ca = tls_dir / "ca.crt"
            latencies, allowed = asyncio.run(_latencies(url, ca, bodies))
            rows.append(("quiet API", *_summary(latencies), allowed, 0.0))
            parent.send("stream")
            parent.recv()
            parent.send("count")
            before = parent.recv()
            started = time.perf_counter()
            latencies, allowed = asyncio.run(_latencies(url, ca, bodies))
            elapsed = time.perf_counter() - started
            parent.send("count")
            rate = (parent.recv() - before) / elapsed
            rows.append(("ReplicaSet churn", *_summary(latencies), allowed, rate))
        finally:
            parent.send("stop")
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
        f"owner index: {per_owner} bytes per owner (guard's record in Kopf's indexer) + "
        f"{kopf_per_owner} bytes of Kopf's memory of each watched object; "
        f"{total / 2**20:.1f} MiB for {DEPLOYMENTS:,} Deployments x {REPLICASETS_EACH} "
        f"ReplicaSets ({owners:,} owners)"
    )
    print(f"{REQUESTS} inherited Pod creations by the replicaset-controller, HTTPS, one at a time")
    print(f"{'API':<18} {'p50 ms':>8} {'p99 ms':>8} {'allowed':>8} {'updates/s':>10}")
    for name, p50, p99, allowed, rate in measure_churn():
        print(f"{name:<18} {p50:>8.2f} {p99:>8.2f} {allowed:>8} {rate:>10.1f}")


if __name__ == "__main__":
    main()
