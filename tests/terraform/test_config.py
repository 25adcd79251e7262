"""``guard tf-config``: .tf files before a plan, unknowns never a failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.terraform.config import config_address, read_config
from controller.terraform.hcl import UNKNOWN, reference, resolve
from controller.terraform.normalize import SENSITIVE_MASK
from tests.terraform.conftest import EXAMPLE_CONFIG, TEST_POLICIES, RealPlans, findings_by


def test_example_config_subjects_and_resolution() -> None:
    config = read_config(EXAMPLE_CONFIG)
    subjects = {s.address: s for s in config.subjects}
    # count and for_each expanded, addressed as in the plan.
    assert set(subjects) == {
        'terraform_data.network["production"]',
        'terraform_data.network["staging"]',
        "terraform_data.worker[0]",
        "terraform_data.worker[1]",
        "terraform_data.legacy",
        "module.database.terraform_data.primary",
    }
    primary = subjects["module.database.terraform_data.primary"]
    assert primary.object is not None
    # Module inputs from a variable default, a literal local, and a literal.
    assert primary.object["input"]["engine_version"] == "15"
    assert primary.object["input"]["owner"] == "platform"
    assert primary.object["input"]["deletion_protection"] is True
    assert primary.object["input"]["password"] == SENSITIVE_MASK
    assert primary.location is not None and primary.location.endswith("modules/database/main.tf")
    # each.key and the conditional over it, resolved per instance.
    staging = subjects['terraform_data.network["staging"]']
    assert staging.object is not None and staging.unknowns == ()
    assert staging.object["input"]["name"] == "staging"
    assert staging.object["input"]["ingress_cidr"] == "0.0.0.0/0"
    production = subjects['terraform_data.network["production"]']
    assert production.object is not None
    assert production.object["input"]["ingress_cidr"] == "10.0.0.0/8"
    for index in (0, 1):
        worker = subjects[f"terraform_data.worker[{index}]"]
        assert worker.object is not None and worker.object["input"]["index"] == index
        # Another resource's id is known only after apply.
        assert worker.unknowns == ("input.network",)
        assert "count" not in worker.object
    assert config.uncertain == frozenset()
    assert 0 < config.unknown_attributes < config.total_attributes


def test_config_and_plan_agree_on_the_example(guard: Any, real_plans: RealPlans) -> None:
    def verdicts(*argv: Any) -> set[tuple[str, str, str, bool]]:
        run = guard(*argv, "--policies", TEST_POLICIES, "--format", "json")
        return {
            (f["policy"], f["address"], f["result"], f["denies"])
            for f in run.json()["findings"]
            if f["policy"] != "test-password-length"  # the plan masks what config cannot know
        }

    from_config = verdicts("tf-config", EXAMPLE_CONFIG)
    from_plan = verdicts("tf-plan", real_plans.create)
    assert from_config == from_plan
    assert ("test-open-ingress", 'terraform_data.network["staging"]', "fail", True) in from_config


def test_unknown_config_values_are_never_failures(guard: Any) -> None:
    run = guard("tf-config", EXAMPLE_CONFIG, "--policies", TEST_POLICIES, "--format", "json")
    report = run.json()
    assert run.code == 1  # the staging network is open to the world, as in the plan
    worker = findings_by(report)[("test-worker-network", "terraform_data.worker[0]")]
    assert worker["result"] == "unknown" and not worker["denies"]
    share = [n for n in report["notes"] if "could not be resolved" in n]
    assert len(share) == 1 and "%" in share[0]
    assert "example-only-not-a-secret" not in run.out


def test_literal_violation_fails_with_file_and_line(guard: Any, tmp_path: Path) -> None:
    (tmp_path / "net.tf").write_text(
        'locals {\n  anywhere = "0.0.0.0/0"\n}\n\n'
        'variable "port" {\n  default = 22\n}\n\n'
        'resource "terraform_data" "open" {\n'
        "  input = {\n    ingress_cidr = local.anywhere\n    ingress_port = var.port\n  }\n}\n"
    )
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES, "--format", "sarif")
    assert run.code == 1
    results = json.loads(run.out)["runs"][0]["results"]
    denied = [r for r in results if r["ruleId"] == "test-open-ingress/no-open-ingress"]
    assert len(denied) == 1
    location = denied[0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("net.tf")
    assert location["region"]["startLine"] == 9
    assert "ingress from 0.0.0.0/0 on port 22" in denied[0]["message"]["text"]


def test_tfvars_and_remote_modules(guard: Any, tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'variable "cidr" {\n  default = "10.0.0.0/8"\n}\n'
        'resource "terraform_data" "net" {\n  input = { ingress_cidr = var.cidr }\n}\n'
        'module "vpc" {\n  source = "terraform-aws-modules/vpc/aws"\n}\n'
    )
    (tmp_path / "terraform.tfvars").write_text('cidr = "0.0.0.0/0"\n')
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES, "--format", "json")
    report = run.json()
    assert run.code == 1
    assert findings_by(report)[("test-open-ingress", "terraform_data.net")]["denies"]
    assert any("module.vpc" in n and "not a local folder" in n for n in report["notes"])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [('resource "x" "y" {\n  a = \n}\n', "main.tf:"), ("", "no .tf files")],
)
def test_bad_config_exits_2(guard: Any, tmp_path: Path, content: str, fragment: str) -> None:
    if content:
        (tmp_path / "main.tf").write_text(content)
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES)
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1 and fragment in run.err


def test_resolve_and_reference() -> None:
    variables = {"m": {"k": ["a", "b"]}, "n": 3, "flag": True}

    def lookup(kind: str, name: str) -> Any:
        return variables.get(name, UNKNOWN) if kind == "var" else UNKNOWN

    assert reference('var.m["k"][1]', lookup) == "b"
    assert reference("var.m.k[5]", lookup) is UNKNOWN
    assert reference("upper(var.n)", lookup) == "3"  # Terraform converts the number
    assert reference('format("%d", var.n)', lookup) is UNKNOWN
    assert resolve('"x-${var.n}-${var.flag}"', lookup) == "x-3-true"
    assert resolve('"${var.m}"', lookup) is UNKNOWN
    assert resolve('"%{ if true }x%{ endif }"', lookup) is UNKNOWN
    assert resolve({'"quoted.key"': '"v"', "__is_block__": True}, lookup) == {"quoted.key": "v"}
    assert resolve('"a\\"b"', lookup) == 'a"b'


def test_config_address_strips_instance_keys() -> None:
    assert (
        config_address('module.a[0].module.b["x.y"].aws_s.t["k]"]') == "module.a.module.b.aws_s.t"
    )
    assert config_address("aws_s.t[3] (deposed object ab12)") == "aws_s.t"
