"""Examples in the docs a user reads are real: they load, and their cases pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.kube.subjects import case_subject
from controller.policy.documents import GuardPolicyTest
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


def _shell_commands(text: str) -> list[list[str]]:
    """Every ``guard ...`` line of the ```sh blocks, continuation lines joined."""
    import shlex

    commands = []
    variables: dict[str, str] = {}
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            assignment = re.fullmatch(r"([A-Z_]+)=(.*)", line)
            if assignment:
                variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2)))
            elif line.startswith("guard "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("name", ["README.md", "examples/attestations/README.md"])
def test_documented_command_lines_parse(name: str) -> None:
    from controller.cli import build_parser

    commands = _shell_commands((ROOT / name).read_text(encoding="utf-8"))
    assert commands, f"{name} shows no guard command lines"
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse exits on an unknown flag
            pytest.fail(f"{name}: `guard {' '.join(argv)}` does not parse ({exc})")


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


def test_readme_documents_are_valid_guard_documents() -> None:
    from controller.policy.documents import GuardPolicy, GuardTrust
    from controller.policy.engine import compile_policy

    loaded = []
    for index, block in enumerate(yaml_blocks(ROOT / "README.md"), start=1):
        loaded.extend(parse_documents(block, f"README.md example {index}"))
    kinds = {type(item.document) for item in loaded}
    assert {GuardTrust, GuardPolicy} <= kinds
    for item in loaded:
        if isinstance(item.document, GuardPolicy):
            compile_policy(item.document)
