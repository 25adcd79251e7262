"""``guard attest verify`` with a Sigstore bundle as ``--attestation``-style input:
the GitHub artifact attestation is accepted as build provenance by its
keyless identity, so the chain goes on to ask for the commit's review."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.attest.test_keyless import DATA, PUBLIC_GOOD, STAGING, github_identity

DIGEST = "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25"
COMMIT = "95baf27389e83e6a5c48f42e190d48d7abcea19e"


def _trust(root: str) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardTrust",
        "metadata": {"name": "keyless"},
        "spec": {
            "trustedRoots": [{"name": "public-good", "trustedRoot": root}],
            "identities": [github_identity()],
        },
    }


POLICY = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "built-from-reviewed-commits"},
    "spec": {
        "match": {"kubernetes": {}},
        "review": {
            "attesters": ["ci"],
            "repositories": ["github.com/malancas/attest-demo"],
            "targetRefs": ["refs/heads/main"],
            "requireKeyless": ["builder"],
            "provenance": {
                "builders": ["demo-builder"],
                "repositories": [{"name": "github.com/malancas/attest-demo", "id": "804070735"}],
                "refs": ["refs/heads/main"],
                "github": {
                    "workflows": [".github/workflows/shared.yml"],
                    "events": ["workflow_dispatch"],
                },
            },
        },
    },
}


def _verify(tmp_path: Path, root: str) -> subprocess.CompletedProcess[str]:
    trust = tmp_path / "trust.yaml"
    trust.write_text(yaml.safe_dump(_trust(root)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "attest",
            "verify",
            "--trust",
            str(trust),
            "--policy",
            str(policy),
            "--digest",
            DIGEST,
            "--format",
            "json",
            str(DATA / "reusable-workflow-attestation.sigstore.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_keyless_provenance_links_the_image_to_its_commit(tmp_path: Path) -> None:
    result = _verify(tmp_path, PUBLIC_GOOD)
    assert result.returncode == 1, result.stderr
    text = json.dumps(json.loads(result.stdout))
    # The provenance link held (signed by the identity, matched the policy);
    # what is missing is the review of the built commit.
    assert f"commit {COMMIT[:12]}" in text
    assert "has no accepted review" in text
    assert "does not verify" not in text


def test_under_another_root_the_bundle_is_not_signed(tmp_path: Path) -> None:
    result = _verify(tmp_path, STAGING)
    assert result.returncode == 1, result.stderr
    text = json.dumps(json.loads(result.stdout))
    assert "does not verify against trusted root 'public-good'" in text
