"""The benchmarks' inputs still fit the code they measure.

Nothing here is timed: a benchmark that no longer runs would only be found
when someone needs its numbers, so its modules are imported and the
subjects and reviews it builds are judged once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import pkgutil
import re
from pathlib import Path

from controller.kube.decide import subject_of
from controller.kube.inherit import Baselines, resolve
from controller.kube.owners import OwnerSource, owner_record
from controller.kube.request import parse_review
from controller.policy.baseline import GuardBaseline
from controller.policy.bundled import bundled_policies_path
from controller.policy.contexts import Contexts
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from tests.bench import bench_admission, bench_baseline, bench_engine
from tests.kube.helpers import CONTROLLER_USER


def test_every_benchmark_module_imports() -> None:
    folder = Path(bench_engine.__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")]
    assert names
    for name in names:
        assert callable(importlib.import_module(f"tests.bench.{name}").main)


def test_the_engine_benchmark_subjects_are_judged() -> None:
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    for subject in (bench_engine.deployment(), bench_engine.security_group()):
        assert engine.evaluate(subject).matched


def test_the_admission_benchmark_sends_reviews() -> None:
    for workload in bench_admission.workloads():
        bodies = bench_admission.review_bodies(workload, 2)
        assert len(bodies) == 2 and all(b"AdmissionReview" in body for body in bodies)
        # Every request carries a different object: no cache keyed by it may flatter guard.
        objects = [json.loads(body)["request"]["object"] for body in bodies]
        assert objects[0] != objects[1]


def test_only_the_admission_benchmark_pods_share_what_the_rules_read() -> None:
    """Deployments always differ in a field the rules read (no remembered rule
    outcome flatters them); a ReplicaSet's Pods differ only in what they don't."""
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    for workload, shared in (("deployment", False), ("pod", True)):
        keys = []
        for body in bench_admission.review_bodies(workload, 2):
            subject = subject_of(
                parse_review(json.loads(body)), controller_identities=frozenset({CONTROLLER_USER})
            )
            plan = engine._plan(subject.target, engine.matching(subject))
            keys.append(Contexts(subject, plan.needed, plan.trims).content_key())
        assert keys[0] is not None
        assert (keys[0] == keys[1]) is shared, workload


def test_the_performance_doc_names_only_benchmarks_and_settings_that_exist() -> None:
    """docs/performance.md names benchmark modules and environment variables;
    each must exist, so the doc cannot drift from the benchmarks."""
    root = Path(bench_engine.__file__).resolve().parents[2]
    text = (root / "docs" / "performance.md").read_text(encoding="utf-8")
    folder = Path(bench_engine.__file__).parent
    modules = {m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(folder)])}
    named = set(re.findall(r"python -m tests\.bench ([a-z]+)", text))
    named |= set(re.findall(r"`(admission|tfplan|engine|attest)`", text))
    assert named and named <= modules
    sources = "".join(p.read_text(encoding="utf-8") for p in folder.glob("bench_*.py"))
    variables = set(re.findall(r"GUARD_BENCH_[A-Z]+", text))
    assert variables and all(v in sources for v in variables)
    assert "make bench" in text and "bench:" in (root / "Makefile").read_text(encoding="utf-8")


def test_the_baseline_benchmark_pods_inherit() -> None:
    """The Pods the churn benchmark sends are what its ReplicaSet makes."""
    deployment = bench_baseline._owner(
        "Deployment", "legacy", "d-1", bench_baseline._image(1), None
    )
    replicaset = bench_baseline._owner(
        "ReplicaSet", "legacy-1", "r-1", bench_baseline._image(1), deployment
    )
    record = owner_record("ReplicaSet", replicaset)
    assert record is not None
    request = parse_review(json.loads(bench_baseline._bodies(replicaset, 1)[0]))
    subject = subject_of(request, controller_identities=frozenset({CONTROLLER_USER}))
    entry = {"kind": "ReplicaSet", "namespace": "shop", "name": "legacy-1", "uid": "r-1",
             "templateDigest": record.shape.digest}  # fmt: skip
    baseline = GuardBaseline.model_validate(
        {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardBaseline",
            "metadata": {"name": "b"},
            "spec": {"owner": "o", "reason": "r", "expires": "2099-01-01", "entries": [entry]},
        }
    )
    source = OwnerSource({("shop", "r-1"): record}, {})
    today = dt.datetime.now(dt.UTC).date()
    resolution = asyncio.run(resolve(request, subject, source, Baselines([baseline]), today))
    assert resolution.inheritance is not None, resolution.reason
