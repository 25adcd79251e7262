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

from controller.policy._readpaths import TRIMMED_LISTS, overlaps, path_trie, prune_trie
from controller.policy.celenv import new_context
from controller.policy.results import Subject
from controller.policy.unknowns import ABSENT, probe_key, with_unknowns
from controller.policy.variables import variables_for

# The variables that hold the new state, where values known only after
# apply are (only Terraform subjects have such values, and Terraform has no
# variables derived from the object).
NEW_STATE = ("object", "after")
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
    ) -> None:
        self.subject = subject
        self.needed = needed
        self.trims = trims or {}
        self._plain: Any = None
        self._plain_variables: dict[str, Any] | None = None
        self._probes: dict[tuple[str, str], Any] = {}

    def _variables(self, placeholder: Any) -> dict[str, Any]:
        """The variables the rules read, each trimmed to the paths they read,
        with the unknown paths they can see set to ``placeholder``
        (``ABSENT``: left out).

        Trimming first and then touching only the unknown paths that overlap
        what is kept gives the same values as the other way round (both act
        on paths, and what trimming drops no rule reads), without copying
        the object for the unknowns no rule reads (most of a plan's: ids,
        ARNs).
        """
        subject = self.subject
        variables = variables_for(subject, subject.object)
        trimmed: dict[str, Any] = {}
        for name, value in variables.items():
            if name not in self.needed:
                continue
            paths = self.trims.get(name)
            if paths is not None and value is not None:
                trie = path_trie(paths)
                if name in TRIMMED_LISTS:
                    if isinstance(value, list):
                        value = [prune_trie(item, trie) for item in value]
                else:
                    value = prune_trie(value, trie)
            if subject.unknowns and name in NEW_STATE and isinstance(value, Mapping):
                seen = [u for u in subject.unknowns if paths is None or overlaps(paths, u)]
                if seen:
                    value = with_unknowns(value, seen, placeholder)
            trimmed[name] = value
        return trimmed

    @property
    def plain_variables(self) -> dict[str, Any]:
        """The trimmed variables the rules read, unknown values left out."""
        if self._plain_variables is None:
            self._plain_variables = self._variables(ABSENT)
        return self._plain_variables

    @property
    def plain(self) -> Any:
        if self._plain is None:
            self._plain = new_context(self.plain_variables)
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
            self._probes[key] = new_context(self._variables(value))
        return self._probes[key]
