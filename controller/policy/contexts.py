"""The CEL contexts of one subject: built lazily, shared by every rule.

Converting Python values into CEL values is most of the cost of an
evaluation, so a subject's context holds only the variables its rules read,
each trimmed to the field paths they read (``_readpaths``), and the probe
contexts for unknown values are built only when a rule can see one.

Those trimmed variables are everything a rule can read, so their JSON text
(with the unknown paths) is the subject's ``content_key``: two subjects
with the same key get the same outcome from every rule of the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from controller.policy._readpaths import TRIMMED_LISTS, prune
from controller.policy.celenv import new_context
from controller.policy.results import Subject
from controller.policy.unknowns import ABSENT, probe_key, with_unknowns
from controller.policy.variables import variables_for

# What ``content_key`` writes must tell apart every value CEL tells apart.
_EXACT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


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
        self._plain_variables: dict[str, Any] | None = None
        self._probes: dict[tuple[str, str], Any] = {}

    def _variables(self, obj: Mapping[str, Any] | None) -> dict[str, Any]:
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
        return {k: v for k, v in variables.items() if k in self.needed}

    def _context(self, obj: Mapping[str, Any] | None) -> Any:
        return new_context(self._variables(obj), self.helpers)

    @property
    def plain_variables(self) -> dict[str, Any]:
        """The trimmed variables the rules read, unknown values left out."""
        if self._plain_variables is None:
            obj = self.subject.object
            if obj is not None and self.subject.unknowns:
                obj = with_unknowns(obj, self.subject.unknowns, ABSENT)
            self._plain_variables = self._variables(obj)
        return self._plain_variables

    @property
    def plain(self) -> Any:
        if self._plain is None:
            self._plain = new_context(self.plain_variables, self.helpers)
        return self._plain

    def content_key(self) -> bytes | None:
        """Everything the plan's rules can read of this subject, as bytes:
        the trimmed variables' JSON text and the unknown paths (the probe
        contexts follow from both). None when the values have no JSON text
        (an integer beyond 64 bits, a key that is not a string, a date from
        YAML, a non-finite number): such subjects are always evaluated.

        Key order is kept, not sorted: equal values written in another order
        only miss, they never share an outcome they should not.
        """
        try:
            # Dates refused rather than written as strings (CEL tells them apart).
            text = orjson.dumps(self.plain_variables, option=_EXACT)
            if b"null" in text:
                # orjson writes NaN and infinities as null: make sure there are none.
                json.dumps(self.plain_variables, allow_nan=False)
            if not self.subject.unknowns:
                return text
            # JSON text holds no raw NUL, so the two parts cannot run together.
            return text + b"\0" + orjson.dumps(list(self.subject.unknowns), option=_EXACT)
        except (orjson.JSONEncodeError, TypeError, ValueError):
            return None

    def with_placeholder(self, value: Any) -> Any:
        """The context with every unknown set to the stand-in ``value``."""
        key = probe_key(value)
        if key not in self._probes:
            obj = self.subject.object
            if obj is not None:
                obj = with_unknowns(obj, self.subject.unknowns, value)
            self._probes[key] = self._context(obj)
        return self._probes[key]
