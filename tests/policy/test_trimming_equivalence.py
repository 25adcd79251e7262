"""Trimming to the paths a rule reads never changes what the rule decides.

Rules written in the idioms the read-path analysis narrows (presence tests
with ``has`` and null comparisons, literal ``lookup`` paths after a field
chain, plain field chains) and in forms it must not narrow (a null
comparison inside arithmetic or after a negation, a method call on the
chain) run on generated workloads twice: with every variable trimmed as the
engine trims it, and whole. The outcomes must be the same.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.contexts import Contexts
from controller.policy.documents import GuardPolicy
from controller.policy.engine import Engine
from controller.policy.results import Subject
from tests.policy.test_engine import kube, tf

RULES = [
    "containers.all(c, !(has(c.securityContext) && c.securityContext != null && "
    "has(c.securityContext.privileged) && c.securityContext.privileged == true))",
    "containers.all(c, has(c.resources) && lookup(c.resources, 'limits.cpu', '') != '')",
    "containers.all(c, !has(c.securityContext) || "
    "lookup(c.securityContext, 'capabilities.add', []).size() < 2)",
    "containers.all(c, null == c.securityContext || c.securityContext.privileged != 1)",
    "containers.exists(c, has(c.resources.limits))",
    "containers.all(c, lookup(c.resources, 'limits.0', 'none') == 'none')",
    "podSpec.hostPID != null && podSpec.hostPID == true",
    "has(podSpec.volumes) && podSpec.volumes.size() > 0",
    "object.metadata.labels != null ? size(object.metadata.labels) > 0 : false",
    "-object.metadata.annotations != null",
    "object.spec.x + dyn(1) != null",
]
MESSAGE = "'pod ' + resource.name"

scalars = st.one_of(st.none(), st.booleans(), st.integers(0, 2), st.sampled_from(["", "1", "x"]))
small = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(
            st.sampled_from(["cpu", "add", "limits", "privileged", "y"]), inner, max_size=3
        ),
    ),
    max_leaves=6,
)
container = st.dictionaries(
    st.sampled_from(["name", "image", "securityContext", "resources", "env"]),
    st.one_of(
        small,
        st.fixed_dictionaries(
            {},
            optional={
                "privileged": scalars,
                "capabilities": st.fixed_dictionaries(
                    {}, optional={"add": st.lists(st.sampled_from(["A", "B"]), max_size=3)}
                ),
                "limits": st.fixed_dictionaries({}, optional={"cpu": scalars, "memory": scalars}),
                "requests": small,
            },
        ),
    ),
    max_size=4,
)
pod = st.fixed_dictionaries(
    {
        "kind": st.just("Pod"),
        "metadata": st.dictionaries(
            st.sampled_from(["labels", "annotations", "name"]), small, max_size=3
        ),
        "spec": st.fixed_dictionaries(
            {"containers": st.lists(container, max_size=3)},
            optional={
                "hostPID": scalars,
                "volumes": small,
                "x": st.one_of(st.integers(0, 3), st.just("s")),
                "initContainers": st.lists(container, max_size=1),
            },
        ),
    }
)


def policy() -> GuardPolicy:
    return GuardPolicy.model_validate(
        {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "match": {"kubernetes": {}},
                "rules": [
                    {
                        "name": f"r{i}",
                        "target": "kubernetes",
                        "expression": expression,
                        "message": "bad",
                        "messageExpression": MESSAGE,
                    }
                    for i, expression in enumerate(RULES)
                ],
            },
        }
    )


ENGINE = Engine([policy()])


def assert_trimming_changes_nothing(engine: Engine, subject: Subject, variable: str) -> None:
    plan = engine._plan(subject.target, engine.matching(subject))
    assert plan.trims.get(variable) is not None  # the analysis narrowed it
    trimmed = Contexts(subject, plan.needed, plan.trims)
    whole = Contexts(subject, plan.needed, {})
    rules = [rule for _, rules in plan.rules for rule in rules]
    assert [engine.run_rule(r, trimmed) for r in rules] == [
        engine.run_rule(r, whole) for r in rules
    ]


@settings(max_examples=300, deadline=None)
@given(pod)
def test_trimmed_and_whole_variables_give_the_same_outcomes(obj: dict[str, Any]) -> None:
    assert_trimming_changes_nothing(ENGINE, kube(obj), "containers")


TERRAFORM_RULES = [
    "has(after.encrypted) && after.encrypted == true",
    "!has(after.acl) || after.acl != 'public-read'",
    "after.tags != null && lookup(after.tags, 'owner', '') != ''",
    "has(after.ingress) && after.ingress.all(r, !('0.0.0.0/0' in r.cidr_blocks))",
    "lookup(after, 'versioning.0.enabled', false) == true",
    "has(after.policy.Statement)",
]
TF_ENGINE = Engine(
    [
        GuardPolicy.model_validate(
            {
                "apiVersion": "guard.dev/v1alpha1",
                "kind": "GuardPolicy",
                "metadata": {"name": "t"},
                "spec": {
                    "match": {"terraform": {"types": ["aws_*"]}},
                    "rules": [
                        {"name": f"t{i}", "target": "terraform", "expression": e, "message": "bad"}
                        for i, e in enumerate(TERRAFORM_RULES)
                    ],
                },
            }
        )
    ]
)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "encrypted": scalars,
        "acl": st.sampled_from(["private", "public-read", ""]),
        "tags": st.one_of(st.none(), st.dictionaries(st.sampled_from(["owner", "env"]), scalars)),
        "ingress": st.lists(
            st.fixed_dictionaries(
                {"cidr_blocks": st.lists(st.sampled_from(["0.0.0.0/0", "10.0.0.0/8"]), max_size=2)}
            ),
            max_size=2,
        ),
        "versioning": st.lists(st.fixed_dictionaries({"enabled": scalars}), max_size=2),
        "policy": small,
        "arn": st.just("arn:x"),
    },
)
UNKNOWN_PATHS = (
    "encrypted", "acl", "tags", "tags.owner", "tags.env", "ingress", "ingress.0",
    "ingress.0.cidr_blocks", "ingress.1.cidr_blocks.0", "versioning.0.enabled",
    "policy", "policy.Statement", "arn", "id",
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(attributes, st.lists(st.sampled_from(UNKNOWN_PATHS), max_size=4, unique=True))
def test_trimmed_and_whole_terraform_values_with_unknowns_give_the_same_outcomes(
    after: dict[str, Any], unknowns: list[str]
) -> None:
    assert_trimming_changes_nothing(TF_ENGINE, tf(after, tuple(unknowns)), "after")
