"""Scan results as policy reports other tools read.

``openreports.io/v1alpha1`` ``Report`` (the default) or its predecessor
``wgpolicyk8s.io/v1alpha2`` ``PolicyReport``; Policy Reporter reads both,
and their result entries have the same keys. One report per namespace
(``guard-<namespace>``, split into ``guard-<namespace>-2``... past
``MAX_RESULTS`` results so no object nears the API server's size cap),
written only by guard (``source: guard``, label ``app.kubernetes.io/managed-by:
guard``). Every workload kind guard judges is namespaced, so guard writes no
cluster-scoped report.

Results, per workload (``resources`` names it, with its uid):

- ``pass``: a policy that matches it has no finding (review evidence in
  ``properties``: approvers, accepted envelopes, which checks ran);
- ``fail``: a finding of a policy whose own action is ``deny`` (what
  ``deny`` blocks); ``warn``: of a ``warn`` or ``audit`` policy, and the
  expiring-soon results; ``error``: a rule or review that could not be
  evaluated (never a pass);
- ``skip``: a finding waived by a ``GuardException`` or by the workload's
  ``GuardBaseline`` entry (named in ``properties``).

The action is the policy's own, not the enforcement cap the operator runs
with, so a report read during an ``audit`` roll-out says what ``deny``
would block.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from controller.kube.scan import WorkloadResult
from controller.policy.documents import Action, GuardPolicy, GuardPolicySpec
from controller.policy.results import Finding, Result, WaiverKind

SOURCE = "guard"
MAX_RESULTS = 1000
MANAGED_BY = {"app.kubernetes.io/managed-by": "guard"}
RESULTS = ("pass", "fail", "warn", "error", "skip")
# Properties hold strings; a long list is cut so one result stays small.
MAX_PROPERTY = 1024


@dataclass(frozen=True)
class ReportApi:
    api_version: str
    kind: str
    plural: str
    # Whether reports carry ``source`` at the top (openreports) or only per result.
    top_source: bool


OPENREPORTS = ReportApi("openreports.io/v1alpha1", "Report", "reports", True)
WGPOLICY = ReportApi("wgpolicyk8s.io/v1alpha2", "PolicyReport", "policyreports", False)
APIS: Mapping[str, ReportApi] = {"openreports": OPENREPORTS, "wgpolicy": WGPOLICY}


def _text(value: str) -> str:
    return value if len(value) <= MAX_PROPERTY else value[: MAX_PROPERTY - 1] + "…"


def _timestamp(at: dt.datetime) -> dict[str, int]:
    return {"seconds": int(at.timestamp()), "nanos": 0}


def _resource(workload: WorkloadResult) -> dict[str, str]:
    found = {
        "apiVersion": workload.api_version,
        "kind": workload.kind,
        "namespace": workload.namespace,
        "name": workload.name,
    }
    if workload.uid:
        found["uid"] = workload.uid
    return found


def _outcome(finding: Finding, facts: Mapping[str, GuardPolicySpec]) -> tuple[str, dict[str, str]]:
    spec = facts.get(finding.policy)
    action = spec.action if spec is not None else finding.action
    properties = {"action": action.value}
    if finding.waiver is not None:
        properties["waivedBy"] = finding.waiver.label
        return "skip", properties
    if finding.result in (Result.error, Result.unknown):
        return "error", properties
    if finding.result is Result.passed:
        return "pass", properties
    return ("fail" if action is Action.deny else "warn"), properties


def _review_properties(workload: WorkloadResult, policy: str) -> dict[str, str]:
    outcome = workload.reviews.get(policy)
    if outcome is None:
        return {}
    evidence = outcome.evidence
    properties: dict[str, str] = {}
    approvers = evidence.get("approvers")
    if isinstance(approvers, Mapping) and approvers:
        names = sorted({str(a) for found in approvers.values() for a in found})
        properties["approvers"] = _text(", ".join(names))
    accepted = evidence.get("accepted")
    if isinstance(accepted, Mapping) and accepted:
        properties["envelopes"] = _text(
            ", ".join(f"{digest}={name}" for digest, name in sorted(accepted.items()))
        )
    if evidence.get("exempted"):
        properties["exemptImages"] = _text(", ".join(map(str, evidence["exempted"])))
    if evidence.get("checks"):
        properties["checks"] = str(evidence["checks"])
    return properties


def _baseline_properties(workload: WorkloadResult) -> dict[str, str]:
    match = workload.baseline
    if match is None:
        return {}
    return {
        "baseline": match.baseline,
        "baselineEntry": match.entry.address,
        "baselineExpires": match.expires.isoformat(),
        "baselineImages": _text(", ".join(match.entry.images)),
    }


def workload_results(
    workload: WorkloadResult, facts: Mapping[str, GuardPolicySpec], at: dt.datetime
) -> list[dict[str, Any]]:
    """Every result entry of one workload, in a stable order."""
    stamp = _timestamp(at)
    resource = [_resource(workload)]
    shared = _baseline_properties(workload)
    entries: list[dict[str, Any]] = []

    def add(policy: str, rule: str, result: str, severity: str, message: str,
            properties: Mapping[str, str]) -> None:  # fmt: skip
        entry: dict[str, Any] = {"source": SOURCE, "policy": policy}
        if rule:
            entry["rule"] = rule
        entry.update({
            "result": result,
            "severity": severity,
            "scored": True,
            "resources": resource,
            "message": _text(message),
            "properties": {**shared, **properties},
            "timestamp": stamp,
        })  # fmt: skip
        entries.append(entry)

    failing: set[str] = set()
    for finding in workload.findings:
        result, properties = _outcome(finding, facts)
        if finding.rule == "review":
            properties.update(_review_properties(workload, finding.policy))
        if finding.reasons:
            properties["reasons"] = _text("; ".join(finding.reasons))
        if finding.fix:
            properties["fix"] = _text(finding.fix)
        message = finding.message
        if finding.waiver is not None and finding.waiver.kind is WaiverKind.inherited:
            message = f"{message} (waived: baselined, {finding.waiver.label})"
        add(finding.policy, finding.rule, result, finding.severity.value, message, properties)
        failing.add(finding.policy)
    for expiring in workload.expiring:
        add(expiring.policy, expiring.rule, "warn", expiring.severity.value, expiring.message, {})
    for policy in workload.result.matched:
        if policy in failing:
            continue
        properties = _review_properties(workload, policy)
        message = "review and rules pass" if policy in workload.reviews else "rules pass"
        severity = facts[policy].severity.value if policy in facts else "medium"
        add(policy, "", "pass", severity, message, properties)
    return entries


def summary(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(RESULTS, 0)
    for result in results:
        counts[str(result["result"])] += 1
    return counts


def report_name(namespace: str, part: int) -> str:
    return f"guard-{namespace}" if part == 1 else f"guard-{namespace}-{part}"


def policy_specs(policies: Iterable[GuardPolicy]) -> dict[str, GuardPolicySpec]:
    """Each policy's own spec: its action, not capped by the enforcement in force."""
    return {p.name: p.spec for p in policies}


