"""A large plan judged in forked processes gives the one-process answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.cli import main as cli_main
from controller.policy import parallel
from controller.policy.bundled import bundled_policies_path
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.terraform.normalize import normalize
from controller.terraform.planfile import read_plan
from tests.bench.bench_tfplan import write_plan

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    write_plan(path, 1_200)
    return path


def test_small_plans_stay_in_one_process() -> None:
    assert parallel.processes_for(parallel.THRESHOLD - 1, available=8) == 1
    assert parallel.processes_for(parallel.THRESHOLD, available=8) == 2
    assert parallel.processes_for(100_000, available=8) == 8
    assert parallel.processes_for(100_000, available=1) == 1


def test_forked_processes_find_exactly_what_one_process_finds(plan: Path) -> None:
    parsed = read_plan(str(plan))
    subjects = normalize(parsed.plan, parsed.source, parsed.digest).resources
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    alone = engine.decide(subjects, notes=["n"])
    assert alone.findings  # the generated plan has failing resources
    for processes in (2, 3):
        assert parallel.decide(engine, subjects, notes=["n"], processes=processes) == alone


def test_a_child_that_cannot_answer_is_replaced_by_the_parent(
    plan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = read_plan(str(plan))
    subjects = normalize(parsed.plan, parsed.source, parsed.digest).resources
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    alone = engine.decide(subjects)

    def broken(*_: object, **__: object) -> None:
        raise OSError("the pipe is gone")

    # Only the children write answers: the parent must judge their slices.
    monkeypatch.setattr(parallel.pickle, "dump", broken)
    assert parallel.decide(engine, subjects, processes=3) == alone


def test_tf_plan_reports_are_byte_identical_across_processes(
    plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = []
    for threshold in (10**9, 1):
        monkeypatch.setattr(parallel, "THRESHOLD", threshold)
        monkeypatch.setattr(parallel, "MIN_SLICE", 400)
        monkeypatch.setattr(parallel, "cpus", lambda: 3)
        out = tmp_path / f"{threshold}.json"
        code = cli_main(["tf-plan", str(plan), "--quiet", "--output", f"json={out}"])
        assert code in (0, 1)
        reports.append(out.read_bytes())
    assert reports[0] == reports[1]
