"""``guard tf-plan`` on generated plans of 1,000 / 10,000 / 50,000 resources.

Each plan is written the way ``terraform show -json`` writes it (one line,
about 4 KB per resource with provider-shaped attributes, unknowns and
sensitive values). The floor is ``json.load`` of the same file in a fresh
interpreter: the least any tool that reads the plan must pay. Both run as
subprocesses in this run; wall time and peak memory (max RSS of the child)
are reported with their ratios, never asserted. Two more floors run with
them: guard's own strict reader alone, and a hand-written check (``json.load``
plus six plain-Python tests per change). Every command runs once per round,
in an order that rotates between rounds, so outside load lands on all alike;
``GUARD_BENCH_ROUNDS`` sets the number of rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_GC = "json.load, no gc"
SIZES = tuple(int(n) for n in os.environ.get("GUARD_BENCH_SIZES", "1000,10000,50000").split(","))
BREAKDOWN_SIZE = 10_000
REPO = Path(__file__).resolve().parents[2]
TAGS = {"owner": "payments", "env": "prod", "cost-center": "1234"}


def _resource(i: int) -> dict[str, Any]:
    """One provider-shaped change; a mix of types, modules, count and for_each."""
    kind = i % 5
    module = f"module.app_{i % 7}." if i % 3 == 0 else ""
    public = i % 50 == 0
    rtype: str
    after: dict[str, Any]
    unknown: dict[str, Any]
    if kind == 0:
        rtype, after, unknown = (
            "aws_s3_bucket",
            {"bucket": f"bucket-{i}", "acl": "public-read" if public else "private",
             "force_destroy": False, "tags": TAGS, "tags_all": TAGS,
             "versioning": [{"enabled": True, "mfa_delete": False}]},
            {"arn": True, "id": True, "bucket_domain_name": True, "region": True},
        )  # fmt: skip
    elif kind == 1:
        cidr = "0.0.0.0/0" if public else "10.0.0.0/8"
        rtype, after, unknown = (
            "aws_security_group",
            {"name": f"sg-{i}", "description": "generated", "tags": TAGS, "tags_all": TAGS,
             "ingress": [{"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": [cidr],
                          "ipv6_cidr_blocks": [], "prefix_list_ids": [], "security_groups": [],
                          "self": False, "description": "ssh"}],
             "egress": [{"from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"],
                         "ipv6_cidr_blocks": [], "prefix_list_ids": [], "security_groups": [],
                         "self": False, "description": ""}]},
            {"arn": True, "id": True, "vpc_id": True, "owner_id": True},
        )  # fmt: skip
    elif kind == 2:
        rtype, after, unknown = (
            "aws_db_instance",
            {"identifier": f"db-{i}", "engine": "postgres", "engine_version": "15.4",
             "instance_class": "db.t3.micro", "allocated_storage": 20, "storage_encrypted": not public,
             "deletion_protection": True, "publicly_accessible": False, "username": "app",
             "password": "not-a-real-secret", "tags": TAGS, "tags_all": TAGS,
             "backup_retention_period": 7, "multi_az": True, "parameter_group_name": "default"},
            {"arn": True, "id": True, "endpoint": True, "address": True, "kms_key_id": True},
        )  # fmt: skip
    elif kind == 3:
        rtype, after, unknown = (
            "aws_instance",
            {"ami": "ami-0123456789abcdef0", "instance_type": "t3.small", "tags": TAGS,
             "tags_all": TAGS, "monitoring": True, "ebs_optimized": True,
             "root_block_device": [{"volume_size": 20, "volume_type": "gp3", "encrypted": True}],
             "metadata_options": [{"http_tokens": "required", "http_endpoint": "enabled"}]},
            {"id": True, "arn": True, "private_ip": True, "public_ip": True, "subnet_id": True},
        )  # fmt: skip
    else:
        rtype, after, unknown = (
            "aws_iam_role",
            {"name": f"role-{i}", "path": "/", "tags": TAGS, "tags_all": TAGS,
             "assume_role_policy": json.dumps({"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                  "Action": "sts:AssumeRole"}]}),
             "max_session_duration": 3600},
            {"arn": True, "id": True, "unique_id": True, "create_date": True},
        )  # fmt: skip
    index: Any = i if i % 2 else f"k{i}"
    key = f"[{i}]" if i % 2 else f'["k{i}"]'
    sensitive = {"password": True} if rtype == "aws_db_instance" else {}
    entry: dict[str, Any] = {
        "address": f"{module}{rtype}.r{i % 100}{key}",
        "mode": "managed",
        "type": rtype,
        "name": f"r{i % 100}",
        "index": index,
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {
            "actions": ["create"],
            "before": None,
            "after": after,
            "after_unknown": unknown,
            "before_sensitive": False,
            "after_sensitive": sensitive,
        },
    }
    if module:
        entry["module_address"] = module[:-1]
    return entry


def write_plan(path: Path, count: int) -> None:
    changes = [_resource(i) for i in range(count)]
    plan = {
        "format_version": "1.2",
        "terraform_version": "1.11.4",
        "planned_values": {
            "root_module": {
                "resources": [
                    {"address": c["address"], "type": c["type"], "values": c["change"]["after"]}
                    for c in changes
                ]
            }
        },
        "resource_changes": changes,
        "configuration": {"root_module": {}},
    }
    path.write_text(json.dumps(plan, separators=(",", ":")))


@dataclass(frozen=True)
class Measure:
    seconds: float
    cpu: float
    peak_mib: float
    code: int


def measure(command: list[str], cwd: Path = REPO) -> Measure:
    """Wall time, CPU time and peak RSS of one child process (its own rusage, via wait4)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if child.stderr is not None:
        child.stderr.close()
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(seconds, cpu, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))


