"""The audit record of one admission answer: who asked for what, what was
decided and why.

Everything an auditor asks: each policy's result, the attestations
(envelope digests) and the people whose approvals counted, what was waived
(exemptions, exceptions, break-glass), and which policies and trust were in
force. Findings are serialised by ``Finding.as_dict``, the same as in the
JSON report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.kube.result import AdmissionResult
from controller.policy.results import Finding, Result, WaiverKind


def audit_record(result: AdmissionResult) -> dict[str, Any]:
    """A JSON-ready audit record of one decision."""
    request = result.request
    record: dict[str, Any] = {
        "time": result.decided_at,
        "uid": result.uid,
        "decision": result.verdict,
        "allowed": result.allowed,
        "code": result.code,
        "reason": result.reason.value,
        "enforcement": result.enforcement.value,
        "message": result.message,
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "policyDigest": result.policy_digest,
        "trustDigest": result.trust_digest,
    }
    if request is not None:
        record["request"] = {
            "operation": request.operation,
            "resource": request.resource_label,
            "kind": request.kind,
            "namespace": request.namespace,
            "name": request.name,
            "dryRun": request.dry_run,
            "user": request.requester.username,
            "groups": list(request.requester.groups),
        }
        record["object"] = {
            "group": request.group,
            "version": request.version,
            "resource": request.resource,
            "subResource": request.sub_resource,
            "kind": request.kind,
            "namespace": request.namespace,
            "name": request.name,
        }
    if result.subject is not None:
        record["subject"] = result.subject.address
        record["artifacts"] = [
            {"image": a.reference, "digest": a.digest, "introduced": a.introduced}
            for a in result.subject.artifacts
        ]
    if result.decision is not None:
        findings = result.decision.findings
        record["findings"] = [f.as_dict() for f in findings]
        record["policies"] = _policy_results(result.matched, findings)
        record["exemptions"] = _exemptions(result, findings)
    review = result.evidence.get("review") if result.evidence else None
    if isinstance(review, Mapping):
        record["attestations"] = _attestation_summary(review)
    if result.break_glass is not None:
        record["breakGlass"] = result.break_glass.record()
    if result.evidence:
        record["evidence"] = dict(result.evidence)
    return record


def _exemptions(result: AdmissionResult, findings: Sequence[Finding]) -> dict[str, Any]:
    images: dict[str, list[str]] = {}
    review = result.evidence.get("review") if result.evidence else None
    if isinstance(review, Mapping):
        for policy, evidence in review.items():
            exempted = evidence.get("exempted") if isinstance(evidence, Mapping) else None
            if exempted:
                images[str(policy)] = list(exempted)
    waived = [
        {"policy": f.policy, "rule": f.rule, "exception": f.waiver.name}
        for f in findings
        if f.waiver is not None and f.waiver.kind is WaiverKind.exception
    ]
    return {"images": images, "exceptions": waived}


_RESULT_RANK = {Result.passed: 0, Result.unknown: 1, Result.fail: 2, Result.error: 3}


def _policy_results(matched: Sequence[str], findings: Sequence[Finding]) -> dict[str, Any]:
    """Each judging policy's overall result: its worst finding, or pass."""
    results: dict[str, dict[str, Any]] = {
        name: {"result": Result.passed.value, "effect": "none"} for name in matched
    }
    for finding in findings:
        entry = results.setdefault(
            finding.policy, {"result": Result.passed.value, "effect": "none"}
        )
        if _RESULT_RANK[finding.result] > _RESULT_RANK[Result(entry["result"])]:
            entry["result"] = finding.result.value
        effect = _effect(finding)
        if _EFFECT_RANK[effect] > _EFFECT_RANK[entry["effect"]]:
            entry["effect"] = effect
    return results


_EFFECT_RANK = {"none": 0, "audit": 1, "waived": 2, "warn": 3, "deny": 4}


def _effect(finding: Finding) -> str:
    if finding.waiver is not None:
        return "waived"
    return finding.action.value


def _attestation_summary(review: Mapping[str, Any]) -> dict[str, Any]:
    """Envelope digests examined and the approving principals, over all policies."""
    envelopes: set[str] = set()
    approvers: dict[str, list[str]] = {}
    for evidence in review.values():
        if not isinstance(evidence, Mapping):
            continue
        envelopes.update(str(e) for e in evidence.get("envelopes") or ())
        for digest, people in (evidence.get("approvers") or {}).items():
            known = approvers.setdefault(str(digest), [])
            known.extend(str(p) for p in people if str(p) not in known)
    return {"envelopes": sorted(envelopes), "approvers": approvers}
