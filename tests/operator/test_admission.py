"""The real operator, judged through HTTPS as kube-apiserver would call it.

One operator serves the whole module (see conftest); tests that need their
own attestations use their own digests and namespaces so they never depend
on each other's order.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.kube.helpers import (
    CONTROLLER_USER,
    DEPLOYER,
    IMAGE,
    NO_PRIVILEGED,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    attestation_resource,
    digest_of,
    envelope,
    expired_envelope,
    workload,
)
from tests.operator.harness import RunningGuard, Tls, make_tls

WAIT = 10.0
KINDS = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
    "Job",
    "CronJob",
)


def attest(guard: RunningGuard, name: str, namespace: str, text: str) -> None:
    """Create a ReviewAttestation and wait until the operator has indexed it."""
    guard.api.create("reviewattestations", attestation_resource(name, namespace, text))
    assert guard.runtime.watch_log.wait_for("ReviewAttestation", namespace, name, "ADDED", WAIT)


def audit_records(guard: RunningGuard) -> dict[str, dict[str, Any]]:
    path = guard.service.settings.audit_file
    lines = path.read_text().splitlines()
    return {record["uid"]: record for record in map(json.loads, lines)}


@pytest.fixture(scope="module")
def attested(guard: RunningGuard, cast: Cast) -> str:
    """WEB is reviewed (ReviewAttestation in namespace prod)."""
    attest(guard, "web-v1", "prod", envelope(cast.ci, [WEB_DIGEST]))
    return WEB


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_with_a_reviewed_image_is_allowed(
    guard: RunningGuard, attested: str, kind: str
) -> None:
    review = admission_review(workload(kind, "web", "prod", attested))
    answer = guard.post(review)
    assert answer.status == 200
    assert answer.response["uid"] == review["request"]["uid"]
    assert answer.allowed, answer.message


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_with_an_unreviewed_image_is_denied(guard: RunningGuard, kind: str) -> None:
    review = admission_review(workload(kind, "web", "prod", UNATTESTED))
    answer = guard.post(review)
    assert answer.status == 200
    assert not answer.allowed
    assert answer.code == 403
    assert f"guard denied {kind} prod/web" in answer.message
    assert "[require-review/review]" in answer.message
    assert UNATTESTED in answer.message
    assert "no review attestation found" in answer.message
    assert (
        "fix: release engineer: attest it in the release pipeline after review: guard attest review"
        in answer.message
    )


def test_ephemeral_containers_subresource_is_judged(guard: RunningGuard, attested: str) -> None:
    pod = workload("Pod", "web", "prod", attested)
    debug = json.loads(json.dumps(pod))
    debug["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": UNATTESTED}]
    denied = guard.post(
        admission_review(debug, operation="UPDATE", old=pod, sub_resource="ephemeralcontainers")
    )
    assert not denied.allowed
    assert UNATTESTED in denied.message
    debug["spec"]["ephemeralContainers"][0]["image"] = attested
    allowed = guard.post(
        admission_review(debug, operation="UPDATE", old=pod, sub_resource="ephemeralcontainers")
    )
    assert allowed.allowed, allowed.message


def test_tag_only_image_is_denied_with_how_to_pin(guard: RunningGuard) -> None:
    answer = guard.post(admission_review(workload("Deployment", "web", "prod", f"{IMAGE}:1.2")))
    assert not answer.allowed
    assert "not pinned by digest" in answer.message
    assert "IMAGE@sha256:<digest>" in answer.message


def test_exempt_sidecar_is_admitted_and_recorded(guard: RunningGuard, attested: str) -> None:
    proxy = "registry.example/mesh/proxy:1.0"
    review = admission_review(workload("Deployment", "web", "prod", attested, proxy))
    answer = guard.post(review)
    assert answer.allowed, answer.message
    record = audit_records(guard)[review["request"]["uid"]]
    assert {"image": proxy, "digest": None, "introduced": True} in record["artifacts"]
    evidence = record["evidence"]["review"]["require-review"]
    assert evidence["result"] == "pass"
    assert evidence["exempted"] == [proxy]
    assert list(evidence["approvers"]) == [WEB_DIGEST]
    assert len(evidence["approvers"][WEB_DIGEST]) == 1  # bob, the one approval
    assert len(evidence["envelopes"]) == 1


# --------------------------------------------------------------------------- what is not judged


@pytest.mark.parametrize("path", ["/", "/validate-deployments", "/mutate"])
def test_other_paths_are_denied(guard: RunningGuard, attested: str, path: str) -> None:
    review = admission_review(workload("Deployment", "web", "dev", attested))
    answer = guard.post(review, path)
    assert answer.status == 200
    assert answer.response["uid"] == review["request"]["uid"]
    assert not answer.allowed
    assert answer.code == 404
    assert "only at POST /validate" in answer.message


def test_get_on_the_webhook_path_is_refused(guard: RunningGuard) -> None:
    answer = guard.post(b"{}", method="GET")
    assert answer.status == 404
    assert "only at POST /validate" in answer.message


@pytest.mark.parametrize(
    ("resource", "kind", "sub", "operation", "expected"),
    [
        (("", "v1", "services"), "Service", None, "CREATE", "does not judge v1 services"),
        (("", "v1", "pods"), "Pod", "status", "UPDATE", "does not judge v1 pods/status"),
        (("apps", "v1beta1", "deployments"), "Deployment", None, "CREATE", "apps/v1beta1"),
        (("apps", "v1", "deployments"), "Deployment", None, "DELETE", "only CREATE and UPDATE"),
        (("apps", "v1", "deployments"), "Deployment", None, "CONNECT", "only CREATE and UPDATE"),
    ],
)
def test_unjudged_requests_are_denied(
    guard: RunningGuard,
    resource: tuple[str, str, str],
    kind: str,
    sub: str | None,
    operation: str,
    expected: str,
) -> None:
    obj = workload("Deployment", "web", "dev", WEB)
    review = admission_review(
        obj,
        operation=operation,
        old=obj if operation != "CREATE" else None,
        kind=kind,
        resource=resource,
        sub_resource=sub,
    )
    answer = guard.post(review)
    assert answer.status == 200
    assert not answer.allowed
    assert expected in answer.message


# --------------------------------------------------------------------------- actions


def test_deny_action(guard: RunningGuard) -> None:
    answer = guard.post(admission_review(workload("Pod", "p", "dev", WEB, privileged=True)))
    assert not answer.allowed
    assert "[no-privileged/not-privileged] a container is privileged" in answer.message
    assert "fix: remove securityContext.privileged" in answer.message


def test_warn_action_admits_with_a_warning(guard: RunningGuard) -> None:
    answer = guard.post(admission_review(workload("Pod", "p", "dev", WEB, labels={})))
    assert answer.allowed
    assert answer.warnings == [
        "guard [team-label/has-team] the workload has no team label (fix: add metadata.labels.team)"
    ]


def test_audit_action_only_records(guard: RunningGuard) -> None:
    review = admission_review(workload("Pod", "p", "dev", WEB, host_network=True))
    answer = guard.post(review)
    assert answer.allowed
    assert answer.warnings == []
    record = audit_records(guard)[review["request"]["uid"]]
    assert record["decision"] == "allow"
    assert [(f["policy"], f["action"]) for f in record["findings"]] == [("host-network", "audit")]


def test_every_failure_is_listed_in_one_message(guard: RunningGuard) -> None:
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED, privileged=True))
    answer = guard.post(review)
    assert answer.message.startswith("guard denied Deployment prod/web: 2 problems")
    assert "[require-review/review]" in answer.message
    assert "[no-privileged/not-privileged]" in answer.message


def test_dry_run_is_judged_the_same_without_side_effects(guard: RunningGuard) -> None:
    # Events of earlier denials are posted in the background: let them land.
    assert guard.runtime.events.idle.wait(WAIT)
    before = len(guard.api.requests)
    posted = guard.runtime.events.posted
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED), dry_run=True)
    answer = guard.post(review)
    assert guard.runtime.events.idle.wait(WAIT)
    assert guard.runtime.events.posted == posted
    assert not answer.allowed
    assert "(dry run)" in answer.message
    writes = [r for r in guard.api.requests[before:] if r[0] != "GET"]
    assert writes == []
    assert audit_records(guard)[review["request"]["uid"]]["request"]["dryRun"] is True


# --------------------------------------------------------------------------- separation of duties


def test_update_from_reviewed_to_unreviewed_image_is_denied(
    guard: RunningGuard, attested: str
) -> None:
    old = workload("Deployment", "web", "prod", attested)
    new = workload("Deployment", "web", "prod", UNATTESTED)
    answer = guard.post(admission_review(new, operation="UPDATE", old=old))
    assert not answer.allowed
    assert UNATTESTED in answer.message
    assert attested not in answer.message


def test_controller_created_replicaset_after_expiry_is_allowed(
    guard: RunningGuard, cast: Cast
) -> None:
    digest = digest_of("expired release")
    image = f"{IMAGE}@{digest}"
    attest(guard, "expired-release", "prod", expired_envelope(cast.ci, [digest]))
    replicaset = workload("ReplicaSet", "web-6d4f", "prod", image)
    by_controller = guard.post(
        admission_review(replicaset, user=CONTROLLER_USER, groups=("system:serviceaccounts",))
    )
    assert by_controller.allowed, by_controller.message
    by_person = guard.post(admission_review(replicaset, user=DEPLOYER))
    assert not by_person.allowed
    assert "expired" in by_person.message


def test_unchanged_images_are_not_reintroduced_by_an_update(
    guard: RunningGuard, cast: Cast
) -> None:
    digest = digest_of("old but running")
    image = f"{IMAGE}@{digest}"
    attest(guard, "old-but-running", "prod", expired_envelope(cast.ci, [digest]))
    old = workload("Deployment", "web", "prod", image)
    relabelled = workload("Deployment", "web", "prod", image, labels={"team": "web", "tier": "1"})
    answer = guard.post(admission_review(relabelled, operation="UPDATE", old=old))
    assert answer.allowed, answer.message


def test_envelope_from_the_workload_annotation(guard: RunningGuard, cast: Cast) -> None:
    digest = digest_of("annotated")
    text = envelope(cast.ci, [digest])
    annotations = {"guard.dev/attestations": json.dumps([text])}
    obj = workload("Deployment", "web", "prod", f"{IMAGE}@{digest}", annotations=annotations)
    answer = guard.post(admission_review(obj))
    assert answer.allowed, answer.message


def test_forged_attestation_is_denied(guard: RunningGuard, cast: Cast) -> None:
    digest = digest_of("forged")
    attest(guard, "forged", "prod", envelope(cast.stranger, [digest]))
    answer = guard.post(
        admission_review(workload("Deployment", "web", "prod", f"{IMAGE}@{digest}"))
    )
    assert not answer.allowed
    assert "no trusted key verifies this signature" in answer.message


# --------------------------------------------------------------------------- attestations in the cluster


def test_attestation_created_after_startup_and_deleted(guard: RunningGuard, cast: Cast) -> None:
    digest = digest_of("late release")
    review = lambda: admission_review(  # noqa: E731
        workload("Deployment", "late", "prod-eu", f"{IMAGE}@{digest}")
    )
    assert not guard.post(review()).allowed
    reads = guard.runtime.fallback.reads
    attest(guard, "late", "prod-eu", envelope(cast.ci, [digest]))
    allowed = guard.post(review())
    assert allowed.allowed, allowed.message
    assert guard.runtime.fallback.reads == reads  # the index answered
    # The informational status arrives as our own patch's MODIFIED event.
    assert guard.runtime.watch_log.wait_for(
        "ReviewAttestation", "prod-eu", "late", "MODIFIED", WAIT
    )
    status = guard.api.get("reviewattestations", "late", "prod-eu")["status"]["guard"]
    assert status == {
        "verified": True,
        "subjects": [digest],
        "reason": "signed by a trusted attester",
    }
    guard.api.delete("reviewattestations", "late", "prod-eu")
    assert guard.runtime.watch_log.wait_for("ReviewAttestation", "prod-eu", "late", "DELETED", WAIT)
    denied = guard.post(review())
    assert not denied.allowed
    assert "no review attestation found" in denied.message


def test_index_miss_falls_back_to_one_api_read(guard: RunningGuard, cast: Cast) -> None:
    digest = digest_of("racing release")
    body = attestation_resource("racing", "prod-race", envelope(cast.ci, [digest]))
    # Stored without a watch event: the index cannot know it yet.
    guard.api.store_silently("reviewattestations", body)
    reads = guard.runtime.fallback.reads
    before = len(guard.api.requests)
    answer = guard.post(
        admission_review(workload("Deployment", "w", "prod-race", f"{IMAGE}@{digest}"))
    )
    assert answer.allowed, answer.message
    assert guard.runtime.fallback.reads == reads + 1
    assert ("GET", "/apis/guard.dev/v1alpha1/namespaces/prod-race/reviewattestations") in (
        guard.api.requests[before:]
    )


def test_fallback_reads_are_rate_limited(start_guard: Callable[..., RunningGuard]) -> None:
    limited = start_guard(fallback_rate=0.0, fallback_burst=1.0)
    first = admission_review(workload("Deployment", "w", "prod-limit", UNATTESTED))
    second = admission_review(workload("Deployment", "w", "prod-limit", UNATTESTED))
    assert not limited.post(first).allowed
    assert not limited.post(second).allowed
    records = audit_records(limited)
    assert "found 0 candidate envelope(s)" in records[first["request"]["uid"]]["notes"][0]
    assert records[second["request"]["uid"]]["notes"] == [
        "fallback API read skipped: rate limit reached"
    ]
    assert limited.runtime.fallback.reads == 1


# --------------------------------------------------------------------------- policies in the cluster


def test_guard_policy_with_a_broken_rule(guard: RunningGuard) -> None:
    broken = json.loads(json.dumps(NO_PRIVILEGED))
    broken["metadata"]["name"] = "broken-rule"
    broken["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["broken-ns"]}}}
    broken["spec"]["rules"][0]["name"] = "typo"
    broken["spec"]["rules"][0]["expression"] = "containers.all(c, c.image.startsWith('x')"
    guard.api.create("guardpolicies", broken)
    assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "broken-rule", "ADDED", WAIT)
    try:
        matched = guard.post(admission_review(workload("Pod", "p", "broken-ns", WEB)))
        assert not matched.allowed
        assert "[broken-rule/typo] policy cannot be evaluated" in matched.message
        # The rest keep enforcing, and unrelated namespaces are not affected.
        assert not guard.post(
            admission_review(workload("Pod", "p", "dev", WEB, privileged=True))
        ).allowed
        assert guard.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed
        assert guard.runtime.watch_log.wait_for(
            "GuardPolicy", None, "broken-rule", "MODIFIED", WAIT
        )
        status = guard.api.get("guardpolicies", "broken-rule")["status"]["guard"]
        assert status["valid"] is False
        assert "rule 'typo'" in status["message"]
    finally:
        guard.api.delete("guardpolicies", "broken-rule")
        assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "broken-rule", "DELETED", WAIT)
    assert guard.post(admission_review(workload("Pod", "p", "broken-ns", WEB))).allowed


def test_guard_policy_that_fails_validation_still_denies(guard: RunningGuard) -> None:
    """A CR the API server accepted but guard's models reject (here a typo'd
    field and a duration out of range) is not dropped: it judges what its
    match selects as an error under its own action, says why in its status,
    and raises a Warning Event."""
    invalid = json.loads(json.dumps(NO_PRIVILEGED))
    invalid["metadata"]["name"] = "invalid-doc"
    invalid["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["invalid-ns"]}}}
    invalid["spec"]["acton"] = "deny"
    guard.api.create("guardpolicies", invalid)
    assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "invalid-doc", "ADDED", WAIT)
    try:
        matched = guard.post(admission_review(workload("Pod", "p", "invalid-ns", WEB)))
        assert not matched.allowed
        assert "[invalid-doc/document] policy is invalid" in matched.message
        assert guard.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed
        assert guard.runtime.watch_log.wait_for(
            "GuardPolicy", None, "invalid-doc", "MODIFIED", WAIT
        )
        status = guard.api.get("guardpolicies", "invalid-doc")["status"]["guard"]
        assert status["valid"] is False
        assert "spec.acton: unknown field" in status["message"]
        assert "enforced as an error until fixed" in status["message"]
        assert guard.runtime.events.idle.wait(WAIT)
        broken = [
            e
            for e in guard.api.events()
            if e["reason"] == "PolicyBroken" and e["involvedObject"]["name"] == "invalid-doc"
        ]
        assert broken and broken[0]["type"] == "Warning"
        assert "spec.acton: unknown field" in broken[0]["message"]
    finally:
        guard.api.delete("guardpolicies", "invalid-doc")
        assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "invalid-doc", "DELETED", WAIT)
    assert guard.post(admission_review(workload("Pod", "p", "invalid-ns", WEB))).allowed


# --------------------------------------------------------------------------- hostile and odd input


def test_malformed_json_gets_a_clear_400_and_the_server_stays_up(guard: RunningGuard) -> None:
    answer = guard.post(b'{"apiVersion": "admission.k8s.io/v1", ')
    assert answer.status == 400
    assert "not valid JSON" in answer.message
    assert guard.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed


def test_review_missing_fields_is_denied_with_the_field_named(guard: RunningGuard) -> None:
    review = admission_review(workload("Pod", "p", "dev", WEB))
    del review["request"]["userInfo"]
    answer = guard.post(review)
    assert answer.status == 200
    assert answer.response["uid"] == review["request"]["uid"]
    assert not answer.allowed
    assert answer.code == 400
    assert "request.userInfo is missing" in answer.message


def test_update_larger_than_one_mib_is_judged(guard: RunningGuard, attested: str) -> None:
    old = workload("Deployment", "big", "prod", attested)
    old["metadata"]["annotations"] = {"blob": "x" * (900 * 1024)}
    new = json.loads(json.dumps(old))
    new["metadata"]["labels"]["rev"] = "2"
    review = admission_review(new, operation="UPDATE", old=old)
    assert len(json.dumps(review)) > 1024 * 1024
    answer = guard.post(review)
    assert answer.status == 200
    assert answer.allowed, answer.message


def test_body_over_the_limit_gets_413_and_the_server_stays_up(guard: RunningGuard) -> None:
    limit = guard.service.settings.max_review_bytes
    answer = guard.post(b'{"pad": "' + b"x" * limit + b'"}')
    assert answer.status == 413
    assert f"{limit}-byte limit" in answer.message
    assert guard.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed


# --------------------------------------------------------------------------- operations


def test_every_answer_has_an_audit_line(guard: RunningGuard) -> None:
    reviews = [admission_review(workload("Pod", f"p{i}", "dev", WEB)) for i in range(5)]
    for review in reviews:
        guard.post(review)
    records = audit_records(guard)
    assert all(r["request"]["uid"] in records for r in reviews)


def test_probes_and_metrics(guard: RunningGuard) -> None:
    assert guard.probe("/healthz") == (200, "ok\n")
    assert guard.probe("/readyz") == (200, "ready\n")
    status, text = guard.probe("/metrics")
    assert status == 200
    assert "guard_ready 1.0" in text
    assert 'guard_admission_requests_total{decision="allow",kind="Pod"}' in text


def test_operator_requests_are_recorded_and_read_only_but_statuses(guard: RunningGuard) -> None:
    requests = guard.api.requests
    assert ("GET", "/apis/guard.dev/v1alpha1/reviewattestations") in requests
    writes = {(method, path.split("?")[0]) for method, path in requests if method != "GET"}
    assert writes, "status patches are expected"
    events = ("POST", "/api/v1/namespaces/default/events")
    assert all(
        (method == "PATCH" and path.endswith("/status")) or (method, path) == events
        for method, path in writes
    )


def test_not_ready_until_everything_is_listed(
    start_guard: Callable[..., RunningGuard], guard: RunningGuard
) -> None:
    guard.api.hold_listing("guardexceptions")
    try:
        starting = start_guard(wait_ready=False)
        answer = starting.post(admission_review(workload("Pod", "p", "dev", WEB)))
        assert answer.status == 503
        assert "not ready yet" in answer.message
        assert starting.probe("/readyz")[0] == 503
    finally:
        guard.api.release_listing("guardexceptions")
    assert starting.runtime.ready_flag.wait(WAIT)
    assert starting.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed
    starting.stop()
    assert not starting.service.server.listening.is_set()


def test_renewed_certificate_is_served_without_a_restart(
    start_guard: Callable[..., RunningGuard], tmp_path: Path
) -> None:
    first = make_tls(tmp_path / "first")
    running = start_guard(tls_cert=first.cert, tls_key=first.key)
    running.tls = first
    assert running.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed
    renewed = make_tls(tmp_path / "renewed")
    running.service.server.tls_reloaded.clear()
    first.key.write_bytes(renewed.key.read_bytes())
    first.cert.write_bytes(renewed.cert.read_bytes())
    assert running.service.server.tls_reloaded.wait(WAIT)
    running.tls = renewed
    assert running.post(admission_review(workload("Pod", "p", "dev", WEB))).allowed
    running.tls = Tls(ca=tmp_path / "first" / "ca.crt", cert=first.cert, key=first.key)
    with pytest.raises(ssl.SSLError):
        running.post(admission_review(workload("Pod", "p", "dev", WEB)))


def test_concurrent_requests_each_get_their_own_answer(guard: RunningGuard, attested: str) -> None:
    reviews = [
        admission_review(workload("Deployment", f"w{i}", "prod", attested if i % 2 else UNATTESTED))
        for i in range(40)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(guard.post, reviews))
    for i, (review, answer) in enumerate(zip(reviews, answers, strict=True)):
        assert answer.response["uid"] == review["request"]["uid"]
        assert answer.allowed is bool(i % 2)
    records = audit_records(guard)
    assert all(r["request"]["uid"] in records for r in reviews)
