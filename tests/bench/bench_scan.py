"""The background scan of 10,000 workloads: time, memory, and report writes.

10,000 Deployments in 100 namespaces (the demo Deployment of
``examples/manifests/web.yaml``, renamed), judged by the default policy
bundle with the demo trust: 8,000 run the reviewed demo image (its
attestation in the index, as the operator holds it), 2,000 an image nobody
reviewed. Measured in this process: the scan's wall time and CPU, the memory
the workload store keeps (what the operator holds between scans), the
process's peak RSS, the reports' count and size, and how long the capped
writer (``ScanSettings.max_writes`` per ``interval``) takes to write them
all the first time. The numbers are printed, never asserted.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

from controller.kube import policyreport
from controller.kube.inherit import Baselines
from controller.kube.manifests import read_attestations
from controller.kube.reporting import ScanSettings, WorkloadStore
from controller.kube.scan import scan
from controller.kube.state import FileInputs, build_policy_set
from controller.policy.bundled import bundled_policies_path
from controller.policy.documents import Action

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = 10_000
NAMESPACES = 100
UNREVIEWED = f"ghcr.io/example/legacy@sha256:{'7' * 64}"


def workloads(count: int = WORKLOADS) -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples" / "manifests" / "web.yaml").read_text())
    made = []
    for number in range(count):
        obj = copy.deepcopy(base)
        obj["metadata"].update(
            name=f"web-{number}", namespace=f"team-{number % NAMESPACES}", uid=f"uid-{number}"
        )
        if number % 5 == 4:
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = UNREVIEWED
        made.append(obj)
    return made


def main() -> None:
    files = FileInputs.load((bundled_policies_path(),), (ROOT / "examples/keys/demo-trust.yaml",))
    policies = build_policy_set(files, (), enforcement=Action.deny)
    attestations = read_attestations([ROOT / "examples/attestations/app-reviewed.json"])
    objects = workloads()
    tracemalloc.start()
    store = WorkloadStore()
    for obj in objects:
        store.observe("Deployment", obj, "ADDED")
    stored, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()  # it slows Python down: the scan is timed without it
    del objects
    now = dt.datetime.now(dt.UTC)
    wall, cpu = time.perf_counter(), time.process_time()
    found = scan(store.items(), policies, attestations, Baselines(), now=now)
    specs = policyreport.policy_specs(policies.policies)
    reports = policyreport.namespace_reports(found.workloads, specs, now)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sizes = [len(json.dumps(r)) for r in reports]
    results = sum(len(r["results"]) for r in reports)
    fails = sum(r["summary"]["fail"] for r in reports)
    settings = ScanSettings()
    rounds = -(-len(reports) // settings.max_writes)
    interval = settings.interval.total_seconds()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"workloads judged           {len(found.workloads):>10,}")
    print(f"scan + reports, wall       {wall:>10.1f} s  ({wall / WORKLOADS * 1000:.2f} ms each)")
    print(f"scan + reports, CPU        {cpu:>10.1f} s")
    print(
        f"workload store             {stored / 2**20:>10.1f} MiB ({stored // WORKLOADS:,} B each)"
    )
    print(f"process max RSS            {rss:>10.0f} MiB")
    print(f"reports                    {len(reports):>10,}  ({results:,} results, {fails:,} fail)")
    print(f"largest report             {max(sizes) / 1024:>10.1f} KiB (API server cap 1.5 MiB)")
    print(
        f"first write of all         {rounds * interval:>10.0f} s  ({settings.max_writes} writes "
        f"per {interval:g} s round: at most {settings.max_writes / interval:g} writes/s)"
    )
