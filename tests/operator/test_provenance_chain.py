"""The chain from image to review through the webhook: build provenance and
the commit's review as ReviewAttestations (indexed by image digest and by
commit), or in the workload's annotation; every broken link denied with its
reason, as kube-apiserver would see it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attest.chains import (
    ACCEPTED,
    IMAGE,
    ChainKeys,
    Scenario,
    chain_policy,
    provenance,
    review,
    scenarios,
    sign,
)
from tests.kube.helpers import admission_review, attestation_resource, workload, write_documents
from tests.operator.harness import EmulatedApi, RunningGuard, Tls, serve_settings

WAIT = 10.0


@pytest.fixture(scope="module")
def chain_keys() -> ChainKeys:
    return ChainKeys.make()


@pytest.fixture(scope="module")
def chain_guard(
    emulated_api: EmulatedApi,
    guard_tls: Tls,
    tmp_path_factory: pytest.TempPathFactory,
    chain_keys: ChainKeys,
) -> Iterator[RunningGuard]:
    directory = tmp_path_factory.mktemp("chain")
    policies = write_documents(directory / "policies.yaml", [chain_policy()])
    trust = write_documents(directory / "trust.yaml", [chain_keys.trust_document()])
    running = RunningGuard(
        emulated_api, guard_tls, serve_settings(policies, trust, guard_tls, directory / "a.jsonl")
    )
    running.start()
    yield running
    running.stop()


def _deploy(scenario: Scenario, namespace: str, envelopes: list[str] | None = None) -> Any:
    annotations = {"guard.dev/attestations": json.dumps(envelopes)} if envelopes else None
    return admission_review(
        workload(
            "Deployment",
            scenario.name,
            namespace,
            f"{IMAGE}@{scenario.digest}",
            annotations=annotations,
        )
    )


def _attest(guard: RunningGuard, name: str, namespace: str, text: str) -> None:
    guard.api.create("reviewattestations", attestation_resource(name, namespace, text))
    assert guard.runtime.watch_log.wait_for("ReviewAttestation", namespace, name, "ADDED", WAIT)


@pytest.mark.parametrize("scenario", [*ACCEPTED, *scenarios()], ids=lambda s: s.name)
def test_webhook_follows_the_chain_in_the_annotation(
    chain_guard: RunningGuard, chain_keys: ChainKeys, scenario: Scenario
) -> None:
    answer = chain_guard.post(_deploy(scenario, "chain-prod", scenario.envelopes(chain_keys)))
    if not scenario.reason:
        assert answer.allowed, answer.message
        return
    assert not answer.allowed
    assert answer.code == 403
    assert scenario.reason in answer.message


@pytest.mark.parametrize("scenario", [*ACCEPTED, *scenarios()[:3]], ids=lambda s: s.name)
def test_webhook_follows_the_chain_through_review_attestations(
    chain_guard: RunningGuard, chain_keys: ChainKeys, scenario: Scenario
) -> None:
    """The provenance is indexed by the image digest and the review by the
    commit: the index finds both, with no API read."""
    namespace = "chain-indexed"
    for index, text in enumerate(scenario.envelopes(chain_keys)):
        _attest(chain_guard, f"{scenario.name}-{index}", namespace, text)
    reads = chain_guard.runtime.fallback.reads
    answer = chain_guard.post(_deploy(scenario, namespace))
    assert chain_guard.runtime.fallback.reads == reads
    if not scenario.reason:
        assert answer.allowed, answer.message
    else:
        assert not answer.allowed
        assert scenario.reason in answer.message


def test_an_index_miss_for_the_commit_costs_a_second_bounded_read(
    chain_guard: RunningGuard, chain_keys: ChainKeys
) -> None:
    scenario = Scenario("racing-review", "")
    namespace = "chain-race"
    _attest(
        chain_guard,
        "racing-provenance",
        namespace,
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit)),
    )
    # The review is stored without a watch event: the index cannot know it yet.
    chain_guard.api.store_silently(
        "reviewattestations",
        attestation_resource(
            "racing-review", namespace, sign(chain_keys.attester, review(scenario.commit))
        ),
    )
    reads = chain_guard.runtime.fallback.reads
    answer = chain_guard.post(_deploy(scenario, namespace))
    assert answer.allowed, answer.message
    assert chain_guard.runtime.fallback.reads == reads + 1


def test_the_audit_record_names_the_chain(chain_guard: RunningGuard, chain_keys: ChainKeys) -> None:
    """Which provenance, commit and review (or source summary) admitted it."""
    for scenario, used in zip(ACCEPTED, ("review", "sourceSummary"), strict=True):
        request = _deploy(scenario, "chain-audit", scenario.envelopes(chain_keys))
        assert chain_guard.post(request).allowed
        path: Path = chain_guard.service.settings.audit_file
        records = [json.loads(line) for line in path.read_text().splitlines()]
        record = next(r for r in records if r["uid"] == request["request"]["uid"])
        chain = json.dumps(record)
        assert f"gitCommit:{scenario.commit}" in chain
        assert f'"{used}": "sha256:' in chain


def test_the_status_of_a_provenance_resource_names_its_builder(
    chain_guard: RunningGuard, chain_keys: ChainKeys
) -> None:
    """Informational only (admission re-verifies): a provenance envelope is
    vouched for by a builder key, not judged as a review."""
    scenario = Scenario("status", "")
    namespace = "chain-status"
    signed_by = {"by-builder": chain_keys.builder, "by-attester": chain_keys.attester}
    for name, key in signed_by.items():
        _attest(
            chain_guard, name, namespace, sign(key, provenance(scenario.digest, scenario.commit))
        )
    statuses = {}
    for name in signed_by:
        assert chain_guard.runtime.watch_log.wait_for(
            "ReviewAttestation", namespace, name, "MODIFIED", WAIT
        )
        statuses[name] = chain_guard.api.get("reviewattestations", name, namespace)["status"]
    assert statuses["by-builder"]["guard"] == {
        "verified": True,
        "subjects": [scenario.digest],
        "reason": "signed by a trusted builder",
    }
    assert statuses["by-attester"]["guard"]["verified"] is False
    assert (
        "not signed by a trusted builder (signed by 'ci' (attester))"
        in (statuses["by-attester"]["guard"]["reason"])
    )
