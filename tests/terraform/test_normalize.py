"""resource_changes entries into subjects: actions, unknowns, masking, the plan subject."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import InputError
from controller.policy.documents import Target
from controller.terraform.lines import address_lines
from controller.terraform.normalize import (
    SENSITIVE_MASK,
    action_of,
    masked,
    normalize,
    subject_of,
    unknown_paths,
)


def _entry(actions: list[str], before: Any = None, after: Any = None, **change: Any) -> Any:
    return {
        "address": 'module.a.module.b.aws_x.y["k"]',
        "module_address": "module.a.module.b",
        "type": "aws_x",
        "name": "y",
        "index": "k",
        "change": {"actions": actions, "before": before, "after": after, **change},
    }


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["create"], "create"),
        (["update"], "update"),
        (["delete"], "delete"),
        (["delete", "create"], "replace"),
        (["create", "delete"], "replace"),
        (["create", "forget"], "replace"),
        (["forget"], "forget"),
        (["no-op"], "no-op"),
        (["read"], "read"),
    ],
)
def test_actions(actions: list[str], expected: str) -> None:
    assert action_of(actions, "x") == expected


@pytest.mark.parametrize("actions", [["create", "create"], [], "create", [1]])
def test_unknown_actions_fail_closed(actions: Any) -> None:
    with pytest.raises(InputError, match="x: "):
        action_of(actions, "x")


def test_unknown_paths_number_list_positions() -> None:
    mask = {"id": True, "ingress": [{"cidr_blocks": True}, {"cidr_blocks": [False, True]}], "a": {}}
    assert list(unknown_paths(mask)) == ["id", "ingress.0.cidr_blocks", "ingress.1.cidr_blocks.1"]
    assert list(unknown_paths(False)) == []


def test_masking_replaces_only_sensitive_parts_and_keeps_the_original() -> None:
    value = {"user": "app", "password": "s3cret", "nested": [{"k": "v"}, {"k": "hidden"}]}
    mask = {"password": True, "nested": [{}, {"k": True}]}
    result = masked(value, mask)
    assert result == {
        "user": "app",
        "password": SENSITIVE_MASK,
        "nested": [{"k": "v"}, {"k": SENSITIVE_MASK}],
    }
    assert value["password"] == "s3cret"  # input untouched
    untouched = {"a": 1}
    assert masked(untouched, {"a": False}) is untouched
    assert masked("whole", True) == SENSITIVE_MASK


def test_create_subject() -> None:
    subject, unknown = subject_of(
        _entry(
            ["create"],
            after={"name": "n", "secret": "p"},
            after_unknown={"id": True},
            after_sensitive={"secret": True},
        ),
        0,
        "plan.json",
    )
    assert subject.target is Target.terraform
    assert subject.kind == "resource" and subject.type == "aws_x" and subject.name == "y"
    assert subject.address == 'module.a.module.b.aws_x.y["k"]'
    assert subject.action == "create"
    assert subject.object == {"name": "n", "secret": SENSITIVE_MASK}
    assert subject.old_object is None
    assert subject.unknowns == ("id",) and unknown == 1


def test_delete_and_forget_judge_the_old_object() -> None:
    for actions in (["delete"], ["forget"]):
        subject, _ = subject_of(
            _entry(actions, before={"protected": True, "pw": "x"}, before_sensitive={"pw": True}),
            0,
            "plan.json",
        )
        assert subject.object == {"protected": True, "pw": SENSITIVE_MASK}
        assert subject.old_object == subject.object
        assert subject.unknowns == ()


def test_replace_has_both_states() -> None:
    subject, _ = subject_of(_entry(["create", "delete"], before={"v": 1}, after={"v": 2}), 0, "p")
    assert subject.action == "replace"
    assert subject.object == {"v": 2} and subject.old_object == {"v": 1}


def test_deposed_objects_are_named() -> None:
    entry = _entry(["delete"], before={"v": 1})
    entry["deposed"] = "00000001"
    subject, _ = subject_of(entry, 0, "p")
    assert subject.address.endswith("(deposed object 00000001)")


def test_plan_subject_carries_the_plan_artifact() -> None:
    normalized = normalize(
        {"resource_changes": [_entry(["read"], after={})]}, "tfplan", "sha256:ab"
    )
    plan = normalized.plan
    assert plan.kind == "plan" and plan.address == "tfplan" and plan.object is None
    assert len(plan.artifacts) == 1
    artifact = plan.artifacts[0]
    assert (artifact.reference, artifact.digest, artifact.kind) == ("tfplan", "sha256:ab", "plan")
    assert artifact.introduced
    assert [s.action for s in normalized.resources] == ["read"]


def test_address_lines_are_found_lazily_in_resource_changes() -> None:
    text = (
        b'{\n"planned_values": {"address": "aws_x.a"},\n"resource_changes": [\n'
        b'  {"address": "aws_x.a"},\n  {"address": "aws_x.b[\\"k\\"]"},\n'
        b'  {"module_address": "m", "address": "module.m.aws_x.c"}\n]}\n'
    )
    found = address_lines(text, ["aws_x.a", 'aws_x.b["k"]', "module.m.aws_x.c", "missing"])
    assert found == {"aws_x.a": 4, 'aws_x.b["k"]': 5, "module.m.aws_x.c": 6}
    assert address_lines(text, []) == {}


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _as_go_writes(text: str) -> str:
    """JSON text as Go's encoding/json writes it (terraform show -json): <, >
    and & and the other control characters as \\u escapes."""
    return (
        '"'
        + "".join(
            _GO_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c in "<>&" or ord(c) < 0x20 else c)
            for c in text
        )
        + '"'
    )


_ENCODERS = (
    lambda a: json.dumps(a, ensure_ascii=False),
    lambda a: json.dumps(a, ensure_ascii=True),
    _as_go_writes,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(max_size=8), min_size=1, max_size=5, unique=True),
    st.lists(st.sampled_from(range(len(_ENCODERS))), min_size=5, max_size=5),
    st.lists(st.text(max_size=8), max_size=3),
)
def test_every_address_is_found_however_it_is_escaped(
    addresses: list[str], encoders: list[int], others: list[str]
) -> None:
    """Addresses written with the fewest escapes, all of them (ASCII only),
    or as Go writes them, among addresses nobody asked for."""
    written = [*addresses, *(o for o in others if o not in addresses)]
    entries = [
        b'{"address": ' + _ENCODERS[encoders[i % 5]](a).encode() + b"}"
        for i, a in enumerate(written)
    ]
    text = b'{"resource_changes": [\n' + b",\n".join(entries) + b"]}"
    assert address_lines(text, addresses) == {a: i + 2 for i, a in enumerate(addresses)}
