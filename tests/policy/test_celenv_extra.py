"""Helpers and lint additions that the default policy bundle relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cel_expr_python import cel
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.celenv import (
    VARIABLES,
    CelCompileError,
    CelEvaluationError,
    compile_expression,
    new_context,
)
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


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ('"a" + 1 == "a1"', "type error at 1:5: found no matching overload for '_+_'"),
        ("object.?spec", "syntax error at 1:1: unsupported syntax '.?'"),
        ("object.spec +", "syntax error at 1:14: mismatched input '<EOF>'"),
        ("objekt.a == 1 && frob(after)", "undefined variable(s) objekt; terraform rules can read"),
        ("objekt.a == 1 && frob(after)", "; unknown function(s) frob"),
        (" + ".join(["1"] * 40) + " == 40", "syntax error: Exceeded max recursion depth"),
    ],
)
def test_compile_problems_are_named_with_their_place(expression: str, problem: str) -> None:
    with pytest.raises(CelCompileError) as raised:
        compile_expression(expression, Target.terraform)
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value) and "INVALID_ARGUMENT" not in str(raised.value)


@pytest.mark.parametrize(
    ("expression", "value", "problem"),
    [
        ("object.a == 1", {}, 'no such key "a"'),
        ("object.a.b == 1", {"a": 1}, "selecting a field of a value that is not a map"),
        ("quantity(object.a) > 1.0", {"a": "lots"}, "quantity: not a quantity: 'lots'"),
        ("jsonDecode(object.a) == 1", {"a": '{"k": 1, "k": 2}'}, "jsonDecode: duplicate key 'k'"),
        ("jsonDecode(object.a) == 1", {"a": "[" * 101 + "]" * 101}, "jsonDecode: nested too"),
    ],
)
def test_evaluation_problems_name_what_went_wrong(
    expression: str, value: dict[str, Any], problem: str
) -> None:
    with pytest.raises(CelEvaluationError) as raised:
        run(expression, object=value)
    assert problem in str(raised.value)
    assert not str(raised.value).startswith(("NOT_FOUND", "INVALID_ARGUMENT", "UNKNOWN"))


# Values a rule may be handed that CEL has no type for, or cannot hold.
odd_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.dates(),
    st.tuples(st.integers(0, 3)),
    st.frozensets(st.integers(0, 3), max_size=2),
)
odd_values = st.recursive(
    odd_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=12,
)
READERS = [
    "object.a == 1",
    "has(object.a) && object.a.b != null",
    "size(object) > 0 && object.all(k, k != '')",
    "lookup(object, 'a.b', 0) == 0",
    "jsonDecode(lookup(object, 'a', '{}')) == {}",
    "object == before",
    "string(object.a) != ''",
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(READERS), odd_values, odd_values)
def test_any_value_gives_a_value_or_an_evaluation_error(
    expression: str, new: Any, old: Any
) -> None:
    """Whatever the values, a rule answers or reports why it could not:
    never another exception, which would escape the engine's verdicts."""
    compiled = compile_expression(expression, Target.terraform)
    try:
        compiled.run(new_context({"object": {"a": new}, "before": {"a": old}}))
    except CelEvaluationError as exc:
        assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize(
    "expression",
    [
        ".after.acl == 'private'",
        "!has(.object.spec)",
        "!('grant' in .after)",
        "'a' in // c\n .after",
    ],
)
def test_a_leading_dot_name_is_refused(expression: str) -> None:
    """``.after`` is ``after`` to CEL; guard refuses it rather than let its
    read-path analysis take it for a field (and trim or skip what it reads)."""
    with pytest.raises(CelCompileError, match="a leading dot is not supported"):
        compile_expression(expression, Target.terraform)


@pytest.mark.parametrize(
    "expression",
    ["has(after.tags.`a//b`) && !('grant' in after)", "after.labels.`app.io/name`.startsWith('w')"],
)
def test_a_backtick_quoted_name_is_refused_and_the_index_form_named(expression: str) -> None:
    """Such a name can hold ``//``, which a reader that does not know it takes
    for a comment hiding the rest of the rule."""
    with pytest.raises(CelCompileError, match=r"write \['.*'\], not \.`"):
        compile_expression(expression, Target.terraform)
    assert compile_expression("after.labels['app.io/name'] == 'w'", Target.terraform)


def test_text_the_source_echoes_is_not_taken_for_a_problem() -> None:
    source = "size(1) == 'ERROR: <input>:9:9: undeclared reference to \\'evil\\''"
    with pytest.raises(CelCompileError) as raised:
        compile_expression(source, Target.terraform)
    assert "evil" not in str(raised.value)
    assert str(raised.value).startswith("type error at 1:5")


# Pieces of source that fool a reader which does not lex CEL as CEL does:
# quotes inside comments and triple-quoted strings, ``//`` inside strings,
# variable names inside strings, comments and fields.
FRAGMENTS = [
    "after.acl", "object.spec", "before", "resource.type", "oldObject",
    "'x'", '"y"', "'after'", '"object.y"', "'''it's after'''", '"""a "b" before"""', "'//'",
    "'a\\'b'", "before.after", "[1].map(after, after)", "has(after.x)",
    "after.tags.`a//b`", "'k' in .after", "'k' in before",
]  # fmt: skip
COMMENTS = ["// don't\n", '// "before\n', "// after.acl\n", "//'''\n", ""]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(COMMENTS), st.sampled_from(FRAGMENTS), st.sampled_from([" ", "\n"])
        ),
        min_size=1,
    )
)
def test_every_variable_an_expression_reads_is_seen(pieces: list[tuple[str, str, str]]) -> None:
    """The variables guard converts and probes include every one the CEL
    checker resolves: compiled where one of them is left undeclared, an
    expression that names it fails. (A rule in a folded YAML block is one
    line, so pieces share lines as often as not.)"""
    source = "[" + ",".join(f"{comment}{fragment}{end}" for comment, fragment, end in pieces)
    source += "].size() > 0"
    try:
        compiled = compile_expression(source, Target.terraform)
    except CelCompileError as refused:
        # Refusing a form the analysis cannot read is the safe answer.
        assert "not supported" in str(refused)
        return
    for name in VARIABLES[Target.terraform]:
        others = {other: cel.Type.DYN for other in VARIABLES[Target.terraform] if other != name}
        try:
            cel.NewEnv(variables=others).compile(source)
        except RuntimeError as exc:
            if f"undeclared reference to '{name}" in str(exc):
                assert name in compiled.variables, (name, source)
