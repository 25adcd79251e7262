"""The decision function: actions, the enforcement cap, broken policies,
unsupported requests, and the records an audit line is written from."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from controller.attest.review import AttestationReview
from controller.kube.decide import judge, subject_of, unsupported_reason
from controller.kube.envelopes import gather
from controller.kube.record import audit_record
from controller.kube.request import parse_review
from controller.kube.state import FileInputs, PolicySet, build_policy_set, entry_from_body
from controller.policy.documents import Action
from tests.kube.helpers import (
    NO_PRIVILEGED,
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    envelope,
    workload,
    write_documents,
)

CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


def _files(tmp_path: Path, cast: Cast) -> FileInputs:
    policies = write_documents(tmp_path / "p.yaml", TEST_POLICIES)
    trust = write_documents(tmp_path / "t.yaml", [cast.trust_document()])
    return FileInputs.load([policies], [trust])


def _judge(policies: PolicySet, review: dict[str, Any], cast: Cast, *texts: str) -> Any:
    request = parse_review(review)
    candidates = gather([WEB_DIGEST], {}, [t.encode() for t in texts])
    reviewer = AttestationReview(policies.trust, candidates, now=lambda: dt.datetime.now(dt.UTC))
    return judge(request, policies, reviewer)


def test_deny_allow_and_the_record(tmp_path: Path, cast: Cast) -> None:
    policies = build_policy_set(_files(tmp_path, cast), (), enforcement=Action.deny)
    review = admission_review(workload("Deployment", "web", "prod", WEB, privileged=True))
    result = _judge(policies, review, cast, envelope(cast.ci))
    assert not result.allowed
    assert result.code == 403
    assert result.response()["response"]["status"]["code"] == 403
    assert result.message.splitlines()[0] == "guard denied Deployment prod/web: 1 problem"
    record = json.loads(json.dumps(audit_record(result)))
    assert record["decision"] == "deny"
    assert record["request"]["user"] == "carol@example.com"
    assert [f["policy"] for f in record["findings"]] == ["no-privileged"]
    allowed = _judge(
        policies,
        admission_review(workload("Deployment", "web", "prod", WEB)),
        cast,
        envelope(cast.ci),
    )
    assert allowed.allowed
    assert allowed.response()["response"] == {"uid": allowed.uid, "allowed": True}


def test_enforcement_cap_turns_denials_into_warnings(tmp_path: Path, cast: Cast) -> None:
    policies = build_policy_set(_files(tmp_path, cast), (), enforcement=Action.warn)
    result = _judge(policies, admission_review(workload("Pod", "p", "prod", UNATTESTED)), cast)
    assert result.allowed
    assert any("[require-review/review]" in w for w in result.warnings)
    audit_cap = build_policy_set(_files(tmp_path, cast), (), enforcement=Action.audit)
    quiet = _judge(audit_cap, admission_review(workload("Pod", "p", "prod", UNATTESTED)), cast)
    assert quiet.allowed and quiet.warnings == ()
    assert quiet.decision is not None and len(quiet.decision.findings) == 1


def test_broken_policy_still_denies_what_it_matches(tmp_path: Path, cast: Cast) -> None:
    broken = copy.deepcopy(NO_PRIVILEGED)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["team-a"]}}}
    broken["spec"]["rules"][0]["expression"] = "containers.all(c, "
    entry = entry_from_body("GuardPolicy", broken)
    assert entry.error is not None and "policy 'broken', rule 'not-privileged'" in entry.error
    policies = build_policy_set(_files(tmp_path, cast), [entry], enforcement=Action.deny)
    matched = _judge(policies, admission_review(workload("Pod", "p", "team-a", WEB)), cast)
    assert not matched.allowed
    assert "[broken/not-privileged] policy cannot be evaluated" in matched.message
    other = _judge(policies, admission_review(workload("Pod", "p", "team-b", WEB)), cast)
    assert other.allowed


def test_an_invalid_policy_still_judges_what_it_matches(tmp_path: Path, cast: Cast) -> None:
    invalid = copy.deepcopy(NO_PRIVILEGED)
    invalid["metadata"]["name"] = "typo"
    invalid["spec"]["acton"] = "deny"
    invalid["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["dev"]}}}
    entry = entry_from_body("GuardPolicy", invalid)
    assert entry.document is None and entry.invalid is not None and entry.enforced_as_error
    policies = build_policy_set(_files(tmp_path, cast), [entry], enforcement=Action.deny)
    assert "unknown field" in policies.problems["GuardPolicy typo"]
    review = envelope(cast.ci)
    result = _judge(policies, admission_review(workload("Pod", "p", "dev", WEB)), cast, review)
    assert not result.allowed
    assert "[typo/document] policy is invalid and judges as an error" in result.message
    assert "spec.acton: unknown field" in result.message
    elsewhere = _judge(policies, admission_review(workload("Pod", "p", "prod", WEB)), cast, review)
    assert elsewhere.allowed  # its own match still scopes it


@pytest.mark.parametrize(
    ("spec", "action", "scoped"),
    [
        ({"action": "warn", "match": {"kubernetes": {}}, "maxAge": "30 d"}, "warn", True),
        ({"action": "audit", "match": {"kubernetes": {"kindz": []}}}, "audit", False),
        ({"action": "sometimes", "match": "everything"}, "deny", False),
        ({"severity": "high", "match": {"kubernetes": {}}, "rules": [{"name": "r"}]}, "deny", True),
    ],
)
def test_an_invalid_policy_keeps_its_own_action_and_spares_controllers(
    tmp_path: Path, cast: Cast, spec: dict[str, Any], action: str, scoped: bool
) -> None:
    body = {"apiVersion": "guard.dev/v1alpha1", "kind": "GuardPolicy",
            "metadata": {"name": "broken", "uid": "u-1"}, "spec": spec}  # fmt: skip
    entry = entry_from_body("GuardPolicy", body)
    assert entry.invalid is not None and entry.invalid.scoped is scoped
    policies = build_policy_set(_files(tmp_path, cast), [entry], enforcement=Action.deny)
    pod = admission_review(workload("Pod", "p", "dev", WEB))
    by_person = _judge(policies, pod, cast, envelope(cast.ci))
    assert by_person.decision is not None
    [finding] = [f for f in by_person.decision.findings if f.policy == "broken"]
    assert (finding.result.value, finding.action.value) == ("error", action)
    assert by_person.allowed is (action != "deny")
    request = parse_review(
        admission_review(workload("Pod", "p", "dev", WEB), user=CONTROLLER, groups=[])
    )
    subject = subject_of(request, controller_identities=frozenset({CONTROLLER}))
    by_controller = judge(request, policies, None, subject=subject)
    assert by_controller.decision is not None
    assert not [f for f in by_controller.decision.findings if f.policy == "broken"]


def test_a_broken_pod_policy_judges_the_deployment_a_person_applies(
    tmp_path: Path, cast: Cast
) -> None:
    broken = copy.deepcopy(NO_PRIVILEGED)
    broken["metadata"]["name"] = "pods-only"
    broken["spec"]["match"] = {"kubernetes": {"kinds": ["Pod"]}}
    broken["spec"]["rules"][0]["expression"] = "containers.all(c, "
    policies = build_policy_set(
        _files(tmp_path, cast), [entry_from_body("GuardPolicy", broken)], enforcement=Action.deny
    )
    deployment = admission_review(workload("Deployment", "web", "dev", WEB))
    result = _judge(policies, deployment, cast, envelope(cast.ci))
    assert not result.allowed
    assert "[pods-only/not-privileged] policy cannot be evaluated" in result.message
    assert "judges what controllers make from this Deployment" in result.message


def test_unsupported_requests_are_named() -> None:
    obj = workload("Deployment", "web", "dev", WEB)
    review = admission_review(obj, operation="DELETE", old=obj)
    problem = unsupported_reason(parse_review(review))
    assert problem is not None and "only CREATE and UPDATE" in problem
    assert unsupported_reason(parse_review(admission_review(obj))) is None


@pytest.mark.parametrize(
    ("username", "groups", "controller"),
    [
        (CONTROLLER, [], True),
        ("mallory", [CONTROLLER], False),  # a group is not the identity
        (CONTROLLER.upper(), [], False),  # a look-alike is somebody else
        (CONTROLLER + " ", [], False),
        ("", [], False),
    ],
)
def test_controller_identity_comes_from_the_username_only(
    username: str, groups: list[str], controller: bool
) -> None:
    review = admission_review(workload("Pod", "p", "dev", WEB), user=username, groups=groups)
    subject = subject_of(parse_review(review), controller_identities=frozenset({CONTROLLER}))
    assert subject.requester is not None
    assert subject.requester.controller is controller
    assert subject.requester.username == username


def test_many_failures_are_capped_in_the_message(tmp_path: Path, cast: Cast) -> None:
    policies = build_policy_set(_files(tmp_path, cast), (), enforcement=Action.deny)
    images = [f"{UNATTESTED[:-4]}{i:04d}" for i in range(3)]
    result = _judge(policies, admission_review(workload("Pod", "p", "prod", *images)), cast)
    assert "(and 2 more)" in result.message
    assert all(image in result.message for image in images)


@pytest.mark.parametrize("metadata", [["x"], "name", None, 7])
def test_a_resource_with_unreadable_metadata_is_invalid_not_a_crash(metadata: Any) -> None:
    body = {"apiVersion": "guard.dev/v1alpha1", "kind": "GuardPolicy", "metadata": metadata,
            "spec": {"match": {"kubernetes": {}}}}  # fmt: skip
    entry = entry_from_body("GuardPolicy", body)
    assert entry.error is not None and entry.invalid is not None
    assert entry.invalid.name == "(unnamed)"
