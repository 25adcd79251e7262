"""The plan-level review with real signed attestations over real plan files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.attest import dsse
from controller.attest.keys import load_private_key
from controller.attest.statement import ChangeReview, build_statement, utc
from tests.terraform.conftest import REVIEW_POLICIES, RealPlans, findings_by


@dataclass(frozen=True)
class Keys:
    key: Path
    trust: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    from controller.cli import main

    folder = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "ci-attester", "--dir", str(folder)]) == 0
    pem = (folder / "ci-attester.pub").read_text()
    indented = "\n".join(f"        {line}" for line in pem.strip().splitlines())
    trust = folder / "trust.yaml"
    trust.write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: ci}\nspec:\n"
        "  keys:\n    - name: ci-attester\n      role: attester\n      publicKey: |\n"
        f"{indented}\n"
    )
    return Keys(key=folder / "ci-attester.key", trust=trust)


def _attest(guard: Any, keys: Keys, subject: Path, out: Path, approver: str) -> Path:
    run = guard(
        "attest", "review", "--key", keys.key, "--subject-file", subject, "--output", out,
        "--repository", "github.com/example/infra", "--revision", "a" * 40,
        "--target-ref", "refs/heads/main", "--change-id", "42",
        "--author", "alice=github:1001", "--approval", approver,
    )  # fmt: skip
    assert run.code == 0, run.err
    return out


def _check(guard: Any, plan: Path, keys: Keys, envelope: Path, *extra: str) -> tuple[int, Any]:
    run = guard(
        "tf-plan", plan, "--policies", REVIEW_POLICIES, "--format", "json",
        "--trust", keys.trust, "--attestation", envelope, *extra,
    )  # fmt: skip
    return run.code, run.json()


def test_independent_review_of_the_binary_plan_passes(
    guard: Any, real_plans: RealPlans, keys: Keys, tmp_path: Path
) -> None:
    envelope = _attest(guard, keys, real_plans.change, tmp_path / "env.json", "bob=github:1002")
    code, report = _check(guard, real_plans.change, keys, envelope)
    assert code == 0, report["findings"]
    assert report["findings"] == []
    # The passing review names who approved and in which attestation.
    assert (
        report["summary"]["review"] == f"passed: approved by bob in {envelope} (test-plan-review)"
    )


def _self_approved(keys: Keys, subject: Path, out: Path) -> Path:
    """An envelope where alice approves her own change, signed with the
    attester key directly: ``guard attest review`` refuses to make one."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    alice = {"id": "github:1001", "login": "alice", "kind": "human"}
    review = ChangeReview.model_validate(
        {
            "repository": "github.com/example/infra",
            "revision": {"gitCommit": "a" * 40},
            "targetRef": "refs/heads/main",
            "change": {"system": "github", "id": "42", "headRevision": "a" * 40},
            "authors": [alice],
            "approvals": [
                {"reviewer": alice, "reviewedRevision": "a" * 40, "approvedAt": utc(now)}
            ],
            "attester": "ci-attester",
            "attestedAt": utc(now),
            "expiresAt": utc(now + dt.timedelta(days=1)),
        }
    )
    key = load_private_key(keys.key.read_bytes(), str(keys.key), lambda: None)
    payload = build_statement([(subject.name, dsse.sha256_digest(subject.read_bytes()))], review)
    signature = dsse.Signature(key.sign(dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, payload)), key.keyid)
    out.write_bytes(dsse.build(dsse.IN_TOTO_PAYLOAD_TYPE, payload, [signature]).to_json())
    return out


def test_self_approval_is_refused_at_signing_and_rejected_with_its_reason(
    guard: Any, real_plans: RealPlans, keys: Keys, tmp_path: Path
) -> None:
    refused = guard(
        "attest", "review", "--key", keys.key, "--subject-file", real_plans.change,
        "--output", tmp_path / "refused.json",
        "--repository", "github.com/example/infra", "--revision", "a" * 40,
        "--target-ref", "refs/heads/main", "--change-id", "42",
        "--author", "alice=github:1001", "--approval", "alice=github:1001",
    )  # fmt: skip
    assert refused.code == 2 and "is also an author" in refused.err
    envelope = _self_approved(keys, real_plans.change, tmp_path / "env.json")
    code, report = _check(guard, real_plans.change, keys, envelope)
    assert code == 1
    review = findings_by(report)[("test-plan-review", str(real_plans.change))]
    assert review["rule"] == "review" and review["denies"]
    assert any("alice" in reason for reason in review["reasons"]), review["reasons"]


def test_review_of_another_plan_does_not_count(
    guard: Any, real_plans: RealPlans, keys: Keys, tmp_path: Path
) -> None:
    envelope = _attest(guard, keys, real_plans.create, tmp_path / "env.json", "bob=github:1002")
    code, report = _check(guard, real_plans.change, keys, envelope)
    assert code == 1
    assert report["summary"]["review"].startswith("failed")


def test_review_of_json_only_needs_accept_json_review(
    guard: Any, real_plans: RealPlans, keys: Keys, tmp_path: Path
) -> None:
    envelope = _attest(
        guard, keys, real_plans.change_json, tmp_path / "env.json", "bob=github:1002"
    )
    code, report = _check(guard, real_plans.change_json, keys, envelope)
    assert code == 1
    assert "only the plan JSON was given" in report["summary"]["review"]
    code, report = _check(guard, real_plans.change_json, keys, envelope, "--accept-json-review")
    assert code == 0, report["findings"]
    assert any("accepted over the JSON" in note for note in report["notes"])
