"""`make demo` runs the whole product on bundled defaults and every step behaves;
a step that cannot run as designed is said, never passed over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples import demo

ROOT = Path(__file__).resolve().parents[1]
EVERY_STEP = "demo: every step behaved as expected"


def test_demo_runs_and_every_step_behaves() -> None:
    environment = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "alice approved their own change" in done.stdout
    # guard kube check is shown as a CI step, passing and denying
    assert "$ guard kube check -f examples/manifests/web.yaml" in done.stdout
    assert "review: passed for 1 workload: approved by bob, carol in" in done.stdout
    assert "review: failed for 1 of 1 workload; DENIED" in done.stdout
    if "terraform is not on PATH" in done.stdout:  # a machine without terraform
        assert EVERY_STEP not in done.stdout
    else:
        assert EVERY_STEP in done.stdout
        assert "review: passed: approved by carol in " in done.stdout


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # and back afterwards: the demo changes directory


def test_without_terraform_the_plan_step_runs_on_the_fixture_and_says_so(
    in_repo: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    monkeypatch.setattr(demo, "STEPS", [demo.terraform_step])
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "!! terraform is not on PATH" in out
    assert demo.TERRAFORM_URL in out
    assert "--accept-json-review\n" in out
    assert "review: passed: approved by carol in " in out
    assert EVERY_STEP not in out
    assert out.rstrip().endswith(
        f"  - step 3 ran on the JSON fixture {demo.PASSING_PLAN}: terraform is not on PATH "
        f"(get it from {demo.TERRAFORM_URL})"
    )
    assert "demo: finished, but not every step ran as designed:" in out


def test_a_failing_terraform_stops_the_demo_with_its_words(
    in_repo: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\necho 'Error: no provider plugins, offline' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(demo, "STEPS", [demo.terraform_step])
    with pytest.raises(SystemExit) as stopped:
        demo.main()
    message = str(stopped.value.code)
    assert message.startswith("demo: `terraform init -input=false` failed (exit 3):")
    assert "Error: no provider plugins, offline" in message


def test_a_step_with_an_unexpected_exit_code_stops_the_demo(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        demo.run("policy lint no-such-folder/", expect=0)
    assert str(stopped.value.code) == (
        "demo: expected exit 0 from `guard policy lint no-such-folder/`, got 2"
    )
