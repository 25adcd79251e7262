"""The end-to-end harness: a fake forge on loopback, the guard command run
in-process, and the team's keys, trust and policy in a temporary folder."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from controller import cli
from controller.forge import retry
from tests.attest import helpers as h
from tests.forge.fakegithub import FakeGitHub
from tests.forge.fakegitlab import FakeGitLab

IMAGE = f"{h.IMAGE}@{h.DIGEST}"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@dataclass
class Team:
    """Keys, a trust and a way to write policies, in one folder."""

    folder: Path
    capsys: pytest.CaptureFixture[str]

    def guard(self, *argv: str | Path) -> Run:
        self.capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def policy(self, name: str = "policy.yaml", **review: Any) -> Path:
        review.setdefault("attesters", ["ci"])
        review.setdefault("requiredChecks", [])
        return h.write_yaml(self.folder / name, h.policy_document(**review))

    def trust(self, principals: list[dict[str, Any]] | None = None) -> Path:
        document = {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardTrust",
            "metadata": {"name": "team"},
            "spec": {
                "keys": [
                    {
                        "name": "ci",
                        "role": "attester",
                        "publicKey": (self.folder / "ci.pub").read_text(),
                    }
                ],
                "principals": principals or [],
            },
        }
        return h.write_yaml(self.folder / "trust.yaml", document)

    def verify(self, envelope: Path, policy: Path | None = None) -> Run:
        return self.guard(
            "attest", "verify", envelope, "--trust", self.folder / "trust.yaml",
            "--policy", policy or self.policy(), "--digest", h.DIGEST,
        )  # fmt: skip


@pytest.fixture
def team(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Team:
    made = Team(tmp_path, capsys)
    assert made.guard("keygen", "ci", "--dir", tmp_path).code == 0
    made.trust()
    return made


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the retry logic asked for, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(retry, "sleep", recorded.append)
    return recorded


def _serve(
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    handler: Callable[[Request], Response],
    token: tuple[str, str],
    unset: tuple[str, ...],
) -> None:
    """Serve a fake forge on loopback, with the CI environment of its token only."""
    httpserver.expect_request(re.compile(".*")).respond_with_handler(handler)
    monkeypatch.setenv(*token)
    for name in unset:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def github(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> FakeGitHub:
    fake = FakeGitHub(api_url=httpserver.url_for("/").rstrip("/"))
    _serve(
        httpserver,
        monkeypatch,
        fake.handle,
        ("GITHUB_TOKEN", "gh-token"),
        ("GITHUB_API_URL", "GITHUB_REPOSITORY"),
    )
    return fake


@pytest.fixture
def gitlab(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> FakeGitLab:
    fake = FakeGitLab(api_url=httpserver.url_for("/api/v4"))
    _serve(
        httpserver, monkeypatch, fake.handle, ("GITLAB_TOKEN", "gl-token"),
        ("CI_JOB_TOKEN", "CI_API_V4_URL", "CI_PROJECT_PATH"),
    )  # fmt: skip
    return fake
