"""The read-path analysis: what a CEL rule reads, decided from its source.

Fail-safe: anything but a plain field path reads the variable whole.
"""

from __future__ import annotations

import pytest

from controller.policy._readpaths import (
    PRESENCE,
    access_paths,
    element_paths,
    prune,
    reads_whole_object,
    words,
)


@pytest.mark.parametrize(
    ("expression", "whole"),
    [
        ("has(after.encrypted) && after.encrypted", False),
        ("after == null || after.acl != 'public-read'", False),
        ("null != after && after.x == 1", False),
        ("after.all(k, k != 'x')", True),
        ("size(after) > 0", True),
        ("lookup(after, 'a.b', 0) == 1", False),
        ("after.tags.all(k, k != 'x')", False),
    ],
)
def test_reading_the_whole_object_is_detected(expression: str, whole: bool) -> None:
    assert reads_whole_object(expression) is whole


@pytest.mark.parametrize(
    ("expression", "whole"),
    [
        ("lookup(after, 'acl', '') != 'public-read'", False),
        ('lookup( after , "a.b", 0) == 1', False),
        ("['a', 'b'].all(f, lookup(after, f, false))", True),
    ],
)
def test_literal_lookups_read_field_by_field(expression: str, whole: bool) -> None:
    assert reads_whole_object(expression) is whole


def test_words_take_path_literals_not_other_strings() -> None:
    found = words("lookup(after, 'tags.owner', '') != '' && after.x == 'arn:aws:iam::1:role/a'")
    assert {"tags", "x"} <= found
    assert "arn" not in found and "aws" not in found


def test_the_word_object_inside_a_string_is_not_a_use() -> None:
    assert not reads_whole_object("object.metadata.name != 'the object itself'")
    assert words("containers.all(c, c.image != '')") == {"all", "image"}


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("object == null || object.spec.replicas > 1", {("spec", "replicas")}),
        (
            "has(object.metadata.labels) && object.metadata.labels.owner != ''",
            {("metadata", "labels", PRESENCE), ("metadata", "labels", "owner")},
        ),
        # Presence only: has(), and a comparison with null that takes the
        # chain as its whole operand.
        (
            "object.spec.x != null && null == object.spec.y",
            {("spec", "x", PRESENCE), ("spec", "y", PRESENCE)},
        ),
        ("object.spec.x + 1 != null", {("spec", "x")}),
        ("!object.spec.x != null", {("spec", "x")}),
        ("null == object.spec.x.size()", {("spec", "x")}),
        (
            "has(object.spec.x.y) || object.spec.x.size() > 0",
            {("spec", "x", "y", PRESENCE), ("spec", "x")},
        ),
        # A literal lookup path continues the chain it is given.
        ("lookup(object.spec, 'template.metadata', {}) != {}", {("spec", "template", "metadata")}),
        ("lookup(object.spec, 'list.0.x', {}) != {}", {("spec", "list")}),
        (
            "lookup(object, 'spec.template.metadata.labels', {}).size() > 0",
            {("spec", "template", "metadata", "labels")},
        ),
        ("lookup(object, 'spec.0.x', 1) == 1", {("spec",)}),
        ("object.spec.containers.all(c, c.image != '')", {("spec", "containers")}),
        ("size(object) > 0", None),
        ("object.all(k, k != 'x')", None),
        ("lookup(object, f, 1) == 1", None),
        ("object['spec'].x == 1", None),
    ],
)
def testaccess_paths(expression: str, paths: set[tuple[str, ...]] | None) -> None:
    found = access_paths(expression, "object")
    assert (None if found is None else set(found)) == (None if paths is None else paths)


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("containers.all(c, c.image != '')", {("image",)}),
        (
            "containers.all(c, !has(c.securityContext) || c.securityContext.privileged != true)",
            {("securityContext", PRESENCE), ("securityContext", "privileged")},
        ),
        (
            "containers.all(c, has(c.resources) && lookup(c.resources, 'limits.cpu', '') != '')",
            {("resources", PRESENCE), ("resources", "limits", "cpu")},
        ),
        (
            "containers.exists(c, lookup(c, 'resources.limits', {}).size() > 0)",
            {("resources", "limits")},
        ),
        (
            "containers.all(c, c.ports.all(c, c.containerPort > 0))",
            {("ports",), ("containerPort",)},
        ),
        ("size(containers) < 3", None),
        ("containers[0].image != ''", None),
        ("containers.all(c, c in ['x'])", None),
        ("containers.all(c, lookup(c, f, '') != '')", None),
    ],
)
def test_containerelement_paths(expression: str, paths: set[tuple[str, ...]] | None) -> None:
    found = element_paths(expression, "containers")
    assert (None if found is None else set(found)) == (None if paths is None else paths)


def test_pruned_objects_keep_every_path_a_rule_reads() -> None:
    obj = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": [1, 2], "g": 4}
    assert prune(obj, {("a", "b"), ("f",)}) == {"a": {"b": {"c": 1, "d": 2}}, "f": [1, 2]}
    assert prune(obj, {("a", "missing")}) == {"a": {}}
    assert prune(obj, set()) == {}
    # Presence keeps an empty stand-in of a map, and anything else whole.
    assert prune(obj, {("a", PRESENCE), ("f", PRESENCE), ("g", PRESENCE)}) == {
        "a": {},
        "f": [1, 2],
        "g": 4,
    }
    assert prune(obj, {("a", PRESENCE), ("a", "e")}) == {"a": {"e": 3}}
    assert prune(obj, {("missing", PRESENCE)}) == {}
