"""The formats by name, for ``--format`` and ``--output FORMAT=FILE``."""

from __future__ import annotations

from controller.policy.results import Decision
from controller.report.base import ReportFormat
from controller.report.context import ReportContext
from controller.report.json import JsonFormat
from controller.report.junit import JunitFormat
from controller.report.sarif import SarifFormat
from controller.report.text import TextFormat

_FORMATS: dict[str, ReportFormat] = {
    f.name: f for f in (TextFormat(), JsonFormat(), SarifFormat(), JunitFormat())
}
FORMAT_NAMES: tuple[str, ...] = tuple(_FORMATS)


def format_named(name: str) -> ReportFormat:
    """The format called ``name``; ``KeyError`` names the choices."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r} (one of {', '.join(FORMAT_NAMES)})") from None


def render(name: str, decision: Decision, context: ReportContext) -> str:
    return format_named(name).render(decision, context)
