"""``guard tf-config`` expands count and for_each as Terraform would: one subject
per instance, none for a resource Terraform would never create, unknown when
the instances cannot be known; hostile configurations fail in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.policy.documents import Action
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.policy.results import Result
from controller.terraform import config as config_module
from controller.terraform.addresses import instance_key
from controller.terraform.config import UNCERTAIN_EXISTENCE, ConfigResult, read_config
from tests.terraform.conftest import TEST_POLICIES

OPEN = 'input = { ingress_cidr = "0.0.0.0/0", ingress_port = 22 }'


def _config(tmp_path: Path, text: str, **files: str) -> ConfigResult:
    (tmp_path / "main.tf").write_text(text)
    for name, content in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return read_config(tmp_path)


def _addresses(result: ConfigResult) -> list[str]:
    return [s.address for s in result.subjects]


@pytest.mark.parametrize(
    "meta",
    [
        "count = 0",
        "count = var.create ? 1 : 0",
        'count = var.env == "prod" ? 3 : 0',
        "count = length(var.none)",
        "for_each = toset([])",
        "for_each = {}",
        "for_each = var.create ? toset([\"a\"]) : toset([])",
        "for_each = { for k, v in {} : k => v }",  # unknown: a for expression
    ],
    ids=["zero", "false-conditional", "comparison", "length", "empty-set", "empty-map",
         "conditional-set", "for-expression"],
)  # fmt: skip
def test_resources_terraform_would_never_create_are_not_judged(tmp_path: Path, meta: str) -> None:
    result = _config(
        tmp_path,
        'variable "create" {\n  default = false\n}\n'
        'variable "env" {\n  default = "dev"\n}\n'
        'variable "none" {\n  default = []\n}\n'
        f'resource "terraform_data" "open" {{\n  {meta}\n  {OPEN}\n}}\n'
        'resource "terraform_data" "kept" {\n  input = {}\n}\n',
    )
    if "for k, v" in meta:
        # Not known without a plan: judged once, as possibly absent.
        assert _addresses(result) == ["terraform_data.open", "terraform_data.kept"]
        assert result.uncertain == {"terraform_data.open"}
        assert any("cannot be known without a plan" in n for n in result.notes)
        return
    assert _addresses(result) == ["terraform_data.kept"]
    assert any("terraform_data.open: no instances" in n for n in result.notes)


def test_a_false_conditional_made_true_by_tfvars_creates_the_resource(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        f'variable "create" {{\n  default = false\n}}\n'
        f'resource "terraform_data" "open" {{\n  count = var.create ? 1 : 0\n  {OPEN}\n}}\n',
        **{"terraform.tfvars": "create = true\n"},
    )
    assert _addresses(result) == ["terraform_data.open[0]"]


def test_count_expands_with_count_index(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        'variable "n" {\n  default = "3"\n}\n'  # Terraform converts the string
        'resource "aws_s3_bucket" "b" {\n  count = var.n\n'
        '  bucket = "logs-${count.index}"\n  first = count.index == 0\n}\n',
    )
    subjects = {s.address: s.object for s in result.subjects}
    assert list(subjects) == ["aws_s3_bucket.b[0]", "aws_s3_bucket.b[1]", "aws_s3_bucket.b[2]"]
    assert subjects["aws_s3_bucket.b[2]"] == {"bucket": "logs-2", "first": False}
    assert subjects["aws_s3_bucket.b[0]"] == {"bucket": "logs-0", "first": True}


def test_for_each_over_a_map_resolves_each_key_and_value(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        'locals {\n  buckets = {\n    logs = { acl = "private" }\n'
        '    "site \\"eu\\"" = { acl = "public-read" }\n  }\n}\n'
        'resource "aws_s3_bucket" "b" {\n  for_each = local.buckets\n'
        "  bucket = each.key\n  acl = each.value.acl\n}\n",
    )
    subjects = {s.address: s.object for s in result.subjects}
    assert subjects == {
        'aws_s3_bucket.b["logs"]': {"bucket": "logs", "acl": "private"},
        'aws_s3_bucket.b["site \\"eu\\""]': {"bucket": 'site "eu"', "acl": "public-read"},
    }


def test_for_each_over_a_set_typed_variable(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        'variable "names" {\n  type = set(string)\n  default = ["b", "a", "b"]\n}\n'
        'resource "aws_s3_bucket" "b" {\n  for_each = var.names\n  bucket = each.value\n}\n',
    )
    assert _addresses(result) == ['aws_s3_bucket.b["a"]', 'aws_s3_bucket.b["b"]']


def test_for_each_over_a_plain_list_is_unknown(tmp_path: Path) -> None:
    # Without its declared type a list may be a set, or an error: Terraform knows.
    result = _config(
        tmp_path,
        'variable "names" {\n  default = ["a"]\n}\n'
        'resource "aws_s3_bucket" "b" {\n  for_each = var.names\n  bucket = each.value\n}\n',
    )
    assert _addresses(result) == ["aws_s3_bucket.b"]
    assert result.uncertain == {"aws_s3_bucket.b"}
    assert result.subjects[0].unknowns == ("bucket",)


def test_modules_expand_and_empty_modules_create_nothing(tmp_path: Path) -> None:
    module = 'variable "name" {}\nresource "terraform_data" "x" {\n  input = var.name\n}\n'
    result = _config(
        tmp_path,
        'module "each" {\n  source = "./m"\n  for_each = toset(["eu", "us"])\n  name = each.key\n}\n'
        'module "none" {\n  source = "./m"\n  count = 0\n  name = "x"\n}\n'
        'module "two" {\n  source = "./m"\n  count = 2\n  name = "n-${count.index}"\n}\n'
        'module "maybe" {\n  source = "./m"\n  count = length(data.x.y.ids)\n  name = "m"\n}\n',
        **{"m__main.tf": module},
    )
    subjects = {s.address: s.object for s in result.subjects}
    assert subjects == {
        'module.each["eu"].terraform_data.x': {"input": "eu"},
        'module.each["us"].terraform_data.x': {"input": "us"},
        "module.two[0].terraform_data.x": {"input": "n-0"},
        "module.two[1].terraform_data.x": {"input": "n-1"},
        "module.maybe.terraform_data.x": {"input": "m"},
    }
    assert result.uncertain == {"module.maybe.terraform_data.x"}
    # Instances share the declaration's location.
    locations = config_module.ConfigIndex(result.locations)
    assert locations.locate('module.each["eu"].terraform_data.x') == (
        str(tmp_path / "m/main.tf"),
        2,
    )


def test_failures_on_resources_that_may_not_exist_are_unknown(tmp_path: Path) -> None:
    result = _config(
        tmp_path,
        f'resource "terraform_data" "maybe" {{\n  count = length(data.x.y.ids)\n  {OPEN}\n}}\n'
        f'resource "terraform_data" "sure" {{\n  {OPEN}\n}}\n',
    )
    engine = Engine(load_bundle(TEST_POLICIES).policies, enforcement=Action.deny)
    decision = engine.decide(result.subjects)
    assert {f.address for f in decision.denials} == {"terraform_data.maybe", "terraform_data.sure"}
    settled = result.settle(decision, Action.warn)
    maybe = [f for f in settled.findings if f.address == "terraform_data.maybe"]
    assert maybe and all(f.result is Result.unknown and not f.denies for f in maybe)
    assert UNCERTAIN_EXISTENCE in maybe[0].message
    assert {f.address for f in settled.denials} == {"terraform_data.sure"}
    # An unknown-action of deny keeps the denial, as --unknown-action deny does in plans.
    assert {f.address for f in result.settle(decision, Action.deny).denials} == {
        "terraform_data.maybe",
        "terraform_data.sure",
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('resource "a" "b" {\n  count = -1\n}\n', "count is -1; Terraform requires a whole number"),
        ('resource "a" "b" {\n  count = 2.5\n}\n', "count is 2.5"),
        ('resource "a" "b" {\n  count = 1\n  for_each = {}\n}\n', "count and for_each together"),
        ('resource "a" "b" {\n  for_each = toset([1, 2])\n}\n', "for_each is a set of ints"),
        ('resource "a" "b" {\n  count = 10001\n}\n', "10001 instances; guard tf-config expands at most"),
        ('module "m" {\n  source = "./m"\n  count = -2\n}\n', "main.tf:1: module.m: count is -2"),
        ("resource \"a\" \"b\" {\n  v = " + "(" * 100 + "1" + ")" * 100 + "\n}\n", "nested deeper than"),
    ],
    ids=["negative", "fraction", "both", "set-of-numbers", "too-many", "module", "deep-expression"],
)  # fmt: skip
def test_counts_terraform_refuses_and_hostile_expressions_exit_2(
    guard: Any, tmp_path: Path, text: str, fragment: str
) -> None:
    (tmp_path / "main.tf").write_text(text)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "main.tf").write_text('resource "a" "b" {}\n')
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES)
    assert run.code == 2, run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], run.err
    assert "main.tf" in lines[0]


def test_a_module_that_calls_itself_is_bounded(guard: Any, tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'module "a" {\n  source = "./"\n}\nmodule "b" {\n  source = "./"\n}\n'
        'resource "terraform_data" "x" {\n  input = {}\n}\n'
    )
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES)
    assert run.code == 2
    assert "more than 1000 module instances" in run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "value", ["[" * 300 + "]" * 300, "{a = " * 150 + "1" + "}" * 150], ids=["lists", "objects"]
)
def test_deeply_nested_values_exit_2(guard: Any, tmp_path: Path, value: str) -> None:
    (tmp_path / "main.tf").write_text(f'resource "a" "b" {{\n  v = {value}\n}}\n')
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES)
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and "nested" in lines[0] and "main.tf" in lines[0], run.err


def test_long_chains_of_locals_are_unknown_not_a_crash(tmp_path: Path) -> None:
    chain = "\n".join(f"  l{i} = local.l{i + 1}" for i in range(200))
    result = _config(
        tmp_path,
        f'locals {{\n{chain}\n  l200 = "end"\n}}\n'
        'resource "terraform_data" "x" {\n  input = local.l0\n}\n',
    )
    assert result.subjects[0].unknowns == ("input",)


def test_files_larger_than_the_limit_exit_2(
    guard: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "MAX_FILE_BYTES", 10)
    (tmp_path / "main.tf").write_text('resource "a" "b" {}\n')
    run = guard("tf-config", tmp_path, "--policies", TEST_POLICIES)
    assert run.code == 2 and "larger than 10 bytes" in run.err


@pytest.mark.parametrize(
    ("key", "written"),
    [
        (0, "[0]"),
        (12, "[12]"),
        ("a", '["a"]'),
        ('say "hi"', '["say \\"hi\\""]'),
        ("back\\slash", '["back\\\\slash"]'),
        ("${x}", '["$${x}"]'),
        ("line\nbreak", '["line\\nbreak"]'),
        ("é", '["é"]'),
    ],
)
def test_instance_keys_are_written_as_terraform_writes_addresses(key: Any, written: str) -> None:
    assert instance_key(key) == written
