"""Hostile and odd requests against the real operator, as an attacker would
send them: someone with create/update rights in a namespace, an insider
author shipping alone, or a pod that reaches the webhook's Service directly.

Every answer must be a denial (or a correct judgement), never a crash, and
never an allow for something guard did not judge.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from controller.kube.record import MAX_LINE_BYTES
from tests.kube.helpers import (
    CONTROLLER_USER,
    DEPLOYER,
    IMAGE,
    REPOSITORY,
    TARGET_REF,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    attestation_resource,
    digest_of,
    envelope,
    workload,
)
from tests.kube.mutations import broken_bodies, mutated
from tests.operator.harness import Answer, RunningGuard

WAIT = 10.0
ONCALL = "dana@example.com"
# A review policy that judges only Pods, in the laundry* namespaces, and lets
# the on-call person break glass: the shape that invites laundering an
# unreviewed image through a Deployment no review policy judges.
POD_REVIEW: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "pod-review"},
    "spec": {
        "severity": "critical",
        "action": "deny",
        "match": {"kubernetes": {"kinds": ["Pod"], "namespaces": {"include": ["laundry*"]}}},
        "review": {
            "attesters": ["ci"],
            "repositories": [REPOSITORY],
            "targetRefs": [TARGET_REF],
            "breakGlass": {"principals": [ONCALL]},
        },
    },
}


def audit_lines(guard: RunningGuard) -> list[str]:
    path = guard.service.settings.audit_file
    assert path is not None
    return path.read_text(encoding="utf-8").splitlines()


def audit_record(guard: RunningGuard, uid: str) -> dict[str, Any]:
    for line in audit_lines(guard):
        record = json.loads(line)
        if record["uid"] == uid:
            return dict(record)
    raise AssertionError(f"no audit record for {uid}")


@pytest.fixture(scope="module")
def attested(guard: RunningGuard, cast: Cast) -> str:
    guard.api.create("reviewattestations", attestation_resource("web", "prod", envelope(cast.ci)))
    assert guard.runtime.watch_log.wait_for("ReviewAttestation", "prod", "web", "ADDED", WAIT)
    return WEB


@pytest.fixture(scope="module")
def pod_review(guard: RunningGuard) -> Iterator[None]:
    guard.api.create("guardpolicies", POD_REVIEW)
    assert guard.runtime.watch_log.wait_for("GuardPolicy", None, "pod-review", "ADDED", WAIT)
    yield


def with_template_glass(obj: dict[str, Any], reason: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["spec"]["template"]["metadata"]["annotations"] = {"guard.dev/break-glass": reason}
    return obj


# --------------------------------------------------------------------------- where images hide


def test_image_volume_needs_review(guard: RunningGuard, attested: str) -> None:
    # An approved image with an unreviewed OCI image mounted as a volume runs
    # whatever the volume holds (``command: [/payload/run]``).
    pod = workload("Pod", "p", "prod", attested)
    pod["spec"]["volumes"] = [{"name": "payload", "image": {"reference": UNATTESTED}}]
    denied = guard.post(admission_review(pod))
    assert not denied.allowed
    assert UNATTESTED in denied.message
    pod["spec"]["volumes"][0]["image"]["reference"] = attested
    assert guard.post(admission_review(pod)).allowed


@pytest.mark.parametrize("holder", ["initContainers", "ephemeralContainers"])
def test_images_in_other_container_lists_need_review(
    guard: RunningGuard, attested: str, holder: str
) -> None:
    cronjob = workload("CronJob", "c", "prod", attested)
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    spec[holder] = [{"name": "hidden", "image": UNATTESTED}]
    answer = guard.post(admission_review(cronjob))
    assert not answer.allowed
    assert UNATTESTED in answer.message


def test_update_adding_a_container_needs_its_review(guard: RunningGuard, attested: str) -> None:
    old = workload("Deployment", "web", "prod", attested)
    new = workload("Deployment", "web", "prod", attested, UNATTESTED)
    answer = guard.post(admission_review(new, operation="UPDATE", old=old))
    assert not answer.allowed
    assert UNATTESTED in answer.message


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (f"{IMAGE}@{WEB_DIGEST.upper()}", "not pinned by digest"),
        (f"{IMAGE}@{digest_of('other')}@{WEB_DIGEST}", "not pinned by digest"),
        (f"{IMAGE}@{WEB_DIGEST}@{WEB_DIGEST}", "not pinned by digest"),
    ],
)
def test_odd_digest_references_are_not_pinned(
    guard: RunningGuard, attested: str, image: str, why: str
) -> None:
    answer = guard.post(admission_review(workload("Deployment", "web", "prod", image)))
    assert not answer.allowed
    assert why in answer.message


def test_tag_and_digest_is_judged_by_the_digest(guard: RunningGuard, attested: str) -> None:
    image = f"{IMAGE}:1.2@{WEB_DIGEST}"
    assert guard.post(admission_review(workload("Deployment", "web", "prod", image))).allowed


# --------------------------------------------------------------------------- what Kopf would allow


@pytest.mark.parametrize(
    ("resource", "kind", "sub", "operation"),
    [
        (("", "v1", "pods"), "Pod", "exec", "CONNECT"),
        (("", "v1", "pods"), "Pod", "status", "UPDATE"),
        (("apps", "v1", "deployments"), "Scale", "scale", "UPDATE"),
        (("", "v1", "pods"), "Pod", None, "DELETE"),
        (("apps", "v1", "deployments"), "ConfigMap", None, "CREATE"),
        (("", "v1", "configmaps"), "ConfigMap", None, "CREATE"),
    ],
)
def test_requests_guard_does_not_judge_are_denied(
    guard: RunningGuard,
    resource: tuple[str, str, str],
    kind: str,
    sub: str | None,
    operation: str,
) -> None:
    obj = workload("Pod", "p", "prod", UNATTESTED)
    review = admission_review(
        obj, operation=operation, kind=kind, resource=resource, sub_resource=sub
    )
    answer = guard.post(review)
    assert answer.status == 200
    assert answer.response["uid"] == review["request"]["uid"]
    assert not answer.allowed


def test_missing_object_is_denied(guard: RunningGuard) -> None:
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    review["request"]["object"] = None
    answer = guard.post(review)
    assert not answer.allowed
    assert "carries no object" in answer.message


def test_request_kind_of_another_version_is_judged_as_converted(
    guard: RunningGuard, attested: str
) -> None:
    # matchPolicy Equivalent: apps/v1beta2 converted to apps/v1; guard reads
    # kind/resource (the converted version the object is in).
    review = admission_review(workload("Deployment", "web", "prod", attested))
    review["request"]["requestKind"] = {"group": "apps", "version": "v1beta2", "kind": "Deployment"}
    review["request"]["requestResource"] = {
        "group": "apps",
        "version": "v1beta2",
        "resource": "deployments",
    }
    assert guard.post(review).allowed
    unreviewed = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    unreviewed["request"]["requestKind"] = review["request"]["requestKind"]
    assert not guard.post(unreviewed).allowed


# --------------------------------------------------------------------------- the answer itself


def test_the_answer_is_exactly_an_admission_review(guard: RunningGuard) -> None:
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    answer = guard.post(review)
    assert set(answer.body) == {"apiVersion", "kind", "response"}
    assert (answer.body["apiVersion"], answer.body["kind"]) == (
        "admission.k8s.io/v1",
        "AdmissionReview",
    )
    assert set(answer.response) == {"uid", "allowed", "status"}
    assert answer.response["uid"] == review["request"]["uid"]
    assert set(answer.response["status"]) == {"code", "message"}
    assert answer.code == 403


def test_a_failure_inside_guard_denies_with_500_and_no_traceback(
    guard: RunningGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("index exploded")

    monkeypatch.setattr(guard.runtime, "admit", broken)
    review = admission_review(workload("Pod", "p", "dev", WEB))
    answer = guard.post(review)
    assert answer.status == 200
    assert answer.response["uid"] == review["request"]["uid"]
    assert not answer.allowed
    assert answer.code == 500
    assert "Traceback" not in answer.message
    assert 'File "' not in answer.message


# --------------------------------------------------------------------------- the request's namespace


def test_namespace_cannot_steer_the_fallback_read(guard: RunningGuard) -> None:
    # Only a caller that reaches the Service directly can send this; the
    # operator must not turn it into a GET of another API path.
    namespace = "prod/../../../../api/v1/namespaces/kube-system/secrets?x="
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    review["request"]["namespace"] = namespace
    before = len(guard.api.requests)
    answer = guard.post(review)
    assert not answer.allowed
    assert answer.code == 400
    assert "request.namespace" in answer.message
    assert not any("secrets" in path for _, path in guard.api.requests[before:])


def test_a_workload_without_a_namespace_is_malformed(guard: RunningGuard) -> None:
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    del review["request"]["namespace"]
    before = len(guard.api.requests)
    answer = guard.post(review)
    assert not answer.allowed
    assert answer.code == 400
    assert "request.namespace is missing" in answer.message
    # No cluster-wide fallback list either.
    assert guard.api.requests[before:] == []


# --------------------------------------------------------------------------- break-glass


def test_break_glass_cannot_be_laundered_through_a_controller(
    guard: RunningGuard, pod_review: None
) -> None:
    # carol is not on call. No review policy judges her Deployment, but
    # pod-review judges its Pods and would honour an inherited break-glass.
    deployment = with_template_glass(
        workload("Deployment", "web", "laundry", UNATTESTED), "INC-1: trust me"
    )
    answer = guard.post(admission_review(deployment, user=DEPLOYER))
    assert not answer.allowed
    assert "break-glass refused" in answer.message
    assert "GuardPolicy pod-review" in answer.message


def test_break_glass_by_the_on_call_is_inherited_by_its_pods(
    guard: RunningGuard, pod_review: None
) -> None:
    deployment = with_template_glass(
        workload("Deployment", "web", "laundry", UNATTESTED), "INC-2: checkout down"
    )
    review = admission_review(deployment, user=ONCALL)
    answer = guard.post(review)
    assert answer.allowed, answer.message
    record = audit_record(guard, review["request"]["uid"])
    assert record["breakGlass"]["outcome"] == "honoured"
    assert record["breakGlass"]["honouredBy"] == ["pod-review"]
    pod = workload("Pod", "web-x1", "laundry", UNATTESTED)
    pod["metadata"]["annotations"] = {"guard.dev/break-glass": "INC-2: checkout down"}
    by_controller = guard.post(
        admission_review(pod, user=CONTROLLER_USER, groups=("system:serviceaccounts",))
    )
    assert by_controller.allowed, by_controller.message


@pytest.mark.parametrize("kind", ["Pod", "ReplicaSet"])
def test_a_person_cannot_pass_as_a_controller_by_owner_references(
    guard: RunningGuard, pod_review: None, kind: str
) -> None:
    # Crafted as a ReplicaSet controller would make it: owned by a
    # Deployment, the annotation copied. Only request.userInfo says who asks.
    obj = workload(kind, "web-6d4f", "laundry", UNATTESTED)
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "1",
            "controller": True,
        }
    ]
    obj["metadata"]["annotations"] = {"guard.dev/break-glass": "INC-2: checkout down"}
    if kind != "Pod":
        obj = with_template_glass(obj, "INC-2: checkout down")
    answer = guard.post(admission_review(obj, user=DEPLOYER, groups=("system:serviceaccounts",)))
    assert not answer.allowed
    assert "break-glass refused" in answer.message


def _printable(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def test_break_glass_reason_cannot_forge_lines(guard: RunningGuard, pod_review: None) -> None:
    reason = 'INC-3\n{"uid": "forged", "decision": "allow"}\u2028\x85\u202eevil'
    pod = workload("Pod", "p", "laundry", UNATTESTED)
    pod["metadata"]["annotations"] = {"guard.dev/break-glass": reason}
    review = admission_review(pod, user=ONCALL)
    answer = guard.post(review)
    assert answer.allowed, answer.message
    # kube-apiserver drops a warning with a control character: it must be
    # printable to be shown at all.
    assert answer.warnings and all(_printable(w) for w in answer.warnings)
    assert "INC-3" in answer.warnings[0]
    # One line per decision, whatever splits lines.
    for line in audit_lines(guard):
        json.loads(line)
    record = audit_record(guard, review["request"]["uid"])
    assert _printable(record["breakGlass"]["reason"])
    assert record["breakGlass"]["reason"].startswith("INC-3")


# --------------------------------------------------------------------------- shapes and bodies the API server never sends


def _answered_as_bad_input(answer: Answer, uid: str) -> None:
    """A body guard cannot read, with a readable uid: an AdmissionReview
    denial (HTTP 200, status.code 400) the API server takes as the verdict,
    whatever the webhook's failure policy."""
    assert answer.status == 200, answer.body
    assert answer.response["uid"] == uid
    assert answer.allowed is False
    assert answer.code == 400


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(spec="containers: []"),
        lambda o: o["spec"]["template"]["spec"].update(containers={"web": {"image": UNATTESTED}}),
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image=[UNATTESTED]),
        lambda o: o.update(metadata=[{"name": "web"}]),
        lambda o: o["spec"]["template"]["spec"].update(affinity=_deep(300)),
    ],
    ids=["spec-string", "containers-map", "image-list", "metadata-list", "nested-600"],
)
def test_shapes_the_api_server_never_sends_are_denied_not_crashed(
    guard: RunningGuard, mutate: Any
) -> None:
    review = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
    mutate(review["request"]["object"])
    answer = guard.post(review)
    _answered_as_bad_input(answer, review["request"]["uid"])
    assert "the API server never sends this shape" in answer.message or "nested" in answer.message
    assert audit_record(guard, review["request"]["uid"])["reason"] == "malformed"


