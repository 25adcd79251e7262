"""The engine: matching, the four result states, unknowns, exceptions, caps, review hook."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controller.policy.celenv import compile_expression
from controller.policy.contexts import Contexts
from controller.policy.documents import Action, GuardException, GuardPolicy, Target
from controller.policy.engine import Engine, PolicyError
from controller.policy.results import Artifact, Result, Subject
from controller.policy.reviewer import ReviewOutcome

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
    findings = engine.evaluate(kube(wrap(kind, pod), kind=kind)).findings
    assert sorted((f.rule, f.result) for f in findings) == [
        ("hostpid", Result.fail),
        ("images", Result.fail),
    ]
    assert (
        engine.evaluate(kube(wrap(kind, {"containers": [{"image": "ok"}]}), kind=kind)).findings
        == ()
    )


def test_error_is_never_a_pass() -> None:
    engine = Engine([policy(rules=[rule("object.spec.missing.deeper == 1"),
                                   rule('"a" + dyn(1) == "a1"', name="types")])])  # fmt: skip
    findings = engine.evaluate(kube(wrap("Pod", {}))).findings
    assert {f.result for f in findings} == {Result.error}
    assert all(f.denies for f in findings)


def test_non_boolean_result_is_an_error() -> None:
    [finding] = (
        Engine([policy(rules=[rule("object.kind")])]).evaluate(kube(wrap("Pod", {}))).findings
    )
    assert finding.result is Result.error
    assert "not a boolean" in finding.message


def test_message_expression_and_fix() -> None:
    engine = Engine([policy(rules=[
        rule("false", messageExpression='"pod " + object.metadata.name + " is bad"', fix="do x"),
    ])])  # fmt: skip
    [finding] = engine.evaluate(kube(wrap("Pod", {}))).findings
    assert finding.message == "pod w is bad"
    assert finding.fix == "do x"


def test_broken_policy_raises_or_judges_as_an_error() -> None:
    broken = policy("broken", rules=[rule("object.spec +")])
    with pytest.raises(PolicyError, match="policy 'broken', rule 'r', expression"):
        Engine([broken])
    engine = Engine([broken, policy("ok", rules=[rule("false")])], skip_broken=True)
    assert [b.policy for b in engine.broken] == ["broken"]
    evaluation = engine.evaluate(kube(wrap("Pod", {})))
    # A policy that does not compile keeps judging what it matches, as an
    # error under its own action: a typo never switches a deny policy off.
    found = {(f.policy, f.result, f.denies) for f in evaluation.findings}
    assert found == {("ok", Result.fail, True), ("broken", Result.error, True)}
    assert [p.name for p in evaluation.matched] == ["broken", "ok"]


def test_matching_kinds_namespaces_labels() -> None:
    p = policy(match={"kubernetes": {
        "kinds": ["Deployment"],
        "namespaces": {"include": ["prod*"], "exclude": ["prod-sandbox"]},
        "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
    }}, rules=[rule("false")])  # fmt: skip
    engine = Engine([p])
    dep = wrap("Deployment", {})
    web = {"tier": "web"}
    assert engine.evaluate(kube(dep, kind="Deployment", labels=web)).findings
    assert not engine.evaluate(kube(dep, kind="Pod", labels=web)).findings
    assert not engine.evaluate(kube(dep, kind="Deployment", namespace="dev", labels=web)).findings
    assert not engine.evaluate(
        kube(dep, kind="Deployment", namespace="prod-sandbox", labels=web)
    ).findings
    assert not engine.evaluate(kube(dep, kind="Deployment", labels={"tier": "db"})).findings


def test_terraform_types_and_actions() -> None:
    p = policy(match={"terraform": {"types": ["aws_x"], "actions": ["delete"]}},
               rules=[rule("false", target="terraform")])  # fmt: skip
    engine = Engine([p])
    assert not engine.evaluate(tf({}, action="create")).findings
    assert engine.evaluate(tf({}, action="delete")).findings


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
    findings = engine.evaluate(tf(after, unknowns)).findings
    assert [f.result for f in findings] == ([expected] if expected else [])
    if expected is Result.unknown:
        assert findings[0].action is Action.warn  # unknown warns by default


def test_unknown_in_list_item_and_unknown_action_deny() -> None:
    after = {"ingress": [{"cidr": "10.0.0.0/8"}, {"cidr": "x"}]}
    engine = Engine(
        [policy(rules=[rule('after.ingress.all(i, i.cidr != "0.0.0.0/0")', target="terraform")])],
        unknown_action=Action.deny,
    )
    [finding] = engine.evaluate(tf(after, ("ingress.1.cidr",))).findings
    assert finding.result is Result.unknown
    assert finding.denies


def test_enforcement_caps_actions() -> None:
    p = policy(rules=[rule("false")])
    [finding] = Engine([p], enforcement=Action.warn).evaluate(kube(wrap("Pod", {}))).findings
    assert finding.action is Action.warn and not finding.denies and finding.warns
    [finding] = Engine([p], enforcement=Action.audit).evaluate(kube(wrap("Pod", {}))).findings
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
    [finding] = live.evaluate(tf({})).findings
    assert finding.exception == "e" and not finding.denies
    other = Engine([p], exceptions=[_exception("aws_y.*", dt.date(2026, 7, 1))], today=today)
    assert other.evaluate(tf({})).findings[0].denies  # never hides a finding at another address
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
    engine = Engine([p], exceptions=[_exception("*", dt.date(2999, 1, 1), policy_name="sod")])
    subject = kube(wrap("Pod", {}), artifacts=(Artifact("img", "sha256:" + "a" * 64),))
    decision = engine.decide([subject], review=reviewer)
    [finding] = decision.findings
    assert finding.rule == "review" and finding.exception is None and finding.denies
    assert finding.reasons == ("alice approved her own change", "1 of 2")
    assert "and 1 more" in finding.message
    assert any("never waive review" in n for n in decision.notes)


def test_review_without_a_verifier_fails_closed() -> None:
    subject = kube(wrap("Pod", {}), artifacts=(Artifact("img", None),))
    [finding] = Engine([policy("sod", review=REVIEW)]).evaluate(subject).findings
    assert finding.result is Result.error and finding.denies


def test_findings_are_deterministic_and_ordered_by_severity() -> None:
    policies = [policy("low", severity="low", rules=[rule("false")]),
                policy("crit", severity="critical", rules=[rule("false")])]  # fmt: skip
    first = Engine(policies).decide([kube(wrap("Pod", {}))])
    second = Engine(list(reversed(policies))).decide([kube(wrap("Pod", {}))])
    assert [f.policy for f in first.findings] == ["crit", "low"]
    assert first == second


def test_rules_that_cannot_see_an_unknown_are_not_probed() -> None:
    engine = Engine([policy(rules=[rule("after.encrypted == true", target="terraform")])])
    compiled = engine.compiled[0].rules[0]
    assert not compiled.may_depend_on(("arn", "id"))
    assert compiled.may_depend_on(("encrypted",))
    # An unknown the rule cannot see leaves a known verdict known.
    [finding] = engine.evaluate(tf({"encrypted": False, "id": "x"}, ("id",))).findings
    assert finding.result is Result.fail


def test_only_named_attributes_are_converted_when_rules_read_field_by_field() -> None:
    engine = Engine([policy(rules=[rule("after.encrypted == true", target="terraform")])])
    subject = tf({"encrypted": False, "huge": ["x"] * 1000})
    contexts = Contexts(subject, frozenset({"after"}), {"after": frozenset({("encrypted",)})})
    assert compile_expression("size(after) == 1", Target.terraform).run(contexts.plain) is True
    [finding] = engine.evaluate(subject).findings
    assert finding.result is Result.fail
    whole = Engine([policy(rules=[rule("size(after) == 2", target="terraform")])])
    assert whole.evaluate(subject).findings == ()  # a rule reading the whole object sees all of it


def test_trimmed_objects_keep_every_path_a_rule_reads() -> None:
    engine = Engine([policy(rules=[
        rule("object.spec.replicas > 1 && has(object.metadata.labels.owner)", name="a"),
        rule("size(object.spec) == 2", name="b"),
    ])])  # fmt: skip
    good = {
        "kind": "Deployment",
        "metadata": {"labels": {"owner": "x"}},
        "spec": {"replicas": 2, "x": 1},
    }
    assert engine.evaluate(kube(good, kind="Deployment")).findings == ()


def test_trimmed_containers_give_the_same_verdicts() -> None:
    engine = Engine([policy(rules=[
        rule("containers.all(c, !has(c.securityContext) || c.securityContext.privileged != true)", name="priv"),
        rule("containers.all(c, c.image.startsWith('r/'))", name="registry"),
    ])])  # fmt: skip
    pod = {"containers": [{"image": "r/a", "env": [{"name": "X"}]},
                          {"image": "q/b", "securityContext": {"privileged": True}}]}  # fmt: skip
    findings = engine.evaluate(kube(wrap("Pod", pod))).findings
    assert sorted(f.rule for f in findings) == ["priv", "registry"]
