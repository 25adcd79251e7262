"""Machine-readable JSON: the decision, the counts and the context, stable keys.

``resources`` lists every judged subject with its own verdict, passes
included (see :mod:`controller.report.resources`); ``findings`` carry the
action and ``action_reason`` of the change they are about.
"""

from __future__ import annotations

import json
from typing import Any

from controller import __version__
from controller.policy.results import Decision, Finding, Subject
from controller.report.base import ReportFormat
from controller.report.context import ReportContext
from controller.report.resources import action_counts, subject_results, subjects_by_address
from controller.report.summary import Counts, summary_line, verdict

SCHEMA_VERSION = 1


def finding_dict(finding: Finding, subject: Subject | None = None) -> dict[str, Any]:
    """One finding; ``subject`` (when the report knows it) adds what the change is."""
    return {
        **finding.as_dict(),
        "resourceAction": subject.action if subject is not None else None,
        "actionReason": subject.action_reason if subject is not None else None,
    }


class JsonFormat(ReportFormat):
    @property
    def name(self) -> str:
        return "json"

    def render(self, decision: Decision, context: ReportContext) -> str:
        counts = Counts.of(decision, context)
        subjects = subjects_by_address(context.subjects)
        document = {
            "schemaVersion": SCHEMA_VERSION,
            "tool": {"name": "guard", "version": __version__},
            "command": context.command,
            "source": context.source,
            "verdict": verdict(decision, context.nothing_judged).lower(),
            "allowed": decision.allowed,
            "warnOnly": context.warn_only,
            "summary": {
                context.subjects_label: counts.subjects,
                "findingsBySeverity": {s.value: n for s, n in counts.by_severity.items()},
                "denied": counts.denied,
                "warned": counts.warned,
                "audited": counts.audited,
                "waived": counts.waived,
                "unknownResults": counts.unknown_results,
                "unknownValues": counts.unknown_values,
                "review": context.review,
                "actions": action_counts(context.subjects),
                "line": summary_line(decision, context),
            },
            "findings": [finding_dict(f, subjects.get(f.address)) for f in decision.findings],
            "exceptionsApplied": [e.as_dict() for e in context.exceptions],
            "notes": list(context.notes),
        }
        head = json.dumps(document, indent=2, sort_keys=False)
        return head[: head.rindex("}")].rstrip() + ",\n" + _resources(decision, context) + "\n}\n"


def _resources(decision: Decision, context: ReportContext) -> str:
    """The ``resources`` member, last, one resource per line.

    A plan can list tens of thousands of changes; the indenting encoder is
    pure Python, while one compact line per resource uses the C encoder.
    """
    lines = [json.dumps(r.as_dict()) for r in subject_results(decision, context.subjects)]
    if not lines:
        return '  "resources": []'
    return '  "resources": [\n    ' + ",\n    ".join(lines) + "\n  ]"
