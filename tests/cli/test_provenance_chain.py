"""The chain from image to review through ``guard attest verify`` and
``guard kube check``: every broken link denied with its own reason."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.attest.chains import (
    ACCEPTED,
    IMAGE,
    REF,
    REPOSITORY,
    ChainKeys,
    Scenario,
    chain_policy,
    provenance,
    review,
    scenarios,
    sign,
)
from tests.cli.conftest import PASSING_PLAN, Guard
from tests.kube.helpers import workload, write_documents


@pytest.fixture(scope="module")
def chain_keys() -> ChainKeys:
    return ChainKeys.make()


@pytest.fixture()
def files(tmp_path: Path, chain_keys: ChainKeys) -> tuple[Path, Path]:
    policy = write_documents(tmp_path / "policy.yaml", [chain_policy()])
    trust = write_documents(tmp_path / "trust.yaml", [chain_keys.trust_document()])
    return policy, trust


def _envelopes(directory: Path, scenario: Scenario, keys: ChainKeys) -> Path:
    directory.mkdir()
    for index, text in enumerate(scenario.envelopes(keys)):
        (directory / f"{index}.json").write_text(text)
    return directory


@pytest.mark.parametrize("scenario", [*ACCEPTED, *scenarios()], ids=lambda s: s.name)
def test_attest_verify_follows_the_chain(
    guard: Guard,
    tmp_path: Path,
    files: tuple[Path, Path],
    chain_keys: ChainKeys,
    scenario: Scenario,
) -> None:
    policy, trust = files
    envelopes = _envelopes(tmp_path / "envelopes", scenario, chain_keys)
    run = guard(
        "attest", "verify", envelopes, "--trust", trust, "--policy", policy,
        "--digest", scenario.digest, "--format", "json",
    )  # fmt: skip
    verdict = json.loads(run.out)
    if not scenario.reason:
        assert run.code == 0, verdict["reasons"]
        assert verdict["verified"] is True
        # Which link covered it, with the envelopes by file name.
        assert verdict["chain"]["commit"] == f"gitCommit:{scenario.commit}"
        assert verdict["chain"]["provenance"] == str(envelopes / "0.json")
        used = "sourceSummary" if scenario.name == "accepted-by-summary" else "review"
        assert verdict["chain"][used] == str(envelopes / "1.json")
        return
    assert run.code == 1
    assert any(scenario.reason in r for r in verdict["reasons"]), verdict["reasons"]


@pytest.mark.parametrize("scenario", [*ACCEPTED, *scenarios()], ids=lambda s: s.name)
def test_kube_check_follows_the_chain(
    guard: Guard,
    tmp_path: Path,
    files: tuple[Path, Path],
    chain_keys: ChainKeys,
    scenario: Scenario,
) -> None:
    policy, trust = files
    envelopes = _envelopes(tmp_path / "envelopes", scenario, chain_keys)
    manifests = tmp_path / "deploy.yaml"
    manifests.write_text(
        yaml.safe_dump(workload("Deployment", "web", "chain-prod", f"{IMAGE}@{scenario.digest}"))
    )
    run = guard(
        "kube", "check", "-f", manifests, "--policies", policy, "--trust", trust,
        "--attestation", envelopes, "--format", "json",
    )  # fmt: skip
    if not scenario.reason:
        assert run.code == 0, run.out
        return
    assert run.code == 1
    assert scenario.reason in run.out


def test_a_review_of_the_image_alone_does_not_count(
    guard: Guard, tmp_path: Path, files: tuple[Path, Path], chain_keys: ChainKeys
) -> None:
    """With review.provenance, the image must come through its build."""
    policy, trust = files
    scenario = Scenario("image-review-only", "")
    statement = review(scenario.commit)
    statement["subject"] = [{"digest": {"sha256": scenario.digest.removeprefix("sha256:")}}]
    (tmp_path / "r.json").write_text(sign(chain_keys.attester, statement))
    run = guard(
        "attest", "verify", tmp_path / "r.json", "--trust", trust, "--policy", policy,
        "--digest", scenario.digest,
    )  # fmt: skip
    assert run.code == 1
    assert f"no build provenance found for {scenario.digest}" in run.out
    assert "a review of the image itself does not count" in run.out


def test_review_subject_commit_round_trip(
    guard: Guard, tmp_path: Path, files: tuple[Path, Path], chain_keys: ChainKeys
) -> None:
    """``attest review --subject-commit`` writes a commit subject that
    ``attest verify --subject-commit`` and the chain accept."""
    policy, trust = files
    key = tmp_path / "ci.key"
    key.write_bytes(chain_keys.attester.private_pem())
    scenario = Scenario("cli-review", "")
    out = tmp_path / "review.json"
    run = guard(
        "attest", "review", "--key", key, "--repository", REPOSITORY, "--target-ref", REF,
        "--revision", scenario.commit, "--head-revision", "a" * 40, "--change-id", "7",
        "--author", "alice=github:1001", "--approval", "bob=github:1002",
        "--subject-commit", scenario.commit.upper(), "--attester", "ci", "-o", out,
    )  # fmt: skip
    assert run.code == 0, run.err
    payload = json.loads(out.read_text())
    assert payload["payloadType"] == "application/vnd.in-toto+json"
    run = guard(
        "attest", "verify", out, "--trust", trust, "--subject-commit", scenario.commit,
    )  # fmt: skip
    assert run.code == 0, run.out
    (tmp_path / "prov.json").write_text(
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit))
    )
    run = guard(
        "attest", "verify", out, tmp_path / "prov.json", "--trust", trust, "--policy", policy,
        "--digest", scenario.digest,
    )  # fmt: skip
    assert run.code == 0, run.out


@pytest.mark.parametrize("value", ["1a2b", "z" * 40, "a" * 41])
def test_subject_commit_must_be_a_full_commit(guard: Guard, tmp_path: Path, value: str) -> None:
    run = guard(
        "attest", "review", "--key", tmp_path / "missing.key", "--repository", "github.com/a/b",
        "--target-ref", "refs/heads/main", "--revision", "a" * 40, "--change-id", "1",
        "--author", "a=github:1", "--subject-commit", value,
    )  # fmt: skip
    assert run.code == 2
    assert "--subject-commit" in run.err
    assert "40 or 64 hexadecimal" in run.err


@pytest.mark.parametrize("scenario", [ACCEPTED[0], *scenarios()[:2]], ids=lambda s: s.name)
def test_tf_plan_follows_the_chain(
    guard: Guard, tmp_path: Path, chain_keys: ChainKeys, scenario: Scenario
) -> None:
    """A plan file built by a pinned builder from a reviewed commit: its
    provenance names the plan's digest, the review names the commit."""
    plan = tmp_path / "plan.json"
    plan.write_bytes(PASSING_PLAN.read_bytes())
    digest = "sha256:" + hashlib.sha256(plan.read_bytes()).hexdigest()
    document = chain_policy()
    document["spec"]["match"] = {"terraform": {"types": ["*"]}}
    policy = write_documents(tmp_path / "policy.yaml", [document])
    trust = write_documents(tmp_path / "trust.yaml", [chain_keys.trust_document()])
    envelopes = tmp_path / "envelopes"
    envelopes.mkdir()
    for index, text in enumerate(_rebound(scenario, digest, chain_keys)):
        (envelopes / f"{index}.json").write_text(text)
    run = guard(
        "tf-plan", plan, "--policies", policy, "--trust", trust, "--attestation", envelopes,
        "--accept-json-review", "--format", "json",
    )  # fmt: skip
    if not scenario.reason:
        assert run.code == 0, run.out
        return
    assert run.code == 1
    assert scenario.reason.replace(scenario.digest, digest) in run.out


def _rebound(scenario: Scenario, digest: str, keys: ChainKeys) -> list[str]:
    """The scenario's envelopes with the plan's digest as the build's subject."""
    texts = []
    for text in scenario.envelopes(keys):
        statement = json.loads(base64.b64decode(json.loads(text)["payload"]).decode())
        if statement["predicateType"].startswith("https://slsa.dev/provenance/"):
            statement["subject"] = [{"name": "plan.json", "digest": {"sha256": digest[7:]}}]
            texts.append(sign(keys.builder, statement))
        else:
            texts.append(text)
    return texts


def test_a_summary_says_it_stands_in_for_named_approvals(
    guard: Guard, tmp_path: Path, files: tuple[Path, Path], chain_keys: ChainKeys
) -> None:
    policy, trust = files
    scenario = ACCEPTED[1]
    envelopes = _envelopes(tmp_path / "envelopes", scenario, chain_keys)
    run = guard(
        "attest", "verify", envelopes, "--trust", trust, "--policy", policy,
        "--digest", scenario.digest,
    )  # fmt: skip
    assert run.code == 0, run.out
    assert f"built from gitCommit:{scenario.commit}" in run.out
    assert "source verification summary" in run.out
    assert "approved by" not in run.out
