"""The audit record of one admission answer: who asked for what, what was
decided and why, as one bounded JSON line.

Everything an auditor asks: each policy's result, the attestations
(envelope digests) and the people whose approvals counted, what was waived
(exemptions, exceptions, break-glass), and which policies and trust were in
force. Findings are serialised by ``Finding.as_dict``, the same as in the
JSON report.

One line is at most ``MAX_LINE_BYTES``. A request is bounded in size but
not in what it can make guard say (a Deployment with 2,000 unreviewed
images and 16 bogus envelopes yields 32,000 reasons): past the limit the
long lists keep their head and the long strings their start, and the line
says what was cut and how much (``truncated``), so one request cannot write
megabytes, and the decision itself (uid, verdict, requester, message) is
always whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from controller.kube.result import AdmissionResult
from controller.kube.text import json_line_safe
from controller.policy.results import Finding, Result, WaiverKind

MAX_LINE_BYTES = 64 * 1024


def _verdict_fields(result: AdmissionResult) -> dict[str, Any]:
    """What every record of a decision starts with, full or summary."""
    return {
        "time": result.decided_at,
        "uid": result.uid,
        "decision": result.verdict,
        "allowed": result.allowed,
        "code": result.code,
        "reason": result.reason.value,
        "enforcement": result.enforcement.value,
        "policyDigest": result.policy_digest,
        "trustDigest": result.trust_digest,
    }


def audit_record(result: AdmissionResult) -> dict[str, Any]:
    """A JSON-ready audit record of one decision."""
    request = result.request
    record = _verdict_fields(result)
    record["message"] = result.message
    record["warnings"] = list(result.warnings)
    record["notes"] = list(result.notes)
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


def summary_record(result: AdmissionResult) -> dict[str, Any]:
    """The decision alone: who asked for what and the verdict, without the
    detail (findings, artifacts, evidence) that makes a record long."""
    record = _verdict_fields(result)
    request = result.request
    if request is not None:
        record["request"] = {
            "operation": request.operation,
            "resource": request.resource_label,
            "namespace": request.namespace,
            "name": request.name,
            "dryRun": request.dry_run,
            "user": request.requester.username,
        }
    if result.subject is not None:
        record["subject"] = result.subject.address
    if result.decision is not None:
        findings = result.decision.findings
        record["counts"] = {
            "findings": len(findings),
            "denials": sum(1 for f in findings if f.denies),
            "artifacts": len(result.subject.artifacts) if result.subject is not None else 0,
        }
    return record


# orjson writes the line (about half the standard encoder's time); dates and
# dataclasses go through ``str`` as they always did, so records read the same.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def render(record: Mapping[str, Any]) -> str:
    """One record as one JSON line, whatever its strings hold."""
    try:
        text = orjson.dumps(record, default=str, option=_ORJSON_OPTIONS).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        # What orjson cannot write (a lone surrogate, an integer past 64
        # bits) the standard encoder can, escaped.
        text = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)
    return json_line_safe(text)


def audit_line(record: Mapping[str, Any]) -> str:
    """The record as one JSON line of at most ``MAX_LINE_BYTES``.

    Within the limit the record is written whole. Past it, the detail is
    cut level by level (fewer list items, shorter strings) until it fits,
    and a ``truncated`` field counts what was dropped per field; the
    decision fields are cut only if even the least detail does not fit.
    """
    line = render(record)
    size = _size(line)
    if size <= MAX_LINE_BYTES:
        return line
    decision = {k: v for k, v in record.items() if k in _DECISION_KEYS}
    detail = {k: v for k, v in record.items() if k not in _DECISION_KEYS}
    for items, chars in _DETAIL_LEVELS:
        cutter = _Cutter(items, chars)
        bounded = {**decision, **cutter.cut(detail, "")}
        bounded["truncated"] = cutter.report(size)
        line = render(bounded)
        if _size(line) <= MAX_LINE_BYTES:
            return line
    cutter = _Cutter(*_DECISION_LEVEL)
    bounded = cutter.cut(decision, "")
    bounded["truncated"] = {**cutter.report(size), "droppedFields": sorted(detail)}
    line = render(bounded)
    if _size(line) <= MAX_LINE_BYTES:
        return line
    # Only a record whose every decision field is hostile gets here.
    least = {k: record.get(k) for k in ("time", "uid", "decision", "allowed", "code", "reason")}
    least["truncated"] = {"bytes": size, "limit": MAX_LINE_BYTES, "droppedFields": sorted(record)}
    return render(_Cutter(1, 64).cut(least, ""))


# What says who asked for what and the verdict: kept whole while anything else can be cut.
_DECISION_KEYS = frozenset(
    {
        "time",
        "uid",
        "decision",
        "allowed",
        "code",
        "reason",
        "enforcement",
        "message",
        "warnings",
        "request",
        "subject",
        "policyDigest",
        "trustDigest",
        "counts",
    }
)
# (list items kept, string characters kept), from light to severe.
_DETAIL_LEVELS = ((256, 8192), (64, 2048), (16, 512), (4, 160), (1, 64))
_DECISION_LEVEL = (8, 256)
# A key that names a field (``reasons``, ``findings``) rather than data (a
# digest, a policy name): only these appear in the paths of ``truncated``.
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,40}")


def _size(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode("utf-8"))


class _Cutter:
    """Copies a record with lists and mappings cut to ``items`` entries and
    strings to ``chars`` characters, counting what it cut by field path."""

    def __init__(self, items: int, chars: int) -> None:
        self.items = items
        self.chars = chars
        self.dropped: dict[str, int] = {}
        self.shortened: dict[str, int] = {}

    def cut(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            if len(value) <= self.chars:
                return value
            self.shortened[path] = self.shortened.get(path, 0) + 1
            return f"{value[: self.chars]}… ({len(value) - self.chars} more characters)"
        if isinstance(value, Mapping):
            keys = list(value)
            self._count(path, len(keys))
            return {str(k): self.cut(value[k], _child(path, str(k))) for k in keys[: self.items]}
        if isinstance(value, list | tuple):
            self._count(path, len(value))
            return [self.cut(v, f"{path}[]") for v in value[: self.items]]
        return value

    def _count(self, path: str, length: int) -> None:
        if length > self.items:
            self.dropped[path or "."] = self.dropped.get(path or ".", 0) + length - self.items

    def report(self, size: int) -> dict[str, Any]:
        return {
            "bytes": size,
            "limit": MAX_LINE_BYTES,
            "dropped": dict(sorted(self.dropped.items())),
            "shortened": dict(sorted(self.shortened.items())),
        }


def _child(path: str, key: str) -> str:
    name = key if _FIELD_NAME.fullmatch(key) else "*"
    return f"{path}.{name}" if path else name


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
