"""Plan JSON ``resource_changes`` into engine subjects.

Iterates ``resource_changes``, not ``planned_values``: deletions and
``forget`` (Terraform 1.7 ``removed`` blocks) exist only there, and policies
must see them. Values Terraform knows only after apply become ``unknowns``
(dotted paths, list positions as numbers), so the engine reports a verdict
that depends on them as unknown instead of passing or failing it. Sensitive
values are replaced before any rule sees them, so no message can echo one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from controller.errors import InputError
from controller.policy.documents import Target
from controller.policy.results import Artifact, Subject

SENSITIVE_MASK = "(sensitive value)"

# Terraform's action lists (plans.Action in its JSON encoding) and guard's name.
_ACTIONS: Mapping[tuple[str, ...], str] = {
    ("create",): "create",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    # lifecycle { destroy = false } on a replaced resource: new object, old one forgotten.
    ("create", "forget"): "replace",
    ("forget", "create"): "replace",
    ("forget",): "forget",
    ("no-op",): "no-op",
    ("read",): "read",
}
# Actions whose ``after`` is null: rules read the object being removed.
_REMOVING = frozenset({"delete", "forget"})


@dataclass(frozen=True)
class Normalized:
    """The subjects of one plan plus the count of unknown values among them."""

    resources: tuple[Subject, ...]
    plan: Subject
    unknown_values: int


def action_of(actions: Any, address: str) -> str:
    """guard's action name for a Terraform action list; unknown lists fail closed.

    ``address`` names the entry in errors (file and resource address).
    """
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise InputError(f"{address}: change.actions is not a list of strings")
    try:
        return _ACTIONS[tuple(actions)]
    except KeyError:
        raise InputError(
            f"{address}: unknown action {actions!r}; "
            "upgrade guard rather than let an unrecognised change through"
        ) from None


def unknown_paths(mask: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths where ``after_unknown`` is ``true`` (list positions as numbers)."""
    if mask is True:
        if prefix:
            yield prefix
        return
    if isinstance(mask, Mapping):
        for key, value in mask.items():
            yield from unknown_paths(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(mask, list):
        for position, value in enumerate(mask):
            yield from unknown_paths(value, f"{prefix}.{position}" if prefix else str(position))


def masked(value: Any, mask: Any) -> Any:
    """``value`` with every part ``mask`` marks sensitive replaced by a fixed marker.

    Returns the original object when nothing is sensitive, so large plans are
    not copied for nothing.
    """
    if mask is True:
        return None if value is None else SENSITIVE_MASK
    if isinstance(mask, Mapping) and isinstance(value, Mapping):
        if not _any_true(mask):
            return value
        return {k: masked(v, mask.get(k)) for k, v in value.items()}
    if isinstance(mask, list) and isinstance(value, list):
        if not _any_true(mask):
            return value
        return [masked(v, mask[i] if i < len(mask) else None) for i, v in enumerate(value)]
    return value


def _any_true(mask: Any) -> bool:
    if mask is True:
        return True
    if isinstance(mask, Mapping):
        return any(_any_true(v) for v in mask.values())
    if isinstance(mask, list):
        return any(_any_true(v) for v in mask)
    return False


def _object(value: Any, address: str, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{address}: change.{field} is not an object")
    return value


def subject_of(entry: Any, position: int, source: str) -> tuple[Subject, int]:
    """One ``resource_changes`` entry as a subject, and its number of unknown values."""
    if not isinstance(entry, dict):
        raise InputError(f"{source}: resource_changes[{position}] is not an object")
    address = entry.get("address")
    change = entry.get("change")
    resource_type = entry.get("type")
    if not isinstance(address, str) or not address:
        raise InputError(f"{source}: resource_changes[{position}] has no address")
    if not isinstance(change, dict) or not isinstance(resource_type, str):
        raise InputError(f"{source}: resource_changes {address}: no change or no type")
    deposed = entry.get("deposed")
    if isinstance(deposed, str) and deposed:
        address = f"{address} (deposed object {deposed})"
    where = f"{source}: resource_changes {address}"
    action = action_of(change.get("actions"), where)
    before = masked(_object(change.get("before"), where, "before"), change.get("before_sensitive"))
    after = masked(_object(change.get("after"), where, "after"), change.get("after_sensitive"))
    unknowns: tuple[str, ...] = ()
    if action in _REMOVING or after is None:
        obj = before
    else:
        obj = after
        unknowns = tuple(unknown_paths(change.get("after_unknown")))
    name = entry.get("name")
    subject = Subject(
        target=Target.terraform,
        address=address,
        kind="resource",
        type=resource_type,
        name=name if isinstance(name, str) else address,
        namespace=None,
        action=action,
        object=obj,
        old_object=before,
        unknowns=unknowns,
        location=source,
    )
    return subject, len(unknowns)


def plan_subject(source: str, digest: str) -> Subject:
    """The plan as a whole: carries the review requirement (its artifact is the plan)."""
    return Subject(
        target=Target.terraform,
        address=source,
        kind="plan",
        type="plan",
        name=PurePath(source).name or source,
        namespace=None,
        action="apply",
        object=None,
        artifacts=(Artifact(reference=source, digest=digest, introduced=True, kind="plan"),),
        location=source,
    )


def normalize(plan: Mapping[str, Any], source: str, digest: str) -> Normalized:
    """Every resource change of a parsed plan, plus the plan-level subject."""
    changes = plan.get("resource_changes") or []
    if not isinstance(changes, list):
        raise InputError(f"{source}: resource_changes is not a list")
    resources: list[Subject] = []
    unknown_count = 0
    for position, entry in enumerate(changes):
        subject, unknown = subject_of(entry, position, source)
        resources.append(subject)
        unknown_count += unknown
    return Normalized(
        resources=tuple(resources),
        plan=plan_subject(source, digest),
        unknown_values=unknown_count,
    )
