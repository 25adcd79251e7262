"""Policy reports from the running operator's background scan, against kmock.

Reports appear, change and disappear as workloads, policies, attestations,
baselines and time change; the clock is the runtime's (replaced by the
test), and the test waits on the scanner's rounds, never with sleeps. Two
operators against one emulated API: one writes, the other takes over when
it stops, and both serve admission.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.kube.owners import template_digest
from tests.kube.helpers import (
    NOW,
    UNATTESTED,
    WEB,
    Cast,
    admission_review,
    attestation_resource,
    envelope,
    workload,
)
from tests.operator.harness import EmulatedApi, RunningGuard, Tls, serve_settings
from tests.operator.test_baseline import owned
from tests.operator.test_rbac import exercise, recorded_against_chart

WAIT = 20.0
NS = "prod-reports"
REPORTS = f"/apis/openreports.io/v1alpha1/namespaces/{NS}/reports"
RBAC_NAMESPACE = "guard-system"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/guard/leases/guard-report-writer"


def report(guard: RunningGuard, name: str = f"guard-{NS}") -> dict[str, Any] | None:
    try:
        return guard.api.send("GET", f"{REPORTS}/{name}")
    except RuntimeError as exc:
        if " 404 " in str(exc):
            return None
        raise


def results(guard: RunningGuard) -> dict[tuple[str, str, str], str]:
    found = report(guard)
    return {
        (r["resources"][0]["name"], r["policy"], r.get("rule", "")): r["result"]
        for r in (found or {}).get("results", [])
    }


def settle(guard: RunningGuard, check: Callable[[dict[tuple[str, str, str], str]], bool]) -> None:
    scanner = guard.service.scanner
    assert scanner is not None
    assert scanner.wait_until(lambda: check(results(guard)), WAIT), results(guard)


def at(guard: RunningGuard, moment: dt.datetime) -> None:
    """Move the operator's clock, and let the scanner see it at once."""
    guard.runtime.now = lambda: moment
    scanner = guard.service.scanner
    assert scanner is not None
    scanner.invalidate()


@pytest.fixture()
def reporting(start_guard: Callable[..., RunningGuard]) -> RunningGuard:
    return start_guard(reports="openreports", report_interval=0.05, identity="guard-a",
                       scan_period=3600.0)  # fmt: skip


def test_reports_follow_workloads_attestations_policies_baselines_and_time(
    reporting: RunningGuard, cast: Cast
) -> None:
    guard = reporting
    guard.runtime.now = lambda: NOW
    web = owned(workload("Deployment", "web", NS, WEB), None)
    legacy = owned(workload("Deployment", "legacy", NS, UNATTESTED), None)
    guard.api.create_workload(web)
    guard.api.create_workload(legacy)
    attestation = attestation_resource("web-review", NS, envelope(cast.ci))
    guard.api.create("reviewattestations", attestation)
    settle(guard, lambda r: r.get(("web", "require-review", "")) == "pass"
           and r.get(("legacy", "require-review", "review")) == "fail")  # fmt: skip
    written = report(guard)
    assert written is not None and written["source"] == "guard"
    assert written["summary"]["fail"] >= 1

    # The attestation is gone: the report never keeps pass.
    guard.api.delete("reviewattestations", "web-review", NS)
    settle(guard, lambda r: r.get(("web", "require-review", "review")) == "fail")
    guard.api.create("reviewattestations", attestation)
    settle(guard, lambda r: r.get(("web", "require-review", "")) == "pass")

    # Time passes: expiring soon (a warning and an Event), then expired.
    at(guard, NOW + dt.timedelta(days=20))
    settle(guard, lambda r: r.get(("web", "require-review", "review-expiring")) == "warn")
    assert guard.service.scanner.wait_until(
        lambda: any(e.get("reason") == "GuardExpiringSoon" for e in guard.api.events(NS)), WAIT
    )
    at(guard, NOW + dt.timedelta(days=31))
    settle(guard, lambda r: r.get(("web", "require-review", "review")) == "fail")
    at(guard, NOW)

    # A new policy judges them too.
    guard.api.create("guardpolicies", TEAM_OWNER)
    settle(guard, lambda r: r.get(("web", "needs-owner", "has-owner")) == "fail")
    guard.api.delete("guardpolicies", "needs-owner")
    settle(guard, lambda r: ("web", "needs-owner", "has-owner") not in r)

    # A baseline waives the legacy Deployment, until it expires.
    guard.api.create("guardbaselines", baseline_of(legacy, NOW.date() + dt.timedelta(days=60)))
    settle(guard, lambda r: r.get(("legacy", "require-review", "review")) == "skip")
    at(guard, NOW + dt.timedelta(days=61))
    settle(guard, lambda r: r.get(("legacy", "require-review", "review")) == "fail")
    at(guard, NOW)

    # Deleted workloads leave the report; the last one takes the report with it.
    guard.api.delete_workload(legacy)
    settle(guard, lambda r: not any(k[0] == "legacy" for k in r) and bool(r))
    guard.api.delete_workload(web)
    assert guard.service.scanner.wait_until(lambda: report(guard) is None, WAIT)