def namespace_reports(
    workloads: Sequence[WorkloadResult],
    facts: Mapping[str, GuardPolicySpec],
    at: dt.datetime,
    api: ReportApi = OPENREPORTS,
    *,
    namespaces: Iterable[str] = (),
    max_results: int = MAX_RESULTS,
) -> list[dict[str, Any]]:
    """One report per namespace (more past ``max_results`` results), sorted by
    name; ``namespaces`` adds empty reports for namespaces whose workloads are
    all gone, so an update can replace what an earlier scan wrote."""
    by_namespace: dict[str, list[dict[str, Any]]] = {n: [] for n in namespaces}
    for workload in sorted(workloads, key=lambda w: (w.namespace, w.kind, w.name)):
        by_namespace.setdefault(workload.namespace, []).extend(
            workload_results(workload, facts, at)
        )
    reports: list[dict[str, Any]] = []
    for namespace, results in sorted(by_namespace.items()):
        chunks = [results[i : i + max_results] for i in range(0, len(results), max_results)]
        for part, chunk in enumerate(chunks or [[]], start=1):
            reports.append(_report(api, namespace, report_name(namespace, part), chunk))
    return reports


def _report(
    api: ReportApi, namespace: str, name: str, results: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "apiVersion": api.api_version,
        "kind": api.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
    }
    if api.top_source:
        report["source"] = SOURCE
    report["summary"] = summary(results)
    report["results"] = list(results)
    return report


class _Dumper(yaml.SafeDumper):
    # Results share their resource and timestamp objects; the YAML names
    # each in full (no anchors), as kubectl would print it.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(reports: Sequence[Mapping[str, Any]]) -> str:
    return yaml.dump_all(
        [dict(r) for r in reports], Dumper=_Dumper, sort_keys=False, width=100,
        allow_unicode=True,
    )  # fmt: skip
