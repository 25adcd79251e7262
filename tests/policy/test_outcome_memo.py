"""Rule outcomes remembered by subject content never differ from evaluating.

An engine remembers every rule's outcome per evaluation plan, keyed by the
subject's ``content_key`` (the trimmed variables the rules read and the
unknown paths). Subjects are generated from small alphabets so that keys
repeat often; the remembered outcomes must equal the ones worked out afresh
from the same subject, and values JSON cannot tell apart from others (dates,
non-finite numbers, huge integers) must never be remembered at all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.bundled import bundled_policies_path
from controller.policy.contexts import Contexts
from controller.policy.documents import Target
from controller.policy.engine import Engine, RuleOutcome
from controller.policy.loader import load_bundle, parse_documents
from controller.policy.results import Requester, Subject

# Rules that read what the bundle does not: the request, the resource's
# name, a field compared with null, an unknown-sensitive Terraform path.
EXTRA = """\
apiVersion: guard.dev/v1alpha1
kind: GuardPolicy
metadata: {name: reads-more}
spec:
  match:
    kubernetes: {}
    terraform: {types: ["aws_*"]}
  rules:
    - name: by-name
      target: kubernetes
      expression: "resource.name != 'forbidden' && request.userInfo.username != 'mallory'"
      message: forbidden
    - name: size-limit
      target: kubernetes
      expression: "object == null || !has(object.spec.size) || object.spec.size == null || object.spec.size < 3"
      messageExpression: "'size ' + string(object.spec.size)"
    - name: encrypted
      target: terraform
      expression: "has(after.encrypted) && after.encrypted == true"
      messageExpression: "'encrypted is ' + string(after.encrypted)"
    - name: public
      target: terraform
      expression: "!has(after.acl) || after.acl != 'public-read'"
      message: public
