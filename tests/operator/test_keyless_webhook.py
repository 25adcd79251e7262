"""Keyless through the webhook: a real GitHub artifact attestation (a
Sigstore bundle) as a ReviewAttestation, the review of its commit in the
workload's annotation; verified offline by the running operator, and denied
with the identity's reason under a trust that pins another repository id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attest.chains import ChainKeys
from tests.attest.test_keyless import PUBLIC_GOOD, REUSABLE, github_identity
from tests.cli.test_keyless_chain import COMMIT, DIGEST, commit_review, keyless_policy
from tests.kube.helpers import admission_review, attestation_resource, workload, write_documents
from tests.operator.harness import EmulatedApi, RunningGuard, Tls, serve_settings

WAIT = 10.0


@pytest.fixture(scope="module")
def chain_keys() -> ChainKeys:
    return ChainKeys.make()


def _trust(keys: ChainKeys, **identity: Any) -> dict[str, Any]:
    document = keys.trust_document()
    document["spec"]["trustedRoots"] = [{"name": "public-good", "trustedRoot": PUBLIC_GOOD}]
    document["spec"]["identities"] = [github_identity(**identity)]
    return document


@pytest.fixture(scope="module")
def keyless_guard(
    emulated_api: EmulatedApi,
    guard_tls: Tls,
    tmp_path_factory: pytest.TempPathFactory,
    chain_keys: ChainKeys,
) -> Iterator[RunningGuard]:
    directory = tmp_path_factory.mktemp("keyless")
    policy = keyless_policy()
    policy["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["keyless-*"]}}}
    policies = write_documents(directory / "policies.yaml", [policy])
    trust = write_documents(directory / "trust.yaml", [_trust(chain_keys)])
    running = RunningGuard(
        emulated_api, guard_tls, serve_settings(policies, trust, guard_tls, directory / "a.jsonl")
    )
    running.start()
    yield running
    running.stop()


def _deploy(namespace: str, envelopes: list[Any]) -> Any:
    annotations = {"guard.dev/attestations": json.dumps(envelopes)}
    image = f"ghcr.io/malancas/demo@{DIGEST}"
    return admission_review(
        workload("Deployment", "demo", namespace, image, annotations=annotations)
    )


def test_webhook_admits_an_image_through_a_keyless_provenance_resource(
    keyless_guard: RunningGuard, chain_keys: ChainKeys
) -> None:
    namespace = "keyless-prod"
    keyless_guard.api.create(
        "reviewattestations", attestation_resource("provenance", namespace, REUSABLE.decode())
    )
    assert keyless_guard.runtime.watch_log.wait_for(
        "ReviewAttestation", namespace, "provenance", "ADDED", WAIT
    )
    answer = keyless_guard.post(_deploy(namespace, [commit_review(chain_keys)]))
    assert answer.allowed, answer.message


def test_webhook_names_the_broken_keyless_link(
    keyless_guard: RunningGuard, chain_keys: ChainKeys
) -> None:
    """Without the review of the built commit, the provenance alone does not admit."""
    namespace = "keyless-missing"
    answer = keyless_guard.post(_deploy(namespace, [json.loads(REUSABLE)]))
    assert not answer.allowed
    assert answer.code == 403
    assert f"commit {COMMIT[:12]} has no accepted review" in answer.message
