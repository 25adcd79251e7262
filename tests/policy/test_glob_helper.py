"""``glob`` keeps compiled patterns; it must still answer exactly as fnmatchcase."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.celenv import HELPERS

_alphabet = st.sampled_from([*"ab.-*?[]!\n", "io", "\u00e9"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_alphabet, max_size=8).map("".join), st.lists(_alphabet, max_size=8).map("".join))
def test_glob_answers_as_fnmatchcase(text: str, pattern: str) -> None:
    glob = HELPERS["glob"]
    assert glob(text, pattern) is fnmatch.fnmatchcase(text, pattern)
    # Asked again (now from the compiled cache), the same answer.
    assert glob(text, pattern) is fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_alphabet, max_size=8).map("".join),
    st.lists(st.lists(_alphabet, max_size=6).map("".join), max_size=4),
)
def test_glob_over_a_list_is_any_of_its_patterns(text: str, patterns: list[str]) -> None:
    assert HELPERS["glob"](text, patterns) is any(
        fnmatch.fnmatchcase(text, pattern) for pattern in patterns
    )


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("g", [["ghcr.io"]]), ("1", [1]), ("None", [None]), ("True", True), (["x"], "*"), (1, "*")],
)
def test_glob_refuses_what_is_not_a_string_rather_than_match_its_text(
    text: object, pattern: object
) -> None:
    """``str([...])`` is a character class to fnmatch: coercing would match."""
    with pytest.raises(ValueError, match="string"):
        HELPERS["glob"](text, pattern)
