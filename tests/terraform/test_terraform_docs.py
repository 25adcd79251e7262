"""docs/terraform.md is true: its commands exit as shown, its configuration
expands to the resources it lists, its report example has the real keys."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from controller.terraform.config import read_config
from controller.terraform.expressions import supported_functions
from tests.terraform.conftest import REPO

DOC = (REPO / "docs" / "terraform.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL)


def _commands() -> list[tuple[list[str], int]]:
    commands = []
    for block in _blocks("sh"):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            expected = re.fullmatch(r"\s*exit (\d)\s*", comment)
            assert expected, f"docs/terraform.md: say the exit code of: {line}"
            commands.append((shlex.split(command)[1:], int(expected.group(1))))
    return commands


@pytest.mark.parametrize(("argv", "code"), _commands())
def test_documented_commands_exit_as_shown(
    guard: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int
) -> None:
    monkeypatch.chdir(REPO)
    assert guard(*argv).code == code


def test_the_documented_configuration_expands_as_listed(tmp_path: Path) -> None:
    (hcl,) = _blocks("hcl")
    (listed,) = _blocks("text")
    (tmp_path / "main.tf").write_text(hcl)
    addresses = [s.address for s in read_config(tmp_path).subjects]
    assert addresses == listed.split()


def test_the_documented_functions_are_the_evaluated_ones() -> None:
    paragraph = DOC[DOC.index("these functions:") : DOC.index("Anything else")]
    assert re.findall(r"`([a-z]+)`", paragraph) == list(supported_functions())


def test_the_documented_report_entry_has_the_real_keys() -> None:
    from controller.policy.results import Decision
    from controller.report import ReportContext, render
    from tests.report.test_subjects import SUBJECTS

    (example,) = _blocks("json")
    context = ReportContext("guard tf-plan", "plan.json", subjects=SUBJECTS)
    entry = json.loads(render("json", Decision.of([]), context))["resources"][0]
    assert list(json.loads(example)) == list(entry)
