"""The background scan and its policy reports: admission's semantics, as of now."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.attest.statement import utc
from controller.errors import InputError
from controller.kube import policyreport
from controller.kube.envelopes import IndexedEnvelope
from controller.kube.inherit import Baselines
from controller.kube.manifests import Manifest, judge_one
from controller.kube.owners import template_digest
from controller.kube.reporting import WorkloadStore
from controller.kube.scan import (
    BASELINE_EXPIRY_RULE,
    REVIEW_EXPIRY_RULE,
    SCAN_REQUESTER,
    Scan,
    scan,
    unreadable,
)
from controller.kube.state import FileInputs, PolicySet, build_policy_set
from controller.policy.baseline import GuardBaseline
from controller.policy.documents import Action, GuardPolicy, GuardTrust
from tests.kube.helpers import (
    NOW,
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    envelope,
    expired_envelope,
    workload,
)
from tests.kube.mutations import mutated
from tests.kube.test_manifests import _index as index_of
from tests.operator.test_baseline import owned

CRDS = Path(__file__).parents[2] / "charts" / "guard" / "files" / "report-crds"
NS = "prod-shop"


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture(scope="module")
def policies(cast: Cast) -> PolicySet:
    documents = tuple(GuardPolicy.model_validate(p) for p in TEST_POLICIES)
    trust = GuardTrust.model_validate(cast.trust_document())
    files = FileInputs(policies=documents, trust_specs=((trust.spec, "trust.yaml"),))
    return build_policy_set(files, (), enforcement=Action.deny)


def _index(*texts: str) -> dict[str, list[IndexedEnvelope]]:
    return index_of(list(texts))


def live(obj: dict[str, Any], owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``obj`` as the API server keeps it: with a uid, controlled by ``owner``."""
    return owned(obj, owner)


def items(*objects: Mapping[str, Any]) -> list[Manifest]:
    return [Manifest(o, "dump.yaml", position + 1) for position, o in enumerate(objects)]


def results(found: Scan, policies: PolicySet) -> list[dict[str, Any]]:
    specs = policyreport.policy_specs(policies.policies)
    return [r for w in found.workloads for r in policyreport.workload_results(w, specs, found.at)]


def by_key(found: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["resources"][0]["name"], r["policy"], r.get("rule", "")): r for r in found}


def baseline(*owners: Mapping[str, Any], expires: dt.date) -> GuardBaseline:
    entries = [
        {
            "kind": o["kind"],
            "namespace": o["metadata"]["namespace"],
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
            "templateDigest": template_digest(o["kind"], o),
        }
        for o in owners
    ]
    return GuardBaseline.model_validate(
        {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardBaseline",
            "metadata": {"name": "pre-enforcement"},
            "spec": {"owner": "platform", "reason": "ran before guard",
                     "expires": expires.isoformat(), "entries": entries},
        }
    )  # fmt: skip


def test_each_result_is_what_admission_would_answer_now(cast: Cast, policies: PolicySet) -> None:
    web = live(workload("Deployment", "web", NS, WEB))
    legacy = live(workload("Deployment", "legacy", NS, UNATTESTED, labels={}))
    root = live(workload("DaemonSet", "root", NS, WEB, privileged=True))
    found = scan(items(web, legacy, root), policies, _index(envelope(cast.ci)), Baselines(),
                 now=NOW, window=dt.timedelta(0))  # fmt: skip
    got = by_key(results(found, policies))
    passed = got[("web", "require-review", "")]
    assert passed["result"] == "pass"
    assert passed["properties"]["approvers"] == "bob"
    assert WEB_DIGEST in passed["properties"]["envelopes"]
    assert passed["properties"]["checks"] == "all"
    assert got[("legacy", "require-review", "review")]["result"] == "fail"
    # The warn policy warns, and so does the audit one: only deny fails.
    assert got[("legacy", "team-label", "has-team")]["result"] == "warn"
    assert got[("root", "no-privileged", "not-privileged")]["result"] == "fail"
    assert got[("web", "no-privileged", "")]["result"] == "pass"
    assert {r["source"] for r in got.values()} == {"guard"}