TEAM_OWNER: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "needs-owner"},
    "spec": {
        "severity": "low",
        "action": "deny",
        "match": {"kubernetes": {"namespaces": {"include": [NS]}}},
        "rules": [
            {
                "name": "has-owner",
                "target": "kubernetes",
                "expression": "has(object.metadata.labels) && 'owner' in object.metadata.labels",
                "message": "the workload has no owner label",
            }
        ],
    },
}


def baseline_of(owner: dict[str, Any], expires: dt.date) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardBaseline",
        "metadata": {"name": "pre-enforcement"},
        "spec": {
            "owner": "platform",
            "reason": "ran before guard",
            "expires": expires.isoformat(),
            "entries": [
                {
                    "kind": owner["kind"],
                    "namespace": owner["metadata"]["namespace"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "templateDigest": template_digest(owner["kind"], owner),
                }
            ],
        },
    }


def test_one_writer_and_failover(start_guard: Callable[..., RunningGuard]) -> None:
    first = start_guard(reports="openreports", report_interval=0.05, identity="guard-a")
    second = start_guard(reports="openreports", report_interval=0.05, identity="guard-b")
    scanners = [g.service.scanner for g in (first, second)]
    assert all(s is not None for s in scanners)
    a, b = scanners[0], scanners[1]
    assert a is not None and b is not None
    assert a.wait_until(lambda: a.elector.leading or b.elector.leading, WAIT)
    leader, follower = (first, second) if a.elector.leading else (second, first)
    lease = leader.api.send("GET", LEASE)
    assert lease["spec"]["holderIdentity"] == leader.service.settings.identity
    pod = owned(workload("Deployment", "solo", NS, UNATTESTED), None)
    leader.api.create_workload(pod)
    settle(leader, lambda r: ("solo", "require-review", "review") in r)
    follower_scanner = follower.service.scanner
    assert follower_scanner is not None
    # Rounds pass on the follower without a single write.
    rounds = follower_scanner.rounds
    assert follower_scanner.wait_until(lambda: follower_scanner.rounds > rounds + 3, WAIT)
    assert follower_scanner.writes == 0 and not follower_scanner.elector.leading
    # Both serve admission.
    review = admission_review(workload("Deployment", "x", NS, UNATTESTED))
    assert not follower.post(review).allowed and not leader.post(review).allowed

    leader.stop()  # releases the Lease: the follower takes over at its next round
    assert follower_scanner.wait_until(lambda: follower_scanner.elector.leading, WAIT)
    assert follower.api.send("GET", LEASE)["spec"]["holderIdentity"] == (
        follower.service.settings.identity
    )
    follower.api.delete_workload(pod)
    assert follower_scanner.wait_until(lambda: report(follower) is None, WAIT)
    assert follower_scanner.writes >= 1


def test_chart_rbac_with_reports_grants_exactly_what_the_operator_uses(
    guard_tls: Tls, guard_files: tuple[Path, Path], tmp_path: Path, cast: Cast
) -> None:
    """The recorded-requests proof of test_rbac, with the scan and its writes:
    reports listed, created, patched and deleted, the Lease read, created and
    renewed, Pods watched, Events posted about expiring reviews."""
    api = EmulatedApi()
    api.start()
    policies, trust = guard_files
    settings = serve_settings(policies, trust, guard_tls, tmp_path / "audit.jsonl",
                              reports="openreports", report_interval=0.05, identity="guard-0",
                              lease_namespace=RBAC_NAMESPACE)  # fmt: skip
    guard = RunningGuard(api, guard_tls, settings)
    try:
        guard.start()
        guard.runtime.now = lambda: NOW + dt.timedelta(days=20)  # the review expires soon
        exercise(guard, cast)
        web = owned(workload("Deployment", "web", NS, WEB), None)
        guard.api.create_workload(web)
        guard.api.create_workload(owned(workload("Pod", "bare", NS, UNATTESTED), None))
        guard.api.create("reviewattestations", attestation_resource("web", NS, envelope(cast.ci)))
        settle(guard, lambda r: r.get(("web", "require-review", "review-expiring")) == "warn")
        guard.api.delete_workload(web)
        settle(guard, lambda r: bool(r) and not any(k[0] == "web" for k in r))
        guard.api.send("DELETE", f"/api/v1/namespaces/{NS}/pods/bare")
        scanner = guard.service.scanner
        assert scanner is not None
        assert scanner.wait_until(lambda: report(guard) is None, WAIT)
        assert any(e.get("reason") == "GuardExpiringSoon" for e in guard.api.events(NS))
        requests = list(api.requests)
    finally:
        guard.stop()
        api.stop()
    values = {"reports": {"enabled": True}}
    refused, unused = recorded_against_chart(requests, values, RBAC_NAMESPACE)
    assert refused == [], "the operator needs permissions the chart does not grant"
    assert unused == [], "the chart grants permissions the operator never uses"


