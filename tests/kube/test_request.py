"""AdmissionReview parsing: precise refusals, uid echoed when it can be."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube.request import BadReview, parse_review
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
    with pytest.raises(BadReview, match="must be a JSON object, not list"):
        parse_review([])


def test_generate_name_stands_in_for_a_missing_name() -> None:
    review = _review()
    review["request"]["name"] = ""
    review["request"]["object"]["metadata"] = {"generateName": "web-", "namespace": "prod"}
    assert parse_review(review).name == "web-"
