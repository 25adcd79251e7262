"""Provider-shaped AWS plans: findings, old formats, exceptions, the bundled policies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from controller.policy.bundled import bundled_policies_path
from controller.policy.loader import load_bundle
from tests.terraform.conftest import AWS_POLICIES, PLANS, REVIEW_POLICIES, findings_by

FAILING = PLANS / "aws-failing.json"
PASSING = PLANS / "aws-passing.json"
SECRETS = ("correct-horse-battery", "previous-secret-value")


def _report(guard: Any, plan: Path, *extra: Any) -> tuple[int, dict[str, Any]]:
    run = guard("tf-plan", plan, "--policies", AWS_POLICIES, "--format", "json", *extra)
    assert run.err == ""
    return run.code, run.json()


def test_failing_plan_findings(guard: Any) -> None:
    code, report = _report(guard, FAILING)
    assert code == 1
    denied = {(f["policy"], f["rule"], f["address"]) for f in report["findings"] if f["denies"]}
    assert denied == {
        ("aws-public-bucket", "private-acl", "aws_s3_bucket.logs"),
        ("aws-public-bucket", "private-acl", "aws_s3_bucket_acl.logs"),
        ("aws-open-ssh", "no-world-ssh", "module.network.aws_security_group.ssh"),
        ("aws-encryption", "rds-encrypted", "aws_db_instance.reporting"),
        ("aws-encryption", "ebs-encrypted", "aws_ebs_volume.scratch[0]"),
        ("aws-iam-admin", "no-star-star", "aws_iam_policy.admin"),
        ("aws-protected-database", "keep-protected", "aws_db_instance.orders"),
    }
    found = findings_by(report)
    assert found[("aws-protected-database", "aws_db_instance.orders")]["message"] == (
        "the plan would delete database orders, which has deletion protection"
    )
    assert found[("aws-replacement", "aws_instance.web")]["action"] == "warn"
    assert found[("aws-forget", "aws_s3_bucket.archive")]["message"].endswith("acme-archive")
    # Line numbers point at the resource's entry in the pretty-printed plan.
    lines = FAILING.read_text().splitlines()
    orders = found[("aws-protected-database", "aws_db_instance.orders")]
    assert orders["location"] == str(FAILING)
    assert '"aws_db_instance.orders"' in lines[orders["line"] - 1]


def test_unknown_values_give_no_false_failure(guard: Any) -> None:
    code, report = _report(guard, PASSING)
    assert code == 0
    assert not any(f["denies"] for f in report["findings"])
    found = findings_by(report)
    unknown = found[("aws-open-ssh", 'aws_security_group_rule.app["https"]')]
    assert unknown["result"] == "unknown" and unknown["action"] == "warn"
    # The bucket's ACL is known only after apply: it could be public-read, so
    # the rule is unknown (a warning), never a silent pass.
    acl = found[("aws-public-bucket", "aws_s3_bucket.logs")]
    assert acl["rule"] == "private-acl" and acl["result"] == "unknown"
    assert {f["result"] for f in report["findings"] if not f["denies"]} <= {"unknown", "fail"}
    assert report["summary"]["unknownResults"] == 3


@pytest.mark.parametrize("name", ["format-0.1.json", "format-0.2.json"])
def test_old_plan_formats_are_read(guard: Any, name: str) -> None:
    code, report = _report(guard, PLANS / name)
    assert code == 1
    denied = {(f["policy"], f["address"].split(".")[-2]) for f in report["findings"] if f["denies"]}
    assert denied == {("aws-open-ssh", "aws_security_group"), ("aws-encryption", "aws_db_instance")}


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_sensitive_values_are_masked_in_every_format(guard: Any, fmt: str) -> None:
    run = guard("tf-plan", FAILING, "--policies", AWS_POLICIES, "--format", fmt)
    for secret in SECRETS:
        assert secret not in run.out
    assert "password is (sensitive value)" in run.out


def _exceptions(tmp_path: Path, *documents: tuple[str, str, str, dt.date]) -> Path:
    text = ""
    for name, policy, target, expires in documents:
        text += (
            "---\napiVersion: guard.dev/v1alpha1\nkind: GuardException\n"
            f"metadata: {{name: {name}}}\nspec:\n  policy: {policy}\n  target: '{target}'\n"
            f"  reason: scratch data only\n  owner: team-data\n  expires: {expires.isoformat()}\n"
        )
    path = tmp_path / "exceptions.yaml"
    path.write_text(text)
    return path


def test_exceptions_waive_only_their_address_and_are_listed(guard: Any, tmp_path: Path) -> None:
    future = dt.date.today() + dt.timedelta(days=30)
    past = dt.date.today() - dt.timedelta(days=1)
    exceptions = _exceptions(
        tmp_path,
        ("scratch-volumes", "aws-encryption", "aws_ebs_volume.scratch[*]", future),
        ("old-waiver", "aws-iam-admin", "aws_iam_policy.admin", past),
        ("exact-acl", "aws-public-bucket", "aws_s3_bucket_acl.logs", future),
    )
    code, report = _report(guard, FAILING, "--exceptions", exceptions)
    found = findings_by(report)
    assert code == 1
    assert found[("aws-encryption", "aws_ebs_volume.scratch[0]")]["exception"] == "scratch-volumes"
    assert not found[("aws-encryption", "aws_ebs_volume.scratch[0]")]["denies"]
    # The same policy at another address is not hidden.
    assert found[("aws-encryption", "aws_db_instance.reporting")]["denies"]
    assert found[("aws-public-bucket", "aws_s3_bucket_acl.logs")]["exception"] == "exact-acl"
    assert found[("aws-public-bucket", "aws_s3_bucket.logs")]["denies"]
    # Expired: no longer applies, and the report says so.
    assert found[("aws-iam-admin", "aws_iam_policy.admin")]["denies"]
    assert any("'old-waiver'" in n and "expired" in n for n in report["notes"])
    applied = {e["name"]: e for e in report["exceptionsApplied"]}
    assert set(applied) == {"scratch-volumes", "exact-acl"}
    assert applied["scratch-volumes"]["addresses"] == ["aws_ebs_volume.scratch[0]"]
    assert applied["scratch-volumes"]["owner"] == "team-data"

    for fmt, marker in (
        ("text", "scratch-volumes"),
        ("sarif", "suppressions"),
        ("junit", "skipped"),
    ):
        run = guard(
            "tf-plan", FAILING, "--policies", AWS_POLICIES, "--format", fmt,
            "--exceptions", exceptions,
        )  # fmt: skip
        assert "scratch-volumes" in run.out and marker in run.out


def test_exceptions_never_waive_review(guard: Any, tmp_path: Path) -> None:
    exceptions = _exceptions(
        tmp_path,
        ("skip-review", "test-plan-review", "*", dt.date.today() + dt.timedelta(days=1)),
    )
    run = guard(
        "tf-plan", PASSING, "--policies", REVIEW_POLICIES, "--format", "json",
        "--exceptions", exceptions, "--accept-json-review",
    )  # fmt: skip
    report = run.json()
    assert run.code == 1
    review = findings_by(report)[("test-plan-review", str(PASSING))]
    assert review["exception"] is None and review["denies"]
    assert any("exceptions never waive review" in n for n in report["notes"])
    assert report["exceptionsApplied"] == []


def _bundle_has_terraform_policies() -> bool:
    try:
        bundle = load_bundle(bundled_policies_path())
    except Exception:
        return False
    return any(p.spec.match.terraform is not None and p.spec.rules for p in bundle.policies)


@pytest.mark.skipif(not _bundle_has_terraform_policies(), reason="policies/ has no Terraform rules")
def test_bundled_policies_run_on_the_aws_fixtures(guard: Any) -> None:
    run = guard("tf-plan", FAILING, "--format", "json")
    assert run.err == ""
    report = run.json()
    assert run.code == 1
    assert report["summary"]["resources"] == 10
    denied = {f["address"] for f in report["findings"] if f["denies"]}
    assert "aws_s3_bucket.logs" in denied
    # The bundle's review requirement covers the plan; over JSON only it cannot pass.
    assert report["summary"]["review"].startswith(("failed", "error", "not required"))
    passing = guard("tf-plan", PASSING, "--format", "json").json()
    rule_denials = [f for f in passing["findings"] if f["denies"] and f["rule"] != "review"]
    assert rule_denials == []
