"""Terraform's ``action_reason`` reaches subjects and reports, from real plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from controller.policy.documents import Action
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.report import ReportContext, render
from controller.terraform.normalize import normalize
from controller.terraform.planfile import parse_plan_json
from tests.terraform.conftest import TEST_POLICIES, terraform

CONFIG = """
resource "terraform_data" "tainted" {
  input = { owner = "platform" }
}
resource "terraform_data" "requested" {
  input = { owner = "platform" }
}
resource "terraform_data" "kept" {
  input = { owner = "platform" }
}
"""


@pytest.fixture(scope="module")
def reasons_plan(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    work: Path = tmp_path_factory.mktemp("reasons")
    (work / "main.tf").write_text(CONFIG)
    terraform(["init", "-input=false", "-no-color"], work)
    terraform(["apply", "-input=false", "-no-color", "-auto-approve"], work)
    terraform(["taint", "-no-color", "terraform_data.tainted"], work)
    terraform(
        ["plan", "-input=false", "-no-color", "-replace=terraform_data.requested", "-out=p"], work
    )
    return terraform(["show", "-json", "p"], work).stdout


def test_subjects_carry_action_and_reason(reasons_plan: bytes) -> None:
    plan = parse_plan_json("p.json", reasons_plan)
    subjects = {s.address: s for s in normalize(plan, "p.json", "sha256:0").resources}
    tainted = subjects["terraform_data.tainted"]
    assert tainted.action == "replace" and tainted.change_actions == ("delete", "create")
    assert tainted.action_reason == "replace_because_tainted"
    assert subjects["terraform_data.requested"].action_reason == "replace_by_request"
    kept = subjects["terraform_data.kept"]
    assert kept.action == "no-op" and kept.action_reason is None


def test_the_json_report_lists_every_change_with_its_reason(reasons_plan: bytes) -> None:
    plan = parse_plan_json("p.json", reasons_plan)
    normalized = normalize(plan, "p.json", "sha256:0")
    engine = Engine(load_bundle(TEST_POLICIES).policies, enforcement=Action.deny)
    decision = engine.decide(normalized.resources)
    context = ReportContext("guard tf-plan", "p.json", subjects=normalized.resources)
    report = json.loads(render("json", decision, context))
    listed = {r["address"]: r for r in report["resources"]}
    assert set(listed) == {a["address"] for a in plan["resource_changes"]}
    assert listed["terraform_data.tainted"]["actionReason"] == "replace_because_tainted"
    assert listed["terraform_data.requested"]["actions"] == ["delete", "create"]
    assert listed["terraform_data.kept"]["result"] == "pass"
    text = render("text", decision, context)
    assert "terraform_data.tainted: replace (replace_because_tainted)" in text
