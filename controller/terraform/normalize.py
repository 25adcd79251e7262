"""Plan JSON ``resource_changes`` into engine subjects.

Iterates ``resource_changes``, not ``planned_values``: deletions and
``forget`` (Terraform 1.7 ``removed`` blocks) exist only there, and policies
must see them. Values Terraform knows only after apply become ``unknowns``
(dotted paths, list positions as numbers), so the engine reports a verdict
that depends on them as unknown instead of passing or failing it. Sensitive
values are replaced before any rule sees them, so no message can echo one.

Everything a rule will walk is bounded here first (nesting depth, the shape
of the unknown and sensitive masks), so a hostile plan fails as an input
error and never as a ``RecursionError`` in the middle of a decision. Every
address is judged once: a plan that lists one twice, or whose
``planned_values`` or ``configuration`` name resources missing from
``resource_changes``, is refused (see :mod:`controller.terraform.completeness`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from controller.errors import InputError
from controller.policy.documents import Target
from controller.policy.results import Artifact, Subject
from controller.strict import nested_deeper_than
from controller.terraform.completeness import check_complete
from controller.terraform.sensitive import SENSITIVE_MASK, masked, masked_object, sensitive_texts

__all__ = ["SENSITIVE_MASK", "Normalized", "masked", "normalize", "unknown_paths"]

# Real provider values nest a dozen levels at most (WAF statements, Kubernetes
# manifests); rules and the CEL conversion walk them recursively.
MAX_VALUE_DEPTH = 100

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
    """The subjects of one plan plus the count of unknown values among them.

    ``sensitive`` maps a subject's address to the text of every value the
    plan marks sensitive in it, for masking reports at output time
    (:func:`controller.report.redact.redacted`).
    """

    resources: tuple[Subject, ...]
    plan: Subject
    unknown_values: int
    sensitive: Mapping[str, frozenset[str]] = field(default_factory=dict)


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


def _object(value: Any, where: str, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{where}: change.{name} is not an object")
    return value


_FIELDS = ("before", "after", "after_unknown", "after_sensitive", "before_sensitive")


def _bounded(change: dict[str, Any], where: str) -> None:
    """Refuse a change whose values or masks nest deeper than rules may walk.

    One walk over the whole change on the hot path; only a refusal looks
    at the fields one by one, to name the culprit.
    """
    if not nested_deeper_than(change, MAX_VALUE_DEPTH + 1):
        return
    for name in _FIELDS:
        if nested_deeper_than(change.get(name), MAX_VALUE_DEPTH):
            raise InputError(f"{where}: change.{name} nests deeper than {MAX_VALUE_DEPTH} levels")
    raise InputError(f"{where}: change nests deeper than {MAX_VALUE_DEPTH} levels")


def _mask(value: Any, where: str, name: str) -> bool:
    """Check a sensitive or unknown mask; whether any part of it is ``true``.

    Masks are booleans in objects and lists, nothing else: Terraform writes
    nothing else, and a number or string where a boolean belongs would
    silently read as "not sensitive" / "known", so it is refused.
    """
    if value is None or value is False:
        return False
    if value is True:
        return True
    if type(value) is not dict and type(value) is not list:
        raise InputError(f"{where}: change.{name} is not a boolean, object or list")
    marked = False
    level = [value]
    while level:
        deeper = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                kind = type(child)
                if kind is bool:
                    marked = marked or child
                elif kind is dict or kind is list:
                    deeper.append(child)
                else:
                    raise InputError(
                        f"{where}: change.{name} holds {child!r} where a boolean belongs"
                    )
        level = deeper
    return marked


def _reason(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InputError(f"{where}: action_reason is not a string")


def subject_of(entry: Any, position: int, source: str) -> tuple[Subject, int]:
    """One ``resource_changes`` entry as a subject, and its number of unknown values."""
    subject, unknown, _ = _subject_and_secrets(entry, position, source)
    return subject, unknown


def _subject_and_secrets(
    entry: Any, position: int, source: str, mask_sensitive: bool = True
) -> tuple[Subject, int, frozenset[str]]:
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
    if deposed is not None and not isinstance(deposed, str):
        raise InputError(f"{source}: resource_changes {address}: deposed is not a string")
    if deposed:
        address = f"{address} (deposed object {deposed})"
    where = f"{source}: resource_changes {address}"
    action = action_of(change.get("actions"), where)
    _bounded(change, where)
    before = _object(change.get("before"), where, "before")
    after = _object(change.get("after"), where, "after")
    secrets: frozenset[str] = frozenset()
    sensitive: list[str] = []
    if _mask(change.get("before_sensitive"), where, "before_sensitive"):
        mask = change["before_sensitive"]
        secrets = secrets.union(sensitive_texts(before, mask))
        sensitive.extend(unknown_paths(mask, "before"))
        before = masked_object(before, mask) if mask_sensitive else before
    if _mask(change.get("after_sensitive"), where, "after_sensitive"):
        mask = change["after_sensitive"]
        secrets = secrets.union(sensitive_texts(after, mask))
        sensitive.extend(unknown_paths(mask, "after"))
        after = masked_object(after, mask) if mask_sensitive else after
    has_unknowns = _mask(change.get("after_unknown"), where, "after_unknown")
    unknowns: tuple[str, ...] = ()
    if action in _REMOVING or after is None:
        obj = before
        # Rules read the old state as ``after`` too when nothing comes after.
        sensitive.extend(
            "after" + path.removeprefix("before") for path in sensitive if path.startswith("before")
        )
    else:
        obj = after
        if has_unknowns:
            unknowns = tuple(unknown_paths(change["after_unknown"]))
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
        change_actions=tuple(change["actions"]),  # checked by action_of
        action_reason=_reason(entry.get("action_reason"), where),
        sensitive=tuple(sensitive),
    )
    return subject, len(unknowns), secrets


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


def normalize(
    plan: Mapping[str, Any],
    source: str,
    digest: str,
    *,
    targeted: bool = False,
    mask_sensitive: bool = True,
) -> Normalized:
    """Every resource change of a parsed plan, plus the plan-level subject.

    ``targeted`` says the plan was made with ``-target`` (or is refresh-only),
    so the configuration may declare resources the plan does not change; the
    plan's own ``planned_values`` must still be covered. ``mask_sensitive``
    replaces sensitive values before rules see them; without it rules judge
    the real values, and reports must be masked at output time with
    ``sensitive`` (:func:`controller.report.redact.redacted`).
    """
    changes = plan.get("resource_changes")
    if changes is None:
        changes = []  # Terraform omits the key when nothing would change
    if not isinstance(changes, list):
        raise InputError(f"{source}: resource_changes is not a list")
    resources: list[Subject] = []
    sensitive: dict[str, frozenset[str]] = {}
    seen: set[str] = set()
    changed: set[str] = set()
    unknown_count = 0
    for position, entry in enumerate(changes):
        subject, unknown, secrets = _subject_and_secrets(entry, position, source, mask_sensitive)
        if subject.address in seen:
            raise InputError(
                f"{source}: resource_changes lists {subject.address} more than once; "
                "a plan changes each resource instance once"
            )
        seen.add(subject.address)
        changed.add(entry["address"])  # checked by _subject_and_secrets
        resources.append(subject)
        unknown_count += unknown
        if secrets:
            sensitive[subject.address] = secrets
    check_complete(plan, source, changed, targeted=targeted)
    return Normalized(
        resources=tuple(resources),
        plan=plan_subject(source, digest),
        unknown_values=unknown_count,
        sensitive=sensitive,
    )
