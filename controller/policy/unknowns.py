"""Values Terraform knows only after apply: the probes a rule is run under.

The contract is sound, not heuristic: a rule that can see an unknown path
(its read set, over-approximated, includes it) is never ``pass``. It is
``fail`` only if it fails with the value absent and with every stand-in in
its place (these placeholders, and every constant the rule itself compares
against); otherwise it is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Values that stand for "known after apply" when probing whether a rule's
# verdict depends on an unknown Terraform value. One of each type a rule is
# likely to compare with, so that a verdict that holds for all of them (and
# for the value being absent) really does not depend on the unknown.
UNKNOWN_PLACEHOLDERS: tuple[Any, ...] = (
    "\u2039known after apply\u203a",
    True,
    False,
    0,
    2**31 - 1,
    [],
    {},
)


def probe_values(rule_literals: Sequence[Any]) -> tuple[Any, ...]:
    """The stand-ins tried for an unknown value under one rule: the fixed
    placeholders and the rule's own constants, each once."""
    seen: dict[tuple[str, str], Any] = {}
    for value in (*UNKNOWN_PLACEHOLDERS, *rule_literals):
        seen.setdefault(probe_key(value), value)
    return tuple(seen.values())


def probe_key(value: Any) -> tuple[str, str]:
    """A key telling stand-ins apart (``1``, ``1.0`` and ``True`` are different)."""
    return type(value).__name__, repr(value)


def _path_parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


ABSENT = object()


def with_unknowns(obj: Mapping[str, Any], paths: Sequence[str], placeholder: Any) -> Any:
    """``obj`` with the unknown paths removed (``ABSENT``) or set to a placeholder.

    Copies only the containers along the paths; the rest is shared with the
    original, which is never modified.
    """
    result: Any = dict(obj)
    copied: set[int] = {id(result)}
    # Deepest paths first, and list items from the end, so that removing an
    # item keeps the indexes of the others valid.
    for path in sorted(paths, key=_path_order, reverse=True):
        parts = _path_parts(path)
        if not parts:
            continue
        parent: Any = result
        for part in parts[:-1]:
            child = _child(parent, part)
            if not isinstance(child, dict | list):
                parent = None
                break
            if id(child) not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                copied.add(id(child))
                _set_child(parent, part, child)
            parent = child
        if parent is None:
            continue
        last = parts[-1]
        if isinstance(parent, dict):
            if placeholder is ABSENT:
                parent.pop(last, None)
            else:
                parent[last] = placeholder
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            if placeholder is ABSENT:
                parent.pop(int(last))
            else:
                parent[int(last)] = placeholder
    return result


def _path_order(path: str) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Depth first, then path parts with list indexes compared as numbers."""
    parts = _path_parts(path)
    return len(parts), tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts)


def _child(parent: Any, part: str) -> Any:
    if isinstance(parent, dict):
        return parent.get(part)
    if isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
        return parent[int(part)]
    return None


def _set_child(parent: Any, part: str, child: Any) -> None:
    if isinstance(parent, dict):
        parent[part] = child
    else:
        parent[int(part)] = child
