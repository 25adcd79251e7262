"""Policies that cannot be used as written still judge: as errors.

A GuardPolicy custom resource that guard's own validation rejects (a typo
the CRD schema let through, a duration out of range, a rule without a
message) must never be dropped: that would switch a guardrail off without a
word. Its stand-in keeps the policy's name, action and severity where they
can be read, and its ``match`` where that can be read; every request it
matches gets an error finding under the policy's own action (capped by
enforcement), naming the problem. Where the action cannot be read it is
``deny`` (fail closed); where ``match`` cannot be read the stand-in matches
every Kubernetes workload (``scoped`` is False).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller.policy.documents import (
    Action,
    GuardPolicy,
    GuardPolicySpec,
    Match,
    Metadata,
    Severity,
)


@dataclass(frozen=True)
class InvalidPolicy:
    """The stand-in of a policy document that did not validate."""

    stand_in: GuardPolicy
    problem: str
    # False when the policy's own ``match`` could not be read.
    scoped: bool = True

    @property
    def name(self) -> str:
        return self.stand_in.name


def _choice(value: Any, choices: type[Action] | type[Severity], default: str) -> str:
    return value if isinstance(value, str) and value in {c.value for c in choices} else default


def invalid_policy(body: Mapping[str, Any], problem: str) -> InvalidPolicy:
    """The stand-in for a GuardPolicy body that failed validation."""
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    spec = body.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    scoped = True
    try:
        match = Match.model_validate(spec.get("match") or {})
    except (ValidationError, ValueError, TypeError, OverflowError):
        scoped = False
        match = Match.model_validate({"kubernetes": {}})
    # Built from validated parts without the document rules (a stand-in has
    # no rules and no review block of its own: it only judges as an error).
    stand_in = GuardPolicy.model_construct(
        api_version="guard.dev/v1alpha1",
        kind="GuardPolicy",
        metadata=Metadata(name=name if isinstance(name, str) and name else "(unnamed)"),
        spec=GuardPolicySpec.model_construct(
            description="stand-in for a GuardPolicy that failed validation",
            severity=Severity(_choice(spec.get("severity"), Severity, Severity.critical.value)),
            action=Action(_choice(spec.get("action"), Action, Action.deny.value)),
            match=match,
            review=None,
            rules=[],
        ),
    )
    return InvalidPolicy(stand_in=stand_in, problem=problem, scoped=scoped)
