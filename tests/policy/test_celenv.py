"""The CEL helpers authors expect, and the static lint of expressions."""

from __future__ import annotations

from typing import Any

import pytest

from controller.policy.celenv import (
    CelCompileError,
    compile_expression,
    new_context,
    parse_quantity,
)
from controller.policy.documents import Target


def run(expression: str, **variables: Any) -> Any:
    return compile_expression(expression, Target.kubernetes).run(
        new_context({"object": variables.get("object"), **variables})
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"AbC".lowerAscii()', "abc"),
        ('"AbC".upperAscii()', "ABC"),
        ('"  x ".trim()', "x"),
        ('"a,b,c".split(",")', ["a", "b", "c"]),
        ('"a,b,c".split(",", 2)', ["a", "b,c"]),
        ('["a", "b"].join("-")', "a-b"),
        ('"a-b".replace("-", "+")', "a+b"),
        ('"abcb".indexOf("b")', 1),
        ('"abcb".lastIndexOf("b")', 3),
        ('"aws_s3_bucket".glob("aws_s3_*")', True),
        ('quantity("500m") < quantity("1")', True),
        ('quantity("1Gi") == 1073741824.0', True),
        ('"2Gi".isGreaterThan("2G")', True),
        ('"100m".isLessThan("0.2")', True),
        ('isQuantity("12Mi") && !isQuantity("lots")', True),
        ('isCIDR("10.0.0.0/8") && !isCIDR("10.0.0.1") && isIP("10.0.0.1")', True),
        ('cidrContains("10.0.0.0/8", "10.1.2.0/24")', True),
        ('cidrContains("10.0.0.0/8", "192.168.0.1")', False),
        ('cidrIsAny("0.0.0.0/0") && cidrIsAny("::/0") && !cidrIsAny("10.0.0.0/8")', True),
        ('imageHasDigest("r.io/a@sha256:' + "a" * 64 + '")', True),
        ('imageHasDigest("r.io/a:1.0")', False),
        ('imageRegistry("nginx:1")', "docker.io"),
        ('imageRegistry("localhost:5000/a")', "localhost:5000"),
        ('imageRegistry("ghcr.io/o/a@sha256:' + "b" * 64 + '")', "ghcr.io"),
        ('imageRepository("nginx:1")', "docker.io/library/nginx"),
        ('imageRepository("r.io:443/team/app:2")', "r.io:443/team/app"),
        ('lookup({"a": [{"b": 2}]}, "a.0.b", 0)', 2),
        ('lookup({"a": []}, "a.0.b", 7)', 7),
    ],
)
def test_helpers(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("500m", 0.5), ("1Ki", 1024.0), ("2M", 2e6), ("1e3", 1000.0), (".5", 0.5)],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1.2.3", "5Qi", "Gi"])
def test_bad_quantities_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (" 5Qi ", "unknown quantity suffix 'Qi' in ' 5Qi '"),
        ("lots", "not a quantity: 'lots'"),
        (None, "not a quantity: None"),
        (["1"], "not a quantity: ['1']"),
        (True, "not a quantity: True"),
    ],
)
def test_a_bad_quantity_is_named_as_written_every_time(value: Any, message: str) -> None:
    """The message shows the value as the rule was given it (not its text
    form), whether its parse is remembered or not."""
    for _ in range(2):
        with pytest.raises(ValueError) as raised:
            parse_quantity(value)
        assert str(raised.value) == message


def test_helper_error_is_an_evaluation_error() -> None:
    with pytest.raises(RuntimeError):
        run('quantity("lots") > 1.0')


@pytest.mark.parametrize(
    ("expression", "target", "problem"),
    [
        ("object.spec +", Target.kubernetes, "syntax error"),
        ("objekt.spec.x == 1", Target.kubernetes, "undefined variable(s) objekt"),
        ("podSpec.hostPID", Target.terraform, "undefined variable(s) podSpec"),
        ("after.tags.frobnicate()", Target.terraform, "unknown function(s) frobnicate"),
    ],
)
def test_lint_catches_syntax_undefined_names_and_unknown_functions(
    expression: str, target: Target, problem: str
) -> None:
    with pytest.raises(CelCompileError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(expression, target)


def test_comprehension_variables_are_not_undefined() -> None:
    compiled = compile_expression("containers.all(c, c.image.imageHasDigest())", Target.kubernetes)
    assert compiled.run(new_context({"containers": [{"image": "a:1"}]})) is False
