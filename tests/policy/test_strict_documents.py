"""A typo in a value never switches a guardrail off.

Closed sets are closed (the error names the nearest valid value), patterns
that could never match are errors, no value is coerced into another type,
fields are camelCase only, and durations are bounded. Each case below is a
regression test for one way a guardrail used to load as "ok" and do nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from controller.attest import statement
from controller.kube.request import WORKLOADS
from controller.policy import documents
from controller.policy.documents import (
    WORKLOAD_KINDS,
    GuardException,
    GuardPolicy,
    parse_duration,
)
from controller.policy.loader import DocumentError, load_path, parse_documents

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: guard.dev/v1alpha1
kind: GuardPolicy
metadata: {name: sod}
spec:
  severity: high
  action: deny
  match:
    kubernetes:
      kinds: [Deployment]
      namespaces: {include: [shop-*], exclude: [shop-dev]}
      labelSelector:
        matchLabels: {app.kubernetes.io/name: shop}
        matchExpressions: [{key: tier, operator: In, values: [web]}]
    terraform: {types: [aws_s3_*], actions: [create, update]}
  review:
    minApprovals: 2
    attesters: [ci]
    repositories: [github.com/acme/shop]
    targetRefs: [refs/heads/main]
    maxAge: 30d
    deployer: {notAuthor: true, allowed: [group:deployers]}
    breakGlass: {principals: [github:1009], groups: [sre-oncall]}
  rules:
    - name: no-latest
      target: kubernetes
      expression: "true"
      message: ok
"""


def load(text: str) -> GuardPolicy:
    [loaded] = parse_documents(text, "sod.yaml")
    assert isinstance(loaded.document, GuardPolicy)
    return loaded.document


def error_of(text: str) -> str:
    with pytest.raises(DocumentError) as caught:
        parse_documents(text, "sod.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("sod.yaml (document 1) GuardPolicy/sod:")
    return message


def test_the_base_policy_loads() -> None:
    policy = load(POLICY)
    assert policy.spec.review is not None and policy.spec.review.min_approvals == 2


# --------------------------------------------------------------------------- closed sets


@pytest.mark.parametrize(
    ("old", "new", "field", "nearest"),
    [
        ("kinds: [Deployment]", "kinds: [Deploymnet]", "kinds[0]", "Deployment"),
        ("kinds: [Deployment]", "kinds: [deployment]", "kinds[0]", "Deployment"),
        ("kinds: [Deployment]", "kinds: [Pod, Cronjob]", "kinds[1]", "CronJob"),
        ("severity: high", "severity: hihg", "spec.severity", "high"),
        ("action: deny", "action: Deny", "spec.action", "deny"),
        ("target: kubernetes", "target: kubernets", "rules[0].target", "kubernetes"),
        ("actions: [create, update]", "actions: [create, updte]", "actions[1]", "update"),
        ("operator: In", "operator: in", "matchExpressions[0].operator", "In"),
    ],
)
def test_a_value_outside_a_closed_set_names_the_field_and_the_nearest_value(
    old: str, new: str, field: str, nearest: str
) -> None:
    message = error_of(POLICY.replace(old, new))
    assert field in message
    assert f"did you mean {nearest!r}?" in message


def test_a_kind_guard_does_not_judge_is_an_error_not_a_dead_policy() -> None:
    message = error_of(POLICY.replace("kinds: [Deployment]", "kinds: [Namespace]"))
    assert "'Namespace' is not a kind guard judges" in message


def test_the_kinds_policies_accept_are_the_kinds_admission_judges() -> None:
    """documents.py defines the set (policy must not import kube); kube agrees."""
    assert set(WORKLOAD_KINDS) == {w.kind for w in WORKLOADS}
    assert len(WORKLOAD_KINDS) == len(set(WORKLOAD_KINDS))


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [("Shop-*", "'shop-*'"), ("shop_prod", "'shop-prod'"), ("shop.eu", "'shop-eu'")],
)
def test_a_namespace_glob_that_can_never_match_is_an_error(pattern: str, hint: str) -> None:
    message = error_of(POLICY.replace("include: [shop-*]", f"include: [{pattern}]"))
    assert "namespaces.include[0]" in message and "can never match a namespace" in message
    assert f"did you mean {hint}?" in message


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("{app.kubernetes.io/name: shop}", "{App_Name/x: shop}", "can never match a label"),
        ("{app.kubernetes.io/name: shop}", "{name: -shop}", "can never match a label"),
        ("values: [web]", "values: [we b]", "can never match a label"),
        ("types: [aws_s3_*]", "types: [aws.s3_*]", "can never match a Terraform"),
        ("operator: In, values: [web]", "operator: In", "needs at least one value"),
    ],
)
def test_selectors_and_globs_that_can_never_match_are_errors(
    old: str, new: str, problem: str
) -> None:
    assert problem in error_of(POLICY.replace(old, new))


