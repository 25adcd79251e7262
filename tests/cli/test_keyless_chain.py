"""A real GitHub artifact attestation (a Sigstore bundle, signed keyless by
GitHub's reusable attestation workflow) links an image to its commit, and a
review of that commit covers the image: through ``guard attest verify`` and
``guard kube check --attestation``, offline."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.attest.statement import utc
from tests.attest.chains import ChainKeys, review, sign
from tests.attest.test_keyless import DATA, PUBLIC_GOOD, github_identity
from tests.cli.conftest import Guard
from tests.kube.helpers import workload, write_documents

REPOSITORY = "github.com/malancas/attest-demo"
REF = "refs/heads/main"
COMMIT = "95baf27389e83e6a5c48f42e190d48d7abcea19e"
DIGEST = "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25"
BUNDLE = DATA / "reusable-workflow-attestation.sigstore.json"


def keyless_policy(**provenance: Any) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": "keyless-builds"},
        "spec": {
            "match": {"kubernetes": {"namespaces": {"include": ["prod"]}}},
            "review": {
                "attesters": ["ci"],
                "repositories": [REPOSITORY],
                "targetRefs": [REF],
                "requireKeyless": ["builder"],
                "provenance": {
                    "builders": ["demo-builder"],
                    "repositories": [{"name": REPOSITORY, "id": "804070735"}],
                    "refs": [REF],
                    "github": {
                        "workflows": [".github/workflows/shared.yml"],
                        "events": ["workflow_dispatch"],
                    },
                    **provenance,
                },
            },
        },
    }


@pytest.fixture(scope="module")
def chain_keys() -> ChainKeys:
    return ChainKeys.make()


def _setup(tmp_path: Path, keys: ChainKeys, policy: dict[str, Any]) -> tuple[Path, Path, Path]:
    trust_document = keys.trust_document()
    trust_document["spec"]["trustedRoots"] = [{"name": "public-good", "trustedRoot": PUBLIC_GOOD}]
    trust_document["spec"]["identities"] = [github_identity()]
    trust = write_documents(tmp_path / "trust.yaml", [trust_document])
    policy_file = write_documents(tmp_path / "policy.yaml", [policy])
    envelopes = tmp_path / "envelopes"
    envelopes.mkdir()
    (envelopes / "provenance.sigstore.json").write_bytes(BUNDLE.read_bytes())
    (envelopes / "review.json").write_text(commit_review(keys))
    return trust, policy_file, envelopes


def commit_review(keys: ChainKeys) -> str:
    """A fresh review of the built commit, signed by the CI attester key."""
    now = dt.datetime.now(dt.UTC)
    statement = review(
        COMMIT,
        repository=REPOSITORY,
        attestedAt=utc(now - dt.timedelta(minutes=10)),
        expiresAt=utc(now + dt.timedelta(days=1)),
    )
    return sign(keys.attester, statement)


def test_attest_verify_accepts_the_keyless_chain(
    guard: Guard, tmp_path: Path, chain_keys: ChainKeys
) -> None:
    trust, policy, envelopes = _setup(tmp_path, chain_keys, keyless_policy())
    run = guard(
        "attest", "verify", envelopes, "--trust", trust, "--policy", policy,
        "--digest", DIGEST, "--format", "json",
    )  # fmt: skip
    verdict = json.loads(run.out)
    assert run.code == 0, verdict["reasons"]
    assert verdict["verified"] is True


def test_kube_check_accepts_the_keyless_chain_and_names_broken_links(
    guard: Guard, tmp_path: Path, chain_keys: ChainKeys
) -> None:
    trust, policy, envelopes = _setup(tmp_path, chain_keys, keyless_policy())
    manifests = tmp_path / "deploy.yaml"
    manifests.write_text(
        yaml.safe_dump(workload("Deployment", "web", "prod", f"ghcr.io/malancas/demo@{DIGEST}"))
    )
    run = guard(
        "kube", "check", "-f", manifests, "--policies", policy, "--trust", trust,
        "--attestation", envelopes, "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.out
    # The same bundle under a policy that pins another repository id.
    other = keyless_policy(repositories=[{"name": REPOSITORY, "id": "1"}])
    (tmp_path / "other").mkdir()
    _, policy, _ = _setup(tmp_path / "other", chain_keys, other)
    run = guard(
        "kube", "check", "-f", manifests, "--policies", policy, "--trust", trust,
        "--attestation", envelopes, "--format", "json",
    )  # fmt: skip
    assert run.code == 1
    assert "804070735" in run.out
