"""libyaml reads guard's YAML exactly as the pure-Python reader would.

``controller.strict`` parses with libyaml (C) when PyYAML has it, for
start-up time; the strict guarantees (duplicate keys, nesting, one meaning
per document) must not depend on which parser ran. Generated streams,
including ones with duplicated keys, are read by both, and the data or the
refusal must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import strict
from controller.strict import StrictJSONError, YAMLDocumentError, read_yaml_documents

pytestmark = pytest.mark.skipif(
    not hasattr(yaml, "CSafeLoader"), reason="PyYAML was built without libyaml"
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet="abcxyz", min_size=1, max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


def _pure(text: str) -> list[Any]:
    nodes = list(yaml.compose_all(text, Loader=strict.UniqueKeyLoader))
    return [
        strict.UniqueKeyLoader("").construct_document(node)  # type: ignore[no-untyped-call]
        for node in nodes
        if node is not None
    ]


def _outcome(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "data", [d for d in read(text) if d is not None]
    except (yaml.YAMLError, StrictJSONError) as exc:
        return "refused", "duplicate key" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.lists(_values, min_size=1, max_size=3), st.booleans())
def test_both_parsers_read_the_same_documents(documents: list[Any], duplicate: bool) -> None:
    text = yaml.safe_dump_all(documents)
    if duplicate:
        # The same key twice in a mapping: both must refuse it.
        text = "dup: 1\ndup: 2\n---\n" + text
    fast = _outcome(lambda t: [d.data for d in read_yaml_documents(t, "gen.yaml")], text)
    pure = _outcome(_pure, text)
    assert fast[0] == pure[0]
    if fast[0] == "data":
        assert fast[1] == pure[1]
    if duplicate:
        assert fast == ("refused", True)


def test_a_nesting_bomb_is_refused_by_either_parser_in_the_same_words() -> None:
    for bomb in ("a: " + "[" * 5000 + "]" * 5000, "".join("  " * i + "a:\n" for i in range(3000))):
        with pytest.raises(YAMLDocumentError, match="nested too deeply"):
            read_yaml_documents(bomb, "bomb.yaml")
