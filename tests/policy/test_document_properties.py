"""Property suites over guard documents, from files (YAML) and from the
cluster (JSON): bad input is one line naming where and why, never a
traceback; and a look-alike of any string in a review policy never turns a
denial into an admission."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.attest.review import AttestationReview, EnvelopeList
from controller.kube.state import entry_from_body
from controller.policy.documents import DOCUMENT_KINDS, GuardPolicy
from controller.policy.engine import Engine, PolicyError, compile_policy
from controller.policy.lint import lint_findings
from controller.policy.loader import Bundle, DocumentError, Loaded, parse_documents
from controller.policy.problems import validation_problems as problems_of
from tests.attest import helpers as h
from tests.policy.mutations import hostile_mutation, look_alike_mutation

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

POLICY: dict[str, Any] = h.policy_document(
    deployer={"notAuthor": True, "allowed": ["group:deployers", "system:serviceaccount:cd:cd"]},
    breakGlass={"principals": ["github:1009", "dana@example.com"], "groups": ["sre-oncall"]},
    exemptImages=["registry.example/mesh/proxy@*"],
)
POLICY["spec"]["match"]["kubernetes"].update(
    {
        "namespaces": {"include": ["shop*"], "exclude": ["shop-dev"]},
        "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["batch"]}]},
    }
)  # fmt: skip
POLICY["spec"]["match"]["terraform"] = {"types": ["aws_s3_*"], "actions": ["create", "update"]}
POLICY["spec"]["rules"] = [
    {"name": "no-latest", "target": "kubernetes", "expression": "true", "message": "ok"}
]
TRUST: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardTrust",
    "metadata": {"name": "people"},
    "spec": {
        "keys": [{"name": "ci", "role": "attester", "publicKey": "PEM"}],
        "principals": [
            {"id": "github:1001", "aliases": ["email:alice@example.com", "kubernetes:alice"]}
        ],
    },
}
EXCEPTION: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardException",
    "metadata": {"name": "legacy"},
    "spec": {"policy": "p", "target": "legacy/*", "reason": "r", "owner": "o", "expires": "2030-01-31"},
}  # fmt: skip
POLICY_TEST: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicyTest",
    "metadata": {"name": "t"},
    "spec": {
        "cases": [
            {
                "name": "c",
                "request": {"operation": "CREATE"},
                "object": {"kind": "Pod"},
                "expect": {"result": "fail", "findings": [{"policy": "p", "result": "fail"}]},
            }
        ]
    },
}
DOCUMENTS = [POLICY, TRUST, EXCEPTION, POLICY_TEST]


def test_the_seed_documents_are_valid() -> None:
    for document in DOCUMENTS:
        [loaded] = parse_documents(yaml.safe_dump(document), "seed.yaml")
        assert loaded.document.kind == document["kind"]


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message


@SETTINGS
@given(st.sampled_from(DOCUMENTS).flatmap(hostile_mutation))
def test_a_mutated_document_loads_or_says_where_and_why_in_one_line(
    mutation: tuple[Any, tuple[str | int, ...]],
) -> None:
    document, _ = mutation
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        loaded = parse_documents(text, "m.yaml")
    except DocumentError as exc:
        _one_line(str(exc))
        assert str(exc).startswith("m.yaml")
        loaded = []
    # The same body as the API server hands it over: JSON, never YAML types.
    try:
        body = json.loads(json.dumps(document))
    except ValueError:
        return
    kind = body.get("kind") if isinstance(body, dict) else None
    if isinstance(kind, str) and kind in DOCUMENT_KINDS:
        model = DOCUMENT_KINDS[kind]
        try:
            model.model_validate(body)
        except ValidationError as exc:
            _one_line(problems_of(model, exc))
        # The API server always sends metadata as an object with a name.
        served = isinstance(body.get("metadata"), dict) and isinstance(
            body["metadata"].get("name"), str
        )
        if served and kind in ("GuardPolicy", "GuardTrust", "GuardException"):
            entry = entry_from_body(kind, body)
            assert entry.document is not None or entry.error
    for item in loaded:
        if isinstance(item.document, GuardPolicy):
            try:
                compile_policy(item.document)
            except PolicyError as exc:
                # CEL's own syntax errors point at the column on extra lines.
                assert str(exc).startswith(f"policy {item.document.name!r}")
    lint_findings(Bundle.of(loaded))


def _denied(policy: GuardPolicy, envelope: bytes, username: str) -> bool:
    keys = _keys()
    review = AttestationReview(h.trust_spec(keys), EnvelopeList([envelope]), now=lambda: h.NOW)
    subject = h.deployment_subject(username=username, groups=("deployers",))
    return any(f.denies for f in Engine([policy]).evaluate(subject, review=review).findings)


_KEYS: list[h.Keys] = []


def _keys() -> h.Keys:
    if not _KEYS:
        _KEYS.append(h.Keys.make())
    return _KEYS[0]


# Attestations the seed policy denies, each for one reason a look-alike in
# the policy must never remove, with the deployer of the request.
DENIED = {
    "other repository": ({"repository": "github.com/evil/shop"}, "bob"),
    "other branch": ({"targetRef": "refs/heads/feature"}, "bob"),
    "author deploys": ({}, "alice@acme.example"),
    "unmapped deployer": ({}, "mallory"),
    "self-approval": ({"approvals": [h.approval("alice", "github:1001")]}, "bob"),
}


@pytest.mark.parametrize("scenario", sorted(DENIED))
def test_each_denial_scenario_is_denied_by_the_seed_policy(scenario: str) -> None:
    changes, username = DENIED[scenario]
    envelope = h.envelope(h.statement(h.predicate(**changes)), [_keys().ci])
    policy = GuardPolicy.model_validate(POLICY)
    assert _denied(policy, envelope, username)
    good = h.envelope(h.statement(h.predicate()), [_keys().ci])
    assert not _denied(policy, good, "bob")


@SETTINGS
@given(
    st.sampled_from(sorted(DENIED)),
    st.one_of(look_alike_mutation(POLICY, ("spec",))),
)
def test_a_look_alike_in_the_policy_never_turns_a_denial_into_an_admission(
    scenario: str, mutation: tuple[Any, tuple[str | int, ...]]
) -> None:
    document, path = mutation
    try:
        [loaded] = parse_documents(yaml.safe_dump(document, allow_unicode=True), "m.yaml")
    except DocumentError as exc:
        _one_line(str(exc))
        event("refused when loaded")
        return
    policy = loaded.document
    assert isinstance(policy, GuardPolicy)
    try:
        compile_policy(policy)
    except PolicyError as exc:  # refused when loaded, like a validation error
        assert str(exc).startswith("policy 'reviewed-changes', rule")
        return
    changes, username = DENIED[scenario]
    envelope = h.envelope(h.statement(h.predicate(**changes)), [_keys().ci])
    event(f"loaded with a look-alike in {path[1]}")
    assert _denied(policy, envelope, username), path


def test_loaded_documents_carry_their_source() -> None:
    [loaded] = parse_documents(yaml.safe_dump(POLICY), "p.yaml")
    assert isinstance(loaded, Loaded) and loaded.source == "p.yaml"
