"""Engine throughput on the default bundle, next to bare CEL on the same expressions.

The floor executes every compiled expression the subject's matching policies
hold against one prebuilt context: what the CEL library costs on its own.
Both are measured as CPU time per subject, in alternating rounds.
The engine run adds what guard does per subject (building contexts, matching,
the unknown-value probe, findings). Both run here, in one process.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from typing import Any

from controller.policy.bundled import bundled_policies_path
from controller.policy.celenv import new_context
from controller.policy.documents import Target
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.policy.matching import matches
from controller.policy.results import Requester, Subject
from controller.policy.variables import variables_for
from tests.bench.timing import alternating

DIGEST = "sha256:" + "4f" * 32
ROUNDS = int(os.environ.get("GUARD_BENCH_ROUNDS", "9"))


def deployment() -> Subject:
    container = {
        "name": "app",
        "image": f"registry.example.com/shop/app@{DIGEST}",
        "ports": [{"containerPort": 8080}],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "env": [{"name": f"VAR_{i}", "value": str(i)} for i in range(10)],
    }
    sidecar = {**container, "name": "proxy", "image": f"registry.example.com/mesh/proxy@{DIGEST}"}
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop",
            "namespace": "prod",
            "labels": {"owner": "team-shop"},
            # What the API server sends: server-side apply bookkeeping.
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {f"f:field{i}": {} for i in range(40)},
                }
            ],
        },
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "shop", "owner": "team-shop"}},
                "spec": {"containers": [container, sidecar], "volumes": [{"name": "tmp"}]},
            },
        },
    }
    return Subject(
        target=Target.kubernetes,
        address="Deployment prod/shop",
        kind="Deployment",
        type="Deployment",
        name="shop",
        namespace="prod",
        action="create",
        object=obj,
        requester=Requester(username="ci"),
        labels={"owner": "team-shop"},
    )


def security_group() -> Subject:
    after = {
        "name": "web",
        "description": "web tier",
        "vpc_id": "vpc-123",
        "tags": {"owner": "team-shop", "env": "prod"},
        "ingress": [
            {"from_port": 443, "to_port": 443, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]},
            {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["10.0.0.0/8"]},
        ],
        "egress": [{"from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"]}],
    }
    return Subject(
        target=Target.terraform,
        address="module.web.aws_security_group.web",
        kind="resource",
        type="aws_security_group",
        name="web",
        namespace=None,
        action="create",
        object=after,
    )


def main() -> None:
    bundle = load_bundle(bundled_policies_path())
    engine = Engine(bundle.policies)
    print(f"{len(engine.compiled)} policies, {sum(len(c.rules) for c in engine.compiled)} rules")
    print(
        f"{'subject':<22} {'rules':>5} {'engine us':>10} {'bare us':>10} "
        "bare/engine min / median / max"
    )
    for subject in (deployment(), security_group()):
        programs = [
            rule.expression
            for compiled in engine.compiled
            if matches(compiled.policy, subject)
            for rule in compiled.rules
            if rule.rule.target is subject.target
        ]
        context = new_context(variables_for(subject, subject.object))

        def floor(programs: list[Any] = programs, context: Any = context) -> None:
            for program in programs:
                # The floor only measures cost; an erroring rule still counts as a run.
                with contextlib.suppress(Exception):
                    program.run(context)

        def guarded(subject: Subject = subject) -> None:
            engine.evaluate(subject)

        runs = alternating({"engine": guarded, "bare": floor}, ROUNDS)
        ratios = sorted(b / e for e, b in zip(runs["engine"], runs["bare"], strict=True))
        engine_us = statistics.median(runs["engine"]) * 1e6
        bare_us = statistics.median(runs["bare"]) * 1e6
        print(
            f"{subject.kind + ' ' + subject.type:<22.22} {len(programs):>5} {engine_us:>10,.0f} "
            f"{bare_us:>10,.0f} {ratios[0]:>5.2f} / {statistics.median(ratios):.2f} / "
            f"{ratios[-1]:.2f}"
        )
    print(
        f"CPU per subject, median of {ROUNDS} alternating rounds; ratio = bare CEL / engine "
        "on the same expressions (1.0 = no overhead; target >= 0.67, i.e. engine <= 1.5x)"
    )


if __name__ == "__main__":
    main()
