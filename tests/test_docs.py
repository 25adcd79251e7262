"""Examples in the docs a user reads are real: they load, and their cases pass.

The docs' shell and YAML blocks are run and checked by ``tests/docs``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from controller.attest.dsse import parse
from controller.attest.trust import Trust
from controller.attest.verify import Verifier
from controller.kube.subjects import case_subject
from controller.policy.documents import GuardPolicyTest, GuardTrustSpec
from controller.policy.loader import Bundle, load_path, parse_documents
from controller.policy.testing import run_tests

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def yaml_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


def test_policy_reference_examples_load_and_their_cases_pass() -> None:
    reference = ROOT / "docs" / "policies.md"
    blocks = yaml_blocks(reference)
    assert len(blocks) >= 10, "docs/policies.md should show examples"
    documents = []
    for index, block in enumerate(blocks, start=1):
        documents.extend(parse_documents(block, f"{reference.name} example {index}"))
    bundled = load_path(ROOT / "policies")
    bundle = Bundle.of([*bundled, *documents])
    doc_tests = [d for d in documents if isinstance(d.document, GuardPolicyTest)]
    assert doc_tests, "the reference should carry GuardPolicyTest examples"
    run = run_tests(bundle, kubernetes_subject=case_subject, tests=doc_tests)
    failed = [f"{r.test}/{r.case}: {'; '.join(r.problems)}" for r in run.failed]
    assert failed == []
    assert len(run.results) >= len(doc_tests)


@pytest.mark.parametrize("name", ["README.md", "docs/policies.md"])
def test_docs_name_only_commands_that_exist(name: str) -> None:
    from controller.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    text = (ROOT / name).read_text(encoding="utf-8")
    used = set(re.findall(r"^\$ guard ([a-z-]+)", text, re.MULTILINE))
    used |= set(re.findall(r"`guard ([a-z-]+)", text))
    assert used, f"{name} shows no guard command"
    assert used <= commands, f"{name} names commands that do not exist: {used - commands}"


def test_operations_guide_lists_every_metric_guard_exports() -> None:
    from controller.kube.metrics import Metrics

    exported = set()
    for metric in Metrics().registry.collect():
        suffix = "_total" if metric.type == "counter" else ""
        exported.add(metric.name + suffix)
    documented = set(
        re.findall(r"`(guard_[a-z_]+)`", (ROOT / "docs" / "operations.md").read_text())
    )
    assert exported == documented


def test_operations_guide_names_the_real_annotations() -> None:
    from controller.kube import breakglass, envelopes

    text = (ROOT / "docs" / "operations.md").read_text() + (ROOT / "README.md").read_text()
    assert breakglass.ANNOTATION in text
    assert envelopes.ANNOTATION in text


def _all_parsers() -> list[Any]:
    import argparse

    from controller.cli import build_parser

    found = []
    pending = [build_parser()]
    while pending:
        parser = pending.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return found


def test_cli_reference_lists_every_command() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `guard ([a-z-]+(?: [a-z]+)?)", text, re.MULTILINE))
    leaves = {
        parser.prog.removeprefix("guard ")
        for parser in _all_parsers()
        if parser.prog != "guard" and parser.epilog and parser._subparsers is None
    }
    assert leaves == listed


def test_the_table_for_other_tools_names_only_real_guard_flags() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("## Coming from conftest, checkov or cosign", 1)[1]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    tools = [row[0] for row in rows]
    for tool in ("conftest", "checkov", "cosign"):
        assert sum(tool in cell for cell in tools) >= 5, f"too few {tool} rows"
    flags = {
        option for parser in _all_parsers() for a in parser._actions for option in a.option_strings
    }
    named = {flag for row in rows for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", row[1])}
    assert named, "the guard column names no flags"
    assert named <= flags, f"not guard flags: {sorted(named - flags)}"


def test_release_notes_record_the_exit_code_change_of_policy_lint() -> None:
    notes = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "**`guard policy lint` exits 1, not 2, when a test case fails" in notes
    assert "`guard kube check --attestations DIR` is deprecated" in notes
    assert "**A bare `--output FILE` is refused**" in notes


def test_the_cel_differences_list_every_helper_and_variable() -> None:
    from controller.policy.celenv import HELPERS, VARIABLES

    text = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    section = text.split("### CEL in guard and in Kubernetes", 1)[1].split("\n### ", 1)[0]
    listed = section.split("Every helper guard registers:", 1)[1]
    assert set(re.findall(r"`([A-Za-z]+)`", listed)) == set(HELPERS)
    guard_row = next(line for line in section.splitlines() if line.startswith("| variables"))
    named = set(re.findall(r"`([A-Za-z]+)`", guard_row.split("|")[3]))
    assert named == {name for target in VARIABLES.values() for name in target}


def test_every_environment_variable_guard_reads_is_documented() -> None:
    read = set()
    for path in (ROOT / "controller").rglob("*.py"):
        read |= set(re.findall(r"\"(GUARD_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    table = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split("## Environment", 1)[1]
    documented = set(re.findall(r"^\| `(GUARD_[A-Z_]+)`", table, re.MULTILINE))
    assert read and read == documented


def test_provenance_guide_documents_are_valid_and_match_the_example() -> None:
    """The YAML a reader copies from docs/provenance.md loads, and the policy
    it shows is the one its commands run with."""
    guide = ROOT / "docs" / "provenance.md"
    blocks = yaml_blocks(guide)
    loaded = []
    for index, block in enumerate(blocks, start=1):
        loaded.extend(parse_documents(block, f"provenance.md example {index}"))
    assert {item.document.kind for item in loaded} == {"GuardPolicy", "GuardTrust"}
    example = (ROOT / "examples" / "provenance" / "policy.yaml").read_text(encoding="utf-8")
    assert example in blocks


def test_keyless_guide_trust_loads_and_verifies_its_example_bundle() -> None:
    """The GuardTrust in docs/keyless.md loads, and its identity accepts the
    GitHub artifact attestation it describes, offline."""
    blocks = yaml_blocks(ROOT / "docs" / "keyless.md")
    loaded = [item for block in blocks for item in parse_documents(block, "keyless.md")]
    assert [item.document.kind for item in loaded] == ["GuardTrust"]
    assert (ROOT / "examples" / "keyless" / "trust.yaml").read_text(encoding="utf-8") in blocks
    spec = loaded[0].document.spec
    assert isinstance(spec, GuardTrustSpec)
    bundle = ROOT / "tests" / "attest" / "data" / "sigstore"
    raw = (bundle / "reusable-workflow-attestation.sigstore.json").read_bytes()
    signers = Verifier(Trust.from_spec(spec)).signers(parse(raw))
    assert [s.name for s in signers] == ["demo-builder"]
