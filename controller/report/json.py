"""Machine-readable JSON: the decision, the counts and the context, stable keys."""

from __future__ import annotations

import json

from controller import __version__
from controller.policy.results import Decision
from controller.report.base import ReportFormat
from controller.report.context import ReportContext
from controller.report.summary import Counts, summary_line, verdict

SCHEMA_VERSION = 1


class JsonFormat(ReportFormat):
    @property
    def name(self) -> str:
        return "json"

    def render(self, decision: Decision, context: ReportContext) -> str:
        counts = Counts.of(decision, context)
        document = {
            "schemaVersion": SCHEMA_VERSION,
            "tool": {"name": "guard", "version": __version__},
            "command": context.command,
            "source": context.source,
            "verdict": verdict(decision).lower(),
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
                "line": summary_line(decision, context),
            },
            "findings": [f.as_dict() for f in decision.findings],
            "exceptionsApplied": [e.as_dict() for e in context.exceptions],
            "notes": list(context.notes),
        }
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
