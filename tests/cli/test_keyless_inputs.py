"""Sigstore bundles wherever an envelope goes: ``guard tf-plan
--attestation``, the ReviewAttestation index and the workload annotation.

The bundles here come from the tests' own Sigstore authority
(tests/attest/sigstore_authority.py): a review signed keyless for a plan
file's digest is something no public bundle holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from controller.attest import fulcio
from controller.kube.envelopes import ANNOTATION, annotation_envelopes, index_entries
from tests.attest.helpers import policy_document, statement
from tests.attest.sigstore_authority import Authority
from tests.attest.test_keyless import SHOP
from tests.cli.conftest import PASSING_PLAN, Guard
from tests.kube.helpers import write_documents

START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority(START)


def _trust(authority: Authority) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardTrust",
        "metadata": {"name": "keyless"},
        "spec": {
            "trustedRoots": [{"name": "acme-sigstore", "trustedRoot": authority.trusted_root()}],
            "identities": [
                {
                    "name": "shop-release",
                    "role": "attester",
                    "root": "acme-sigstore",
                    "issuer": "https://token.actions.githubusercontent.com",
                    "github": {
                        "repository": "acme/shop",
                        "repositoryId": "4242",
                        "refs": ["refs/heads/main"],
                        "workflow": ".github/workflows/release.yml",
                    },
                }
            ],
        },
    }


def _tf_plan(guard: Guard, tmp_path: Path, authority: Authority, **changes: Any) -> Any:
    plan = tmp_path / "plan.json"
    plan.write_bytes(PASSING_PLAN.read_bytes())
    digest = "sha256:" + hashlib.sha256(plan.read_bytes()).hexdigest()
    document = policy_document(attesters=["shop-release"], requireKeyless=["attester"])
    policy = write_documents(tmp_path / "policy.yaml", [document])
    trust = write_documents(tmp_path / "trust.yaml", [_trust(authority)])
    review = json.loads(statement(digests=(digest,)))
    envelopes = tmp_path / "envelopes"
    envelopes.mkdir()
    (envelopes / "review.sigstore.json").write_bytes(
        authority.bundle(review, extensions={**SHOP, **changes})
    )
    return guard(
        "tf-plan", plan, "--policies", policy, "--trust", trust, "--attestation", envelopes,
        "--accept-json-review", "--format", "json",
    )  # fmt: skip


def test_tf_plan_accepts_a_review_signed_keyless(
    guard: Guard, tmp_path: Path, authority: Authority
) -> None:
    run = _tf_plan(guard, tmp_path, authority)
    assert run.code == 0, run.out


def test_tf_plan_names_the_identity_mismatch(
    guard: Guard, tmp_path: Path, authority: Authority
) -> None:
    run = _tf_plan(guard, tmp_path, authority, **{fulcio.SOURCE_REPOSITORY_ID: "9999"})
    assert run.code == 1
    assert "source repository id is 9999, not 4242" in run.out


def test_the_index_and_the_annotation_read_bundles(authority: Authority) -> None:
    digest = "sha256:" + "c" * 64
    raw = authority.bundle(json.loads(statement(digests=(digest,))), extensions=SHOP)
    entries, problem = index_entries(raw.decode(), "ReviewAttestation shop/r1", "shop")
    assert problem is None
    assert list(entries) == [digest]
    workload = {"metadata": {"annotations": {ANNOTATION: json.dumps([json.loads(raw)])}}}
    texts, problems = annotation_envelopes("Pod", workload)
    assert problems == []
    assert [json.loads(t) for t in texts] == [json.loads(raw)]
