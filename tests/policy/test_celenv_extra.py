"""Helpers and lint additions that the default policy bundle relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.celenv import CelCompileError, compile_expression, new_context
from controller.policy.documents import Target

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
    }
)


def run(expression: str, **variables: Any) -> Any:
    compiled = compile_expression(expression, Target.terraform)
    return compiled.run(new_context({"object": None, **variables}))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("jsonDecode(object.policy).Statement.Effect", "Allow"),
        ("jsonDecode(object.policy).Statement.Action", ["s3:GetObject"]),
        ("jsonDecode('[1, 2.5, null, true]')", [1, 2.5, None, True]),
        ("type(jsonDecode(object.policy).Statement) == map", True),
        ("type(jsonDecode(object.policy).Statement.Action) == list", True),
        ("type(jsonDecode(object.policy).Statement.Resource) == string", True),
    ],
)
def test_json_decode_and_type_names(expression: str, expected: Any) -> None:
    assert run(expression, object={"policy": POLICY}) == expected


@pytest.mark.parametrize("text", ["not json", '{"a": ', "\u2039known after apply\u203a"])
def test_json_decode_of_invalid_text_is_an_error_not_a_value(text: str) -> None:
    with pytest.raises(Exception, match="jsonDecode"):
        run("jsonDecode(object.policy) == null", object={"policy": text})


def test_json_decode_refuses_non_strings_and_huge_documents() -> None:
    with pytest.raises(Exception, match="needs a string"):
        run("jsonDecode(object.policy) == null", object={"policy": 5})
    with pytest.raises(Exception, match="refuses"):
        run("jsonDecode(object.policy) == null", object={"policy": "[" + "1," * 600_000 + "1]"})


def test_type_names_are_not_undefined_variables_but_other_names_are() -> None:
    compile_expression("type(object) == map || type(object) == null_type", Target.terraform)
    with pytest.raises(CelCompileError, match="undefined variable"):
        compile_expression("type(object) == mapping", Target.terraform)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("abc.()[]{}'\",!&|=<>?:+-* 01\n\t"), max_size=40))
def test_a_rule_that_does_not_compile_says_why_in_one_line(source: str) -> None:
    try:
        compile_expression(source, Target.kubernetes)
    except CelCompileError as exc:
        assert str(exc) and "\n" not in str(exc)
