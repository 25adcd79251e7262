"""Bad plan inputs exit 2 with one line naming the file and the reason."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.conftest import PLANS, TEST_POLICIES

GOOD = (PLANS / "format-0.2.json").read_text()


def _one_line_error(run: Any, *fragments: str) -> None:
    assert run.code == 2
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (GOOD[: len(GOOD) // 2], ("truncated JSON",)),
        ("this is not json", ("not valid JSON", "line 1")),
        ("", ("empty input",)),
        ("[1, 2]", ("not a Terraform plan", "not an object")),
        ('{"hello": "world"}', ("not a Terraform plan", "no format_version")),
        (
            json.dumps({"format_version": "1.0", "terraform_version": "1.5.0", "values": {}}),
            ("a state file",),
        ),
        (
            json.dumps({"format_version": "2.0", "resource_changes": []}),
            ("format_version '2.0' is not one guard knows",),
        ),
        (
            json.dumps({"format_version": "0.3", "resource_changes": []}),
            ("format_version '0.3'",),
        ),
        (
            json.dumps(
                {
                    "format_version": "1.2",
                    "resource_changes": [
                        {
                            "address": "aws_s3_bucket.a",
                            "type": "aws_s3_bucket",
                            "name": "a",
                            "change": {"actions": ["teleport"], "before": None, "after": {}},
                        }
                    ],
                }
            ),
            ("aws_s3_bucket.a", "unknown action ['teleport']"),
        ),
        (
            json.dumps({"format_version": "1.2", "resource_changes": [{"type": "x"}]}),
            ("resource_changes[0] has no address",),
        ),
        (
            json.dumps({"format_version": "1.2", "resource_changes": {"a": 1}}),
            ("resource_changes is not a list",),
        ),
    ],
    ids=[
        "truncated",
        "not-json",
        "empty",
        "array",
        "not-a-plan",
        "state-file",
        "format-2.0",
        "format-0.3",
        "unknown-action",
        "no-address",
        "changes-not-list",
    ],
)
def test_bad_plan_exits_2_with_one_line(
    guard: Any, tmp_path: Path, content: str, fragments: tuple[str, ...]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    run = guard("tf-plan", plan, "--policies", TEST_POLICIES)
    _one_line_error(run, str(plan), *fragments)


def test_binary_garbage_is_not_a_plan(guard: Any, tmp_path: Path) -> None:
    plan = tmp_path / "plan.bin"
    plan.write_bytes(b"\xff\xfe\x00garbage")
    _one_line_error(guard("tf-plan", plan, "--policies", TEST_POLICIES), "not a plan")


def test_missing_file_and_directory(guard: Any, tmp_path: Path) -> None:
    _one_line_error(
        guard("tf-plan", tmp_path / "nope.json", "--policies", TEST_POLICIES), "cannot read"
    )
    _one_line_error(guard("tf-plan", tmp_path, "--policies", TEST_POLICIES), "is a directory")


def test_broken_zip_plan_reports_terraform_error(guard: Any, tmp_path: Path) -> None:
    pytest.importorskip("shutil").which("terraform") or pytest.skip("terraform is not on PATH")
    plan = tmp_path / "tfplan"
    plan.write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(
        guard("tf-plan", plan, "--policies", TEST_POLICIES), "terraform show -json failed"
    )


def test_stdin_plan(guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (PLANS / "format-0.2.json").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    run = guard("tf-plan", "-", "--policies", TEST_POLICIES, "--format", "json")
    assert run.code == 0
    report = run.json()
    assert report["source"] == "<stdin>"
    assert report["summary"]["resources"] == 2


def test_binary_plan_on_stdin_is_refused(guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"PK\x03\x04rest")))
    _one_line_error(guard("tf-plan", "-", "--policies", TEST_POLICIES), "cannot be read from stdin")


def test_policies_without_terraform_rules_are_refused(guard: Any, tmp_path: Path) -> None:
    policy = tmp_path / "kube.yaml"
    policy.write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardPolicy\nmetadata: {name: k}\n"
        "spec:\n  match: {kubernetes: {}}\n  rules:\n  - {name: r, target: kubernetes, "
        "expression: 'true', message: m}\n"
    )
    run = guard("tf-plan", PLANS / "format-0.2.json", "--policies", policy)
    _one_line_error(run, "no policy matches Terraform")


def test_unknown_output_format_is_usage_error(guard: Any) -> None:
    run = guard(
        "tf-plan", PLANS / "format-0.2.json", "--policies", TEST_POLICIES, "--output", "xml=a.xml"
    )
    _one_line_error(run, "unknown format 'xml'")
