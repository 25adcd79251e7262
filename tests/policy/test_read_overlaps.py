"""Whether a rule can see an unknown or sensitive path is answered from an
index of its read paths; the answer must be the plain prefix comparison's
(a wrong "no" would let a rule pass on a value known only after apply)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy._readpaths import overlaps

_part = st.sampled_from(("a", "b", "0", "12", "tags"))
_paths = st.frozensets(st.lists(_part, max_size=4).map(tuple), max_size=5)
_dotted = st.lists(st.sampled_from(("a", "b", "0", "12", "tags", "")), max_size=5).map(".".join)


def _reference(paths: frozenset[tuple[str, ...]], dotted: str) -> bool:
    parts = tuple(part for part in dotted.split(".") if part)
    return any(
        read[: min(len(read), len(parts))] == parts[: min(len(read), len(parts))] for read in paths
    )


@settings(max_examples=500, deadline=None)
@given(_paths, _dotted)
def test_the_index_answers_as_the_prefix_comparison(
    paths: frozenset[tuple[str, ...]], dotted: str
) -> None:
    assert overlaps(paths, dotted) is _reference(paths, dotted)
