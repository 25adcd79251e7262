"""Resolving HCL values read by python-hcl2, as far as they can be known.

python-hcl2 keeps the source form: a literal string arrives quoted
(``'"text"'``), an expression as ``'${...}'``. Strings are templates and
expressions are evaluated by :mod:`controller.terraform.expressions`; what
it cannot know (other resources' attributes, ``for`` expressions, most
functions) is *unknown*, which is what Terraform would also know only at
plan or apply time. Values nest at most :data:`MAX_VALUE_DEPTH` levels.
"""

from __future__ import annotations

from typing import Any

from hcl2.utils import process_escape_sequences

from controller.terraform.expressions import UNKNOWN, LimitError, Lookup, evaluate, template

__all__ = [
    "BLOCK_MARKER",
    "MAX_VALUE_DEPTH",
    "UNKNOWN",
    "LimitError",
    "Lookup",
    "reference",
    "resolve",
    "split_unknowns",
    "unquote_key",
]

BLOCK_MARKER = "__is_block__"
# Configuration values as deep as plan values may be (see normalize).
MAX_VALUE_DEPTH = 100


def is_quoted(value: str) -> bool:
    return len(value) >= 2 and value.startswith('"') and value.endswith('"')


def unquote_key(key: str) -> str:
    return process_escape_sequences(key[1:-1]) if is_quoted(key) else key


def resolve(value: Any, lookup: Lookup, depth: int = 0) -> Any:
    """A python-hcl2 value with every resolvable part resolved, the rest UNKNOWN."""
    if depth > MAX_VALUE_DEPTH:
        raise LimitError(f"values nested deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, str):
        return _resolve_string(value, lookup)
    if isinstance(value, list):
        return [resolve(item, lookup, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            unquote_key(k): resolve(v, lookup, depth + 1)
            for k, v in value.items()
            if k != BLOCK_MARKER and not k.startswith("__")
        }
    return value


def _resolve_string(value: str, lookup: Lookup) -> Any:
    if is_quoted(value):
        return template(value[1:-1], lookup)
    if value.startswith("${") and value.endswith("}"):
        return evaluate(value[2:-1].strip(), lookup)
    return value  # a bare identifier-like value (e.g. a type keyword)


def reference(expression: str, lookup: Lookup) -> Any:
    """The value of an expression's text (``var.x``, ``local.y.z[0]["k"]``, ...)."""
    return evaluate(expression, lookup)


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
