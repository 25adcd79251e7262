"""Plans are read strictly: every way to make a failing plan read as a passing
one, or to crash the reader, is an input error (exit 2, one line)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError
from controller.terraform import planfile
from controller.terraform.normalize import MAX_VALUE_DEPTH, normalize
from controller.terraform.planfile import parse_plan_json
from controller.terraform.sensitive import SENSITIVE_MASK
from tests.terraform.conftest import PLANS, TEST_POLICIES, RealPlans

# One line, as terraform show -json writes it (and as the edits below expect).
FAILING = json.dumps(json.loads((PLANS / "aws-failing.json").read_text()))
AWS_POLICIES = Path(__file__).parent / "aws-policies"


def _one_line_error(run: Any, *fragments: str) -> str:
    assert run.code == 2, run.out
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _write(tmp_path: Path, text: str, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _failing() -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(FAILING)
    return plan


def test_the_failing_fixture_denies(guard: Any, tmp_path: Path) -> None:
    # The baseline every mutation below is measured against.
    assert guard("tf-plan", _write(tmp_path, FAILING), "--policies", AWS_POLICIES).code == 1


# ----------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        # A trailing empty list would leave Python's json with zero resources.
        (lambda text: text.rstrip()[:-1] + ', "resource_changes": []}', "resource_changes"),
        (lambda text: text.replace('"acl": "public-read"', '"acl": "public-read", "acl": "private"'), "acl"),
        (lambda text: text.replace('"actions": ["create"]', '"actions": ["create"], "actions": ["no-op"]', 1), "actions"),
        (lambda text: text.replace('"format_version": "1.2"', '"format_version": "1.2", "format_version": "1.3"'), "format_version"),
    ],
    ids=["trailing-resource-changes", "attribute", "actions", "format-version"],
)  # fmt: skip
def test_duplicate_keys_are_input_errors(guard: Any, tmp_path: Path, edit: Any, key: str) -> None:
    text = edit(FAILING)
    assert text != FAILING
    run = guard("tf-plan", _write(tmp_path, text), "--policies", AWS_POLICIES)
    _one_line_error(run, "duplicate key", repr(key))


# ------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("literal", "problem"),
    [
        ("NaN", "NaN is not valid JSON"),
        ("Infinity", "Infinity is not valid JSON"),
        ("-Infinity", "-Infinity is not valid JSON"),
        ("1e400", "not a finite number"),
        ("-1e400", "not a finite number"),
        ("9" * 4301, "number too long"),
        ("-" + "9" * 10_000, "number too long"),
    ],
    ids=["nan", "infinity", "minus-infinity", "overflow", "minus-overflow", "4301-digits", "huge"],
)
def test_numbers_that_are_not_plain_json_are_input_errors(
    guard: Any, tmp_path: Path, literal: str, problem: str
) -> None:
    text = FAILING.replace('"allocated_storage": 20', f'"allocated_storage": {literal}')
    assert text != FAILING
    run = guard("tf-plan", _write(tmp_path, text), "--policies", AWS_POLICIES)
    _one_line_error(run, problem)


def test_long_integers_are_refused_even_when_the_interpreter_allows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reader relies on the interpreter's digit limit only when it is as strict.
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(InputError, match="number too long"):
            parse_plan_json("p", FAILING.replace("20", "9" * 5000, 1).encode())
    finally:
        sys.set_int_max_str_digits(previous)


def test_a_plan_at_the_integer_limit_reads() -> None:
    text = FAILING.replace('"allocated_storage": 20', '"allocated_storage": ' + "9" * 4300)
    plan = parse_plan_json("p", text.encode())
    assert isinstance(plan["resource_changes"], list)


# ---------------------------------------------------------------- format_version


@pytest.mark.parametrize(
    "version",
    ["1.\u0661", "\u0661.2", "1.2 ", " 1.2", "1.", "1.2.3", "1.+2", "1.-1", "1.２", "01.2", "0.3"],
)
def test_format_versions_guard_does_not_know_are_refused(
    guard: Any, tmp_path: Path, version: str
) -> None:
    plan = _failing()
    plan["format_version"] = version
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, "is not one guard knows")


@pytest.mark.parametrize("version", ["0.1", "0.2", "1.0", "1.2", "1.10", "1.999"])
def test_known_format_versions_read(version: str) -> None:
    plan = _failing()
    plan["format_version"] = version
    assert planfile.check_format_version("p", plan) == version


# ------------------------------------------------------------------ completeness


def _real(real_plans: RealPlans) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(real_plans.create_json.read_text())
    return plan


def test_planned_values_without_resource_changes_is_an_input_error(
    guard: Any, tmp_path: Path, real_plans: RealPlans
) -> None:
    plan = _real(real_plans)
    del plan["resource_changes"]
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", TEST_POLICIES)
    _one_line_error(run, "planned_values has", "resource_changes has no entry")


def test_a_resource_cut_from_resource_changes_is_an_input_error(
    guard: Any, tmp_path: Path, real_plans: RealPlans
) -> None:
    plan = _real(real_plans)
    kept = [
        c for c in plan["resource_changes"] if c["address"] != 'terraform_data.network["staging"]'
    ]
    assert len(kept) == len(plan["resource_changes"]) - 1
    plan["resource_changes"] = kept
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", TEST_POLICIES)
    _one_line_error(run, 'planned_values has terraform_data.network["staging"]')


def test_a_module_resource_cut_from_both_views_is_caught_by_the_configuration(
    guard: Any, tmp_path: Path, real_plans: RealPlans
) -> None:
    plan = _real(real_plans)
    cut = "module.database.terraform_data.primary"
    plan["resource_changes"] = [c for c in plan["resource_changes"] if c["address"] != cut]
    for module in plan["planned_values"]["root_module"].get("child_modules", []):
        module["resources"] = [r for r in module["resources"] if r["address"] != cut]
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", TEST_POLICIES)
    _one_line_error(run, f"the configuration declares {cut}", "-target")


def test_count_and_for_each_resources_may_have_no_instances(real_plans: RealPlans) -> None:
    # terraform_data.network (for_each) and .worker (count) can legitimately be empty.
    plan = _real(real_plans)
    expanding = ("terraform_data.network", "terraform_data.worker")
    plan["resource_changes"] = [
        c for c in plan["resource_changes"] if not c["address"].startswith(expanding)
    ]
    plan["planned_values"]["root_module"]["resources"] = [
        r for r in plan["planned_values"]["root_module"]["resources"]
        if not r["address"].startswith(expanding)
    ]  # fmt: skip
    normalized = normalize(plan, "p", "sha256:0")
    assert {s.address for s in normalized.resources} == {
        "terraform_data.legacy",
        "module.database.terraform_data.primary",
    }


def test_a_targeted_plan_needs_only_its_planned_values(real_plans: RealPlans) -> None:
    plan = _real(real_plans)
    only = "terraform_data.legacy"
    plan["resource_changes"] = [c for c in plan["resource_changes"] if c["address"] == only]
    plan["planned_values"] = {
        "root_module": {
            "resources": [
                r
                for r in plan["planned_values"]["root_module"]["resources"]
                if r["address"] == only
            ]
        }
    }
    with pytest.raises(InputError, match="the configuration declares"):
        normalize(plan, "p", "sha256:0")
    assert [s.address for s in normalize(plan, "p", "sha256:0", targeted=True).resources] == [only]


def test_a_resource_listed_twice_is_an_input_error(guard: Any, tmp_path: Path) -> None:
    plan = _failing()
    plan["resource_changes"].append(dict(plan["resource_changes"][0]))
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, "lists aws_s3_bucket.logs more than once")


def test_a_deposed_object_is_not_a_duplicate() -> None:
    plan = _failing()
    deposed = json.loads(json.dumps(plan["resource_changes"][0]))
    deposed["deposed"] = "00000001"
    deposed["change"]["actions"] = ["delete"]
    plan["resource_changes"].append(deposed)
    addresses = [s.address for s in normalize(plan, "p", "sha256:0").resources]
    assert "aws_s3_bucket.logs (deposed object 00000001)" in addresses
    assert "aws_s3_bucket.logs" in addresses


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p: p.__setitem__("planned_values", []), "planned_values is not an object"),
        (lambda p: p["planned_values"].__setitem__("root_module", {"resources": {}}), "resources is not a list"),
        (lambda p: p["planned_values"].__setitem__("root_module", {"resources": [{}]}), "has no address"),
        (lambda p: p["planned_values"].__setitem__("root_module", {"child_modules": [1]}), "child_modules[0] is not an object"),
        (lambda p: p.__setitem__("configuration", {"root_module": {"module_calls": []}}), "module_calls is not an object"),
        (lambda p: p.__setitem__("deferred_changes", [{"resource_change": {}}]), "deferred_changes[0] has no address"),
        (lambda p: p["resource_changes"][0].__setitem__("action_reason", 7), "action_reason is not a string"),
        (lambda p: p["resource_changes"][0].__setitem__("deposed", 7), "deposed is not a string"),
    ],
    ids=["planned-values", "resources", "address", "child-module", "module-calls", "deferred", "reason", "deposed"],
)  # fmt: skip
def test_malformed_plan_views_are_input_errors(
    guard: Any, tmp_path: Path, edit: Any, problem: str
) -> None:
    plan = _failing()
    edit(plan)
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, problem)


def test_module_trees_deeper_than_the_limit_are_input_errors() -> None:
    plan = _failing()
    module: dict[str, Any] = {}
    plan["planned_values"] = {"root_module": module}
    for _ in range(200):
        child: dict[str, Any] = {}
        module["child_modules"] = [child]
        module = child
    with pytest.raises(InputError, match="modules nest deeper than"):
        normalize(plan, "p", "sha256:0")


# ----------------------------------------------------------- depth, size, unicode


def _nested(depth: int) -> Any:
    value: Any = True
    for _ in range(depth - 1):
        value = {"n": value}
    return {"n": value}


@pytest.mark.parametrize(
    "field", ["before", "after", "after_unknown", "after_sensitive", "before_sensitive"]
)
def test_values_and_masks_nested_too_deeply_are_input_errors(
    guard: Any, tmp_path: Path, field: str
) -> None:
    plan = _failing()
    plan["resource_changes"][0]["change"][field] = _nested(MAX_VALUE_DEPTH + 1)
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, f"change.{field} nests deeper than {MAX_VALUE_DEPTH} levels")


def test_values_at_the_depth_limit_are_judged(guard: Any, tmp_path: Path) -> None:
    plan = _failing()
    plan["resource_changes"][0]["change"]["after"]["tags"] = _nested(MAX_VALUE_DEPTH - 1)
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    assert run.code == 1 and run.err == ""


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_beyond_the_parser_is_an_input_error(
    guard: Any, tmp_path: Path, depth: int
) -> None:
    text = FAILING.rstrip()[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    run = guard("tf-plan", _write(tmp_path, text), "--policies", AWS_POLICIES)
    _one_line_error(run, "nested too deeply")


def test_masks_hold_only_booleans(guard: Any, tmp_path: Path) -> None:
    plan = _failing()
    plan["resource_changes"][0]["change"]["after_unknown"] = {"acl": "true"}
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, "change.after_unknown holds 'true' where a boolean belongs")
    plan["resource_changes"][0]["change"]["after_unknown"] = 1
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    _one_line_error(run, "change.after_unknown is not a boolean, object or list")


def test_a_lone_surrogate_is_an_input_error(guard: Any, tmp_path: Path) -> None:
    text = FAILING.replace('"logs"', '"logs\\ud800"', 1)
    assert text != FAILING
    run = guard("tf-plan", _write(tmp_path, text), "--policies", AWS_POLICIES, "--format", "json")
    _one_line_error(run, "lone UTF-16 surrogate")


def test_surrogate_pairs_are_text(tmp_path: Path) -> None:
    text = FAILING.replace('"logs"', '"logs \\ud83d\\ude00"', 1)
    plan = parse_plan_json("p", text.encode())
    assert "logs \U0001f600" in json.dumps(plan, ensure_ascii=False)


def test_plans_larger_than_the_limit_are_refused(
    guard: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planfile, "MAX_PLAN_BYTES", 1000)
    run = guard("tf-plan", _write(tmp_path, FAILING), "--policies", AWS_POLICIES)
    _one_line_error(run, "larger than 1000 bytes")


# -------------------------------------------------------------- after_sensitive


def test_a_wholly_sensitive_object_is_masked_attribute_by_attribute(
    guard: Any, tmp_path: Path
) -> None:
    plan = _failing()
    change = plan["resource_changes"][0]["change"]
    change["after_sensitive"] = True
    normalized = normalize(plan, "p", "sha256:0")
    subject = normalized.resources[0]
    assert subject.object is not None
    assert set(subject.object) == set(change["after"])
    assert all(v in (SENSITIVE_MASK, None) for v in subject.object.values())
    assert subject.object["bucket"] == SENSITIVE_MASK
    assert change["after"]["bucket"] in normalized.sensitive[subject.address]
    run = guard("tf-plan", _write(tmp_path, json.dumps(plan)), "--policies", AWS_POLICIES)
    assert run.code in (0, 1) and run.err == ""
    assert change["after"]["bucket"] not in run.out


def test_rules_can_judge_real_values_and_reports_be_masked_at_output_time(
    real_plans: RealPlans,
) -> None:
    from dataclasses import replace

    from controller.policy.documents import GuardPolicy
    from controller.policy.engine import Engine
    from controller.policy.results import Decision, Result
    from controller.report import FORMAT_NAMES, ReportContext, render
    from controller.report.redact import redacted

    secret = "example-only-not-a-secret"
    plan = _real(real_plans)
    normalized = normalize(plan, "p.json", "sha256:0", mask_sensitive=False)
    database = "module.database.terraform_data.primary"
    assert secret in normalized.sensitive[database]
    policy = GuardPolicy.model_validate(
        {"apiVersion": "guard.dev/v1alpha1", "kind": "GuardPolicy",
         "metadata": {"name": "knows-the-password"},
         "spec": {"match": {"terraform": {"types": ["terraform_data"]}}, "rules": [
             {"name": "not-the-example", "target": "terraform",
              "expression": f"lookup(after, 'input.password', '') != '{secret}'",
              "messageExpression": "'the password is ' + after.input.password"}]}}
    )  # fmt: skip
    decision = Engine([policy]).decide(normalized.resources)
    [finding] = [f for f in decision.findings if f.address == database]
    # Only the real value can fail this rule: rules judge what Terraform will set...
    assert finding.result is Result.fail
    # ...and a rule that read a sensitive value never echoes it.
    assert finding.message == "the rule failed on a sensitive value (details not shown)"
    leaked = replace(finding, message=f"the password is {secret}")
    masked = redacted(Decision.of([leaked]), normalized.sensitive, marker=SENSITIVE_MASK)
    context = ReportContext("guard tf-plan", "p.json", subjects=normalized.resources)
    for name in FORMAT_NAMES:
        out = render(name, masked, context)
        assert secret not in out
        assert f"the password is {SENSITIVE_MASK}" in out
