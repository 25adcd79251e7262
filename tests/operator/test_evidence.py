"""Operations evidence from the running operator: break-glass over HTTPS, the
audit trail under a concurrent burst, Events posted to the emulated API
(and rate-limited), and Prometheus metrics scraped over HTTP.

One operator serves the module (its policies include a break-glass policy);
the rate-limit tests start their own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.kube import webhook as server_module
from controller.kube.state import FileInputs, documents_digest
from tests.kube.helpers import (
    CONTROLLER_USER,
    GLASS_POLICIES,
    IMAGE,
    NO_PRIVILEGED,
    ONCALL_ALIAS,
    ONCALL_GROUP,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    attestation_resource,
    break_glass,
    digest_of,
    envelope,
    oncall_trust,
    workload,
    write_documents,
)
from tests.operator.harness import Answer, RunningGuard

WAIT = 10.0
REASON = "INC-4711: checkout is down, reviewer unreachable"
STRANGER = "mallory@example.com"


@pytest.fixture(scope="module")
def guard_files(tmp_path_factory: pytest.TempPathFactory, cast: Cast) -> tuple[Path, Path]:
    """This module's operator also has the break-glass policy and the on-call principal."""
    directory = tmp_path_factory.mktemp("evidence-files")
    policies = write_documents(directory / "policies.yaml", GLASS_POLICIES)
    trust = write_documents(directory / "trust.yaml", [oncall_trust(cast)])
    return policies, trust


@pytest.fixture(scope="module")
def attested(guard: RunningGuard, cast: Cast) -> str:
    guard.api.create("reviewattestations", attestation_resource("web", "prod", envelope(cast.ci)))
    assert guard.runtime.watch_log.wait_for("ReviewAttestation", "prod", "web", "ADDED", WAIT)
    return WEB


def audit_lines(guard: RunningGuard) -> list[dict[str, Any]]:
    path = guard.service.settings.audit_file
    assert path is not None
    return [json.loads(line) for line in path.read_text().splitlines()]


def audit_record(guard: RunningGuard, uid: str) -> dict[str, Any]:
    found = [r for r in audit_lines(guard) if r["uid"] == uid]
    assert len(found) == 1, f"expected one audit line for {uid}, found {len(found)}"
    return found[0]


def settled_events(guard: RunningGuard) -> list[dict[str, Any]]:
    assert guard.runtime.events.idle.wait(WAIT)
    return guard.api.events()


def events_about(guard: RunningGuard, uid: str) -> list[dict[str, Any]]:
    return [e for e in settled_events(guard) if f"(uid {uid})" in e["message"]]


def glass_review(namespace: str, user: str, groups: tuple[str, ...] = (), **kw: Any) -> Any:
    obj = workload("Deployment", "web", namespace, UNATTESTED, annotations=break_glass(REASON))
    return admission_review(obj, user=user, groups=("system:authenticated", *groups), **kw)


# --------------------------------------------------------------------------- break-glass


@pytest.mark.parametrize(
    ("user", "groups"),
    [(ONCALL_ALIAS, ()), ("github:1009", ()), ("erin@example.com", (ONCALL_GROUP,))],
    ids=["alias", "principal", "group"],
)
def test_break_glass_by_a_listed_principal(
    guard: RunningGuard, user: str, groups: tuple[str, ...]
) -> None:
    review = glass_review("glass", user, groups)
    uid = review["request"]["uid"]
    answer = guard.post(review)
    assert answer.allowed, answer.message
    assert answer.warnings[0].startswith(f"guard: break-glass used by {user} (reason: ")
    assert "bypassed: glass-review/review" in answer.warnings[0]
    record = audit_record(guard, uid)
    assert record["breakGlass"]["outcome"] == "honoured"
    assert record["breakGlass"]["reason"] == REASON
    assert record["breakGlass"]["bypassed"] == [{"policy": "glass-review", "rule": "review"}]
    (event,) = events_about(guard, uid)
    assert event["reason"] == "BreakGlass"
    assert event["involvedObject"]["kind"] == "GuardPolicy"
    assert event["involvedObject"]["name"] == "glass-review"
    assert not event["involvedObject"].get("namespace")
    assert event["related"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "glass",
    }
    assert user in event["message"] and REASON in event["message"]


def test_break_glass_by_a_stranger_is_denied_with_an_event(guard: RunningGuard) -> None:
    review = glass_review("glass", STRANGER, ("developers",))
    uid = review["request"]["uid"]
    answer = guard.post(review)
    assert not answer.allowed
    assert "[glass-review/break-glass] break-glass refused" in answer.message
    assert audit_record(guard, uid)["breakGlass"]["outcome"] == "refused"
    reasons = sorted(e["reason"] for e in events_about(guard, uid))
    assert reasons == ["AdmissionDenied", "BreakGlassRefused"]


def test_break_glass_on_a_policy_that_does_not_allow_it(guard: RunningGuard) -> None:
    answer = guard.post(glass_review("prod-both", ONCALL_ALIAS))
    assert not answer.allowed
    assert "[require-review/review]" in answer.message
    assert "GuardPolicy require-review does not allow break-glass" in answer.message
    assert "[glass-review/review]" not in answer.message


