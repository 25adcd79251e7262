"""Governed break-glass through the one decision function.

Who may use it (a listed principal, an alias of one, a listed group), who
may not (a stranger; anyone on a policy that does not list them), what it
bypasses (only the review finding of the policies that list the user) and
what it leaves in the record.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pytest

from controller.attest.review import AttestationReview
from controller.kube.breakglass import ANNOTATION, requested_reason
from controller.kube.decide import judge, subject_of
from controller.kube.envelopes import gather
from controller.kube.record import audit_record
from controller.kube.request import parse_review
from controller.kube.result import AdmissionResult
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from controller.kube.state import FileInputs, PolicySet, build_policy_set
from controller.policy.documents import Action
from tests.kube.helpers import (
    CONTROLLER_USER,
    GLASS_POLICIES,
    ONCALL_ALIAS,
    ONCALL_GROUP,
    UNATTESTED,
    Cast,
    admission_review,
    break_glass,
    envelope,
    oncall_trust,
    workload,
    write_documents,
)

UNATTESTED_DIGEST = UNATTESTED.split("@", 1)[1]
REASON = "INC-4711: checkout is down, reviewer unreachable"
STRANGER = "mallory@example.com"


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory, cast: Cast) -> PolicySet:
    directory = tmp_path_factory.mktemp("glass")
    files = FileInputs.load(
        [write_documents(directory / "p.yaml", GLASS_POLICIES)],
        [write_documents(directory / "t.yaml", [oncall_trust(cast)])],
    )
    return build_policy_set(files, (), enforcement=Action.deny)


def decide(
    policies: PolicySet,
    namespace: str,
    *,
    user: str,
    groups: Sequence[str] = ("system:authenticated",),
    reason: str | None = REASON,
    privileged: bool = False,
    kind: str = "Deployment",
    envelopes: Sequence[str] = (),
) -> AdmissionResult:
    annotations = break_glass(reason) if reason is not None else None
    obj = workload(
        kind, "web", namespace, UNATTESTED, annotations=annotations, privileged=privileged
    )
    request = parse_review(admission_review(obj, user=user, groups=groups))
    reviewer = AttestationReview(
        policies.trust,
        gather([UNATTESTED_DIGEST], {}, [e.encode() for e in envelopes]),
        now=lambda: dt.datetime.now(dt.UTC),
    )
    subject = subject_of(
        request,
        controller_identities=frozenset(DEFAULT_CONTROLLER_IDENTITIES),
        trust=policies.trust,
    )
    return judge(request, policies, reviewer, subject=subject)


def glass_record(result: AdmissionResult) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(json.dumps(audit_record(result)))
    return record


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        ("github:1009", ()),  # the principal itself
        (ONCALL_ALIAS, ()),  # an alias of it, through the identity map
        ("erin@example.com", (ONCALL_GROUP,)),  # a member of a listed group
    ],
)
def test_listed_people_get_past_review_with_a_warning_and_a_record(
    policies: PolicySet, user: str, groups: Sequence[str]
) -> None:
    result = decide(policies, "glass", user=user, groups=groups)
    assert result.allowed, result.message
    assert result.warnings[0].startswith(f"guard: break-glass used by {user}")
    assert REASON in result.warnings[0]
    assert "bypassed: glass-review/review" in result.warnings[0]
    record = glass_record(result)
    assert record["decision"] == "warn"
    glass = record["breakGlass"]
    assert glass["outcome"] == "honoured"
    assert glass["user"] == user
    assert glass["reason"] == REASON
    assert glass["honouredBy"] == ["glass-review"]
    assert glass["bypassed"] == [{"policy": "glass-review", "rule": "review"}]
    review = [f for f in record["findings"] if f["rule"] == "review"]
    assert len(review) == 1
    assert review[0]["exception"] is None  # a GuardException never waives review
    assert review[0]["waiver"] == {"kind": "break-glass", "name": user}
    assert record["policies"]["glass-review"] == {"result": "fail", "effect": "waived"}


@pytest.mark.parametrize(
    "lookalike", ["DANA@example.com", "dana@example.com ", "dana\u200b@example.com"]
)
def test_a_look_alike_of_a_listed_name_is_somebody_else(
    policies: PolicySet, lookalike: str
) -> None:
    """breakGlass is an allow-list: only spellings the policy or the trust lists count."""
    result = decide(policies, "glass", user=lookalike)
    assert not result.allowed
    assert "break-glass refused" in result.message


def test_a_stranger_is_denied_and_recorded(policies: PolicySet) -> None:
    result = decide(policies, "glass", user=STRANGER, groups=("developers",))
    assert not result.allowed
    assert "[glass-review/break-glass] break-glass refused" in result.message
    assert f"{STRANGER} may not break glass here" in result.message
    assert f"remove the {ANNOTATION} annotation" in result.message
    glass = glass_record(result)["breakGlass"]
    assert glass["outcome"] == "refused"
    assert glass["refusedBy"] == ["glass-review"]
    assert glass["bypassed"] == []


def test_a_stranger_is_denied_even_when_everything_else_passes(
    policies: PolicySet, cast: Cast
) -> None:
    reviewed = envelope(cast.ci, [UNATTESTED_DIGEST])
    without = decide(policies, "glass", user=STRANGER, reason=None, envelopes=[reviewed])
    assert without.allowed, without.message
    # The annotation is a claim of authority: a false one is stopped, not ignored.
    result = decide(policies, "glass", user=STRANGER, envelopes=[reviewed])
    assert not result.allowed
    assert result.message.startswith("guard denied Deployment glass/web: 1 problem")
    assert "[glass-review/break-glass] break-glass refused" in result.message


def test_a_policy_that_does_not_list_the_user_keeps_its_review(policies: PolicySet) -> None:
    # prod-both is judged by glass-review (lists dana) and require-review (lists nobody).
    result = decide(policies, "prod-both", user=ONCALL_ALIAS)
    assert not result.allowed
    assert "[require-review/review]" in result.message
    assert "[glass-review/review]" not in result.message
    assert "GuardPolicy require-review does not allow break-glass by" in result.message
    glass = glass_record(result)["breakGlass"]
    assert glass["honouredBy"] == ["glass-review"]
    assert glass["refusedBy"] == ["require-review"]
    assert glass["bypassed"] == [{"policy": "glass-review", "rule": "review"}]


def test_only_a_policy_without_break_glass_applies(policies: PolicySet) -> None:
    result = decide(policies, "prod", user=ONCALL_ALIAS)
    assert not result.allowed
    assert "GuardPolicy require-review lists neither this principal" in result.message
    assert glass_record(result)["breakGlass"]["outcome"] == "refused"


def test_break_glass_never_bypasses_other_rules(policies: PolicySet) -> None:
    result = decide(policies, "glass", user=ONCALL_ALIAS, privileged=True)
    assert not result.allowed
    assert result.message.startswith("guard denied Deployment glass/web: 1 problem")
    assert "[no-privileged/not-privileged]" in result.message


def test_an_empty_reason_is_refused(policies: PolicySet) -> None:
    result = decide(policies, "glass", user=ONCALL_ALIAS, reason="  ")
    assert not result.allowed
    assert "must say why" in result.message


def test_nothing_to_break_is_only_noted(policies: PolicySet) -> None:
    result = decide(policies, "dev", user=STRANGER)
    assert result.allowed, result.message
    record = glass_record(result)
    assert record["breakGlass"]["outcome"] == "ignored"
    assert any("nothing to bypass" in note for note in record["notes"])


def test_controller_requests_inherit_the_annotation(policies: PolicySet) -> None:
    result = decide(policies, "glass", user=CONTROLLER_USER, kind="ReplicaSet")
    assert result.allowed, result.message
    assert result.warnings[0].startswith("guard: break-glass inherited from its owner")
    assert glass_record(result)["breakGlass"]["outcome"] == "inherited"
    # A controller cannot inherit what a policy does not allow at all.
    denied = decide(policies, "prod", user=CONTROLLER_USER, kind="ReplicaSet")
    assert not denied.allowed


def test_the_warning_says_to_annotate_the_pod_template(policies: PolicySet) -> None:
    result = decide(policies, "glass", user=ONCALL_ALIAS)
    assert "put it on the pod template" in result.warnings[0]
    pod = decide(policies, "glass", user=ONCALL_ALIAS, kind="Pod")
    assert "pod template" not in pod.warnings[0]


def test_the_reason_is_read_from_the_object_or_its_template() -> None:
    deployment = workload("Deployment", "web", "glass", UNATTESTED)
    assert requested_reason("Deployment", deployment) is None
    deployment["spec"]["template"]["metadata"]["annotations"] = break_glass("from template")
    assert requested_reason("Deployment", deployment) == "from template"
    deployment["metadata"]["annotations"] = break_glass("own")
    assert requested_reason("Deployment", deployment) == "own"
    deployment["metadata"]["annotations"] = break_glass("x" * 2000)
    assert len(requested_reason("Deployment", deployment) or "") == 512
