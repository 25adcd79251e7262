"""Unknown values are judged soundly: random rules over random plans.

The property: when a rule's verdict with values known only after apply is
``pass``, every concrete value those unknowns could take gives ``pass`` too
(an unknown never hides a failure); and a ``fail`` is a failure some
concrete value really gives. Rules come from a small grammar of what
policies write: comparisons with constants, ``has``, ``lookup`` with a
default, ``in`` lists, and the boolean connectives.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.policy.documents import GuardPolicy, Target
from controller.policy.engine import Engine
from controller.policy.results import Result, Subject

FIELDS = ("acl", "port", "public")
STRINGS = ("private", "public-read", "x")
INTS = (0, 22, 443)
# What a concrete value can be: each constant, a value no rule names, or absent.
CONCRETE: tuple[Any, ...] = (*STRINGS, "other", *INTS, 65535, True, False)
ABSENT = object()


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


values = st.sampled_from((*STRINGS, *INTS, True, False))
fields = st.sampled_from(FIELDS)


@st.composite
def atoms(draw: st.DrawFn) -> str:
    field = draw(fields)
    value = draw(values)
    shape = draw(st.sampled_from(("eq", "ne", "has", "lookup", "in", "gt")))
    if shape == "eq":
        return f"after.{field} == {_literal(value)}"
    if shape == "ne":
        return f"after.{field} != {_literal(value)}"
    if shape == "has":
        return f"has(after.{field})"
    if shape == "lookup":
        default = draw(values)
        return f"lookup(after, '{field}', {_literal(default)}) == {_literal(value)}"
    if shape == "in":
        others = draw(st.lists(values, min_size=1, max_size=3))
        return f"after.{field} in [{', '.join(_literal(v) for v in others)}]"
    number = draw(st.sampled_from(INTS))
    return f"lookup(after, '{field}', 0) > {number}"


expressions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} && {pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} || {pair[1]})"),
        inner.map(lambda e: f"!({e})"),
    ),
    max_leaves=4,
)


def _engine(expression: str) -> Engine:
    policy = GuardPolicy.model_validate(
        {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "match": {"terraform": {}},
                "rules": [
                    {"name": "r", "target": "terraform", "expression": expression,
                     "message": "bad"}
                ],
            },
        }
    )  # fmt: skip
    return Engine([policy])


def _result(engine: Engine, after: dict[str, Any], unknowns: tuple[str, ...]) -> Result:
    subject = Subject(
        target=Target.terraform, address="t.a", kind="resource", type="t", name="a",
        namespace=None, action="create", object=after, unknowns=unknowns,
    )  # fmt: skip
    findings = engine.evaluate(subject).findings
    return findings[0].result if findings else Result.passed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=expressions,
    known=st.dictionaries(fields, values, max_size=3),
    unknown=st.sets(fields, min_size=1, max_size=2),
)
def test_an_unknown_never_hides_a_failure(
    expression: str, known: dict[str, Any], unknown: set[str]
) -> None:
    engine = _engine(expression)
    unknowns = tuple(sorted(unknown))
    # Terraform's plan holds an unknown attribute without a value.
    after = {k: v for k, v in known.items() if k not in unknown}
    verdict = _result(engine, after, unknowns)
    concrete: list[Result] = []
    for assignment in itertools.product((*CONCRETE, ABSENT), repeat=len(unknowns)):
        state = dict(after)
        for name, value in zip(unknowns, assignment, strict=True):
            if value is not ABSENT:
                state[name] = value
        concrete.append(_result(engine, state, ()))
    if verdict is Result.passed:
        assert set(concrete) == {Result.passed}, (expression, after, unknowns, concrete)
    if verdict is Result.fail:
        assert Result.fail in concrete, (expression, after, unknowns)
    assert verdict is not Result.error or Result.passed not in concrete
