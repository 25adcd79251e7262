"""Report formats shared by every command: text, JSON, SARIF, JUnit.

Each format is one module behind the same two-member interface
(:class:`ReportFormat`), so ``guard tf-plan`` and ``guard kube check`` render
the same findings the same way. The input is always a
:class:`controller.policy.results.Decision` plus a :class:`ReportContext`.
"""

from __future__ import annotations

from controller.report.base import ReportFormat
from controller.report.context import AppliedException, ReportContext, applied_exceptions
from controller.report.registry import FORMAT_NAMES, format_named, render
from controller.report.summary import summary_line

__all__ = [
    "FORMAT_NAMES",
    "AppliedException",
    "ReportContext",
    "ReportFormat",
    "applied_exceptions",
    "format_named",
    "render",
    "summary_line",
]
