"""``guard policy lint`` and ``guard policy test`` exit alike: 0 clean, 1 a
failing (or unexercised) case, 2 a document that does not load or compile."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import POLICIES, Guard

HEADER = "apiVersion: guard.dev/v1alpha1\n"
POLICY = (
    HEADER + "kind: GuardPolicy\nmetadata: {name: no-latest}\nspec:\n"
    "  match: {kubernetes: {kinds: [Pod]}}\n"
    "  rules:\n"
    "    - name: pinned\n"
    "      target: kubernetes\n"
    "      expression: \"object.spec.containers.all(c, !c.image.endsWith(':latest'))\"\n"
    "      message: an image uses the latest tag\n"
)
# A Terraform rule in a policy whose cases are all Pods: no case evaluates it.
TERRAFORM_RULE = (
    "    - name: tagged\n"
    "      target: terraform\n"
    "      expression: has(after.tags)\n"
    "      message: the resource has no tags\n"
)


def _case(name: str, image: str, expect: str) -> str:
    return (
        f"    - name: {name}\n"
        "      policies: [no-latest]\n"
        "      object: {apiVersion: v1, kind: Pod, metadata: {name: p},\n"
        f"               spec: {{containers: [{{name: a, image: '{image}'}}]}}}}\n"
        f"      expect: {{result: {expect}}}\n"
    )


def _tests(*cases: str) -> str:
    return HEADER + "kind: GuardPolicyTest\nmetadata: {name: t}\nspec:\n  cases:\n" + "".join(cases)


def _write(folder: Path, policy: str, tests: str) -> Path:
    (folder / "policy.yaml").write_text(policy)
    (folder / "policy.test.yaml").write_text(tests)
    return folder


GOOD_CASES = (
    _case("pinned passes", "app:1.0", "pass"),
    _case("latest fails", "app:latest", "fail"),
)


def test_clean_documents_exit_0(guard: Guard, tmp_path: Path) -> None:
    folder = _write(tmp_path, POLICY, _tests(*GOOD_CASES))
    lint = guard("policy", "lint", folder)
    assert (lint.code, lint.out, lint.err) == (0, "lint: ok\n", "")
    test = guard("policy", "test", folder)
    assert (test.code, test.out) == (0, "2 passed, 0 failed\n")


def test_a_failing_case_exits_1_in_lint_and_test_alike(guard: Guard, tmp_path: Path) -> None:
    wrong = _case("latest wrongly expected to pass", "app:latest", "pass")
    folder = _write(tmp_path, POLICY, _tests(GOOD_CASES[0], wrong))
    lint = guard("policy", "lint", folder)
    assert lint.code == 1
    assert "case 'latest wrongly expected to pass'" in lint.out
    assert lint.out.endswith("lint: 1 failure(s)\n")
    test = guard("policy", "test", folder)
    assert test.code == 1
    assert "FAIL t / latest wrongly expected to pass" in test.out


def test_an_unexercised_rule_exits_1(guard: Guard, tmp_path: Path) -> None:
    policy = POLICY.replace("kinds: [Pod]}}", "kinds: [Pod]}, terraform: {}}") + TERRAFORM_RULE
    folder = _write(tmp_path, policy, _tests(*GOOD_CASES))
    assert guard("policy", "test", folder).code == 0  # every case passes...
    lint = guard("policy", "lint", folder, "--format", "json")  # ...but one rule is untested
    assert lint.code == 1, lint.out + lint.err
    result = json.loads(lint.out)
    assert list(result) == ["ok", "failures", "warnings"] and result["ok"] is False
    assert any("rule 'tagged'" in f and "no GuardPolicyTest case" in f for f in result["failures"])


def test_a_bad_document_exits_2_in_lint_and_test_alike(guard: Guard, tmp_path: Path) -> None:
    folder = _write(tmp_path, POLICY.replace("  rules:", "  rulez:"), _tests(*GOOD_CASES))
    lint = guard("policy", "lint", folder)
    assert lint.code == 2
    assert lint.out == ""
    assert "policy.yaml" in lint.err and "rulez" in lint.err
    assert lint.err.endswith("lint: 1 document error(s)\n")
    test = guard("policy", "test", folder)
    assert test.code == 2
    assert test.err.startswith("guard: error: ") and "rulez" in test.err


def test_a_rule_that_does_not_compile_exits_2(guard: Guard, tmp_path: Path) -> None:
    folder = _write(tmp_path, POLICY.replace("!c.image", "!!(c.image"), _tests(*GOOD_CASES))
    lint = guard("policy", "lint", folder)
    assert lint.code == 2
    assert "policy.yaml" in lint.err


def test_nothing_to_lint_or_test_is_bad_input(guard: Guard, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    lint = guard("policy", "lint", empty)
    assert lint.code == 2 and "no YAML or JSON files" in lint.err
    only_policy = tmp_path / "only"
    only_policy.mkdir()
    (only_policy / "policy.yaml").write_text(POLICY)
    test = guard("policy", "test", only_policy)
    assert test.code == 2 and "no GuardPolicyTest documents found" in test.err


def test_the_bundled_policies_lint_and_test_clean(guard: Guard) -> None:
    assert guard("policy", "lint", POLICIES).code == 0
    test = guard("policy", "test", POLICIES, "--verbose")
    assert test.code == 0
    assert test.out.count("PASS ") > 10
