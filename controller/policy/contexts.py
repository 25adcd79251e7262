"""The CEL contexts of one subject: built lazily, shared by every rule.

Converting Python values into CEL values is most of the cost of an
evaluation, so a subject's context holds only the variables its rules read,
each trimmed to the field paths they read (``_readpaths``), and the probe
contexts for unknown values are built only when a rule can see one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.policy._readpaths import TRIMMED_LISTS, prune
from controller.policy.celenv import new_context
from controller.policy.results import Subject
from controller.policy.unknowns import ABSENT, probe_key, with_unknowns
from controller.policy.variables import variables_for


class Contexts:
    """The CEL contexts of one subject, built lazily and reused by every rule."""

    def __init__(
        self,
        subject: Subject,
        needed: frozenset[str],
        trims: Mapping[str, frozenset[tuple[str, ...]]] | None = None,
        helpers: frozenset[str] | None = None,
    ) -> None:
        self.subject = subject
        self.needed = needed
        self.trims = trims or {}
        # The helpers the rules call (None: every helper).
        self.helpers = helpers
        self._plain: Any = None
        self._probes: dict[tuple[str, str], Any] = {}

    def _context(self, obj: Mapping[str, Any] | None) -> Any:
        variables = variables_for(self.subject, obj)
        # Derived variables (podSpec, containers) come from the whole object
        # above; then each variable keeps only the paths the rules read.
        for name, paths in self.trims.items():
            value = variables.get(name)
            if name not in self.needed or value is None:
                continue
            if name in TRIMMED_LISTS:
                if isinstance(value, list):
                    variables[name] = [prune(item, paths) for item in value]
            else:
                variables[name] = prune(value, paths)
        return new_context({k: v for k, v in variables.items() if k in self.needed}, self.helpers)

    @property
    def plain(self) -> Any:
        if self._plain is None:
            obj = self.subject.object
            if obj is not None and self.subject.unknowns:
                obj = with_unknowns(obj, self.subject.unknowns, ABSENT)
            self._plain = self._context(obj)
        return self._plain

    def with_placeholder(self, value: Any) -> Any:
        """The context with every unknown set to the stand-in ``value``."""
        key = probe_key(value)
        if key not in self._probes:
            obj = self.subject.object
            if obj is not None:
                obj = with_unknowns(obj, self.subject.unknowns, value)
            self._probes[key] = self._context(obj)
        return self._probes[key]
