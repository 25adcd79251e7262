"""AdmissionReview parsing: precise refusals, uid echoed when it can be."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.kube.request import BadReview, decode_review, parse_review
from controller.kube.shapes import MAX_DEPTH
from tests.kube.helpers import WEB, admission_review, workload


def _review() -> dict[str, Any]:
    return admission_review(workload("Deployment", "web", "prod", WEB), dry_run=True)


def test_a_review_as_the_api_server_sends_it() -> None:
    review = _review()
    request = parse_review(review)
    assert request.uid == review["request"]["uid"]
    assert (request.group, request.version, request.resource, request.kind) == (
        "apps",
        "v1",
        "deployments",
        "Deployment",
    )
    assert request.workload is not None and request.workload.kind == "Deployment"
    assert request.requester.username == "carol@example.com"
    assert request.requester.groups == ("system:authenticated", "developers")
    assert request.dry_run is True
    assert request.namespace == "prod"


@pytest.mark.parametrize(
    ("mutate", "problem", "uid_known"),
    [
        (lambda r: r.pop("request"), "request is missing", False),
        (lambda r: r.update(kind="Status"), "expected kind AdmissionReview", True),
        (lambda r: r["request"].pop("uid"), "request.uid is missing", False),
        (lambda r: r["request"].pop("userInfo"), "request.userInfo is missing", True),
        (lambda r: r["request"]["userInfo"].update(groups="admins"), "groups must be a list", True),
        (lambda r: r["request"].update(dryRun="yes"), "dryRun must be a boolean", True),
        (lambda r: r["request"].pop("resource"), "request.resource is missing", True),
        (lambda r: r["request"].update(object=[1]), "request.object must be an object", True),
    ],
)
def test_malformed_reviews_name_the_field(mutate: Any, problem: str, uid_known: bool) -> None:
    review = _review()
    uid = review["request"]["uid"]
    mutate(review)
    with pytest.raises(BadReview) as caught:
        parse_review(review)
    assert problem in str(caught.value)
    assert caught.value.uid == (uid if uid_known else "")


def test_not_an_object() -> None:
    with pytest.raises(BadReview, match="must be a JSON object, not an array"):
        parse_review([])


def test_generate_name_stands_in_for_a_missing_name() -> None:
    review = _review()
    review["request"]["name"] = ""
    review["request"]["object"]["metadata"] = {"generateName": "web-", "namespace": "prod"}
    assert parse_review(review).name == "web-"


# --------------------------------------------------------------------------- shapes the API server never sends


def _template(review: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = review["request"]["object"]["spec"]["template"]
    return template


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r["request"]["object"].update(spec="replicas: 3"),
         "request.object.spec must be an object, not a string"),
        (lambda r: _template(r)["spec"].update(containers={"web": {"image": WEB}}),
         "request.object.spec.template.spec.containers must be an array, not an object"),
        (lambda r: _template(r)["spec"]["containers"][0].update(image=[WEB]),
         "request.object.spec.template.spec.containers[0].image must be a string, not an array"),
        (lambda r: r["request"]["object"].update(metadata=[{"name": "web"}]),
         "request.object.metadata must be an object, not an array"),
        (lambda r: r["request"]["object"]["metadata"].update(labels={"team": 7}),
         "request.object.metadata.labels['team'] must be a string, not a number"),
        (lambda r: _template(r)["spec"].update(containers=[]),
         "request.object.spec.template.spec.containers must list at least 1"),
        (lambda r: _template(r)["spec"]["containers"][0].pop("name"),
         "request.object.spec.template.spec.containers[0].name is missing"),
        (lambda r: _template(r)["spec"]["containers"][0].update(
            securityContext={"privileged": "true"}),
         "containers[0].securityContext.privileged must be a boolean, not a string"),
        (lambda r: _template(r)["spec"].update(volumes=[{"name": "v", "image": {"reference": 1}}]),
         "volumes[0].image.reference must be a string, not a number"),
        (lambda r: r["request"]["oldObject"].update(spec=None) if r["request"].get("oldObject")
         else r["request"].update(oldObject={"spec": 1}),
         "request.oldObject.spec must be an object, not a number"),
        (lambda r: r["request"]["object"]["metadata"].update(namespace="kube-system"),
         "request.object.metadata.namespace 'kube-system' is not the request's namespace 'prod'"),
        (lambda r: r["request"]["object"].update(kind="Pod"),
         "request.object.kind 'Pod' is not the request's Deployment"),
        (lambda r: r["request"]["object"].update(apiVersion="apps/v1beta2"),
         "request.object.apiVersion 'apps/v1beta2' is not the request's apps/v1"),
        (lambda r: r["request"]["userInfo"].update(extra={"scopes": "all"}),
         "request.userInfo.extra must map names to lists of strings"),
        (lambda r: r["request"].update(userInfo="carol"),
         "request.userInfo must be an object, not a string"),
    ],
)  # fmt: skip
def test_shapes_the_api_server_never_sends_are_malformed(mutate: Any, problem: str) -> None:
    review = _review()
    mutate(review)
    with pytest.raises(BadReview) as caught:
        parse_review(review)
    assert problem in str(caught.value)
    # The uid is readable, so the webhook answers with a denial the API server takes.
    assert caught.value.uid == review["request"]["uid"]


def test_nulls_are_absent_fields_as_the_api_server_writes_them() -> None:
    review = _review()
    review["request"]["object"]["metadata"]["creationTimestamp"] = None
    review["request"]["object"]["metadata"]["labels"] = None
    _template(review)["spec"]["initContainers"] = None
    assert parse_review(review).name == "web"


def _nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("where", ["object", "options"])
def test_nesting_deeper_than_the_types_allow_is_malformed(where: str) -> None:
    review = _review()
    if where == "options":
        review["request"]["options"] = _nested(100)
    else:
        _template(review)["spec"]["affinity"] = _nested(MAX_DEPTH)
    with pytest.raises(BadReview, match=f"nested more than {MAX_DEPTH} levels deep") as caught:
        parse_review(review)
    assert caught.value.uid == review["request"]["uid"]


def test_the_deepest_real_shapes_are_well_within_the_limit() -> None:
    review = _review()
    # A projected volume's label selector in a pod template: one of the
    # deepest paths a workload type has, with managedFields mirroring it.
    selector = {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}
    volume = {
        "name": "v",
        "ephemeral": {"volumeClaimTemplate": {"spec": {"selector": selector}}},
    }
    _template(review)["spec"]["volumes"] = [volume]
    review["request"]["object"]["metadata"]["managedFields"] = [
        {"fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:volumes": {"k:x": volume}}}}}}
    ]
    assert parse_review(review).kind == "Deployment"


# --------------------------------------------------------------------------- bodies json cannot load


def _body(review: dict[str, Any], tail: bytes) -> bytes:
    text = json.dumps(review).encode()
    return text[:-2] + b', "bomb": ' + tail + b"}}"


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"1" * 5000, "Exceeds the limit"),
        (b"NaN", "NaN is not a JSON number"),
        (b'"\xff"', "not UTF-8"),
        (b'{"a": ', "Expecting value"),
    ],
)
def test_a_body_json_cannot_load_keeps_its_uid(tail: bytes, problem: str) -> None:
    review = _review()
    with pytest.raises(BadReview) as caught:
        decode_review(_body(review, tail))
    assert problem in str(caught.value)
    assert caught.value.uid == review["request"]["uid"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"request": {"uid": "a", "uid": "b"}, "x": NaN}',  # which uid would count?
        b'{"request": {"kind": {"uid": "not-this"}}, "x": NaN}',
        b'{"request": {"uid": "has space"}, "x": NaN}',
        b'{"request" {"uid": "abc"}}',
        b"\xff\xfe",
        b"",
    ],
)
def test_no_uid_is_guessed_from_a_body_that_does_not_hold_one_plainly(body: bytes) -> None:
    with pytest.raises(BadReview) as caught:
        decode_review(body)
    assert caught.value.uid == ""
