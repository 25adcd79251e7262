"""Resolving HCL values read by python-hcl2, as far as they can be known.

python-hcl2 keeps the source form: a literal string arrives quoted
(``'"text"'``), an expression as ``'${...}'``. Only literals, templates over
known values and references to variables and locals (with attribute and
index access) are resolved; everything else (function calls, conditionals,
``for`` expressions, other resources' attributes) is *unknown*, which is what
Terraform would also know only at plan or apply time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from hcl2.utils import process_escape_sequences


class _UnknownType:
    """The marker of a value that cannot be known without a plan."""

    _instance: _UnknownType | None = None

    def __new__(cls) -> _UnknownType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _UnknownType()
BLOCK_MARKER = "__is_block__"

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_REFERENCE = re.compile(rf"^(var|local)\.({_NAME})((?:\.{_NAME}|\[\d+\]|\[\"[^\"\\]*\"\])*)$")
_STEP = re.compile(rf"\.({_NAME})|\[(\d+)\]|\[\"([^\"\\]*)\"\]")
_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")

# Resolves ``var.NAME`` / ``local.NAME`` to a value, or UNKNOWN.
Lookup = Callable[[str, str], Any]


def is_quoted(value: str) -> bool:
    return len(value) >= 2 and value.startswith('"') and value.endswith('"')


def unquote_key(key: str) -> str:
    return process_escape_sequences(key[1:-1]) if is_quoted(key) else key


def resolve(value: Any, lookup: Lookup) -> Any:
    """A python-hcl2 value with every resolvable part resolved, the rest UNKNOWN."""
    if isinstance(value, str):
        return _resolve_string(value, lookup)
    if isinstance(value, list):
        return [resolve(item, lookup) for item in value]
    if isinstance(value, dict):
        return {
            unquote_key(k): resolve(v, lookup)
            for k, v in value.items()
            if k != BLOCK_MARKER and not k.startswith("__")
        }
    return value


def _resolve_string(value: str, lookup: Lookup) -> Any:
    if is_quoted(value):
        body = value[1:-1]
        if "%{" in body:
            return UNKNOWN  # template directives (if/for) need evaluation
        if "${" not in body:
            return process_escape_sequences(body)
        return _template(body, lookup)
    if value.startswith("${") and value.endswith("}"):
        return reference(value[2:-1].strip(), lookup)
    return value  # a bare identifier-like value (e.g. a type keyword)


def _template(body: str, lookup: Lookup) -> Any:
    parts: list[str] = []
    position = 0
    for match in _INTERPOLATION.finditer(body):
        parts.append(process_escape_sequences(body[position : match.start()]))
        value = reference(match.group(1).strip(), lookup)
        if value is UNKNOWN or isinstance(value, dict | list) or value is None:
            return UNKNOWN
        parts.append(_template_text(value))
        position = match.end()
    rest = body[position:]
    if "${" in rest:
        return UNKNOWN  # nested braces the simple scanner does not follow
    parts.append(process_escape_sequences(rest))
    return "".join(parts)


def _template_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def reference(expression: str, lookup: Lookup) -> Any:
    """``var.x``, ``local.y.z[0]["k"]``, or a number literal; else UNKNOWN."""
    match = _REFERENCE.match(expression)
    if match is None:
        return _number(expression)
    value = lookup(match.group(1), match.group(2))
    for step in _STEP.finditer(match.group(3)):
        attribute, position, key = step.groups()
        if value is UNKNOWN:
            return UNKNOWN
        if attribute is not None or key is not None:
            name = attribute if attribute is not None else key
            value = value.get(name, UNKNOWN) if isinstance(value, Mapping) else UNKNOWN
        else:
            index = int(position)
            value = value[index] if isinstance(value, list) and index < len(value) else UNKNOWN
    return value


def _number(expression: str) -> Any:
    try:
        number = float(expression)
    except ValueError:
        return UNKNOWN
    return int(number) if number.is_integer() and "." not in expression else number


def split_unknowns(value: Any, prefix: str = "") -> tuple[Any, list[str], int]:
    """The value with UNKNOWN parts dropped (list slots kept as null), their
    dotted paths, and the number of leaf attributes seen."""
    if value is UNKNOWN:
        return None, [prefix] if prefix else [], 1
    if isinstance(value, dict):
        known: dict[str, Any] = {}
        paths: list[str] = []
        leaves = 0
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            inner, inner_paths, inner_leaves = split_unknowns(item, path)
            paths.extend(inner_paths)
            leaves += inner_leaves
            if item is not UNKNOWN:
                known[key] = inner
        return known, paths, leaves
    if isinstance(value, list):
        items: list[Any] = []
        paths = []
        leaves = 0
        for position, item in enumerate(value):
            path = f"{prefix}.{position}" if prefix else str(position)
            inner, inner_paths, inner_leaves = split_unknowns(item, path)
            paths.extend(inner_paths)
            leaves += inner_leaves
            items.append(inner)
        return items, paths, leaves
    return value, [], 1
