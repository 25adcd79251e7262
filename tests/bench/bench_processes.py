"""The engine phase of ``guard tf-plan`` in one process and in several
(forked), in alternating rounds on the same parsed plan.

``python -m tests.bench processes``; ``GUARD_BENCH_SIZES`` (default
10000) and ``GUARD_BENCH_ROUNDS`` (default 3). CPU time counts the forked
children; every round starts from a new engine so that no cache is warm on
one side only.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from controller.policy import parallel
from controller.policy.bundled import bundled_policies_path
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.terraform.normalize import normalize
from controller.terraform.planfile import read_plan
from tests.bench.bench_tfplan import write_plan

SIZES = tuple(int(n) for n in os.environ.get("GUARD_BENCH_SIZES", "10000").split(","))
ROUNDS = int(os.environ.get("GUARD_BENCH_ROUNDS", "3"))


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    several = max(2, parallel.cpus())
    policies = load_bundle(bundled_policies_path()).policies
    print(f"{ROUNDS} alternating rounds; 1 process against {several}; seconds, median (min-max)")
    with tempfile.TemporaryDirectory() as folder:
        for count in SIZES:
            path = Path(folder) / f"plan-{count}.json"
            write_plan(path, count)
            parsed = read_plan(str(path))
            subjects = normalize(parsed.plan, parsed.source, parsed.digest).resources
            runs: dict[int, list[tuple[float, float]]] = {1: [], several: []}
            answers = set()
            for round_ in range(ROUNDS):
                for processes in (1, several) if round_ % 2 == 0 else (several, 1):
                    engine = Engine(policies)
                    wall, cpu = time.perf_counter(), _cpu()
                    decision = parallel.decide(engine, subjects, processes=processes)
                    runs[processes].append((time.perf_counter() - wall, _cpu() - cpu))
                    answers.add(decision.findings)
            for processes, figures in runs.items():
                walls = [w for w, _ in figures]
                cpus = [c for _, c in figures]
                print(
                    f"{count:>7} resources, {processes} process(es): wall "
                    f"{statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}), cpu "
                    f"{statistics.median(cpus):.2f} ({min(cpus):.2f}-{max(cpus):.2f})"
                )
            print(f"{'':>7} same findings every run: {len(answers) == 1}")