def _deep(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": [value]}
    return value


def test_a_body_json_cannot_load_is_denied_with_its_uid(guard: RunningGuard) -> None:
    review = admission_review(workload("Pod", "p", "prod", UNATTESTED))
    text = json.dumps(review).encode()
    for tail in (b"[" * 100_000, b"1" * 10_000, b"NaN"):
        answer = guard.post(text[:-2] + b', "x": ' + tail + b"}}")
        _answered_as_bad_input(answer, review["request"]["uid"])
        assert "not valid JSON" in answer.message
    # With no uid to answer to, a bare HTTP 400 is all that is left.
    answer = guard.post(b"[" * 100_000)
    assert answer.status == 400
    assert "nested too deeply" in answer.message


BAD_INPUT = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = admission_review(workload("Deployment", "web", "prod", UNATTESTED))


# The operator's own threads use ``random`` while examples are drawn.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module")
@BAD_INPUT
@given(mutated(BASE) | broken_bodies(BASE).map(lambda body: (body, "broken", ())))
def test_hostile_reviews_never_get_a_500_or_an_allow_for_an_unreviewed_image(
    guard: RunningGuard, case: tuple[Any, str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    body = review if isinstance(review, bytes) else json.dumps(review).encode()
    answer = guard.post(body)
    assert answer.status in (200, 400), (how, path, answer.status, answer.body)
    if answer.status == 400:
        return
    assert answer.code in (None, 400, 403, 404), (how, path, answer.body)
    if answer.allowed:
        assert UNATTESTED.encode() not in body or b'"namespace": "prod"' not in body, (how, path)


def test_one_requester_cannot_flush_the_audit_trail(
    start_guard: Callable[..., RunningGuard],
) -> None:
    guard = start_guard(audit_detail_burst=2, audit_detail_rate=0.001)
    images = [f"{IMAGE}-{n}@{digest_of(str(n))}" for n in range(300)]
    flood = [
        admission_review(
            workload("Deployment", f"w{n}", "prod", *images), user="mallory", dry_run=True
        )
        for n in range(5)
    ]
    other = admission_review(workload("Deployment", "web", "prod", UNATTESTED), user=DEPLOYER)
    answers = [guard.post(review) for review in [*flood, other]]
    assert not any(answer.allowed for answer in answers)
    guard.stop()  # closing counts the summaries written instead of full records
    records = [json.loads(line) for line in audit_lines(guard)]
    by_uid = {r["uid"]: r for r in records if "uid" in r}
    assert all(len(line.encode()) <= MAX_LINE_BYTES for line in audit_lines(guard))
    full = [by_uid[r["request"]["uid"]] for r in flood[:2]]
    summaries = [by_uid[r["request"]["uid"]] for r in flood[2:]]
    assert all("findings" in r for r in full)
    assert all(r["detail"] == "suppressed" and r["request"]["user"] == "mallory" for r in summaries)
    assert "findings" in by_uid[other["request"]["uid"]]
    [counted] = [r for r in records if r.get("event") == "audit-detail-suppressed"]
    assert counted["message"].startswith("suppressed 3 records from mallory")