def test_break_glass_inherited_by_a_controller_created_replicaset(guard: RunningGuard) -> None:
    replicaset = workload(
        "ReplicaSet", "web-7c9", "glass", UNATTESTED, annotations=break_glass(REASON)
    )
    answer = guard.post(admission_review(replicaset, user=CONTROLLER_USER))
    assert answer.allowed, answer.message
    assert answer.warnings[0].startswith("guard: break-glass inherited from its owner")


def test_break_glass_dry_run_is_recorded_without_an_event(guard: RunningGuard) -> None:
    review = glass_review("glass", ONCALL_ALIAS, dry_run=True)
    uid = review["request"]["uid"]
    assert guard.post(review).allowed
    assert audit_record(guard, uid)["request"]["dryRun"] is True
    assert events_about(guard, uid) == []


# --------------------------------------------------------------------------- audit trail


def test_the_audit_line_has_the_evidence(guard: RunningGuard, attested: str) -> None:
    review = admission_review(workload("Deployment", "web", "prod", attested))
    uid = review["request"]["uid"]
    assert guard.post(review).allowed
    record = audit_record(guard, uid)
    assert record["decision"] == "allow"
    assert record["request"]["user"] == "carol@example.com"
    assert record["request"]["groups"] == ["system:authenticated", "developers"]
    assert record["request"]["operation"] == "CREATE"
    assert record["object"] == {
        "group": "apps",
        "version": "v1",
        "resource": "deployments",
        "subResource": None,
        "kind": "Deployment",
        "namespace": "prod",
        "name": "web",
    }
    assert record["policies"]["require-review"] == {"result": "pass", "effect": "none"}
    assert set(record["policies"]) == {"require-review", "no-privileged", "team-label"} | {
        "host-network"
    }
    attestations = record["attestations"]
    assert len(attestations["envelopes"]) == 1
    assert attestations["envelopes"][0].startswith("sha256:")
    assert list(attestations["approvers"]) == [WEB_DIGEST]
    assert attestations["approvers"][WEB_DIGEST] == ["bob"]  # the one approval that counted
    files = FileInputs.load(guard.service.settings.policy_paths, guard.service.settings.trust_paths)
    assert record["policyDigest"] == documents_digest(files.policies)
    assert record["trustDigest"] == documents_digest([s for s, _ in files.trust_specs])


def test_a_burst_of_concurrent_requests_has_exactly_one_line_each(
    guard: RunningGuard, attested: str
) -> None:
    reviews: list[dict[str, Any]] = []
    for i in range(300):
        image = attested if i % 10 else UNATTESTED  # some denials (each posts an Event)
        reviews.append(admission_review(workload("Deployment", f"w{i}", "prod", image)))
    malformed = [admission_review(workload("Pod", f"m{i}", "dev", WEB)) for i in range(20)]
    for review in malformed:
        del review["request"]["userInfo"]  # uid known, body unusable
    broken = [b'{"apiVersion": ' for _ in range(20)]  # not even JSON: no uid
    sent: list[dict[str, Any] | bytes] = [*reviews, *malformed, *broken]
    before = len(audit_lines(guard))
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers: list[Answer] = list(pool.map(guard.post, sent))
    lines = audit_lines(guard)[before:]
    assert len(lines) == len(sent)
    uids = Counter(line["uid"] for line in lines)
    expected = [r["request"]["uid"] for r in [*reviews, *malformed]]
    assert all(uids[uid] == 1 for uid in expected)
    assert uids[""] == len(broken)
    assert Counter(line["reason"] for line in lines) == Counter(
        {"judged": len(reviews), "malformed": len(malformed) + len(broken)}
    )
    for review, answer in zip(reviews, answers, strict=False):
        assert answer.response["uid"] == review["request"]["uid"]


