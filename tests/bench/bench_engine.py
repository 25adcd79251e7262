"""Engine throughput on the default bundle, next to bare CEL on the same expressions.

The floor binds the values the engine hands CEL for the subject (its
variables, trimmed to what the rules read) in a new context, as every new
subject needs, and executes every compiled expression the subject's matching
policies hold, and the message expression of each rule that fails, as the
engine does: what the CEL library costs on its own for a new subject. Both
are measured as CPU time per subject, in alternating rounds. The engine run
adds what guard does per subject (matching, trimming, the content key, the
unknown-value probe, findings). Both run here, in one process.

The engine remembers rule outcomes by the content its rules read, so it is
measured twice: on subjects whose read fields differ every time (a memory
limit, an owner tag: every rule runs), and on the same subject again (the
outcomes are remembered; what is left is trimming, the key and findings).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import os
import statistics
from collections.abc import Iterator
from typing import Any

from controller.policy.bundled import bundled_policies_path
from controller.policy.celenv import new_context
from controller.policy.contexts import Contexts
from controller.policy.documents import Target
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.policy.matching import matches
from controller.policy.results import Requester, Subject
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


# Distinct subjects cycled through: more than one plan remembers, so none is
# remembered when it comes round again.
VARIANTS = 5_000


def variants(subject: Subject) -> list[Subject]:
    """``subject`` again and again, each time with a field its rules read changed."""
    made = []
    for i in range(VARIANTS):
        obj = copy.deepcopy(subject.object)
        if subject.kind == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["resources"]["limits"]["memory"] = f"{256 + i}Mi"
        else:
            obj["tags"] = {**obj["tags"], "owner": f"team-{i}"}
        made.append(dataclasses.replace(subject, object=obj))
    return made


def main() -> None:
    bundle = load_bundle(bundled_policies_path())
    engine = Engine(bundle.policies)
    print(f"{len(engine.compiled)} policies, {sum(len(c.rules) for c in engine.compiled)} rules")
    print(
        f"{'subject':<22} {'engine sees':<12} {'rules':>5} {'engine us':>10} {'bare us':>10} "
        "bare/engine min / median / max"
    )
    for subject in (deployment(), security_group()):
        programs = [
            (rule.expression, rule.message)
            for compiled in engine.compiled
            if matches(compiled.policy, subject)
            for rule in compiled.rules
            if rule.rule.target is subject.target
        ]
        plan = engine._plan(subject.target, engine.matching(subject))
        trimmed = Contexts(subject, plan.needed, plan.trims).plain_variables

        def floor(programs: list[Any] = programs, trimmed: dict[str, Any] = trimmed) -> None:
            context = new_context(trimmed)
            for expression, message in programs:
                # The floor only measures cost; an erroring rule still counts as a run.
                with contextlib.suppress(Exception):
                    # A failing rule's message is CEL the engine runs too.
                    if expression.run(context) is False and message is not None:
                        message.run(context)

        def rules_only(programs: list[Any] = programs, trimmed: dict[str, Any] = trimmed) -> None:
            # The floor without the messages of failing rules.
            context = new_context(trimmed)
            for expression, _ in programs:
                with contextlib.suppress(Exception):
                    expression.run(context)

        def remembered(subject: Subject = subject) -> None:
            engine.evaluate(subject)

        distinct = itertools.cycle(variants(subject))

        def each_new(distinct: Iterator[Subject] = distinct) -> None:
            engine.evaluate(next(distinct))

        runs = alternating(
            {"new": each_new, "seen": remembered, "bare": floor, "rules only": rules_only}, ROUNDS
        )
        bare_us = statistics.median(runs["bare"]) * 1e6
        rules_only_x = statistics.median(
            e / b for e, b in zip(runs["new"], runs["rules only"], strict=True)
        )
        for mode, label in (("new", "new content"), ("seen", "seen before")):
            ratios = sorted(b / e for e, b in zip(runs[mode], runs["bare"], strict=True))
            print(
                f"{subject.kind + ' ' + subject.type:<22.22} {label:<12} {len(programs):>5} "
                f"{statistics.median(runs[mode]) * 1e6:>10,.0f} {bare_us:>10,.0f} "
                f"{ratios[0]:>5.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}"
            )
        print(
            f"{'':<22} engine with new content / the rule expressions alone (no message): "
            f"{rules_only_x:.2f}x"
        )
    print(
        f"CPU per subject, median of {ROUNDS} alternating rounds; ratio = bare CEL / engine "
        "on the same expressions (1.0 = no overhead; target >= 0.67, i.e. engine <= 1.5x, "
        "with new content)"
    )


if __name__ == "__main__":
    main()
