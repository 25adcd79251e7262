"""Where one admission's CPU time goes inside guard, stage by stage.

The admission benchmark compares whole servers; this one runs the steps of
guard's own server on the operator's event loop, without HTTP: reading the
review (``decode``), checking and parsing it (``parse``: the shapes and the
nesting limit), judging it (``judge``: subject, inheritance, evidence,
engine, review), recording it (``finish``: audit line, metrics, Events) and
writing the answer. Inside ``judge`` the engine's evaluation and the review
are timed too. The workloads are the admission benchmark's, every object
different. CPU time of the operator's thread, per request.

``python -m tests.bench stages`` (``GUARD_BENCH_REQUESTS`` sets the number
of requests per workload).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from controller.kube import webhook
from controller.kube.request import decode_review, parse_review
from controller.policy.engine import Engine
from tests.bench.bench_admission import ROOT, review_bodies, start_guard

REQUESTS = int(os.environ.get("GUARD_BENCH_REQUESTS", "2000"))
WARMUP = 200
STAGES = ("decode", "parse", "judge", "finish", "answer")


@contextmanager
def timed(owner: Any, name: str, totals: dict[str, float]) -> Iterator[None]:
    """``owner.name`` wrapped to add its thread CPU time to ``totals[name]``."""
    original: Callable[..., Any] = getattr(owner, name)

    def measured(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.thread_time() - started

    setattr(owner, name, measured)
    try:
        yield
    finally:
        setattr(owner, name, original)


async def run(runtime: Any, bodies: list[bytes]) -> dict[str, float]:
    totals = dict.fromkeys(STAGES, 0.0)
    judge = runtime.judge
    for body in bodies:
        marks = [time.thread_time()]
        started = time.perf_counter()
        data = decode_review(body)
        marks.append(time.thread_time())
        request = parse_review(data)
        marks.append(time.thread_time())
        result = await judge(request)
        marks.append(time.thread_time())
        runtime.finish(result, started)
        marks.append(time.thread_time())
        webhook._json(result.response())
        marks.append(time.thread_time())
        for stage, (before, after) in zip(STAGES, itertools.pairwise(marks), strict=True):
            totals[stage] += after - before
    return totals


def main() -> None:
    # As ``guard serve`` and the admission benchmark's guard do once their
    # modules are loaded: start-up objects are left out of the collector's
    # walks, which would otherwise land in whichever stage triggers one.
    from controller.kube.service import freeze_start_up_objects
    from tests.operator import harness  # noqa: F401  (loaded before the freeze)

    freeze_start_up_objects()
    with tempfile.TemporaryDirectory() as folder:
        api, guard = start_guard(Path(folder))
        try:
            attestation = yaml.safe_load(
                (ROOT / "examples/attestations/app-reviewed.yaml").read_text()
            )
            attestation["metadata"]["namespace"] = "shop"
            api.create("reviewattestations", attestation)
            name = attestation["metadata"]["name"]
            if not guard.runtime.watch_log.wait_for("ReviewAttestation", "shop", name, "ADDED", 30):
                raise RuntimeError("the attestation was not indexed")
            print(f"CPU us per request of the operator's thread, {REQUESTS} requests per workload")
            print(
                f"{'workload':<11}"
                + "".join(f"{s:>9}" for s in (*STAGES, "total", "engine", "review"))
            )
            for workload in ("deployment", "pod"):
                bodies = review_bodies(workload, WARMUP + REQUESTS)
                inner: dict[str, float] = {}
                asyncio.run_coroutine_threadsafe(
                    run(guard.runtime, bodies[:WARMUP]), guard.loop
                ).result()
                with timed(Engine, "evaluate", inner), timed(Engine, "review_findings", inner):
                    future = asyncio.run_coroutine_threadsafe(
                        run(guard.runtime, bodies[WARMUP:]), guard.loop
                    )
                    totals = future.result()
                per = {k: v / REQUESTS * 1e6 for k, v in totals.items()}
                engine = (
                    (inner.get("evaluate", 0.0) - inner.get("review_findings", 0.0))
                    / REQUESTS
                    * 1e6
                )
                review = inner.get("review_findings", 0.0) / REQUESTS * 1e6
                print(
                    f"{workload:<11}"
                    + "".join(f"{per[s]:>9,.0f}" for s in STAGES)
                    + f"{sum(per.values()):>9,.0f}{engine:>9,.0f}{review:>9,.0f}"
                )
            print(
                "engine: Engine.evaluate without the review; review: the review requirement's check"
            )
        finally:
            guard.stop()
            api.stop()


if __name__ == "__main__":
    main()
