"""The interface every report format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from controller.policy.results import Decision
from controller.report.context import ReportContext


class ReportFormat(ABC):
    """One output format: a name for ``--format`` and a pure render function.

    Formats never decide anything: the verdict, the counts and the review
    summary come from the decision and the context, so every format says
    the same thing.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """The value of ``--format`` (and of ``--output FORMAT=FILE``)."""

    @abstractmethod
    def render(self, decision: Decision, context: ReportContext) -> str:
        """The whole report as text, ending with a newline."""
