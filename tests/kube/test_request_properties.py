"""Properties of AdmissionReview reading, over hostile bodies: reading
raises nothing but ``BadReview``, and a refusal carries the request's own
uid whenever the body holds it readably (so the webhook can answer with a
denial the API server takes, instead of an HTTP error its failure policy
might ignore)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.kube.request import (
    AdmissionRequest,
    BadReview,
    decode_review,
    parse_review,
    valid_uid,
)
from tests.kube.helpers import WEB, admission_review, workload
from tests.kube.mutations import broken_bodies, mutated

BASE = admission_review(
    workload("Deployment", "web", "prod", WEB, annotations={"a": "b"}),
    old=workload("Deployment", "web", "prod", WEB),
    operation="UPDATE",
)
UID = BASE["request"]["uid"]
TEXT = json.dumps(BASE).encode()
# Where the uid's value ends in the text: any break after it leaves it readable.
UID_END = TEXT.index(json.dumps(UID).encode()) + len(json.dumps(UID))
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(body: bytes) -> AdmissionRequest | BadReview:
    try:
        return parse_review(decode_review(body))
    except BadReview as exc:
        return exc


@PROPERTIES
@given(st.binary(max_size=256))
def test_any_bytes_are_read_or_refused_never_raised(body: bytes) -> None:
    outcome = _read(body)
    if isinstance(outcome, BadReview):
        assert outcome.uid == "" or valid_uid(outcome.uid)
        assert "\n" not in str(outcome)


@PROPERTIES
@given(broken_bodies(BASE))
def test_a_broken_body_keeps_the_uid_it_plainly_holds(body: bytes) -> None:
    outcome = _read(body)
    assert outcome.uid == "" or valid_uid(outcome.uid)
    if body[:UID_END] == TEXT[:UID_END]:
        assert outcome.uid == UID, str(outcome)


@PROPERTIES
@given(mutated(BASE))
def test_one_change_anywhere_is_read_or_refused_with_the_uid(
    case: tuple[dict[str, Any], str, tuple[Any, ...]],
) -> None:
    review, how, path = case
    outcome = _read(json.dumps(review).encode())
    request = review.get("request")
    uid_intact = isinstance(request, dict) and request.get("uid") == UID
    if isinstance(outcome, BadReview):
        assert outcome.uid == "" or valid_uid(outcome.uid)
        if uid_intact:
            assert outcome.uid == UID, (how, path, str(outcome))
    else:
        assert uid_intact and outcome.uid == UID, (how, path)
