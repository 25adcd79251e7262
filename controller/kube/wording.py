"""What people read: the denial message and the warnings of one answer.

kube-apiserver passes both on to kubectl users; guard keeps them printable
(text from the object cannot forge a line) and within the API server's own
limits, so what it says arrives whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.kube.text import printable
from controller.policy.results import Finding, Subject

# How many findings one denial message spells out; the audit record keeps all.
MAX_LISTED_FINDINGS = 20
# How many reasons of one review finding it spells out.
MAX_LISTED_REASONS = 10
# Each line of a denial message (a finding, a reason, a fix) is cut here, and
# the whole message stays within MAX_DENIAL_CHARS: kube-apiserver passes the
# message to kubectl, the Event and its own audit log, and a request crafted
# to fail on many images must not make it megabytes long. A fix that several
# findings share is shown once.
MAX_LINE_CHARS = 1024
MAX_DENIAL_CHARS = 16 * 1024
# Kubernetes shows warnings to kubectl users one per line; keep them readable.
# kube-apiserver (endpoints/filters/warning.go) drops a warning holding a
# control character, and once the warnings of one response pass 4096
# characters in all it cuts each to 256 and drops the rest: guard keeps to
# those limits itself, so what it says arrives whole.
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 512
MAX_WARNING_TOTAL_CHARS = 4096
# Room kept for the closing "N more warning(s) not shown".
_MORE_CHARS = 48


def denial_message(subject: Subject, denials: Sequence[Finding], dry_run: bool) -> str:
    """One message listing every failure: policy, rule, what is wrong, how to fix it."""
    count = len(denials)
    head = f"guard denied {subject.address}: {count} problem{'s' if count != 1 else ''}"
    if dry_run:
        head += " (dry run)"
    message = _Message(head)
    fixes: set[str] = set()
    # Each part on its own line, escaped: text from the object (an image
    # reference, a rule's messageExpression) cannot forge a line.
    for shown_count, finding in enumerate(denials[:MAX_LISTED_FINDINGS]):
        lines = [f"- [{finding.policy}/{finding.rule}] {finding.message}"]
        if finding.rule == "review" and len(finding.reasons) > 1:
            # The message names the first reason; list them (a flood of
            # bogus envelopes gives many: the audit record keeps them).
            lines.extend(f"    {reason}" for reason in finding.reasons[:MAX_LISTED_REASONS])
            if len(finding.reasons) > MAX_LISTED_REASONS:
                more = len(finding.reasons) - MAX_LISTED_REASONS
                lines.append(f"    and {more} more (see the audit log)")
        if finding.fix and finding.fix not in fixes:
            fixes.add(finding.fix)
            lines.append(f"    fix: {finding.fix}")
        if not message.add(lines, reserve=count > shown_count + 1):
            message.close(f"- and {count - shown_count} more (see the audit log)")
            return message.text()
    if count > MAX_LISTED_FINDINGS:
        message.close(f"- and {count - MAX_LISTED_FINDINGS} more (see the audit log)")
    return message.text()


# Room kept for the closing "- and N more (see the audit log)".
_CLOSING_CHARS = 48


class _Message:
    """Lines of one denial message, each shortened, all within the cap."""

    def __init__(self, head: str) -> None:
        self._lines = [_line(head)]
        self._size = len(self._lines[0])

    def add(self, lines: Sequence[str], *, reserve: bool) -> bool:
        """Add one finding's lines whole, or nothing when they do not fit."""
        shortened = [_line(text) for text in lines]
        size = sum(len(text) + 1 for text in shortened)
        if self._size + size + (_CLOSING_CHARS if reserve else 0) > MAX_DENIAL_CHARS:
            return False
        self._lines.extend(shortened)
        self._size += size
        return True

    def close(self, text: str) -> None:
        self._lines.append(text)

    def text(self) -> str:
        return "\n".join(self._lines)


def _line(text: str) -> str:
    """One printable line of at most ``MAX_LINE_CHARS`` characters."""
    text = printable(text)
    if len(text) <= MAX_LINE_CHARS:
        return text
    keep = MAX_LINE_CHARS - 40  # room for the note of what was cut
    return f"{text[:keep]}… ({len(text) - keep} more characters)"


def warning_text(finding: Finding) -> str:
    text = f"guard [{finding.policy}/{finding.rule}] {finding.message}"
    if finding.fix:
        text += f" (fix: {finding.fix})"
    return shown(text)


def shown(text: str) -> str:
    """One warning as kube-apiserver will pass it on: printable (it drops a
    warning with a control character) and of bounded length."""
    text = printable(text)
    if len(text) > MAX_WARNING_CHARS:
        text = text[: MAX_WARNING_CHARS - 1] + "…"
    return text


def within_budget(warnings: Sequence[str]) -> list[str]:
    """The warnings that fit kube-apiserver's limits, in order, and a last
    one saying how many did not.

    Past ``MAX_WARNING_TOTAL_CHARS`` in one response the API server cuts
    every warning to 256 characters and drops the later ones, without a
    word: guard stops short of that itself and says so.
    """
    kept: list[str] = []
    total = 0
    for position, text in enumerate(warnings):
        left = len(warnings) - position - 1
        reserve = _MORE_CHARS if left else 0
        if len(kept) >= MAX_WARNINGS or total + len(text) + reserve > MAX_WARNING_TOTAL_CHARS:
            kept.append(f"guard: {len(warnings) - position} more warning(s) not shown")
            break
        kept.append(text)
        total += len(text)
    return kept
