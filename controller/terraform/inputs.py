"""The Terraform inputs guard judges, behind one shape.

``guard tf-plan`` reads a plan (binary, JSON or stdin) and ``guard tf-config``
reads ``.tf`` files; both become a ``TerraformInput``: the subjects to judge,
how many resources, how many values are unknown, and notes for the report.
A plan also has the subject that stands for the plan file itself, which
carries the review requirement (its attestation names the plan's digest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.policy.documents import Action
from controller.policy.results import Decision, Subject
from controller.terraform.normalize import normalize
from controller.terraform.planfile import read_plan


def _as_is(decision: Decision, unknown_action: Action) -> Decision:
    return decision


@dataclass(frozen=True)
class TerraformInput:
    source: str
    # Everything the engine judges, the plan-level subject included.
    subjects: tuple[Subject, ...]
    resource_count: int
    unknown_values: int
    notes: tuple[str, ...] = ()
    # The plan file's own subject (its review), None for configuration.
    plan_subject: Subject | None = None
    # A plan given as JSON only: its digest is not the binary plan's.
    json_only: bool = False
    # The plan JSON, to locate findings by line.
    text: bytes = b""
    # The judged resources (the plan-level subject aside), for per-resource reports.
    resources: tuple[Subject, ...] = ()
    # Address -> the texts of its sensitive values: rules judge the real
    # values, and every report masks these texts.
    sensitive: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Turns failures on resources that may not exist into unknowns (tf-config).
    settle: Callable[[Decision, Action], Decision] = _as_is


def plan_input(source: str, terraform_dir: Path | None = None) -> TerraformInput:
    """A plan: ``source`` is a binary plan, plan JSON, or ``-`` for stdin."""
    plan = read_plan(source, terraform_dir)
    # Rules judge the real values; reports mask them (``sensitive``).
    normalized = normalize(plan.plan, plan.source, plan.digest, mask_sensitive=False)
    of_what = "the plan JSON (no binary plan given)" if plan.json_only else "the binary plan"
    return TerraformInput(
        source=plan.source,
        subjects=(*normalized.resources, normalized.plan),
        resource_count=len(normalized.resources),
        unknown_values=normalized.unknown_values,
        notes=(f"plan format {plan.format_version}; {of_what} has digest {plan.digest}",),
        plan_subject=normalized.plan,
        json_only=plan.json_only,
        text=plan.text,
        resources=normalized.resources,
        sensitive=normalized.sensitive,
    )