"""
POLICIES = (
    *load_bundle(bundled_policies_path(), tests=False).policies,
    *(loaded.document for loaded in parse_documents(EXTRA, "extra.yaml")),
)
ENGINE = Engine(POLICIES)
IMAGES = (
    "ghcr.io/shop/app@sha256:" + "4f" * 32,
    "docker.io/library/nginx:1.27",
    "quay.io/x/y:latest",
)

container = st.fixed_dictionaries(
    {"name": st.sampled_from(["app", "web"]), "image": st.sampled_from(IMAGES)},
    optional={
        "securityContext": st.fixed_dictionaries(
            {},
            optional={
                "privileged": st.sampled_from([True, False, None]),
                "allowPrivilegeEscalation": st.booleans(),
                "capabilities": st.fixed_dictionaries(
                    {"add": st.lists(st.sampled_from(["NET_ADMIN", "SYS_ADMIN", "all"]))}
                ),
            },
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.fixed_dictionaries(
                    {}, optional={"cpu": st.sampled_from(["1", ""]), "memory": st.just("1Gi")}
                )
            },
        ),
    },
)
pod = st.fixed_dictionaries(
    {
        "kind": st.just("Pod"),
        "metadata": st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b", "forbidden"])},
            optional={"labels": st.fixed_dictionaries({}, optional={"owner": st.just("team")})},
        ),
        "spec": st.fixed_dictionaries(
            {"containers": st.lists(container, min_size=1, max_size=2)},
            optional={
                "hostPID": st.booleans(),
                "size": st.one_of(st.none(), st.integers(0, 4), st.sampled_from([1.0, 2.5])),
            },
        ),
    }
)
after = st.fixed_dictionaries(
    {},
    optional={
        "encrypted": st.one_of(st.none(), st.booleans(), st.integers(0, 1)),
        "acl": st.sampled_from(["private", "public-read"]),
        "tags": st.fixed_dictionaries({}, optional={"owner": st.just("team")}),
        "kms_key_id": st.sampled_from(["k1", "k2"]),
    },
)
unknown_paths = st.lists(
    st.sampled_from(["encrypted", "acl", "tags", "tags.owner", "kms_key_id", "id"]),
    max_size=3,
    unique=True,
).map(tuple)


def kube_subject(obj: dict[str, Any], user: str) -> Subject:
    name = obj["metadata"]["name"]
    return Subject(
        target=Target.kubernetes,
        address=f"Pod shop/{name}",
        kind="Pod",
        type="Pod",
        name=name,
        namespace="shop",
        action="create",
        object=obj,
        requester=Requester(username=user),
    )


def tf_subject(obj: dict[str, Any], unknowns: tuple[str, ...], rtype: str) -> Subject:
    return Subject(
        target=Target.terraform,
        address=f"{rtype}.x",
        kind="resource",
        type=rtype,
        name="x",
        namespace=None,
        action="create",
        object=obj,
        unknowns=unknowns,
    )


def remembered_and_fresh(subject: Subject) -> tuple[tuple[RuleOutcome, ...], list[RuleOutcome]]:
    plan = ENGINE._plan(subject.target, ENGINE.matching(subject))
    remembered = ENGINE.outcomes(plan, subject)
    contexts = Contexts(subject, plan.needed, plan.trims)
    fresh = [ENGINE.run_rule(rule, contexts) for _, rules in plan.rules for rule in rules]
    return remembered, fresh


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(pod, st.sampled_from(["alice", "mallory"])), min_size=1, max_size=6))
def test_remembered_kubernetes_outcomes_equal_fresh_ones(
    pods: list[tuple[dict[str, Any], str]],
) -> None:
    for obj, user in pods:
        remembered, fresh = remembered_and_fresh(kube_subject(obj, user))
        assert list(remembered) == fresh


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(after, unknown_paths, st.sampled_from(["aws_s3_bucket", "aws_ebs_volume"])),
        min_size=1,
        max_size=6,
    )
)
def test_remembered_terraform_outcomes_equal_fresh_ones(
    changes: list[tuple[dict[str, Any], tuple[str, ...], str]],
) -> None:
    for obj, unknowns, rtype in changes:
        remembered, fresh = remembered_and_fresh(tf_subject(obj, unknowns, rtype))
        assert list(remembered) == fresh


def test_pods_from_one_template_share_one_outcome() -> None:
    # The bundle reads no name: Pods that differ only by name share the outcome.
    bundle = Engine(load_bundle(bundled_policies_path(), tests=False).policies)
    spec = {"containers": [{"name": "app", "image": IMAGES[0]}]}
    first, second, forbidden = (
        kube_subject({"kind": "Pod", "metadata": {"name": name}, "spec": spec}, "alice")
        for name in ("a", "b", "forbidden")
    )
    plan = bundle._plan(first.target, bundle.matching(first))
    assert bundle.outcomes(plan, first) is bundle.outcomes(plan, second)
    # A rule that reads the resource's name makes every name its own content.
    plan = ENGINE._plan(first.target, ENGINE.matching(first))
    assert ENGINE.outcomes(plan, first) is not ENGINE.outcomes(plan, second)
    assert ENGINE.outcomes(plan, forbidden) != ENGINE.outcomes(plan, first)


def test_unknown_paths_are_part_of_the_content() -> None:
    plan = ENGINE._plan(Target.terraform, ENGINE.matching(tf_subject({}, (), "aws_s3_bucket")))
    known = tf_subject({"acl": "private"}, (), "aws_s3_bucket")
    unknown = tf_subject({"acl": "private"}, ("encrypted",), "aws_s3_bucket")
    key = Contexts(known, plan.needed, plan.trims).content_key()
    other = Contexts(unknown, plan.needed, plan.trims).content_key()
    assert key is not None and other is not None and key != other


def test_values_json_cannot_tell_apart_are_never_remembered() -> None:
    plan = ENGINE._plan(Target.terraform, ENGINE.matching(tf_subject({}, (), "aws_s3_bucket")))
    for value in (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), float("nan"), float("inf"), 2**70):
        subject = tf_subject({"encrypted": value}, (), "aws_s3_bucket")
        contexts = Contexts(subject, plan.needed, plan.trims)
        assert contexts.content_key() is None, value
        remembered, fresh = remembered_and_fresh(subject)
        assert list(remembered) == fresh
    # null itself is exact, and a NaN never shares its outcome.
    null = tf_subject({"encrypted": None}, (), "aws_s3_bucket")
    assert Contexts(null, plan.needed, plan.trims).content_key() is not None


def test_the_memory_is_bounded(monkeypatch: Any) -> None:
    import controller.policy.engine as engine_module

    monkeypatch.setattr(engine_module, "OUTCOME_CACHE_SIZE", 3)
    engine = Engine(POLICIES)
    plan = None
    for size in range(10):
        subject = tf_subject({"kms_key_id": f"k{size}"}, (), "aws_s3_bucket")
        plan = engine._plan(subject.target, engine.matching(subject))
        engine.outcomes(plan, subject)
        assert len(plan.outcomes) <= 3
    assert plan is not None and plan.outcomes
