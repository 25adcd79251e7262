"""Masking at output time: sensitive texts blanked in what a report prints.

Rules that judge real values can echo them (``messageExpression``), so
masking moves from the input to the report: given, per subject address, the
texts that must not be shown (for Terraform,
:func:`controller.terraform.sensitive.sensitive_texts` over a change's values
and its ``*_sensitive`` masks), :func:`redacted` returns the decision with
each occurrence replaced by a marker in every message, fix and reason of the
findings on that address. Every format renders from the decision, so all of
them are masked alike.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import replace

from controller.policy.results import Decision, Finding


def redacted(
    decision: Decision, secrets: Mapping[str, Collection[str]], *, marker: str
) -> Decision:
    """``decision`` with every text in ``secrets[address]`` replaced by ``marker``
    in the findings on ``address``. Findings on other addresses are unchanged.

    Longer texts are replaced first, so a secret that contains another is
    blanked whole. A text that starts or ends with a letter or digit is
    blanked only where it is not part of a longer word or number (a secret
    port ``22`` leaves ``2200`` alone; an exact ``22`` is masked).
    """
    patterns: dict[str, re.Pattern[str] | None] = {}
    findings: list[Finding] = []
    for finding in decision.findings:
        if finding.address not in patterns:
            patterns[finding.address] = _pattern(secrets.get(finding.address, ()))
        pattern = patterns[finding.address]
        if pattern is not None:
            finding = replace(
                finding,
                message=pattern.sub(marker, finding.message),
                fix=pattern.sub(marker, finding.fix),
                reasons=tuple(pattern.sub(marker, r) for r in finding.reasons),
            )
        findings.append(finding)
    return Decision(findings=tuple(findings), subjects=decision.subjects, notes=decision.notes)


def _pattern(texts: Collection[str]) -> re.Pattern[str] | None:
    alternatives = [
        _alternative(text) for text in sorted(set(texts), key=len, reverse=True) if text
    ]
    return re.compile("|".join(alternatives)) if alternatives else None


def _alternative(text: str) -> str:
    escaped = re.escape(text)
    if text[0].isalnum():
        escaped = r"(?<![^\W_])" + escaped
    if text[-1].isalnum():
        escaped += r"(?![^\W_])"
    return escaped