def test_an_expired_attestation_never_keeps_pass(cast: Cast, policies: PolicySet) -> None:
    web = live(workload("Deployment", "web", NS, WEB))
    found = scan(items(web), policies, _index(expired_envelope(cast.ci)), Baselines(), now=NOW)
    review = by_key(results(found, policies))[("web", "require-review", "review")]
    assert review["result"] == "fail"
    assert "expired" in review["message"]
    # And with no attestation at all.
    gone = scan(items(web), policies, {}, Baselines(), now=NOW)
    assert by_key(results(gone, policies))[("web", "require-review", "review")]["result"] == "fail"


def test_a_review_that_expires_within_the_window_warns(cast: Cast, policies: PolicySet) -> None:
    soon = envelope(cast.ci, expiresAt=utc(NOW + dt.timedelta(days=5)))
    web = live(workload("Deployment", "web", NS, WEB))
    found = scan(items(web), policies, _index(soon), Baselines(), now=NOW,
                 window=dt.timedelta(days=14))  # fmt: skip
    got = by_key(results(found, policies))
    assert got[("web", "require-review", "")]["result"] == "pass"
    warning = got[("web", "require-review", REVIEW_EXPIRY_RULE)]
    assert warning["result"] == "warn" and "expired" in warning["message"]
    # Outside the window: no warning; with a second, longer attestation: none either.
    later = scan(items(web), policies, _index(soon), Baselines(), now=NOW,
                 window=dt.timedelta(days=2))  # fmt: skip
    assert ("web", "require-review", REVIEW_EXPIRY_RULE) not in by_key(results(later, policies))
    both = scan(items(web), policies, _index(soon, envelope(cast.ci)), Baselines(), now=NOW,
                window=dt.timedelta(days=14))  # fmt: skip
    assert ("web", "require-review", REVIEW_EXPIRY_RULE) not in by_key(results(both, policies))


def test_a_baselined_workload_is_skipped_with_its_entry_until_it_stops_applying(
    policies: PolicySet,
) -> None:
    legacy = live(workload("Deployment", "legacy", NS, UNATTESTED))
    far = NOW.date() + dt.timedelta(days=90)
    in_force = Baselines([baseline(legacy, expires=far)])
    got = by_key(results(scan(items(legacy), policies, {}, in_force, now=NOW), policies))
    skipped = got[("legacy", "require-review", "review")]
    assert skipped["result"] == "skip"
    assert skipped["properties"]["baseline"] == "pre-enforcement"
    assert skipped["properties"]["baselineExpires"] == far.isoformat()
    assert ("legacy", "guard", BASELINE_EXPIRY_RULE) not in got
    # Expired: waives nothing.
    expired = Baselines([baseline(legacy, expires=NOW.date() - dt.timedelta(days=1))])
    got = by_key(results(scan(items(legacy), policies, {}, expired, now=NOW), policies))
    assert got[("legacy", "require-review", "review")]["result"] == "fail"
    # Ending within the window: still skipped, and a warning.
    soon = Baselines([baseline(legacy, expires=NOW.date() + dt.timedelta(days=3))])
    got = by_key(results(scan(items(legacy), policies, {}, soon, now=NOW), policies))
    assert got[("legacy", "require-review", "review")]["result"] == "skip"
    assert got[("legacy", "guard", BASELINE_EXPIRY_RULE)]["result"] == "warn"
    # A changed template, or a re-created owner: judged in full.
    changed = copy.deepcopy(legacy)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = WEB
    got = by_key(results(scan(items(changed), policies, {}, in_force, now=NOW), policies))
    assert got[("legacy", "require-review", "review")]["result"] == "fail"
    recreated = live(workload("Deployment", "legacy", NS, UNATTESTED))
    got = by_key(results(scan(items(recreated), policies, {}, in_force, now=NOW), policies))
    assert got[("legacy", "require-review", "review")]["result"] == "fail"


def test_what_an_owner_in_the_input_covers_is_judged_through_it(policies: PolicySet) -> None:
    deployment = live(workload("Deployment", "web", NS, UNATTESTED))
    replicaset = live(workload("ReplicaSet", "web-5d4f", NS, UNATTESTED), deployment)
    pod = live(workload("Pod", "web-5d4f-x1", NS, UNATTESTED), replicaset)
    stray = live(workload("Pod", "stray", NS, UNATTESTED))
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS}}
    found = scan(items(deployment, replicaset, pod, stray, service), policies, {}, Baselines(),
                 now=NOW)  # fmt: skip
    assert [w.address for w in found.workloads] == [
        f"Deployment {NS}/web",
        f"Pod {NS}/stray",
    ]
    notes = found.notes()
    assert f"Pod {NS}/web-5d4f-x1: judged through its owner ReplicaSet {NS}/web-5d4f" in notes
    assert f"Service {NS}/web (v1): not judged (not a workload)" in notes
    # A ReplicaSet whose Deployment is baselined with the same template is waived too.
    far = NOW.date() + dt.timedelta(days=90)
    lone = scan(items(replicaset, deployment), policies, {},
                Baselines([baseline(deployment, expires=far)]), now=NOW)  # fmt: skip
    assert {w.address for w in lone.workloads} == {f"Deployment {NS}/web"}


