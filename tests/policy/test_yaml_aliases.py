"""Aliases may share values, never multiply them past a bound or contain
themselves: every later walk of a document (its depth check, its
conversion into CEL, the outcome key) must finish."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.strict import (
    MAX_ALIASED_VALUES,
    StrictJSONError,
    YAMLDocumentError,
    aliased_values,
    load_json_or_yaml,
    read_yaml_documents,
)


def doubling(anchors: int, width: int) -> str:
    """Each anchor repeats the one before ``width`` times: width**anchors values."""
    lines = ["a0: &a0 [1]"]
    for i in range(1, anchors):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 80), st.integers(1, 4))
def test_aliases_that_multiply_a_document_past_the_bound_are_refused(
    anchors: int, width: int
) -> None:
    text = doubling(anchors, width)
    # Anchor i written out is a list of ``width`` copies of anchor i - 1.
    sizes = [2]
    for _ in range(1, anchors):
        sizes.append(1 + width * sizes[-1])
    written = 1 + anchors + 2 + (anchors - 1)  # the mapping, its keys, each list once
    added = 1 + anchors + sum(sizes) - written
    if added <= MAX_ALIASED_VALUES:
        assert read_yaml_documents(text, "a.yaml")
        assert load_json_or_yaml(text)
        return
    with pytest.raises(YAMLDocumentError, match=r"a\.yaml \(document 1\): its aliases repeat"):
        read_yaml_documents(text, "a.yaml")
    with pytest.raises(StrictJSONError, match="an alias bomb"):
        load_json_or_yaml(text)


def test_the_count_is_exact_on_a_small_document() -> None:
    node = yaml.compose("a: &x [1, 2]\nb: [*x, *x]\n")
    # Written: mapping, 2 keys, x (3 nodes), b's list = 7; as a tree: 13.
    assert aliased_values(node) == 6


@pytest.mark.parametrize("text", ["&a [*a]", "x: &l [1, [*l]]", "&m {k: [*m]}"])
def test_a_value_that_contains_itself_is_refused(text: str) -> None:
    with pytest.raises(StrictJSONError, match="an alias is used inside the value it names"):
        load_json_or_yaml(text)
    with pytest.raises(YAMLDocumentError, match="inside the value it names"):
        read_yaml_documents(text, "self.yaml")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 3))
def test_the_count_is_what_the_aliases_add(anchors: int, width: int) -> None:
    sizes = [2]
    for _ in range(1, anchors):
        sizes.append(1 + width * sizes[-1])
    written = 1 + anchors + 2 + (anchors - 1)
    assert (
        aliased_values(yaml.compose(doubling(anchors, width))) == 1 + anchors + sum(sizes) - written
    )
