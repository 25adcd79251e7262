"""Shared fixtures: the guard CLI in-process, and real plans made by terraform."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "terraform" / "config"
PLANS = REPO / "examples" / "terraform" / "plans"
HERE = Path(__file__).parent
TEST_POLICIES = HERE / "policies"
AWS_POLICIES = HERE / "aws-policies"
REVIEW_POLICIES = HERE / "review-policies"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def guard(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Run ``guard ARGS`` in-process and capture what it prints."""

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    yield run


def terraform(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1"}
    return subprocess.run(
        ["terraform", *args], cwd=cwd, env=env, capture_output=True, check=True, timeout=120
    )


@dataclass(frozen=True)
class RealPlans:
    """Plans of the example configuration made by real terraform.

    ``create``: everything new. ``change``: after applying ``create``, one
    environment removed (a deletion), a new database version (a replacement
    of a protected database) and the legacy resource dropped with a
    ``removed`` block (a forget).
    """

    config: Path
    create: Path
    create_json: Path
    change: Path
    change_json: Path


@pytest.fixture(scope="session")
def real_plans(tmp_path_factory: pytest.TempPathFactory) -> RealPlans:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH: real-plan tests need terraform >= 1.7")
    work = tmp_path_factory.mktemp("tf") / "config"
    shutil.copytree(
        EXAMPLE_CONFIG, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    terraform(["init", "-input=false", "-no-color"], work)
    terraform(["plan", "-input=false", "-no-color", "-out=create.tfplan"], work)
    terraform(["apply", "-input=false", "-no-color", "-auto-approve", "create.tfplan"], work)
    (work / "legacy.tf").write_text(
        "removed {\n  from = terraform_data.legacy\n  lifecycle {\n    destroy = false\n  }\n}\n"
    )
    terraform(
        [
            "plan",
            "-input=false",
            "-no-color",
            '-var=environments=["production"]',
            "-var=db_version=16",
            "-out=change.tfplan",
        ],
        work,
    )
    for name in ("create", "change"):
        shown = terraform(["show", "-json", f"{name}.tfplan"], work)
        (work / f"{name}.json").write_bytes(shown.stdout)
    return RealPlans(
        config=work,
        create=work / "create.tfplan",
        create_json=work / "create.json",
        change=work / "change.tfplan",
        change_json=work / "change.json",
    )


def findings_by(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """JSON report findings keyed by (policy, address)."""
    return {(f["policy"], f["address"]): f for f in report["findings"]}
