"""Properties of the admission decision over hostile objects: one change to
a denied workload never admits it unless the change removed the reason it
was denied, and no change makes guard fail (a 500) instead of answering.

The requests go through the webhook's own steps below the HTTP server
(read, parse, ``unsupported_reason``, ``GuardRuntime.admit``), with the test
policies: an unreviewed image in ``prod`` and a privileged container
anywhere are denied.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from controller.kube.audit import AuditLog
from controller.kube.decide import unsupported_reason
from controller.kube.request import BadReview, decode_review, parse_review
from controller.kube.runtime import GuardRuntime
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs
from tests.kube.helpers import (
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    Cast,
    admission_review,
    workload,
    write_documents,
)
from tests.kube.mutations import mutated

UNREVIEWED = admission_review(workload("Deployment", "web", "prod", UNATTESTED))
PRIVILEGED = admission_review(workload("Pod", "p", "dev", WEB, privileged=True))
PROPERTIES = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> GuardRuntime:
    directory = tmp_path_factory.mktemp("properties")
    files = FileInputs.load(
        [write_documents(directory / "p.yaml", TEST_POLICIES)],
        [write_documents(directory / "t.yaml", [Cast.make().trust_document()])],
    )

    async def lister(_plural: str, _namespace: str | None) -> list[Mapping[str, Any]]:
        return []

    settings_ = ServeSettings(policy_paths=(), audit_stdout=False)
    return GuardRuntime(settings_, files, lister=lister, audit=AuditLog(None, stream=None))


def answer(runtime: GuardRuntime, review: Mapping[str, Any]) -> tuple[bool, int]:
    """(allowed, status.code) as the webhook would answer."""
    try:
        request = parse_review(decode_review(json.dumps(review).encode()))
    except BadReview:
        return False, 400
    if unsupported_reason(request) is not None:
        return False, 403
    result = asyncio.run(runtime.admit(request, attestations={}, resources=()))
    return result.allowed, result.code


def test_the_bases_are_denied_for_their_reasons(runtime: GuardRuntime) -> None:
    assert answer(runtime, UNREVIEWED) == (False, 403)
    assert answer(runtime, PRIVILEGED) == (False, 403)


def _object_text(review: Mapping[str, Any]) -> str:
    return json.dumps(review["request"].get("object"))


@PROPERTIES
@given(mutated(UNREVIEWED, under=("request", "object")))
def test_an_unreviewed_image_stays_denied_while_it_is_there(
    runtime: GuardRuntime, case: tuple[dict[str, Any], str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    allowed, code = answer(runtime, review)
    assert code in (200, 400, 403), (how, path, code)
    if allowed:
        assert UNATTESTED not in _object_text(review), (how, path)


@PROPERTIES
@given(mutated(PRIVILEGED, under=("request", "object")))
def test_a_privileged_container_stays_denied_while_it_is_there(
    runtime: GuardRuntime, case: tuple[dict[str, Any], str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    allowed, code = answer(runtime, review)
    assert code in (200, 400, 403), (how, path, code)
    if allowed:
        assert '"privileged": true' not in _object_text(review), (how, path)
