"""Unknown values: the probes copy only what they touch."""

from __future__ import annotations

from controller.policy.unknowns import ABSENT, with_unknowns


def test_unknown_paths_copy_only_what_they_touch() -> None:
    original = {"a": {"b": 1, "c": 2}, "items": [{"x": 1}, {"x": 2}, {"x": 3}], "keep": {"k": 1}}
    absent = with_unknowns(original, ["a.b", "items.0", "items.2"], ABSENT)
    assert absent == {"a": {"c": 2}, "items": [{"x": 2}], "keep": {"k": 1}}
    placeholder = with_unknowns(original, ["items.1.x"], "?")
    assert placeholder["items"][1] == {"x": "?"}
    assert original["items"] == [{"x": 1}, {"x": 2}, {"x": 3}]  # never modified
    assert original["a"] == {"b": 1, "c": 2}
    assert placeholder["keep"] is original["keep"]  # untouched parts are shared
