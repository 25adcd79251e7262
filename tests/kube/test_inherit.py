"""Inheritance from a baselined owner, without a server: the rules one by one,
and properties over hostile children (claimed owners, changed fields)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.kube.audit import AuditLog
from controller.kube.envelopes import index_entries
from controller.kube.inherit import Baselines
from controller.kube.owners import OwnerRecord, TemplateShape, owner_record, template_digest
from controller.kube.request import parse_review
from controller.kube.result import AdmissionResult
from controller.kube.runtime import GuardRuntime
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs
from controller.policy.baseline import GuardBaseline
from tests.kube.helpers import (
    CONTROLLER_USER,
    DEPLOYER,
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    Cast,
    admission_review,
    baseline_document,
    envelope,
    owned,
    workload,
    write_documents,
)

TODAY = dt.datetime.now(dt.UTC).date()
PROPERTIES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


DEPLOYMENT = owned(workload("Deployment", "legacy", "prod", UNATTESTED), None, "d-1")
REPLICASET = owned(workload("ReplicaSet", "legacy-1", "prod", UNATTESTED), DEPLOYMENT, "r-1")


def pod_of(owner: Mapping[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(owner["spec"]["template"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "legacy-1-x",
            "namespace": "prod",
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    return owned(pod, owner, "p-1")


def baseline(*owners: Mapping[str, Any], expires: dt.date | None = None) -> GuardBaseline:
    ends = (expires or TODAY + dt.timedelta(days=30)).isoformat()
    return GuardBaseline.model_validate(baseline_document("before-guard", owners, expires=ends))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> GuardRuntime:
    folder = tmp_path_factory.mktemp("inherit")
    policies = write_documents(folder / "policies.yaml", TEST_POLICIES)
    files = FileInputs.load((policies,), ())
    settings_ = ServeSettings(policy_paths=(policies,), audit_stdout=False)
    files = FileInputs(
        files.policies, files.exceptions, files.trust_specs, (baseline(DEPLOYMENT, REPLICASET),)
    )
    return GuardRuntime(settings_, files, audit=AuditLog(stream=None))


def index(*owners: Mapping[str, Any]) -> dict[tuple[str, str], OwnerRecord]:
    found: dict[tuple[str, str], OwnerRecord] = {}
    for owner in owners:
        record = owner_record(str(owner["kind"]), owner)
        assert record is not None
        found[(record.namespace, record.uid)] = record
    return found


def admit(
    runtime: GuardRuntime, review: Mapping[str, Any], *owners: Mapping[str, Any]
) -> AdmissionResult:
    request = parse_review(review)
    return asyncio.run(
        runtime.admit(request, attestations={}, resources=(), owners=index(*owners), revisions={})
    )


def by_controller(obj: Mapping[str, Any]) -> dict[str, Any]:
    return admission_review(obj, user=CONTROLLER_USER, groups=("system:serviceaccounts",))


def test_the_pod_a_controller_recreates_inherits(runtime: GuardRuntime) -> None:
    result = admit(runtime, by_controller(pod_of(REPLICASET)), DEPLOYMENT, REPLICASET)
    assert result.allowed, result.message
    assert result.evidence["inherited"]["entry"] == "ReplicaSet prod/legacy-1"


def test_without_the_owner_in_the_index_or_the_api_nothing_is_inherited(
    runtime: GuardRuntime,
) -> None:
    result = admit(runtime, by_controller(pod_of(REPLICASET)))
    assert not result.allowed
    assert any("not found" in n for n in result.notes)


def test_a_person_never_inherits(runtime: GuardRuntime) -> None:
    assert not admit(
        runtime, admission_review(pod_of(REPLICASET), user=DEPLOYER), REPLICASET
    ).allowed


def test_ephemeral_containers_never_inherit(runtime: GuardRuntime) -> None:
    review = by_controller(pod_of(REPLICASET))
    review["request"]["subResource"] = "ephemeralcontainers"
    review["request"]["resource"]["resource"] = "pods"
    result = admit(runtime, review, REPLICASET)
    assert not result.allowed
    assert "pods/ephemeralcontainers never inherits from an owner" in result.notes


def test_an_expired_baseline_applies_no_more() -> None:
    owner = owner_record("ReplicaSet", REPLICASET)
    assert owner is not None
    lapsed = Baselines([baseline(REPLICASET, expires=TODAY - dt.timedelta(days=1))])
    match, reason = lapsed.applying(owner, TODAY)
    assert match is None and "expired on" in reason
    live = Baselines([baseline(REPLICASET, expires=TODAY)])
    assert live.applying(owner, TODAY)[0] is not None  # through the day it names


def test_a_recreated_owner_is_another_owner(runtime: GuardRuntime) -> None:
    recreated = owned(REPLICASET, DEPLOYMENT, "r-2")
    result = admit(runtime, by_controller(pod_of(recreated)), DEPLOYMENT, recreated)
    # Its template is the Deployment's, which is baselined: it inherits through it.
    assert result.allowed
    assert result.evidence["inherited"]["via"] == "Deployment prod/legacy"
    orphan = owned(REPLICASET, None, "r-3")
    result = admit(runtime, by_controller(pod_of(orphan)), orphan)
    assert not result.allowed
    assert any("names an earlier ReplicaSet" in n for n in result.notes)


def test_the_template_digest_covers_the_security_fields_and_nothing_else() -> None:
    base = TemplateShape.of(REPLICASET["spec"]["template"]["spec"]).digest
    relabelled = copy.deepcopy(REPLICASET)
    relabelled["spec"]["template"]["metadata"]["annotations"] = {"restartedAt": "now"}
    relabelled["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert template_digest("ReplicaSet", relabelled) == base
    # The ServiceAccount admission plugin's default is the same as none.
    defaulted = copy.deepcopy(REPLICASET)
    defaulted["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    assert template_digest("ReplicaSet", defaulted) == base


def test_a_baseline_document_refuses_what_cannot_pin_an_owner() -> None:
    document = baseline(REPLICASET).model_dump(mode="json", by_alias=True)
    for field, value in (
        ("kind", "Pod"),
        ("uid", "a b"),
        ("templateDigest", "sha256:abc"),
        ("namespace", "Prod"),
    ):
        broken = copy.deepcopy(document)
        broken["spec"]["entries"][0][field] = value
        with pytest.raises(ValidationError):
            GuardBaseline.model_validate(broken)
    twice = copy.deepcopy(document)
    twice["spec"]["entries"] *= 2
    with pytest.raises(ValidationError, match="listed twice"):
        GuardBaseline.model_validate(twice)


# ----------------------------------------------------------------- properties

WORDS = st.text(alphabet="abcxyz-", min_size=1, max_size=8).filter(lambda w: w[0] != "-")
# Each compared field, with values of the type the API server sends.
CONTAINER_FIELDS = {
    "image": WORDS.map(lambda w: f"registry.example/{w}@sha256:{'0' * 64}"),
    "command": st.lists(WORDS, min_size=1, max_size=3),
    "args": st.lists(WORDS, min_size=1, max_size=3),
    "securityContext": st.fixed_dictionaries(
        {}, optional={"privileged": st.just(True), "runAsUser": st.integers(0, 5)}
    ).filter(bool),
}
POD_FIELDS = {
    "securityContext": st.fixed_dictionaries({"runAsUser": st.integers(0, 5)}),
    "hostNetwork": st.just(True),
    "hostPID": st.just(True),
    "hostIPC": st.just(True),
    "serviceAccountName": WORDS.filter(lambda w: w != "default"),
    "automountServiceAccountToken": st.just(True),
    "runtimeClassName": WORDS,
    "volumes": st.just([{"name": "host", "hostPath": {"path": "/"}}]),
}
CHANGES = st.one_of(
    *(st.tuples(st.just("container"), st.just(f), v) for f, v in CONTAINER_FIELDS.items()),
    *(st.tuples(st.just("pod"), st.just(f), v) for f, v in POD_FIELDS.items()),
)


@PROPERTIES
@given(change=CHANGES)
def test_a_child_that_differs_in_a_compared_field_never_inherits(
    runtime: GuardRuntime, change: tuple[str, str, Any]
) -> None:
    where, field, value = change
    pod = pod_of(REPLICASET)
    target = pod["spec"]["containers"][0] if where == "container" else pod["spec"]
    if target.get(field) == value:
        return
    target[field] = value
    result = admit(runtime, by_controller(pod), DEPLOYMENT, REPLICASET)
    assert "inherited" not in result.evidence


REFERENCE_FIELDS = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["apps/v1", "apps/v1beta2", "v1", "example.com/v1"]),
        "kind": st.sampled_from(["ReplicaSet", "Deployment", "Node", "StatefulSet", "Widget"]),
        "name": st.sampled_from(["legacy-1", "legacy", "other"]),
        "uid": st.sampled_from(["r-1", "d-1", "x-9"]),
        "controller": st.sampled_from([True, False]),
    }
)


@PROPERTIES
@given(references=st.lists(REFERENCE_FIELDS, max_size=3))
def test_only_the_exact_controlling_owner_is_inherited_from(
    runtime: GuardRuntime, references: list[dict[str, Any]]
) -> None:
    pod = pod_of(REPLICASET)
    pod["metadata"]["ownerReferences"] = references
    result = admit(runtime, by_controller(pod), DEPLOYMENT, REPLICASET)
    exact = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-1", "uid": "r-1"}
    controlling = [r for r in references if r["controller"]]
    expected = len(controlling) == 1 and {k: controlling[0][k] for k in exact} == exact
    assert ("inherited" in result.evidence) == expected
    assert result.allowed == expected


def test_break_glass_on_an_inherited_pod_is_recorded_with_its_owner(runtime: GuardRuntime) -> None:
    pod = pod_of(REPLICASET)
    pod["metadata"]["annotations"] = {"guard.dev/break-glass": "INC-1: copied from the template"}
    result = admit(runtime, by_controller(pod), DEPLOYMENT, REPLICASET)
    assert result.allowed, result.message
    assert result.break_glass is not None
    record = result.break_glass.record()
    assert record["owner"] == "ReplicaSet prod/legacy-1"
    assert record["outcome"] == "inherited"


def test_a_daemonset_pod_of_an_older_revision_inherits_through_its_controller_revision(
    runtime: GuardRuntime,
) -> None:
    daemonset = owned(workload("DaemonSet", "agent", "prod", UNATTESTED), None, "ds-1")
    older = workload("DaemonSet", "agent", "prod", f"{UNATTESTED[:-4]}beef")
    revision = owned(
        {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "agent-6c9d8", "namespace": "prod"},
            "data": {"spec": {"template": older["spec"]["template"]}},
            "revision": 1,
        },
        daemonset,
        "cr-1",
    )
    document = baseline_document("agents", [daemonset])
    document["spec"]["entries"][0]["revisions"] = [template_digest("ControllerRevision", revision)]
    files = runtime.files
    own = GuardRuntime(
        runtime.settings,
        FileInputs(
            files.policies,
            files.exceptions,
            files.trust_specs,
            (GuardBaseline.model_validate(document),),
        ),
        audit=AuditLog(None, stream=None),
    )
    pod = pod_of(daemonset)
    pod["spec"] = copy.deepcopy(older["spec"]["template"]["spec"])
    # DaemonSets label their Pods with the revision's hash, not its name.
    pod["metadata"]["labels"]["controller-revision-hash"] = "6c9d8"
    record = owner_record("ControllerRevision", revision)
    assert record is not None
    request = parse_review(by_controller(pod))
    revisions = {("prod", "agent-6c9d8"): record}
    # With the baseline it inherits; without it the same Pod is judged in full.
    baselined, unbaselined = (
        asyncio.run(
            judge.admit(
                request,
                attestations={},
                resources=(),
                owners=index(daemonset),
                revisions=revisions,
            )
        )
        for judge in (own, runtime)
    )
    assert baselined.allowed, baselined.message
    assert baselined.evidence["inherited"]["revision"] == "agent-6c9d8"
    assert not unbaselined.allowed


def test_an_inherited_pod_makes_no_fallback_read_for_the_images_it_inherits(
    runtime: GuardRuntime,
) -> None:
    before = runtime.fallback.reads + runtime.fallback.skipped
    result = admit(runtime, by_controller(pod_of(REPLICASET)), DEPLOYMENT, REPLICASET)
    assert result.allowed
    assert runtime.fallback.reads + runtime.fallback.skipped == before


def test_a_controller_without_inheritance_is_refused_an_image_whose_key_was_revoked(
    tmp_path: Path,
) -> None:
    """Today's controller semantics in full: what verifies only under a key
    the trust no longer holds is refused, however it ran before."""
    cast = Cast.make()
    policies = write_documents(tmp_path / "p.yaml", TEST_POLICIES)
    pod = pod_of(owned(workload("ReplicaSet", "web-1", "prod", WEB), None, "r-9"))
    text = envelope(cast.ci)
    entries, problem = index_entries(text, "ReviewAttestation prod/web", "prod")
    assert problem is None
    attestations = {digest: [entry] for digest, entry in entries.items()}
    request = parse_review(by_controller(pod))
    for trust, allowed in ((cast.trust_document(), True), (revoked(cast), False)):
        files = FileInputs.load((policies,), (write_documents(tmp_path / "t.yaml", [trust]),))
        runtime = GuardRuntime(
            ServeSettings(policy_paths=(policies,), audit_stdout=False),
            files,
            audit=AuditLog(None, stream=None),
        )
        result = asyncio.run(runtime.admit(request, attestations=attestations, resources=()))
        assert result.allowed is allowed, result.message


def revoked(cast: Cast) -> dict[str, Any]:
    """The trust after the CI key was removed (another key attests now)."""
    document = cast.trust_document()
    document["spec"]["keys"][0]["publicKey"] = cast.stranger.public.pem()
    return document
