"""Two replicas behind one Service: each request may reach either, so both
must give the same answer. The webhook keeps no state between requests
beyond what it rebuilds from the API (its indexes) and signature results, so
two operators watching one API server serve concurrently and agree.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.kube.helpers import (
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    envelope,
    workload,
)
from tests.operator.harness import RunningGuard
from tests.operator.test_admission import attest


def test_two_replicas_serve_concurrently_with_the_same_answers(
    start_guard: Callable[..., RunningGuard], guard: RunningGuard, cast: Cast
) -> None:
    second = start_guard()
    # One attestation, created once in the shared API: both replicas index it.
    attest(guard, "web-scale-out", "prod", envelope(cast.ci, [WEB_DIGEST]))
    assert second.runtime.watch_log.wait_for(
        "ReviewAttestation", "prod", "web-scale-out", "ADDED", 10
    )
    reviews = [
        admission_review(workload("Deployment", f"s{i}", "prod", WEB if i % 3 else UNATTESTED))
        for i in range(30)
    ]
    jobs = [(replica, review) for review in reviews for replica in (guard, second)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda job: job[0].post(job[1]), jobs))
    for index, review in enumerate(reviews):
        first, other = answers[2 * index], answers[2 * index + 1]
        assert first.status == other.status == 200
        assert first.response["uid"] == other.response["uid"] == review["request"]["uid"]
        assert first.allowed is other.allowed is bool(index % 3)
        assert first.message == other.message
