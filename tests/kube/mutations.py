"""Hypothesis strategies for hostile AdmissionReviews: one valid review
with one thing changed (a value replaced, retyped, wrapped, deleted, nested
deep), and raw bodies cut or spliced where ``json`` gives up."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Path = tuple[str | int, ...]

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=16,
)


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path below ``value`` (not the root itself)."""
    found: list[Path] = []
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def _get(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def _nest(value: Any, depth: int) -> Any:
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


MUTATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "replace": lambda _old, new: new,
    "wrap in an array": lambda old, _new: [old],
    "wrap in an object": lambda old, _new: {"x": old},
    "as a string": lambda old, _new: json.dumps(old),
    "nest deep": lambda old, _new: _nest(old, 300),
    "retype": lambda old, _new: (
        list(old.values())
        if isinstance(old, dict)
        else {str(i): v for i, v in enumerate(old)}
        if isinstance(old, list)
        else [old]
    ),
}
DELETE = "delete"


@st.composite
def mutated(
    draw: st.DrawFn, base: dict[str, Any], under: Path = ()
) -> tuple[dict[str, Any], str, Path]:
    """``base`` with one change at a path at or below ``under``: the new
    document, what was done and where."""
    document = copy.deepcopy(base)
    root = _get(document, under)
    path = (*under, *draw(st.sampled_from(paths(root))))
    how = draw(st.sampled_from([*MUTATIONS, DELETE]))
    parent = _get(document, path[:-1])
    key = path[-1]
    if how == DELETE:
        del parent[key]
    else:
        parent[key] = MUTATIONS[how](parent[key], draw(JSON_VALUES))
    return document, how, path


@st.composite
def broken_bodies(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """The review's JSON text cut short, spliced with a nesting bomb, an
    overlong number, NaN or bytes that are not UTF-8, at any point."""
    text = json.dumps(base).encode()
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    insert = draw(
        st.sampled_from([b"", b"[" * 3000, b"1" * 5000, b"NaN", b"\xff", b'"\\q"', b"}}}"])
        | st.binary(max_size=16)
    )
    keep_tail = draw(st.booleans())
    return text[:cut] + insert + (text[cut:] if keep_tail else b"")
