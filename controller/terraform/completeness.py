"""A plan judged whole: what it declares or plans must be in ``resource_changes``.

guard judges ``resource_changes``; ``planned_values`` and ``configuration``
are other views of the same plan. Terraform builds ``planned_values`` from
the same changes, so a resource there and not in ``resource_changes`` means
the plan was cut or edited, and what was cut would never be judged. In the
configuration, a managed resource outside ``count`` / ``for_each`` (its own
and its modules') always has exactly one instance, so Terraform plans a
change for it, if only ``no-op``; only a ``-target`` or refresh-only plan
leaves it out, which the caller says with ``targeted``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from typing import Any

from controller.errors import InputError
from controller.terraform.addresses import config_address

# Far deeper than any real module tree; bounds the walk over hostile input.
MAX_MODULE_DEPTH = 64
_EXPANDING = ("count_expression", "for_each_expression")


def check_complete(
    plan: Mapping[str, Any], source: str, changed: Set[str], *, targeted: bool = False
) -> None:
    """Refuse a plan whose other views name resources ``changed`` lacks.

    ``changed`` holds the ``address`` of every ``resource_changes`` entry.
    """
    accounted = set(changed) | set(_deferred(plan, source))
    for address in _planned(plan, source):
        if address not in accounted:
            raise InputError(
                f"{source}: planned_values has {address} but resource_changes has no entry "
                "for it; the plan JSON is incomplete or was filtered, and what is missing "
                "would never be judged"
            )
    if targeted:
        return
    declared: set[str] | None = None
    for address in _single_instances(plan, source):
        if declared is None:
            declared = {config_address(address) for address in accounted}
        if address not in declared:
            raise InputError(
                f"{source}: the configuration declares {address} but resource_changes has "
                "no entry for it; the plan JSON is incomplete or was filtered (a -target or "
                "refresh-only plan covers only part of the configuration)"
            )


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where} is not a list")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} is not an object")
    return value


def _address(resource: Any, where: str) -> str:
    address = resource.get("address") if isinstance(resource, dict) else None
    if not isinstance(address, str) or not address:
        raise InputError(f"{where} has no address")
    return address


def _deferred(plan: Mapping[str, Any], source: str) -> Iterator[str]:
    """Changes Terraform deferred to a later plan (1.9+): planned, not applied now."""
    for position, item in enumerate(
        _list(plan.get("deferred_changes"), f"{source}: deferred_changes")
    ):
        where = f"{source}: deferred_changes[{position}]"
        yield _address(_dict(item, where).get("resource_change"), where)


def _modules(root: Any, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    stack = [(root, where, 0)]
    while stack:
        module, at, depth = stack.pop()
        if depth > MAX_MODULE_DEPTH:
            raise InputError(f"{at}: modules nest deeper than {MAX_MODULE_DEPTH} levels")
        body = _dict(module, at)
        yield body, at
        children = _list(body.get("child_modules"), f"{at}.child_modules")
        for position, child in enumerate(children):
            stack.append((child, f"{at}.child_modules[{position}]", depth + 1))


def _planned(plan: Mapping[str, Any], source: str) -> Iterator[str]:
    values = _dict(plan.get("planned_values"), f"{source}: planned_values")
    if values.get("root_module") is None:
        return
    for module, at in _modules(values["root_module"], f"{source}: planned_values.root_module"):
        for position, resource in enumerate(_list(module.get("resources"), f"{at}.resources")):
            address = resource.get("address") if type(resource) is dict else None
            if type(address) is not str or not address:
                address = _address(resource, f"{at}.resources[{position}]")  # names the problem
            yield address


def _single_instances(plan: Mapping[str, Any], source: str) -> Iterator[str]:
    """Managed resources the configuration declares exactly once, with module prefix."""
    configuration = _dict(plan.get("configuration"), f"{source}: configuration")
    if configuration.get("root_module") is None:
        return
    stack = [(configuration["root_module"], f"{source}: configuration.root_module", "", 0)]
    while stack:
        module, at, prefix, depth = stack.pop()
        if depth > MAX_MODULE_DEPTH:
            raise InputError(f"{at}: modules nest deeper than {MAX_MODULE_DEPTH} levels")
        body = _dict(module, at)
        for position, resource in enumerate(_list(body.get("resources"), f"{at}.resources")):
            where = f"{at}.resources[{position}]"
            address = _address(resource, where)
            if resource.get("mode") == "managed" and not any(k in resource for k in _EXPANDING):
                yield prefix + address
        calls = _dict(body.get("module_calls"), f"{at}.module_calls")
        for name, call in calls.items():
            where = f"{at}.module_calls.{name}"
            if any(k in _dict(call, where) for k in _EXPANDING):
                continue  # zero or more instances: nothing in it is certain
            stack.append(
                (call.get("module"), f"{where}.module", f"{prefix}module.{name}.", depth + 1)
            )
