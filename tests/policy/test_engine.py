"""The engine: matching, the four result states, unknowns, exceptions, caps, review hook."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controller.policy.documents import Action, GuardException, GuardPolicy, Target
from controller.policy.engine import Engine, PolicyError, ReviewOutcome
from controller.policy.subject import Artifact, Result, Subject

WORKLOAD_KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                  "ReplicationController", "Job", "CronJob"]  # fmt: skip


def policy(name: str = "p", **spec: Any) -> GuardPolicy:
    base: dict[str, Any] = {
        "match": {"kubernetes": {}, "terraform": {"types": ["aws_*"]}},
        "rules": [],
    }
    base.update(spec)
    return GuardPolicy.model_validate(
        {"apiVersion": "guard.dev/v1alpha1", "kind": "GuardPolicy",
         "metadata": {"name": name}, "spec": base}
    )  # fmt: skip


def rule(
    expression: str, target: str = "kubernetes", name: str = "r", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "target": target, "expression": expression, "message": "bad", **extra}


def wrap(kind: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    if kind == "Pod":
        spec: dict[str, Any] = pod_spec
    elif kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}
    else:
        spec = {"template": {"spec": pod_spec}}
    return {"kind": kind, "metadata": {"name": "w", "namespace": "prod"}, "spec": spec}


def kube(
    obj: dict[str, Any] | None, kind: str = "Pod", namespace: str = "prod", **kw: Any
) -> Subject:
    return Subject(target=Target.kubernetes, address=f"{kind} {namespace}/w", kind=kind,
                   type=kind, name="w", namespace=namespace, action=kw.pop("action", "create"),
                   object=obj, **kw)  # fmt: skip


def tf(after: dict[str, Any], unknowns: tuple[str, ...] = (), action: str = "create") -> Subject:
    return Subject(target=Target.terraform, address="aws_x.a", kind="resource", type="aws_x",
                   name="a", namespace=None, action=action, object=after, unknowns=unknowns)  # fmt: skip


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_pod_spec_and_containers_work_for_every_workload_kind(kind: str) -> None:
    engine = Engine([policy(rules=[
        rule('containers.all(c, c.image != "bad")', name="images"),
        rule("!has(podSpec.hostPID) || !podSpec.hostPID", name="hostpid"),
    ])])  # fmt: skip
    pod = {"hostPID": True, "initContainers": [{"image": "bad"}], "containers": [{"image": "ok"}]}
    findings = engine.evaluate(kube(wrap(kind, pod), kind=kind))
    assert sorted((f.rule, f.result) for f in findings) == [
        ("hostpid", Result.fail),
        ("images", Result.fail),
    ]
    assert engine.evaluate(kube(wrap(kind, {"containers": [{"image": "ok"}]}), kind=kind)) == []


def test_error_is_never_a_pass() -> None:
    engine = Engine([policy(rules=[rule("object.spec.missing.deeper == 1"),
                                   rule('"a" + 1 == "a1"', name="types")])])  # fmt: skip
    findings = engine.evaluate(kube(wrap("Pod", {})))
    assert {f.result for f in findings} == {Result.error}
    assert all(f.denies for f in findings)


def test_non_boolean_result_is_an_error() -> None:
    [finding] = Engine([policy(rules=[rule("object.kind")])]).evaluate(kube(wrap("Pod", {})))
    assert finding.result is Result.error
    assert "not a boolean" in finding.message


def test_message_expression_and_fix() -> None:
    engine = Engine([policy(rules=[
        rule("false", messageExpression='"pod " + object.metadata.name + " is bad"', fix="do x"),
    ])])  # fmt: skip
    [finding] = engine.evaluate(kube(wrap("Pod", {})))
    assert finding.message == "pod w is bad"
    assert finding.fix == "do x"


def test_broken_policy_raises_or_is_skipped() -> None:
    broken = policy("broken", rules=[rule("object.spec +")])
    with pytest.raises(PolicyError, match="policy 'broken', rule 'r', expression"):
        Engine([broken])
    engine = Engine([broken, policy("ok", rules=[rule("false")])], skip_broken=True)
    assert [b.policy for b in engine.broken] == ["broken"]
    assert [f.policy for f in engine.evaluate(kube(wrap("Pod", {})))] == ["ok"]


def test_matching_kinds_namespaces_labels() -> None:
    p = policy(match={"kubernetes": {
        "kinds": ["Deployment"],
        "namespaces": {"include": ["prod*"], "exclude": ["prod-sandbox"]},
        "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
    }}, rules=[rule("false")])  # fmt: skip
    engine = Engine([p])
    dep = wrap("Deployment", {})
    web = {"tier": "web"}
    assert engine.evaluate(kube(dep, kind="Deployment", labels=web))
    assert not engine.evaluate(kube(dep, kind="Pod", labels=web))
    assert not engine.evaluate(kube(dep, kind="Deployment", namespace="dev", labels=web))
    assert not engine.evaluate(kube(dep, kind="Deployment", namespace="prod-sandbox", labels=web))
    assert not engine.evaluate(kube(dep, kind="Deployment", labels={"tier": "db"}))


def test_terraform_types_and_actions() -> None:
    p = policy(match={"terraform": {"types": ["aws_x"], "actions": ["delete"]}},
               rules=[rule("false", target="terraform")])  # fmt: skip
    engine = Engine([p])
    assert not engine.evaluate(tf({}, action="create"))
    assert engine.evaluate(tf({}, action="delete"))


@pytest.mark.parametrize(
    ("after", "unknowns", "expected"),
    [
        ({"encrypted": True}, (), None),
        ({"encrypted": False}, (), Result.fail),
        ({"encrypted": True}, ("encrypted",), Result.unknown),
        ({"encrypted": True, "tags": {}}, ("tags",), None),  # unknown but irrelevant
    ],
)
def test_unknown_values_are_unknown_not_missing(
    after: dict[str, Any], unknowns: tuple[str, ...], expected: Result | None
) -> None:
    engine = Engine([policy(rules=[rule("has(after.encrypted) && after.encrypted == true",
                                        target="terraform")])])  # fmt: skip
    findings = engine.evaluate(tf(after, unknowns))
    assert [f.result for f in findings] == ([expected] if expected else [])
    if expected is Result.unknown:
        assert findings[0].action is Action.warn  # unknown warns by default


def test_unknown_in_list_item_and_unknown_action_deny() -> None:
    after = {"ingress": [{"cidr": "10.0.0.0/8"}, {"cidr": "x"}]}
    engine = Engine(
        [policy(rules=[rule('after.ingress.all(i, i.cidr != "0.0.0.0/0")', target="terraform")])],
        unknown_action=Action.deny,
    )
    [finding] = engine.evaluate(tf(after, ("ingress.1.cidr",)))
    assert finding.result is Result.unknown
    assert finding.denies


def test_enforcement_caps_actions() -> None:
    p = policy(rules=[rule("false")])
    [finding] = Engine([p], enforcement=Action.warn).evaluate(kube(wrap("Pod", {})))
    assert finding.action is Action.warn and not finding.denies and finding.warns
    [finding] = Engine([p], enforcement=Action.audit).evaluate(kube(wrap("Pod", {})))
    assert finding.action is Action.audit and not finding.warns


def _exception(
    target: str, expires: dt.date, name: str = "e", policy_name: str = "p"
) -> GuardException:
    return GuardException.model_validate({
        "apiVersion": "guard.dev/v1alpha1", "kind": "GuardException", "metadata": {"name": name},
        "spec": {"policy": policy_name, "target": target, "reason": "legacy", "owner": "team-a",
                 "expires": expires.isoformat()},
    })  # fmt: skip


def test_exceptions_apply_by_address_until_they_expire() -> None:
    today = dt.date(2026, 6, 1)
    p = policy(rules=[rule("false", target="terraform")])
    live = Engine([p], exceptions=[_exception("aws_x.*", dt.date(2026, 7, 1))], today=today)
    [finding] = live.evaluate(tf({}))
    assert finding.exception == "e" and not finding.denies
    other = Engine([p], exceptions=[_exception("aws_y.*", dt.date(2026, 7, 1))], today=today)
    assert other.evaluate(tf({}))[0].denies  # never hides a finding at another address
    expired = Engine([p], exceptions=[_exception("aws_x.a", dt.date(2026, 5, 1))], today=today)
    decision = expired.decide([tf({})])
    assert not decision.allowed
    assert any("expired on 2026-05-01" in note for note in decision.notes)


class FixedReview:
    def __init__(self, outcome: ReviewOutcome) -> None:
        self.outcome = outcome
        self.calls: list[str] = []

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome:
        self.calls.append(subject.address)
        return self.outcome


REVIEW = {"attesters": ["ci"], "repositories": ["r"], "targetRefs": ["refs/heads/main"]}


def test_review_findings_carry_reasons_and_are_never_waived() -> None:
    reviewer = FixedReview(ReviewOutcome(Result.fail, ("alice approved her own change", "1 of 2"),
                                         fix="guard attest review ..."))  # fmt: skip
    p = policy("sod", review=REVIEW)
    engine = Engine([p], review=reviewer,
                    exceptions=[_exception("*", dt.date(2999, 1, 1), policy_name="sod")])  # fmt: skip
    subject = kube(wrap("Pod", {}), artifacts=(Artifact("img", "sha256:" + "a" * 64),))
    decision = engine.decide([subject])
    [finding] = decision.findings
    assert finding.rule == "review" and finding.exception is None and finding.denies
    assert finding.reasons == ("alice approved her own change", "1 of 2")
    assert "and 1 more" in finding.message
    assert any("never waive review" in n for n in decision.notes)


def test_review_without_a_verifier_fails_closed() -> None:
    subject = kube(wrap("Pod", {}), artifacts=(Artifact("img", None),))
    [finding] = Engine([policy("sod", review=REVIEW)]).evaluate(subject)
    assert finding.result is Result.error and finding.denies


def test_findings_are_deterministic_and_ordered_by_severity() -> None:
    policies = [policy("low", severity="low", rules=[rule("false")]),
                policy("crit", severity="critical", rules=[rule("false")])]  # fmt: skip
    first = Engine(policies).decide([kube(wrap("Pod", {}))])
    second = Engine(list(reversed(policies))).decide([kube(wrap("Pod", {}))])
    assert [f.policy for f in first.findings] == ["crit", "low"]
    assert first == second


def test_unknown_paths_copy_only_what_they_touch() -> None:
    from controller.policy.engine import _ABSENT, _with_unknowns

    original = {"a": {"b": 1, "c": 2}, "items": [{"x": 1}, {"x": 2}, {"x": 3}], "keep": {"k": 1}}
    absent = _with_unknowns(original, ["a.b", "items.0", "items.2"], _ABSENT)
    assert absent == {"a": {"c": 2}, "items": [{"x": 2}], "keep": {"k": 1}}
    placeholder = _with_unknowns(original, ["items.1.x"], "?")
    assert placeholder["items"][1] == {"x": "?"}
    assert original["items"] == [{"x": 1}, {"x": 2}, {"x": 3}]  # never modified
    assert original["a"] == {"b": 1, "c": 2}
    assert placeholder["keep"] is original["keep"]  # untouched parts are shared


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
    from controller.policy.engine import _reads_whole_object

    assert _reads_whole_object(expression) is whole


def test_rules_that_cannot_see_an_unknown_are_not_probed() -> None:
    engine = Engine([policy(rules=[rule("after.encrypted == true", target="terraform")])])
    compiled = engine.compiled[0].rules[0]
    assert not compiled.may_depend_on(("arn", "id"))
    assert compiled.may_depend_on(("encrypted",))
    # An unknown the rule cannot see leaves a known verdict known.
    [finding] = engine.evaluate(tf({"encrypted": False, "id": "x"}, ("id",)))
    assert finding.result is Result.fail


@pytest.mark.parametrize(
    ("expression", "whole"),
    [
        ("lookup(after, 'acl', '') != 'public-read'", False),
        ('lookup( after , "a.b", 0) == 1', False),
        ("['a', 'b'].all(f, lookup(after, f, false))", True),
    ],
)
def test_literal_lookups_read_field_by_field(expression: str, whole: bool) -> None:
    from controller.policy.engine import _reads_whole_object

    assert _reads_whole_object(expression) is whole


def test_words_take_path_literals_not_other_strings() -> None:
    from controller.policy.engine import _words

    words = _words("lookup(after, 'tags.owner', '') != '' && after.x == 'arn:aws:iam::1:role/a'")
    assert {"tags", "x"} <= words
    assert "arn" not in words and "aws" not in words


def test_only_named_attributes_are_converted_when_rules_read_field_by_field() -> None:
    from controller.policy.engine import _Contexts

    engine = Engine([policy(rules=[rule("after.encrypted == true", target="terraform")])])
    subject = tf({"encrypted": False, "huge": ["x"] * 1000})
    contexts = _Contexts(subject, frozenset({"after"}), {"after": frozenset({("encrypted",)})})
    import cel

    assert cel.evaluate("size(after)", contexts.plain) == 1
    [finding] = engine.evaluate(subject)
    assert finding.result is Result.fail
    whole = Engine([policy(rules=[rule("size(after) == 2", target="terraform")])])
    assert whole.evaluate(subject) == []  # a rule reading the whole object sees all of it


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Deployment", "spec": "oops"},
        {"kind": "Deployment", "spec": {"template": ["x"]}},
        {"kind": "Deployment", "spec": {"template": {"spec": None}}},
        {"kind": "Deployment", "spec": {"template": {"spec": {"containers": "x"}}}},
    ],
)
def test_malformed_pod_templates_give_an_empty_pod_spec_not_a_traceback(
    obj: dict[str, Any],
) -> None:
    from controller.policy.engine import containers_of, pod_spec_of

    spec = pod_spec_of("Deployment", obj)
    assert isinstance(spec, dict)
    assert containers_of(spec) == []


def test_the_word_object_inside_a_string_is_not_a_use() -> None:
    from controller.policy.engine import _reads_whole_object, _words

    assert not _reads_whole_object("object.metadata.name != 'the object itself'")
    assert _words("containers.all(c, c.image != '')") == {"all", "image"}


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("object == null || object.spec.replicas > 1", {("spec", "replicas")}),
        (
            "has(object.metadata.labels) && object.metadata.labels.owner != ''",
            {("metadata", "labels"), ("metadata", "labels", "owner")},
        ),
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
def test_access_paths(expression: str, paths: set[tuple[str, ...]] | None) -> None:
    from controller.policy.engine import _access_paths

    found = _access_paths(expression, "object")
    assert (None if found is None else set(found)) == (None if paths is None else paths)


def test_trimmed_objects_keep_every_path_a_rule_reads() -> None:
    from controller.policy.engine import _prune

    obj = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": [1, 2], "g": 4}
    assert _prune(obj, {("a", "b"), ("f",)}) == {"a": {"b": {"c": 1, "d": 2}}, "f": [1, 2]}
    assert _prune(obj, {("a", "missing")}) == {"a": {}}
    assert _prune(obj, set()) == {}
    engine = Engine([policy(rules=[
        rule("object.spec.replicas > 1 && has(object.metadata.labels.owner)", name="a"),
        rule("size(object.spec) == 2", name="b"),
    ])])  # fmt: skip
    good = {
        "kind": "Deployment",
        "metadata": {"labels": {"owner": "x"}},
        "spec": {"replicas": 2, "x": 1},
    }
    assert engine.evaluate(kube(good, kind="Deployment")) == []


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("containers.all(c, c.image != '')", {("image",)}),
        (
            "containers.all(c, !has(c.securityContext) || c.securityContext.privileged != true)",
            {("securityContext",), ("securityContext", "privileged")},
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
def test_container_element_paths(expression: str, paths: set[tuple[str, ...]] | None) -> None:
    from controller.policy.engine import _element_paths

    found = _element_paths(expression, "containers")
    assert (None if found is None else set(found)) == (None if paths is None else paths)


def test_trimmed_containers_give_the_same_verdicts() -> None:
    engine = Engine([policy(rules=[
        rule("containers.all(c, !has(c.securityContext) || c.securityContext.privileged != true)", name="priv"),
        rule("containers.all(c, c.image.startsWith('r/'))", name="registry"),
    ])])  # fmt: skip
    pod = {"containers": [{"image": "r/a", "env": [{"name": "X"}]},
                          {"image": "q/b", "securityContext": {"privileged": True}}]}  # fmt: skip
    findings = engine.evaluate(kube(wrap("Pod", pod)))
    assert sorted(f.rule for f in findings) == ["priv", "registry"]
