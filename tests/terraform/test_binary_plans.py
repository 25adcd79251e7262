"""A binary plan is read once: the bytes hashed for the review are the bytes judged."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.conftest import TEST_POLICIES, RealPlans


def _swapping_terraform(folder: Path, replacement: Path, record: Path) -> None:
    """A ``terraform`` that swaps the user's plan file before running the real one.

    It plays an attacker who replaces the file between guard's digest and
    ``terraform show``; it also records what it was asked to read.
    """
    real = shutil.which("terraform")
    assert real is not None
    script = folder / "terraform"
    script.write_text(
        "#!/bin/sh\n"
        'for last in "$@"; do :; done\n'
        f'stat -c "%n %a" "$last" > "{record}"\n'
        f'cp "{replacement}" "$GUARD_TEST_ORIGINAL"\n'
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)


def test_a_plan_swapped_after_hashing_is_not_what_is_judged(
    guard: Any, real_plans: RealPlans, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "plan.bin"
    shutil.copyfile(real_plans.create, plan)
    hashed = "sha256:" + hashlib.sha256(plan.read_bytes()).hexdigest()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    _swapping_terraform(bin_dir, real_plans.change, record)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GUARD_TEST_ORIGINAL", str(plan))

    run = guard(
        "tf-plan",
        plan,
        "--policies",
        TEST_POLICIES,
        "--terraform-dir",
        real_plans.config,
        "--format",
        "json",
    )
    assert run.err == ""
    report = run.json()
    # The swap happened, and terraform read guard's private copy, not the file.
    assert plan.read_bytes() == real_plans.change.read_bytes()
    shown, mode = record.read_text().split()
    assert Path(shown) != plan and Path(shown).name == "plan.tfplan"
    assert mode == "600"
    assert not Path(shown).exists()  # removed after use
    # Judged: the create plan that was hashed, not the change plan swapped in
    # (which deletes a network, forgets a resource and replaces the database).
    assert any(hashed in note for note in report["notes"])
    policies = {f["policy"] for f in report["findings"]}
    assert "test-open-ingress" in policies
    assert policies.isdisjoint({"test-no-forget", "test-deletions", "test-protected-database"})


def test_terraform_show_output_beyond_the_limit_is_refused(
    guard: Any, real_plans: RealPlans, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.terraform import planfile

    binary = real_plans.create.stat().st_size
    shown = real_plans.create_json.stat().st_size
    assert binary < shown
    monkeypatch.setattr(planfile, "MAX_PLAN_BYTES", binary + 1)
    run = guard("tf-plan", real_plans.create, "--policies", TEST_POLICIES)
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1
    assert "terraform show -json output: larger than" in run.err