# The floors: what reading the plan costs with no policy at all. ``json.load``
# is the least any tool pays; the strict reader is guard's own (duplicate keys,
# non-finite numbers, depth), which plans must go through; the hand-written
# floor adds a plain-Python loop doing six checks like the bundle's per change.
FLOORS = {
    "json.load": "import json, sys\nwith open(sys.argv[1], 'rb') as f:\n    json.load(f)\n",
    # guard parses with the cyclic collector paused (see controller.strict):
    # the same for json.load, so that no part of guard's ratio comes from it.
    NO_GC: (
        "import gc, json, sys\ngc.disable()\nwith open(sys.argv[1], 'rb') as f:\n    json.load(f)\n"
    ),
    "strict read": (
        "import sys\nfrom controller.terraform.planfile import read_plan\nread_plan(sys.argv[1])\n"
    ),
    "hand-written": (
        "import json, sys\n"
        "with open(sys.argv[1], 'rb') as f:\n    plan = json.load(f)\n"
        "bad = 0\n"
        "for change in plan['resource_changes']:\n"
        "    after = change['change'].get('after') or {}\n"
        "    tags = after.get('tags') or {}\n"
        "    bad += 'owner' not in tags\n"
        "    bad += after.get('acl') in ('public-read', 'public-read-write')\n"
        "    bad += after.get('storage_encrypted') is False\n"
        "    bad += after.get('publicly_accessible') is True\n"
        "    bad += any('0.0.0.0/0' in (r.get('cidr_blocks') or []) and r.get('from_port') == 22\n"
        "               for r in after.get('ingress') or [])\n"
        "    bad += any(o.get('http_tokens') != 'required' for o in after.get('metadata_options') or [])\n"
        "print(bad)\n"
    ),
}
ROUNDS = int(os.environ.get("GUARD_BENCH_ROUNDS", "3"))
# Another checkout of guard (``GUARD_BENCH_BASELINE=/path``) run in the same
# rounds, with the same interpreter: before/after figures under the same load.
BASELINE = os.environ.get("GUARD_BENCH_BASELINE")


