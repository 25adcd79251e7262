"""The CRD schemas refuse what the models refuse, where OpenAPI can say it.

Every ``x-kubernetes-validations`` rule is evaluated with the project's CEL
library on accepted and rejected examples, and the model must agree with it
on each; every shipped document validates against the generated schema,
and look-alike values fail both the schema and the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cel_expr_python import cel
from pydantic import BaseModel, ValidationError

from controller.policy import crds
from controller.policy.documents import (
    GuardPolicySpec,
    GuardTrustSpec,
    LabelSelectorRequirement,
    Review,
    Rule,
    TrustedKey,
)
from controller.policy.loader import load_path

ROOT = Path(__file__).resolve().parents[2]
PEM = "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n"


def _rules(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule["rule"]
        for key, value in node.items():
            yield from _rules(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _rules(item, path)


def _schema(kind: str) -> dict[str, Any]:
    found = next(k for k in crds.KINDS if k.kind == kind)
    schema: dict[str, Any] = crds.crd(found)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


GENERATED = sorted({rule for kind in crds.KINDS for _, rule in _rules(_schema(kind.kind), "")})

RULE = {"name": "r", "target": "kubernetes", "expression": "true"}
MATCH = {"kubernetes": {}}
REVIEW = {
    "attesters": ["ci"],
    "repositories": ["github.com/a/b"],
    "targetRefs": ["refs/heads/main"],
}
PROVENANCE = {
    "builders": ["github"],
    "repositories": [{"name": "github.com/a/b", "id": "1"}],
    "refs": ["refs/heads/main"],
}
VSA = {"verifiers": ["source"]}

# (model, examples): each example is (object, accepted?). The model is asked too.
EXAMPLES: dict[type[BaseModel], list[tuple[dict[str, Any], bool]]] = {
    Rule: [
        ({**RULE, "message": "m"}, True),
        ({**RULE, "messageExpression": "'m'"}, True),
        ({**RULE, "message": "", "messageExpression": "'m'"}, True),
        (RULE, False),
        ({**RULE, "message": ""}, False),
        ({**RULE, "message": "", "messageExpression": ""}, False),
    ],
    LabelSelectorRequirement: [
        ({"key": "tier", "operator": "In", "values": ["web"]}, True),
        ({"key": "tier", "operator": "Exists"}, True),
        ({"key": "tier", "operator": "DoesNotExist", "values": []}, True),
        ({"key": "tier", "operator": "NotIn", "values": []}, False),
        ({"key": "tier", "operator": "In"}, False),
        ({"key": "tier", "operator": "Exists", "values": ["web"]}, False),
    ],
    TrustedKey: [
        ({"name": "ci", "publicKey": PEM, "role": "attester"}, True),
        ({"name": "bob", "publicKey": PEM, "role": "person", "principal": "github:2"}, True),
        ({"name": "bob", "publicKey": PEM, "role": "person"}, False),
        ({"name": "bob", "publicKey": PEM, "role": "person", "principal": ""}, False),
    ],
    Review: [
        (REVIEW, True),
        ({**REVIEW, "maxAge": "30d", "provenance": PROVENANCE}, True),
        ({**REVIEW, "maxAge": "30d", "provenance": PROVENANCE, "acceptSourceVSA": VSA}, True),
        ({**REVIEW, "maxAge": "30d", "acceptSourceVSA": VSA}, False),
        ({**REVIEW, "provenance": PROVENANCE, "acceptSourceVSA": VSA}, False),
    ],
    GuardPolicySpec: [
        ({"match": MATCH, "review": REVIEW}, True),
        ({"match": MATCH, "rules": [{**RULE, "message": "m"}]}, True),
        ({"match": {"terraform": {}}, "review": REVIEW}, True),
        ({"match": MATCH, "rules": []}, False),
        ({"match": MATCH}, False),
        ({"review": REVIEW}, False),
        ({"match": {}, "review": REVIEW}, False),
        ({"match": {"terraform": {}}, "rules": [{**RULE, "message": "m"}]}, False),
    ],
}
RULES_OF = {
    model: [r["rule"] for r in model.model_json_schema(by_alias=True)["x-kubernetes-validations"]]
    for model in EXAMPLES
}


def test_every_generated_rule_has_examples() -> None:
    """A new CEL rule in a model needs examples here, or this fails."""
    covered = {rule for rules in RULES_OF.values() for rule in rules}
    assert GENERATED, "the CRDs carry CEL validation rules"
    assert set(GENERATED) == covered


# The API server type-checks CRD validation rules against the schema; here
# ``self`` is dynamic, which checks the rule's syntax and its functions.
_SELF = cel.NewEnv(variables={"self": cel.Type.DYN})


def _evaluate(rule: str, value: dict[str, Any]) -> bool:
    result = _SELF.compile(rule).eval(data={"self": value})
    assert result.type() == cel.Type.BOOL, result.value()
    return bool(result.value())


CASES = [
    (model, rule, example, accepted)
    for model, examples in EXAMPLES.items()
    for example, accepted in examples
    for rule in RULES_OF[model]
]


@pytest.mark.parametrize(
    ("model", "rule", "example", "accepted"),
    CASES,
    ids=[f"{m.__name__}-{i}" for i, (m, _, _, _) in enumerate(CASES)],
)
def test_each_rule_accepts_and_rejects_what_the_model_does(
    model: type[BaseModel], rule: str, example: dict[str, Any], accepted: bool
) -> None:
    try:
        model.model_validate(example)
        model_accepts = True
    except ValidationError:
        model_accepts = False
    assert model_accepts is accepted
    verdicts = [_evaluate(r, example) for r in RULES_OF[model]]
    # Accepted: every rule holds. Rejected: some rule fails, unless the
    # refusal is one a pattern or enum already expresses (none here).
    assert all(verdicts) is accepted


def _validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema(kind))


def test_every_shipped_document_fits_its_crd_schema() -> None:
    documents = [*load_path(ROOT / "policies"), *load_path(ROOT / "examples" / "keys")]
    kinds = {k.kind for k in crds.KINDS}
    checked = 0
    for loaded in documents:
        document = loaded.document
        if document.kind not in kinds:
            continue
        body = document.model_dump(mode="json", by_alias=True, exclude_none=True)
        errors = [e.message for e in _validator(document.kind).iter_errors(body)]
        assert errors == [], f"{loaded.source}: {errors}"
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("match", "kubernetes", "kinds"), ["Deploymnet"]),
        (("match", "kubernetes", "namespaces", "include"), ["Prod"]),
        (("review", "repositories"), ["github.com/acme/\u017fhop"]),
        (("review", "targetRefs"), ["main"]),
        (("review", "maxAge"), "30 days"),
        (("review", "deployer", "allowed"), ["ci-bot\u200b"]),
        (("review", "breakGlass", "principals"), ["github:1001 "]),
        (("severity",), "hihg"),
    ],
)
def test_look_alikes_and_typos_fail_the_schema_and_the_model(
    path: tuple[str, ...], value: Any
) -> None:
    spec: dict[str, Any] = {
        "match": {"kubernetes": {"kinds": ["Deployment"]}},
        "review": {**REVIEW, "deployer": {}, "breakGlass": {}},
    }
    node = spec
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    body = {"apiVersion": "guard.dev/v1alpha1", "kind": "GuardPolicy", "spec": spec}
    assert list(_validator("GuardPolicy").iter_errors(body)), "the CRD schema accepts it"
    with pytest.raises(ValidationError):
        GuardPolicySpec.model_validate(spec)


def test_trust_ids_fail_the_schema_and_the_model() -> None:
    for alias in ["dana@example.com", "GitHub:1", "github:01", "email:a@EXAMPLE.com"]:
        spec = {"principals": [{"id": "github:1", "aliases": [alias]}]}
        body = {"kind": "GuardTrust", "spec": spec}
        assert list(_validator("GuardTrust").iter_errors(body)), alias
        with pytest.raises(ValidationError):
            GuardTrustSpec.model_validate(spec)


def test_patterns_are_re2_compatible() -> None:
    """The API server compiles patterns with Go's RE2: no look-around, no back-references."""
    text = "".join(p.read_text() for p in (ROOT / "charts" / "guard" / "crds").glob("*.yaml"))
    patterns = re.findall(r"pattern: (.*)", text)
    assert len(patterns) >= 10
    for pattern in patterns:
        assert not re.search(r"\(\?[=!<]|\\[1-9]", pattern), pattern


def test_the_chart_requires_a_kubernetes_that_runs_crd_validation_rules() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "guard" / "Chart.yaml").read_text())
    minimum = re.match(r">=\s*1\.(\d+)", chart["kubeVersion"])
    assert minimum is not None and int(minimum.group(1)) >= 25