@pytest.mark.parametrize("operation", ["Create", "PATCH"])
def test_a_test_case_operation_is_a_closed_set(operation: str) -> None:
    text = (
        "apiVersion: guard.dev/v1alpha1\nkind: GuardPolicyTest\nmetadata: {name: t}\nspec:\n"
        f"  cases:\n  - name: c\n    request: {{operation: {operation}}}\n"
        "    object: {kind: Pod}\n    expect: {result: pass}\n"
    )
    with pytest.raises(DocumentError, match="is not an admission operation"):
        parse_documents(text, "t.yaml")


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize("value", ["'2'", "true", "2.0", "'two'"])
def test_min_approvals_is_an_integer_not_something_coerced_into_one(value: str) -> None:
    message = error_of(POLICY.replace("minApprovals: 2", f"minApprovals: {value}"))
    assert "spec.review.minApprovals" in message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("notAuthor: true", "notAuthor: 'true'"),
        ("notAuthor: true", "notAuthor: 1"),
        ("severity: high", "severity: 3"),
        ("attesters: [ci]", "attesters: [1]"),
    ],
)
def test_no_value_is_coerced(old: str, new: str) -> None:
    error_of(POLICY.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "nearest"),
    [
        ("minApprovals: 2", "min_approvals: 2", "minApprovals"),
        ("targetRefs:", "target_refs:", "targetRefs"),
        ("maxAge: 30d", "max_age: 1d", "maxAge"),
    ],
)
def test_snake_case_fields_are_unknown_fields(old: str, new: str, nearest: str) -> None:
    """The API server drops fields its schema lacks: a file must not accept them either."""
    message = error_of(POLICY.replace(old, new))
    assert f"did you mean {nearest!r}?" in message and "unknown field" in message


def _models() -> Iterator[type[BaseModel]]:
    for module in (documents, statement):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
                and value.model_fields
            ):
                yield value


def _core(annotation: Any) -> tuple[Any, str]:
    """The scalar type of a field, and how to nest a value into it (list/dict)."""
    shape = ""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return None, shape
            annotation = options[0]
        elif origin is list:
            shape += "list"
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            shape += "dict"
            annotation = typing.get_args(annotation)[1]
        else:
            return annotation, shape


WRONG: dict[Any, list[Any]] = {
    int: ["1", True, 1.5],
    float: ["1.5", True, "nan"],
    bool: ["true", 1, "yes"],
    str: [1, True, 1.5],
}


def _strict_fields() -> Iterator[tuple[type[BaseModel], str, str, Any]]:
    for model in _models():
        for name, info in model.model_fields.items():
            core, shape = _core(info.annotation)
            for kind, values in WRONG.items():
                if core is kind:
                    for value in values:
                        yield model, info.alias or name, shape, value


STRICT_FIELDS = list(_strict_fields())


def test_the_walk_finds_the_fields_that_matter() -> None:
    found = {(m.__name__, f) for m, f, _, _ in STRICT_FIELDS}
    for expected in [
        ("Review", "minApprovals"),
        ("Review", "allowBots"),
        ("DeployerRules", "notAuthor"),
        ("RequiredCheck", "min"),
        ("CheckRun", "value"),
        ("Person", "id"),
        ("Principal", "aliases"),
    ]:
        assert expected in found


@pytest.mark.parametrize(
    ("model", "field", "shape", "value"),
    STRICT_FIELDS,
    ids=[f"{m.__name__}.{f}={v!r}" for m, f, _, v in STRICT_FIELDS],
)
def test_every_field_refuses_a_value_of_another_type(
    model: type[BaseModel], field: str, shape: str, value: Any
) -> None:
    nested: Any = value
    location: tuple[Any, ...] = (field,)
    if shape.startswith("list"):
        nested, location = [value], (field, 0)
    elif shape.startswith("dict"):
        nested, location = {"k": value}, (field, "k")
    with pytest.raises(ValidationError) as caught:
        model.model_validate({field: nested})
    assert any(tuple(e["loc"][: len(location)]) == location for e in caught.value.errors()), (
        caught.value.errors()
    )


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9999999999999d", "at most 9 digits per unit"),
        ("999999999d", "longer than the limit of 3650d"),
        ("3651d", "longer than the limit of 3650d"),
        ("0s", "is zero"),
        ("0d0h", "is zero"),
        (" 30d", "no spaces"),
        ("30 d", "no spaces"),
        ("1y", "use forms like"),
        ("", "use forms like"),
    ],
)
def test_durations_are_bounded_and_exact(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)
    message = error_of(POLICY.replace("maxAge: 30d", f"maxAge: {json.dumps(text)}"))
    assert "spec.review.maxAge" in message and problem in message


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2_592_000), ("1h30m", 5400), ("90s", 90), ("3650d", 315_360_000)]
)
def test_valid_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_a_numeric_duration_is_refused_not_read_as_seconds() -> None:
    assert "spec.review.maxAge" in error_of(POLICY.replace("maxAge: 30d", "maxAge: 30"))


# --------------------------------------------------------------------------- both paths


EXCEPTION = """\
apiVersion: guard.dev/v1alpha1
kind: GuardException
metadata: {name: e}
spec: {policy: p, target: "a/b", reason: r, owner: o, expires: EXPIRES}
"""


def test_dates_load_from_yaml_and_from_the_clusters_json() -> None:
    [from_yaml] = parse_documents(EXCEPTION.replace("EXPIRES", "2030-01-31"), "e.yaml")
    assert isinstance(from_yaml.document, GuardException)
    as_json = yaml.safe_load(EXCEPTION.replace("EXPIRES", "'2030-01-31'"))
    from_json = GuardException.model_validate(json.loads(json.dumps(as_json)))
    assert from_yaml.document.spec.expires == from_json.spec.expires == dt.date(2030, 1, 31)


@pytest.mark.parametrize("expires", ["2030-01-31T00:00:00Z", "'2030-1-31'", "20300131", "true"])
def test_what_is_not_a_date_is_refused(expires: str) -> None:
    with pytest.raises(DocumentError, match=r"spec\.expires"):
        parse_documents(EXCEPTION.replace("EXPIRES", expires), "e.yaml")


def test_every_shipped_document_loads_through_the_json_path_too() -> None:
    """What the API server hands over is JSON: no YAML-only type may be needed."""
    for loaded in load_path(ROOT / "policies"):
        raw = loaded.document.model_dump(mode="json", by_alias=True, exclude_none=True)
        again = type(loaded.document).model_validate(json.loads(json.dumps(raw)))
        assert again == loaded.document