def phases(plan: Path) -> dict[str, float]:
    """Where guard's time goes, in this process: reading, normalizing, the engine."""
    from controller.policy.bundled import bundled_policies_path
    from controller.policy.engine import Engine
    from controller.policy.loader import load_bundle
    from controller.terraform.normalize import normalize
    from controller.terraform.planfile import read_plan

    timings: dict[str, float] = {}
    start = time.perf_counter()
    parsed = read_plan(str(plan))
    timings["read+parse"] = time.perf_counter() - start
    start = time.perf_counter()
    normalized = normalize(parsed.plan, parsed.source, parsed.digest)
    timings["normalize"] = time.perf_counter() - start
    start = time.perf_counter()
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    timings["load bundle"] = time.perf_counter() - start
    start = time.perf_counter()
    engine.decide(normalized.resources)
    timings["engine.decide"] = time.perf_counter() - start
    return timings


def _guard_command(plan: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "controller",
        "tf-plan",
        str(plan),
        "--quiet",
        "--output",
        "json=/dev/null",
    ]


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def main() -> None:
    commands: dict[str, Callable[[Path], list[str]]] = {
        name: (lambda plan, code=code: [sys.executable, "-c", code, str(plan)])
        for name, code in FLOORS.items()
    }
    commands["guard"] = _guard_command
    folders = {name: REPO for name in commands}
    if BASELINE:
        commands["baseline"] = _guard_command
        folders["baseline"] = Path(BASELINE)
    print(
        f"{ROUNDS} alternating rounds (order rotates); each figure is one child process; "
        "ratios are guard / json.load per round, min / median / max"
    )
    print(
        f"{'resources':>9} {'MB':>5} | "
        + " | ".join(f"{name + ' s':>14} {'cpu':>5} {'MiB':>5}" for name in commands)
        + f" | {'time x':>15} {'cpu x':>15} {'x no-gc floor':>15} {'mem x':>5} {'exit':>4}"
    )
    breakdown: dict[str, float] = {}
    names = list(commands)
    with tempfile.TemporaryDirectory() as folder:
        for count in SIZES:
            plan = Path(folder) / f"plan-{count}.json"
            write_plan(plan, count)
            size_mb = plan.stat().st_size / 1e6
            runs: dict[str, list[Measure]] = {name: [] for name in names}
            for round_ in range(ROUNDS):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    runs[name].append(measure(commands[name](plan), folders[name]))
            med = {
                name: Measure(
                    statistics.median(m.seconds for m in ms),
                    statistics.median(m.cpu for m in ms),
                    max(m.peak_mib for m in ms),
                    ms[-1].code,
                )
                for name, ms in runs.items()
            }
            time_x = [
                g.seconds / f.seconds for g, f in zip(runs["guard"], runs["json.load"], strict=True)
            ]
            cpu_x = [g.cpu / f.cpu for g, f in zip(runs["guard"], runs["json.load"], strict=True)]
            no_gc_x = [
                g.seconds / f.seconds for g, f in zip(runs["guard"], runs[NO_GC], strict=True)
            ]
            print(
                f"{count:>9} {size_mb:>5.1f} | "
                + " | ".join(
                    f"{med[n].seconds:>14.2f} {med[n].cpu:>5.2f} {med[n].peak_mib:>5.0f}"
                    for n in names
                )
                + f" | {_spread(time_x):>15} {_spread(cpu_x):>15} {_spread(no_gc_x):>15} "
                f"{med['guard'].peak_mib / med['json.load'].peak_mib:>5.1f} {med['guard'].code:>4}",
                flush=True,
            )
            if count == BREAKDOWN_SIZE:
                breakdown = phases(plan)
    print("targets: guard <= 3x json.load at 10,000 resources, <= 2x at 50,000 (median)")
    print(
        f"in-process phases at {BREAKDOWN_SIZE:,} resources: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in breakdown.items())
    )
    print("exit 1 is expected: about 2% of the generated resources break a policy")


if __name__ == "__main__":
    main()
