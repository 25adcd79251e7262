from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.cli import main
from tests.attest.helpers import Keys

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLICIES = ROOT / "policies"
PLANS = EXAMPLES / "terraform" / "plans"
FAILING_PLAN = PLANS / "aws-failing.json"
PASSING_PLAN = PLANS / "aws-passing.json"
DEMO_TRUST = EXAMPLES / "keys" / "demo-trust.yaml"
CI_KEY = EXAMPLES / "keys" / "ci-attester.key"
ATTESTATIONS = EXAMPLES / "attestations"
WEB = EXAMPLES / "manifests" / "web.yaml"
APP_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Guard = Callable[..., Run]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys.make()


@pytest.fixture
def guard(capsys: pytest.CaptureFixture[str]) -> Guard:
    """Run ``guard ARGS`` in-process; what it printed, and its exit code."""

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
