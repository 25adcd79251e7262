"""docs/forges.md is real: its commands run against a loopback GitHub as
shown, its policy loads, and it names only flags and fields that exist."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.policy.documents import ForgeRules, GuardPolicy
from controller.policy.loader import parse_documents
from tests.docs.blocks import blocks
from tests.forge.fakegithub import FakeGitHub
from tests.forge.test_github import scenario
from tests.test_docs import _all_parsers, yaml_blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "forges.md"


def test_the_page_policy_is_a_valid_guard_policy() -> None:
    blocks = yaml_blocks(PAGE)
    assert len(blocks) == 1
    (loaded,) = parse_documents(blocks[0], "docs/forges.md")
    assert isinstance(loaded.document, GuardPolicy)
    assert loaded.document.spec.review is not None
    assert loaded.document.spec.review.forge is not None


def test_the_page_commands_run_as_shown(
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario(github)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "forge-policy.yaml").write_text(yaml_blocks(PAGE)[0])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    (block,) = [b for b in blocks(PAGE, ROOT) if b.language == "sh"]
    assert block.marker == "not run"  # the docs runner has no forge: this test is its run
    commands = [(shlex.split(c.text), c.expect) for c in block.commands()]
    assert [words[:3] for words, _ in commands] == [
        ["guard", "attest", "review"],
        ["guard", "attest", "verify"],
    ]
    for words, expect in commands:
        capsys.readouterr()
        code = main(words[1:])
        out, err = capsys.readouterr()
        assert code == expect, f"{' '.join(words)}: {out}{err}"
    assert "verified" in out and "approved by carol" in out


def test_the_page_names_only_real_flags() -> None:
    flags = {o for parser in _all_parsers() for a in parser._actions for o in a.option_strings}
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", PAGE.read_text()))
    assert named, "the page names no flags"
    assert named <= flags, sorted(named - flags)


def test_the_policy_table_lists_every_forge_rule() -> None:
    rows = set(re.findall(r"^\| `([a-zA-Z]+)` \|", PAGE.read_text(), re.MULTILINE))
    fields = {f.alias for f in ForgeRules.model_fields.values()}
    assert rows == fields
