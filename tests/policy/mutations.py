"""Hypothesis strategies that mutate guard documents and predicates.

Two kinds of mutation: *hostile* (any value of any type at any place, a key
dropped, renamed to snake_case or misspelt, an unknown key added) and
*look-alike* (a string changed so that a person could not tell it from the
original: case, invisible and space characters, homoglyphs from other
scripts, full-width forms, ``_`` for ``-``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

Path = tuple[str | int, ...]

NASTY_TEXT = [
    "", " ", "\n", "\t", "\u200b", "\ufeff", "\u202e", "\x00", "\u017f", "\u212a", "\u0456",
    "\uff41", "*", "?", "[", "refs/", "github:", "kubernetes:", "group:", "1e400", "-1", "0",
    "true", "null", "9999999999999d", "0s", "\U0001f600", "a" * 300,
]  # fmt: skip

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.sampled_from(NASTY_TEXT),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(document: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every place in a JSON-like tree, containers included."""
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


def string_paths(document: Any) -> list[Path]:
    return [p for p in paths(document) if isinstance(get(document, p), str)]


def get(document: Any, path: Path) -> Any:
    for part in path:
        document = document[part]
    return document


def _parent(document: Any, path: Path) -> Any:
    return get(document, path[:-1])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


# --------------------------------------------------------------------------- look-alikes

_HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "o": "\u043e", "p": "\u0440",
    "s": "\u0455", "x": "\u0445", "y": "\u0443", "k": "\u03ba", "K": "\u212a", "B": "\u0392",
    "H": "\u0397", "1": "\u0661", "0": "\u06f0", "-": "\u2010",
}  # fmt: skip
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u0301"]
_SPACES = [" ", "\u00a0", "\n", "\t", "\u3000", "\r"]


@st.composite
def look_alike(draw: st.DrawFn, text: str) -> str:
    """``text`` changed in one way a reader would not see."""
    if not text:
        return draw(st.sampled_from(_SPACES + _INVISIBLE))
    position = draw(st.integers(min_value=0, max_value=len(text) - 1))
    character = text[position]
    options: list[Callable[[], str]] = [
        lambda: text[:position] + draw(st.sampled_from(_INVISIBLE)) + text[position:],
        lambda: draw(st.sampled_from(_SPACES)) + text,
        lambda: text + draw(st.sampled_from(_SPACES)),
        lambda: (
            text[:position] + chr(ord(character) + 0xFEE0) + text[position + 1 :]
            if "!" <= character <= "~"
            else text + "\u200b"
        ),
    ]
    if character in _HOMOGLYPHS:
        glyph = _HOMOGLYPHS[character]
        options.append(lambda: text[:position] + glyph + text[position + 1 :])
    if character.swapcase() != character:
        options.append(lambda: text[:position] + character.swapcase() + text[position + 1 :])
    if character == "s":
        options.append(lambda: text[:position] + "\u017f" + text[position + 1 :])
    if character == "-":
        options.append(lambda: text[:position] + "_" + text[position + 1 :])
    return draw(st.sampled_from(options))()


@st.composite
def look_alike_mutation(draw: st.DrawFn, document: Any, where: Path = ()) -> tuple[Any, Path]:
    """A copy of ``document`` with one string under ``where`` made a look-alike."""
    candidates = [p for p in string_paths(document) if p[: len(where)] == where]
    path = draw(st.sampled_from(candidates))
    mutated = copy.deepcopy(document)
    _parent(mutated, path)[path[-1]] = draw(look_alike(get(document, path)))
    return mutated, path


# --------------------------------------------------------------------------- hostile


@st.composite
def hostile_mutation(draw: st.DrawFn, document: Any) -> tuple[Any, Path]:
    """A copy of ``document`` with one hostile change, and where it was made."""
    mutated = copy.deepcopy(document)
    path = draw(st.sampled_from(list(paths(document))))
    if not path:
        return draw(values), path
    parent = _parent(mutated, path)
    key = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "look-alike", "delete", "rename", "add"]))
    if action == "look-alike" and isinstance(parent[key], str):
        parent[key] = draw(look_alike(parent[key]))
    elif action == "delete":
        del parent[key]
    elif action == "rename" and isinstance(key, str):
        renamed = draw(
            st.sampled_from([_snake(key), key.lower(), key + "s", key[:-1] or "x", key.upper()])
        )
        parent[renamed] = parent.pop(key)
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    else:
        parent[key] = draw(values)
    return mutated, path
