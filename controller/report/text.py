"""Text for people: grouped by severity, then resource address.

Each finding shows what it does (DENY, WARN, AUDIT, WAIVED), the policy and
rule, the message and the fix; each address, what the change is and why
(``replace (tainted)``). A closing section counts every judged change by
action and names those Terraform gave a reason for. Colour is used only when the caller says the
output is a terminal, so logs and files stay plain.
"""

from __future__ import annotations

from itertools import groupby

from controller.policy.documents import Action
from controller.policy.results import Decision, Finding, Result, Subject
from controller.report.base import ReportFormat
from controller.report.context import ReportContext
from controller.report.resources import action_counts, describe_change, subjects_by_address
from controller.report.summary import SEVERITIES_HIGH_FIRST, summary_line

# Changes with an action_reason listed by name; the JSON report lists them all.
MAX_REASONS_LISTED = 20

_RED, _YELLOW, _DIM, _BOLD, _RESET = "\033[31m", "\033[33m", "\033[2m", "\033[1m", "\033[0m"


def _label(finding: Finding) -> str:
    if finding.waiver is not None:
        return "WAIVED"
    return finding.action.value.upper()


def _colour_of(finding: Finding) -> str:
    if finding.waiver is not None or finding.action is Action.audit:
        return _DIM
    return _RED if finding.action is Action.deny else _YELLOW


class TextFormat(ReportFormat):
    @property
    def name(self) -> str:
        return "text"

    def render(self, decision: Decision, context: ReportContext) -> str:
        paint = _Painter(context.colour)
        subjects = subjects_by_address(context.subjects)
        lines: list[str] = []
        for severity in SEVERITIES_HIGH_FIRST:
            group = [f for f in decision.findings if f.severity is severity]
            if not group:
                continue
            lines.append(paint(_BOLD, f"{severity.value.upper()} ({len(group)})"))
            group.sort(key=lambda f: (f.address, f.policy, f.rule))
            for address, items in groupby(group, key=lambda f: f.address):
                found = list(items)
                where = _where(found[0])
                shown = where and where != address
                change = describe_change(subjects.get(address))
                lines.append(
                    f"  {address}"
                    + (f"  [{change}]" if change else "")
                    + (f"  ({where})" if shown else "")
                )
                for finding in found:
                    lines.extend(self._finding(finding, paint))
            lines.append("")
        if not decision.findings:
            lines.extend(["no findings", ""])
        if context.subjects:
            lines.extend(_changes(context.subjects, paint))
        if context.exceptions:
            lines.append(paint(_BOLD, "Exceptions applied"))
            for applied in context.exceptions:
                lines.append(
                    f"  {applied.name}: policy {applied.policy} on {', '.join(applied.addresses)}"
                    f" (owner {applied.owner}, expires {applied.expires}): {applied.reason}"
                )
            lines.append("")
        if context.notes:
            lines.append(paint(_BOLD, "Notes"))
            lines.extend(f"  - {note}" for note in context.notes)
            lines.append("")
        lines.append(summary_line(decision, context))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _finding(finding: Finding, paint: _Painter) -> list[str]:
        label = paint(_colour_of(finding), f"{_label(finding):<6}")
        result = "" if finding.result is Result.fail else f" [{finding.result.value}]"
        lines = [f"    {label} {finding.policy}/{finding.rule}{result}: {finding.message}"]
        indent = " " * 11
        lines.extend(f"{indent}- {reason}" for reason in finding.reasons[1:])
        if finding.waiver is not None:
            lines.append(f"{indent}waived by {finding.waiver.label}")
        if finding.fix:
            lines.append(f"{indent}fix: {finding.fix}")
        return lines


def _changes(subjects: tuple[Subject, ...], paint: _Painter) -> list[str]:
    counts = ", ".join(f"{n} {action}" for action, n in action_counts(subjects).items())
    lines = [paint(_BOLD, f"Changes ({len(subjects)})"), f"  {counts}"]
    reasoned = [s for s in subjects if s.action_reason]
    for subject in reasoned[:MAX_REASONS_LISTED]:
        lines.append(f"  {subject.address}: {describe_change(subject)}")
    if len(reasoned) > MAX_REASONS_LISTED:
        rest = len(reasoned) - MAX_REASONS_LISTED
        lines.append(f"  ... and {rest} more with a reason (--format json lists every change)")
    lines.append("")
    return lines


def _where(finding: Finding) -> str:
    if finding.location is None:
        return ""
    return f"{finding.location}:{finding.line}" if finding.line else finding.location


class _Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled else text
