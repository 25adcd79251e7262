"""SARIF 2.1.0 for code scanning (GitHub, GitLab).

Every result has a physical location: GitHub rejects a whole upload when one
result lacks it. A finding's own location (the ``.tf`` file and line, or the
plan file and line) is used when known, else the report's source. Rule ids
are ``policy/rule``. A result's level follows what the finding does, since
code scanning gates on it: ``error`` exactly when it denies; a warning is
``warning`` (``note`` at low severity); audits and waived findings are
``note``. A rule's default level comes from the policy's severity. Waived
findings carry a ``suppressions`` entry naming the exception; the change a
finding is about (action, ``action_reason``) is in its ``properties``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath, PurePosixPath
from typing import Any
from urllib.parse import quote

from controller import __version__
from controller.policy.documents import Action, Severity
from controller.policy.results import Decision, Finding, Subject
from controller.report.base import ReportFormat
from controller.report.context import AppliedException, ReportContext
from controller.report.resources import action_counts, subjects_by_address
from controller.report.summary import summary_line

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://guard.dev"
STDIN_URI = "stdin"

LEVELS = {
    Severity.critical: "error",
    Severity.high: "error",
    Severity.medium: "warning",
    Severity.low: "note",
}
# GitHub code scanning reads this property (0.0-10.0) to rank security results.
SECURITY_SEVERITY = {
    Severity.critical: "9.5",
    Severity.high: "8.0",
    Severity.medium: "5.5",
    Severity.low: "3.0",
}


def artifact_uri(path: str) -> str:
    """A URI reference for a file path: relative paths stay relative."""
    if path in ("", "-", "<stdin>"):
        return STDIN_URI
    pure = PurePath(path)
    if pure.is_absolute():
        return "file://" + quote(PurePosixPath(*pure.parts).as_posix())
    return quote(pure.as_posix())


def result_level(finding: Finding) -> str:
    """``error`` only for a finding that denies: that is what fails the pipeline."""
    if finding.denies:
        return "error"
    if finding.waiver is not None or finding.action is Action.audit:
        return "note"
    return "note" if LEVELS[finding.severity] == "note" else "warning"


def _fingerprint(finding: Finding) -> str:
    key = f"{finding.policy}\0{finding.rule}\0{finding.address}"
    return hashlib.sha256(key.encode()).hexdigest()


class SarifFormat(ReportFormat):
    @property
    def name(self) -> str:
        return "sarif"

    def render(self, decision: Decision, context: ReportContext) -> str:
        rules: dict[str, dict[str, Any]] = {}
        for finding in decision.findings:
            rule_id = f"{finding.policy}/{finding.rule}"
            if rule_id not in rules:
                rules[rule_id] = self._rule(rule_id, finding)
        index = {rule_id: position for position, rule_id in enumerate(rules)}
        exceptions = {e.name: e for e in context.exceptions}
        subjects = subjects_by_address(context.subjects)
        results = [
            self._result(f, index, context, exceptions, subjects.get(f.address))
            for f in decision.findings
        ]
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "guard",
                    "version": __version__,
                    "informationUri": INFORMATION_URI,
                    "rules": list(rules.values()),
                }
            },
            "invocations": [
                {
                    "executionSuccessful": True,
                    "commandLine": context.command,
                    "toolExecutionNotifications": [
                        {"level": "note", "message": {"text": note}} for note in context.notes
                    ],
                }
            ],
            "results": results,
            "properties": {
                "summary": summary_line(decision, context),
                "allowed": decision.allowed,
                "review": context.review,
                "warnOnly": context.warn_only,
                "exceptionsApplied": [e.as_dict() for e in context.exceptions],
                "actions": action_counts(context.subjects),
            },
        }
        document = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
        return json.dumps(document, indent=2) + "\n"

    @staticmethod
    def _rule(rule_id: str, finding: Finding) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "id": rule_id,
            "name": rule_id.replace("/", "-"),
            "shortDescription": {"text": f"policy {finding.policy}, rule {finding.rule}"},
            "defaultConfiguration": {"level": LEVELS[finding.severity]},
            "properties": {
                "security-severity": SECURITY_SEVERITY[finding.severity],
                "tags": ["security", "guard", finding.target.value],
            },
        }
        if finding.fix:
            rule["help"] = {"text": finding.fix}
        return rule

    @staticmethod
    def _result(
        finding: Finding,
        index: dict[str, int],
        context: ReportContext,
        exceptions: dict[str, AppliedException],
        subject: Subject | None,
    ) -> dict[str, Any]:
        rule_id = f"{finding.policy}/{finding.rule}"
        physical: dict[str, Any] = {
            "artifactLocation": {"uri": artifact_uri(finding.location or context.source)}
        }
        if finding.line and finding.line > 0:
            physical["region"] = {"startLine": finding.line}
        text = finding.message
        if finding.fix:
            text = f"{text} Fix: {finding.fix}"
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index[rule_id],
            "level": result_level(finding),
            "message": {"text": f"{finding.address}: {text}"},
            "locations": [
                {
                    "physicalLocation": physical,
                    "logicalLocations": [
                        {"fullyQualifiedName": finding.address, "kind": "resource"}
                    ],
                }
            ],
            "partialFingerprints": {"guardFinding/v1": _fingerprint(finding)},
            "properties": {
                "action": finding.action.value,
                "result": finding.result.value,
                "denies": finding.denies,
                "severity": finding.severity.value,
                "reasons": list(finding.reasons),
                "resourceAction": subject.action if subject is not None else None,
                "actionReason": subject.action_reason if subject is not None else None,
            },
        }
        if finding.waiver is not None:
            applied = exceptions.get(finding.exception) if finding.exception else None
            justification = finding.waiver.label
            if applied is not None:
                justification += (
                    f" (owner {applied.owner}, expires {applied.expires}): {applied.reason}"
                )
            result["suppressions"] = [{"kind": "external", "justification": justification}]
        return result
