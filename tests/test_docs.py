"""Examples in the docs a user reads are real: they load, and their cases pass."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class DocCommand:
    """One command line of a doc: its words, the exit code its ``# exit N``
    comment promises (0 without one), and, in a console block, the output
    lines shown under it (``…`` stands for any text)."""

    words: tuple[str, ...]
    expect: int
    shown: tuple[str, ...] = ()


# Commands a doc may show that other tests run: the demo and the suite
# (tests/test_demo.py, CI), the chart (tests/chart). Anything else must be
# a guard command or a step this file knows how to run.
# Run by other tests: the chart tests (helm), the install steps in
# tests/ship/test_install_docs.py (pipx, python3, skopeo), CI itself (make).
RUN_ELSEWHERE = {"make", "helm", "kubectl", "docker", "pipx", "python3", "skopeo"}


def doc_commands(text: str) -> list[DocCommand]:
    """Every command of the ```sh and ```console blocks, in order, continuation
    lines joined and ``NAME=value`` variables substituted."""
    import shlex

    commands: list[DocCommand] = []
    variables: dict[str, str] = {}
    for kind, block in re.findall(r"```(sh|console)\n(.*?)```", text, re.DOTALL):
        for raw in block.replace("\\\n", " ").splitlines():
            if kind == "console" and not raw.startswith("$ "):
                if commands and raw.strip():
                    last = commands[-1]
                    commands[-1] = DocCommand(last.words, last.expect, (*last.shown, raw.rstrip()))
                continue
            line = raw.removeprefix("$ ")
            exit_code = re.search(r"#\s*exit (\d+)", line)
            line = line.split("#", 1)[0].strip()
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            assignment = re.fullmatch(r"([A-Z_]+)=(.*)", line)
            if assignment:
                variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2)))
            elif line:
                expect = int(exit_code.group(1)) if exit_code else 0
                commands.append(DocCommand(tuple(shlex.split(line)), expect))
    return commands


def _matches(shown: str, output_lines: list[str]) -> bool:
    pattern = ".*".join(re.escape(part) for part in shown.split("…"))
    return any(re.fullmatch(pattern, line) for line in output_lines)


# Each doc runs from a fresh copy of what its commands read (examples/ and
# policies/ as at the repository root), so nothing it writes leaks out.
EXECUTED_DOCS = {
    "docs/cli.md": True,
    "docs/operations.md": True,
    "README.md": True,
    "examples/attestations/README.md": True,
    "examples/keys/README.md": False,  # it makes the demo keys: they must not exist yet
}


@pytest.mark.parametrize("name", sorted(EXECUTED_DOCS))
def test_documented_commands_run_as_shown(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from controller.cli import main

    text = (ROOT / name).read_text(encoding="utf-8")
    if name == "README.md":
        # The Install section needs a release's files, an image and a
        # registry: tests/ship/test_install_docs.py runs it as written.
        before, _, rest = text.partition("\n## Install\n")
        text = before + "\n## " + rest.split("\n## ", 1)[1] if rest else text
    commands = doc_commands(text)
    assert any(c.words[0] == "guard" for c in commands), f"{name} shows no guard command"
    if EXECUTED_DOCS[name]:
        ignore = shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfplan", "tfplan")
        for folder in ("examples", "policies"):
            shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
        # The README's install check runs on "your" plan.json.
        shutil.copy(
            ROOT / "examples" / "terraform" / "plans" / "aws-failing.json", tmp_path / "plan.json"
        )
    monkeypatch.chdir(tmp_path)
    ran = 0
    for command in commands:
        line = " ".join(command.words)
        program, *args = command.words
        if program in RUN_ELSEWHERE:
            continue
        if program == "mkdir" and args[:1] == ["-p"]:
            for folder in args[1:]:
                Path(folder).mkdir(parents=True, exist_ok=True)
            continue
        assert program == "guard", f"{name}: `{line}`: no test runs this command"
        assert args[:1] != ["serve"], f"{name}: `{line}`: guard serve does not end"
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        assert code == command.expect, f"{name}: `{line}` exited {code}:\n{out[-2000:]}{err}"
        lines = (out + err).splitlines()
        for shown in command.shown:
            assert _matches(shown, lines), f"{name}: `{line}` did not print {shown!r}:\n{out}{err}"
        ran += 1
    assert ran, f"{name}: no command ran"


def test_doc_commands_are_read_as_a_reader_would() -> None:
    text = (
        "```sh\nA=x y\nguard tf-plan $A \\\n  -o json=r.json   # exit 1\nmake demo\n```\n"
        "```console\n$ guard policy lint p/\nlint: ok\n… done\n```\n"
    )
    assert doc_commands(text) == [
        DocCommand(("guard", "tf-plan", "x", "y", "-o", "json=r.json"), 1),
        DocCommand(("make", "demo"), 0),
        DocCommand(("guard", "policy", "lint", "p/"), 0, ("lint: ok", "… done")),
    ]
    assert _matches("… review: passed (x)", ["guard: a; review: passed (x)"])
    assert not _matches("review: passed", ["review: passed (x)"])


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
