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
    assert unreviewed_image_is_there(UNREVIEWED["request"]["object"])
    assert answer(runtime, PRIVILEGED) == (False, 403)
    assert privileged_container_is_there(PRIVILEGED["request"]["object"])


# The oracles read the mutated object as kube-apiserver would: along the
# typed paths, ignoring fields the types do not have (the API server drops
# them). Where a typed path holds the wrong type, the API server would
# refuse the object, so the reason counts as present if its text is there.


def _containers(obj: Any, pod_path: tuple[str, ...], needle: str) -> Any:
    """The containers on the typed path, or True/False when the path is
    broken (True: the reason's text is below the break)."""
    node = obj
    for key in pod_path:
        if not isinstance(node, dict):
            return needle in json.dumps(node)
        node = node.get(key)
    if not isinstance(node, dict):
        return needle in json.dumps(node)
    found: list[dict[str, Any]] = []
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = node.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(c, dict) for c in items):
            return needle in json.dumps(items)
        found.extend(items)
    return found


def unreviewed_image_is_there(obj: Any) -> bool:
    containers = _containers(obj, ("spec", "template", "spec"), UNATTESTED)
    if isinstance(containers, bool):
        return containers
    return any(UNATTESTED in json.dumps(c.get("image")) for c in containers)


def privileged_container_is_there(obj: Any) -> bool:
    containers = _containers(obj, ("spec",), "privileged")
    if isinstance(containers, bool):
        return containers
    for container in containers:
        context = container.get("securityContext")
        if context is None:
            continue
        if not isinstance(context, dict):
            return "privileged" in json.dumps(context)
        if context.get("privileged") not in (None, False):
            return True
    return False


@PROPERTIES
@given(mutated(UNREVIEWED, under=("request", "object")))
def test_an_unreviewed_image_stays_denied_while_it_is_there(
    runtime: GuardRuntime, case: tuple[dict[str, Any], str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    allowed, code = answer(runtime, review)
    assert code in (200, 400, 403), (how, path, code)
    if allowed:
        assert not unreviewed_image_is_there(review["request"].get("object")), (how, path)


@PROPERTIES
@given(mutated(PRIVILEGED, under=("request", "object")))
def test_a_privileged_container_stays_denied_while_it_is_there(
    runtime: GuardRuntime, case: tuple[dict[str, Any], str, tuple[Any, ...]]
) -> None:
    review, how, path = case
    allowed, code = answer(runtime, review)
    assert code in (200, 400, 403), (how, path, code)
    if allowed:
        assert not privileged_container_is_there(review["request"].get("object")), (how, path)
