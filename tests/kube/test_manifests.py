"""Manifests offline: judged exactly as the webhook judges the same request.

``guard kube check`` and the webhook build the subject with the same
``decide.subject_of`` and the same controller identities, so the same input
gets the same decision: a manifest played as a controller's request skips
only the checks that age, and inherits break-glass, on both sides.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from controller.cli import main
from controller.errors import InputError
from controller.kube import decide
from controller.kube.envelopes import IndexedEnvelope, gather, index_entries
from controller.kube.manifests import MAX_LISTED_OBJECTS, Manifest, check_manifests, manifests
from controller.kube.request import BadReview, parse_review
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from controller.kube.state import FileInputs, PolicySet, build_policy_set
from controller.policy.documents import Action
from controller.policy.results import Decision, Requester
from tests.kube.helpers import (
    CONTROLLER_USER,
    DEPLOYER,
    GLASS_POLICIES,
    ONCALL_PRINCIPAL,
    UNATTESTED,
    WEB,
    Cast,
    admission_review,
    break_glass,
    envelope,
    expired_envelope,
    oncall_trust,
    workload,
    write_documents,
)
from tests.kube.mutations import mutated

IDENTITIES = frozenset(DEFAULT_CONTROLLER_IDENTITIES)
Verdict = tuple[bool, set[tuple[str, str, bool]]]


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture()
def policies(tmp_path: Path, cast: Cast) -> PolicySet:
    files = FileInputs.load(
        [write_documents(tmp_path / "p.yaml", GLASS_POLICIES)],
        [write_documents(tmp_path / "t.yaml", [oncall_trust(cast)])],
    )
    return build_policy_set(files, (), enforcement=Action.deny)


def _index(texts: list[str]) -> dict[str, list[IndexedEnvelope]]:
    index: dict[str, list[IndexedEnvelope]] = {}
    for position, text in enumerate(texts):
        entries, problem = index_entries(text, f"file {position}")
        assert problem is None
        for digest, entry in entries.items():
            index.setdefault(digest, []).append(entry)
    return index


def _verdict(allowed: bool, findings: Any) -> Verdict:
    return allowed, {(f.policy, f.rule, f.waiver is not None) for f in findings}


def _webhook(policies: PolicySet, obj: dict[str, Any], user: str, texts: list[str]) -> Verdict:
    request = parse_review(admission_review(obj, user=user, groups=[], dry_run=True))
    subject = decide.subject_of(request, controller_identities=IDENTITIES, trust=policies.trust)
    digests = [a.digest for a in subject.artifacts if a.digest is not None]
    candidates = gather(digests, _index(texts), [], namespace=request.namespace)
    reviewer = decide.reviewer_for(policies, candidates, now=lambda: dt.datetime.now(dt.UTC))
    result = decide.judge(request, policies, reviewer, subject=subject)
    assert result.decision is not None
    return _verdict(result.allowed, result.decision.findings)


def _check(policies: PolicySet, obj: dict[str, Any], user: str, texts: list[str]) -> Verdict:
    decision, skipped = check_manifests(
        [Manifest(obj, "m.yaml", 1)],
        policies,
        _index(texts),
        Requester(username=user),
        controller_identities=IDENTITIES,
    )
    assert skipped == 0
    return _verdict(decision.allowed, decision.findings)


def _scenarios(cast: Cast) -> list[tuple[str, dict[str, Any], str, list[str], bool]]:
    unattested_digest = UNATTESTED.split("@", 1)[1]
    glass = break_glass("pager 4711")
    return [
        ("reviewed, by a person", workload("Deployment", "web", "prod", WEB), DEPLOYER,
         [envelope(cast.ci)], True),
        ("expired, by a person", workload("Deployment", "web", "prod", WEB), DEPLOYER,
         [expired_envelope(cast.ci)], False),
        ("expired, by a controller", workload("ReplicaSet", "web", "prod", WEB), CONTROLLER_USER,
         [expired_envelope(cast.ci)], True),
        ("break-glass inherited by a controller",
         workload("ReplicaSet", "web", "glass", UNATTESTED, annotations=glass),
         CONTROLLER_USER, [], True),
        ("break-glass by someone not listed",
         workload("Deployment", "web", "glass", UNATTESTED, annotations=glass),
         DEPLOYER, [envelope(cast.ci, [unattested_digest])], False),
        ("break-glass by the on-call principal",
         workload("Deployment", "web", "glass", UNATTESTED, annotations=glass),
         ONCALL_PRINCIPAL, [], True),
    ]  # fmt: skip


def test_kube_check_decides_like_the_webhook(policies: PolicySet, cast: Cast) -> None:
    for name, obj, user, texts, allowed in _scenarios(cast):
        webhook = _webhook(policies, obj, user, texts)
        offline = _check(policies, obj, user, texts)
        assert webhook == offline, name
        assert webhook[0] is allowed, (name, webhook)


def test_manifests_are_read_strictly() -> None:
    with pytest.raises(InputError, match=r"m\.yaml \(document 1\):3: duplicate key 'kind'"):
        manifests("apiVersion: v1\nkind: Pod\nkind: Service\n", "m.yaml")
    with pytest.raises(InputError, match=r"m\.yaml:2: not valid YAML"):
        manifests("a: 1\n b: [\n", "m.yaml")


# --------------------------------------------------------------------------- what is judged, and what is said about the rest


def _decide(
    policies: PolicySet, *objects: dict[str, Any], namespace: str = "default"
) -> tuple[Decision, int]:
    items = [Manifest(obj, "m.yaml", 1 + 10 * n) for n, obj in enumerate(objects)]
    return check_manifests(items, policies, {}, Requester(username=DEPLOYER), namespace=namespace)


def _without_namespace(obj: dict[str, Any]) -> dict[str, Any]:
    del obj["metadata"]["namespace"]
    return obj


def test_objects_that_name_no_namespace_are_judged_in_the_given_one(policies: PolicySet) -> None:
    unreviewed = _without_namespace(workload("Deployment", "web", "prod", UNATTESTED))
    # require-review judges prod* only: the namespace decides the verdict.
    decision, _ = _decide(policies, unreviewed)
    assert decision.allowed
    assert "1 workload(s) name no namespace: judged in namespace 'default' (--namespace)" in (
        decision.notes
    )
    decision, _ = _decide(policies, unreviewed, namespace="prod-eu")
    assert not decision.allowed
    assert {f.address for f in decision.denials} == {"Deployment prod-eu/web"}
    assert any("judged in namespace 'prod-eu'" in n for n in decision.notes)
    # An object that names its namespace keeps it, and nothing is said.
    decision, _ = _decide(policies, workload("Pod", "p", "prod", UNATTESTED), namespace="dev")
    assert {f.address for f in decision.denials} == {"Pod prod/p"}
    assert not any("--namespace" in n for n in decision.notes)


@pytest.mark.parametrize(
    ("kind", "api_version", "supported"),
    [
        ("Deployment", "apps/v1beta2", "apps/v1"),
        ("Deployment", "extensions/v1beta1", "apps/v1"),
        ("DaemonSet", "apps/v1beta1", "apps/v1"),
        ("CronJob", "batch/v1beta1", "batch/v1"),
        ("Pod", "v2", "v1"),
    ],
)
def test_a_workload_kind_at_another_api_version_is_a_denying_finding(
    policies: PolicySet, kind: str, api_version: str, supported: str
) -> None:
    obj = workload(kind, "w", "dev", WEB)
    obj["apiVersion"] = api_version
    decision, _ = _decide(policies, obj)
    assert not decision.allowed
    [finding] = decision.denials
    assert (finding.policy, finding.rule, finding.address) == (
        "guard",
        "supported-api-version",
        f"{kind} dev/w",
    )
    assert f"guard judges {kind} at apiVersion {supported} only, not {api_version}" in (
        finding.message
    )
    assert (finding.location, finding.line) == ("m.yaml", 1)


def test_not_a_workload_is_listed_as_not_judged(policies: PolicySet) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    # A custom resource that shares a workload kind's name is not that workload.
    volcano = workload("Job", "train", "ml", WEB)
    volcano["apiVersion"] = "batch.volcano.sh/v1alpha1"
    decision, skipped = _decide(policies, service, volcano, workload("Pod", "p", "dev", WEB))
    assert decision.allowed
    assert skipped == 2
    assert decision.subjects == 1
    assert "Service web (v1): not judged (not a workload)" in decision.notes
    assert "Job ml/train (batch.volcano.sh/v1alpha1): not judged (not a workload)" in (
        decision.notes
    )


def test_the_list_of_objects_not_judged_is_bounded(policies: PolicySet) -> None:
    maps = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}"}}
        for n in range(MAX_LISTED_OBJECTS + 7)
    ]
    decision, skipped = _decide(policies, *maps)
    assert skipped == MAX_LISTED_OBJECTS + 7
    assert sum("not judged (not a workload)" in n for n in decision.notes) == MAX_LISTED_OBJECTS + 1
    assert "and 7 more object(s) not judged (not a workload)" in decision.notes


def test_when_nothing_is_judged_the_run_says_so(policies: PolicySet) -> None:
    decision, _ = _decide(policies)
    assert "nothing was judged: the input holds no object" in decision.notes
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    decision, _ = _decide(policies, config)
    assert decision.subjects == 0
    assert "nothing was judged: the input holds no workload guard judges" in decision.notes
    decision, _ = _decide(policies, config, workload("Pod", "p", "dev", WEB))
    assert not any(n.startswith("nothing was judged") for n in decision.notes)


def _owned(
    obj: dict[str, Any], owner: dict[str, Any], *, controller: bool = True, uid: str | None = None
) -> dict[str, Any]:
    obj["metadata"].setdefault("uid", f"uid-{obj['kind']}-{obj['metadata']['name']}")
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": uid or owner["metadata"]["uid"],
            "controller": controller,
        }
    ]
    return obj


def test_an_object_whose_controlling_owner_is_in_the_input_is_judged_through_it(
    policies: PolicySet,
) -> None:
    deployment = workload("Deployment", "web", "prod", UNATTESTED)
    deployment["metadata"]["uid"] = "uid-deployment"
    replicaset = _owned(workload("ReplicaSet", "web-1", "prod", UNATTESTED), deployment)
    pod = _owned(workload("Pod", "web-1-x", "prod", UNATTESTED), replicaset)
    decision, skipped = _decide(policies, pod, replicaset, deployment)
    assert skipped == 2
    assert decision.subjects == 1
    assert {f.address for f in decision.denials} == {"Deployment prod/web"}
    assert "ReplicaSet prod/web-1: judged through its owner Deployment prod/web" in decision.notes
    assert "Pod prod/web-1-x: judged through its owner ReplicaSet prod/web-1" in decision.notes


@pytest.mark.parametrize(
    "case", ["not controller", "another uid", "another namespace", "other images", "a loop"]
)
def test_an_owner_that_is_not_plainly_the_owner_judges_nothing_for_it(
    policies: PolicySet, case: str
) -> None:
    deployment = workload("Deployment", "web", "prod", WEB)
    deployment["metadata"]["uid"] = "uid-deployment"
    namespace = "prod-b" if case == "another namespace" else "prod"
    image = UNATTESTED if case == "other images" else WEB
    replicaset = _owned(
        workload("ReplicaSet", "web-1", namespace, WEB, image),
        deployment,
        controller=case != "not controller",
        uid="forged" if case == "another uid" else None,
    )
    if case == "a loop":
        _owned(deployment, replicaset)
    decision, _ = _decide(policies, replicaset, deployment)
    assert not any("judged through its owner" in n for n in decision.notes)
    assert decision.subjects == 2
    # The object is judged on its own: its unreviewed image (where it has one) denies.
    assert not decision.allowed


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda o: o.update(spec="replicas: 3"), "spec must be an object, not a string"),
        (lambda o: o["spec"]["template"]["spec"].update(containers={"c": {}}),
         "spec.template.spec.containers must be an array, not an object"),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image=[WEB]),
         "spec.template.spec.containers[0].image must be a string, not an array"),
        (lambda o: o.update(metadata=[{"name": "web"}]), "metadata must be an object"),
        (lambda o: o.pop("kind"), "the object has no kind"),
        (lambda o: o["metadata"].update(namespace="Prod/x"), "not a namespace name"),
    ],
)  # fmt: skip
def test_a_manifest_the_api_server_would_refuse_is_bad_input(
    policies: PolicySet, change: Any, problem: str
) -> None:
    obj = workload("Deployment", "web", "prod", WEB)
    change(obj)
    with pytest.raises(InputError, match=r"^m\.yaml:1: ") as caught:
        _decide(policies, obj)
    assert problem in str(caught.value)


def test_kube_check_namespace_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policies = write_documents(tmp_path / "p.yaml", GLASS_POLICIES)
    manifest = write_documents(
        tmp_path / "m.yaml", [_without_namespace(workload("Deployment", "web", "prod", WEB))]
    )
    args = ["kube", "check", "-f", str(manifest), "--policies", str(policies)]
    assert main(args) == 0
    assert "judged in namespace 'default' (--namespace)" in capsys.readouterr().out
    assert main([*args, "--namespace", "prod"]) == 1  # no trust: review fails closed
    assert "Deployment prod/web" in capsys.readouterr().out
    assert main([*args, "--namespace", "Not/A/Namespace"]) == 2
    assert "--namespace 'Not/A/Namespace': not a namespace name" in capsys.readouterr().err


# --------------------------------------------------------------------------- one set of checks for both sides


SAME = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = admission_review(workload("Deployment", "web", "prod", UNATTESTED, privileged=True))


@SAME
@given(mutated(BASE, under=("request", "object", "spec")))
def test_kube_check_and_the_webhook_refuse_and_decide_alike(
    policies: PolicySet, case: tuple[dict[str, Any], str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    obj = review["request"]["object"]
    try:
        request = parse_review(json.loads(json.dumps(review)))
    except BadReview:
        with pytest.raises(InputError):
            _decide(policies, obj)
        return
    result = decide.judge(request, policies, None)
    decision, _ = _decide(policies, obj)
    assert decision.allowed is result.allowed, (how, path)