def _schema(name: str) -> Any:
    crd = yaml.safe_load((CRDS / name).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] in ("v1alpha1", "v1alpha2")
                   and v["name"] == ("v1alpha2" if "wgpolicy" in name else "v1alpha1"))  # fmt: skip
    return _strict(version["schema"]["openAPIV3Schema"])


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as the API server prunes them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize(
    ("api", "crd"),
    [
        (policyreport.OPENREPORTS, "openreports.io_reports.yaml"),
        (policyreport.WGPOLICY, "wgpolicyk8s.io_policyreports.yaml"),
    ],
)
def test_reports_fit_the_published_schemas(
    cast: Cast, policies: PolicySet, api: policyreport.ReportApi, crd: str
) -> None:
    legacy = live(workload("Deployment", "legacy", NS, UNATTESTED))
    objects = [live(workload("Deployment", f"web-{i}", NS, WEB)) for i in range(4)]
    found = scan(items(legacy, *objects), policies, _index(envelope(cast.ci)),
                 Baselines([baseline(legacy, expires=NOW.date() + dt.timedelta(days=3))]),
                 now=NOW)  # fmt: skip
    specs = policyreport.policy_specs(policies.policies)
    reports = policyreport.namespace_reports(found.workloads, specs, NOW, api, max_results=7)
    assert [r["metadata"]["name"] for r in reports][:2] == [f"guard-{NS}", f"guard-{NS}-2"]
    schema = _schema(crd)
    total: dict[str, int] = dict.fromkeys(policyreport.RESULTS, 0)
    for report in reports:
        assert report["apiVersion"] == api.api_version and report["kind"] == api.kind
        jsonschema.validate(report, schema)
        assert len(report["results"]) <= 7
        for key, count in report["summary"].items():
            total[key] += count
    assert total["skip"] >= 1 and total["warn"] >= 1 and total["pass"] >= 4
    # YAML that kubectl can apply, with no anchors.
    text = policyreport.render(reports)
    assert "&id" not in text and list(yaml.safe_load_all(text)) == reports


def test_a_namespace_whose_workloads_are_gone_gets_an_empty_report(policies: PolicySet) -> None:
    specs = policyreport.policy_specs(policies.policies)
    reports = policyreport.namespace_reports((), specs, NOW, namespaces=["prod-gone"])
    assert [(r["metadata"]["name"], r["results"], r["summary"]["pass"]) for r in reports] == [
        ("guard-prod-gone", [], 0)
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_hostile_workload_is_an_error_result_never_a_pass_nor_a_crash(
    data: st.DataObject, policies: PolicySet
) -> None:
    """Whatever shape a stored workload has, the operator's scan reports it
    once: judged as admission judges it, or one error result where admission
    would refuse to read it; the other workloads are judged as ever."""
    base = workload("Deployment", "odd", NS, UNATTESTED)
    base["metadata"]["uid"] = "odd-uid"
    body, _, _ = data.draw(mutated(base, ("spec",)))
    store = WorkloadStore()
    store.observe("Deployment", body, "ADDED")
    store.observe("Deployment", live(workload("Deployment", "fine", NS, UNATTESTED)), "ADDED")
    found = scan(store.items(), policies, {}, Baselines(), now=NOW)
    results = [*found.workloads, *(unreadable(m, p) for m, p in store.broken())]
    fine = [w for w in results if w.name == "fine"]
    assert len(fine) == 1 and not fine[0].result.allowed
    (odd,) = [w for w in results if w.name == "odd"]
    try:
        admission = judge_one(Manifest(body, "odd", 1), policies, {}, SCAN_REQUESTER,
                              controller_identities=frozenset(), now=NOW)  # fmt: skip
    except InputError:
        admission = None
    if admission is None:
        assert not odd.result.allowed and odd.result.reason.value == "malformed"
    else:
        assert odd.result.allowed == admission.allowed