def test_an_unexpected_failure_denies_and_leaves_its_line(
    guard: RunningGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(server_module, "parse_review", explode)
    before = len(audit_lines(guard))
    answer = guard.post(admission_review(workload("Pod", "p", "dev", WEB)))
    assert answer.status == 500
    assert "guard failed while reading the request: boom; denied" in answer.message
    (line,) = audit_lines(guard)[before:]
    assert (line["decision"], line["reason"]) == ("deny", "error")


# --------------------------------------------------------------------------- metrics


def scrape(guard: RunningGuard) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = guard.probe("/metrics")
    assert status == 200
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_after_known_traffic(guard: RunningGuard, attested: str) -> None:
    assert guard.runtime.events.idle.wait(WAIT)
    before = scrape(guard)
    reviewed = admission_review(workload("Deployment", "web", "prod", attested))
    for _ in range(3):  # the same envelope: one verification, then cache hits
        assert guard.post(reviewed).allowed
    assert not guard.post(admission_review(workload("Deployment", "w", "prod", UNATTESTED))).allowed
    assert not guard.post(
        admission_review(workload("Pod", "p", "dev", WEB, privileged=True))
    ).allowed
    assert guard.post(glass_review("glass", ONCALL_ALIAS)).allowed
    assert guard.post(b"not json").status == 400
    assert guard.runtime.events.idle.wait(WAIT)
    after = scrape(guard)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("guard_admission_requests_total", decision="allow", kind="Deployment") == 3
    assert delta("guard_admission_requests_total", decision="deny", kind="Deployment") == 1
    assert delta("guard_admission_requests_total", decision="deny", kind="Pod") == 1
    assert delta("guard_admission_requests_total", decision="warn", kind="Deployment") == 1
    assert delta("guard_admission_requests_total", decision="deny", kind="") == 1
    assert delta("guard_admission_unjudged_total", reason="malformed") == 1
    findings = "guard_policy_findings_total"
    assert delta(findings, policy="require-review", action="deny", result="fail") == 1
    assert delta(findings, policy="no-privileged", action="deny", result="fail") == 1
    assert delta(findings, policy="glass-review", action="waived", result="fail") == 1
    assert delta("guard_break_glass_total", policy="glass-review", outcome="honoured") == 1
    assert delta("guard_admission_duration_seconds_count") == 7
    assert delta("guard_admission_duration_seconds_bucket", le="+Inf") == 7
    verifications = "guard_attestation_verifications_total"
    assert delta(verifications, result="accepted") == 3
    assert delta(verifications, result="rejected") >= 2  # unattested and glass (no envelope)
    cache = "guard_attestation_signature_cache_total"
    assert delta(cache, outcome="hit") >= 2
    events = "guard_events_total"
    assert delta(events, reason="AdmissionDenied", outcome="posted") == 2
    assert delta(events, reason="BreakGlass", outcome="posted") == 1
    assert sample(after, "guard_ready") == 1.0
    assert sample(after, "guard_policy_load_errors") == 0.0


def test_policy_load_errors_gauge(guard: RunningGuard) -> None:
    broken = json.loads(json.dumps(NO_PRIVILEGED))
    broken["metadata"]["name"] = "gauge-broken"
    broken["spec"]["severity"] = "catastrophic"
    guard.api.create("guardpolicies", broken)
    try:
        assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "gauge-broken", "ADDED", WAIT)
        assert sample(scrape(guard), "guard_policy_load_errors") == 1.0
    finally:
        guard.api.delete("guardpolicies", "gauge-broken")
        assert guard.runtime.watch_log.wait_for(
            "GuardPolicy", None, "gauge-broken", "DELETED", WAIT
        )
    assert sample(scrape(guard), "guard_policy_load_errors") == 0.0


# --------------------------------------------------------------------------- events


def test_events_about_a_policy_resource_carry_its_uid(guard: RunningGuard) -> None:
    policy = json.loads(json.dumps(NO_PRIVILEGED))
    policy["metadata"]["name"] = "cr-privileged"
    policy["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["cr-ns"]}}}
    guard.api.create("guardpolicies", policy)
    try:
        assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "cr-privileged", "ADDED", WAIT)
        uid = guard.api.get("guardpolicies", "cr-privileged")["metadata"].get("uid")
        review = admission_review(workload("Pod", "p", "cr-ns", WEB, privileged=True))
        assert not guard.post(review).allowed
        about = {
            e["involvedObject"]["name"]: e for e in events_about(guard, review["request"]["uid"])
        }
        assert set(about) == {"no-privileged", "cr-privileged"}
        assert about["cr-privileged"]["involvedObject"].get("uid") == uid
        assert "uid" not in about["no-privileged"]["involvedObject"]  # a file policy
    finally:
        guard.api.delete("guardpolicies", "cr-privileged")
        assert guard.runtime.watch_log.wait_for(
            "GuardPolicy", None, "cr-privileged", "DELETED", WAIT
        )


@pytest.fixture()
def limited(start_guard: Callable[..., RunningGuard]) -> Iterator[RunningGuard]:
    """An operator with tight event limits: 2 per (policy, reason), 5 overall, no refill."""
    yield start_guard(
        event_rate=0.0, event_burst=2.0, event_global_rate=0.0, event_global_burst=5.0
    )


def test_events_are_rate_limited_per_policy_and_overall(limited: RunningGuard) -> None:
    before = len(settled_events(limited))

    def deny(obj: dict[str, Any]) -> None:
        assert not limited.post(admission_review(obj)).allowed

    for i in range(6):  # a crash loop: the same denial again and again
        deny(workload("Pod", f"p{i}", "dev", WEB, privileged=True))
    assert len(settled_events(limited)) - before == 2
    for i in range(6):  # another policy has its own bucket...
        deny(workload("Deployment", f"w{i}", "prod", f"{IMAGE}@{digest_of(str(i))}"))
    assert len(settled_events(limited)) - before == 4
    for i in range(6):  # ...until the global cap
        deny(workload("Deployment", f"g{i}", "glass", UNATTESTED))
    posted = settled_events(limited)[before:]
    assert len(posted) == 5
    assert Counter(e["involvedObject"]["name"] for e in posted) == Counter(
        {"no-privileged": 2, "require-review": 2, "glass-review": 1}
    )
    assert limited.runtime.events.suppressed == 18 - 5
    assert limited.runtime.events.failed == 0