def test_the_audit_of_a_dump_says_what_the_operator_reports(
    reporting: RunningGuard,
    cast: Cast,
    guard_files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    guard = reporting
    guard.runtime.now = lambda: NOW
    namespace = "prod-same"
    objects = [
        owned(workload("Deployment", "web", namespace, WEB), None),
        owned(workload("StatefulSet", "db", namespace, UNATTESTED, privileged=True), None),
        owned(workload("CronJob", "nightly", namespace, WEB, labels={}), None),
    ]
    for obj in objects:
        guard.api.create_workload(obj)
    text = envelope(cast.ci)
    guard.api.create("reviewattestations", attestation_resource("same", namespace, text))
    path = f"/apis/openreports.io/v1alpha1/namespaces/{namespace}/reports/guard-{namespace}"

    def written() -> dict[str, Any] | None:
        try:
            return guard.api.send("GET", path)
        except RuntimeError:
            return None

    scanner = guard.service.scanner
    assert scanner is not None
    assert scanner.wait_until(
        lambda: (
            (found := written()) is not None
            and {r["resources"][0]["name"] for r in found["results"]} == {"web", "db", "nightly"}
            and any(
                r["result"] == "pass" and r["policy"] == "require-review" for r in found["results"]
            )
        ),
        WAIT,
    )
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))
    attestation = tmp_path / "web.json"
    attestation.write_text(text)
    policies, trust = guard_files
    main(["kube", "audit", "-f", str(dump), "--policies", str(policies), "--trust", str(trust),
          "--attestation", str(attestation), "--format", "openreports"])  # fmt: skip
    (audited,) = yaml.safe_load_all(capsys.readouterr().out)
    operator = written()
    assert operator is not None
    assert _comparable(audited) == _comparable(operator)
    assert audited["summary"] == operator["summary"]


def _comparable(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Results without when they were made and where the envelope was read from."""
    found = []
    for result in report["results"]:
        properties = {k: v for k, v in result.get("properties", {}).items() if k != "envelopes"}
        found.append((result["resources"][0]["name"], result["policy"], result.get("rule"),
                      result["result"], result["severity"], result["message"],
                      sorted(properties.items())))  # fmt: skip
    return sorted(found)


def test_reports_follow_trust_and_exceptions(reporting: RunningGuard, cast: Cast) -> None:
    """A trust that makes the approver an alias of the author turns the
    review's pass into a fail; an exception waives a rule only until it
    expires."""
    guard = reporting
    guard.runtime.now = lambda: NOW
    web = owned(workload("Deployment", "web-trust", NS, WEB), None)
    guard.api.create_workload(web)
    guard.api.create(
        "reviewattestations", attestation_resource("web-trust-review", NS, envelope(cast.ci))
    )
    settle(guard, lambda r: r.get(("web-trust", "require-review", "")) == "pass")

    # bob (github:1002) approved alice's (github:1001) change; the trust now
    # says they are one person, so the approval is the author's own.
    guard.api.create("guardtrusts", ONE_PERSON)
    settle(guard, lambda r: r.get(("web-trust", "require-review", "review")) == "fail")
    guard.api.delete("guardtrusts", "one-person")
    settle(guard, lambda r: r.get(("web-trust", "require-review", "")) == "pass")

    guard.api.create("guardpolicies", TEAM_OWNER)
    settle(guard, lambda r: r.get(("web-trust", "needs-owner", "has-owner")) == "fail")
    waiver = {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardException",
        "metadata": {"name": "web-owner-later"},
        "spec": {
            "policy": "needs-owner",
            "target": f"{NS}/web-trust",
            "reason": "the owning team is being named in CHG-7",
            "owner": "platform-team",
            "expires": (NOW.date() + dt.timedelta(days=10)).isoformat(),
        },
    }
    guard.api.create("guardexceptions", waiver)
    settle(guard, lambda r: r.get(("web-trust", "needs-owner", "has-owner")) == "skip")
    # Expired: it no longer waives anything.
    at(guard, NOW + dt.timedelta(days=11))
    settle(guard, lambda r: r.get(("web-trust", "needs-owner", "has-owner")) == "fail")
    at(guard, NOW)
    guard.api.delete("guardexceptions", "web-owner-later")
    guard.api.delete("guardpolicies", "needs-owner")
    guard.api.delete("reviewattestations", "web-trust-review", NS)
    guard.api.delete_workload(web)
    settle(guard, lambda r: not any(k[0] == "web-trust" for k in r))


ONE_PERSON: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardTrust",
    "metadata": {"name": "one-person"},
    "spec": {"principals": [{"id": "github:1001", "aliases": ["github:1002"]}]},
}
