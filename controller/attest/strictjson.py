"""JSON and YAML parsing that refuses what attackers use to confuse parsers.

Two parsers reading one document must see one meaning. Python's ``json``
keeps the last of two equal keys while other languages keep the first, so a
signed envelope with two ``payload`` keys could mean one thing to the signer
and another to us: duplicate keys are rejected. ``NaN`` and ``Infinity`` are
not JSON and are rejected too, and so are numbers that only read as one by
overflowing (``1e400`` would become infinity and pass any minimum) or that
are too long to convert. Every failure is a ``StrictJSONError``, never a bare
``ValueError`` or ``RecursionError`` that a caller might not expect.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from controller.policy.loader import UniqueKeyLoader

# Far beyond any count or measurement an attestation carries; Python refuses
# more than 4300 digits anyway, with a bare ValueError.
MAX_INT_DIGITS = 64


class StrictJSONError(ValueError):
    """The text is not plain, unambiguous JSON (or YAML)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:32]} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(f"number too long ({len(text)} digits)")
    return int(text)


def loads(data: bytes | str) -> Any:
    """Parse JSON, rejecting duplicate keys, NaN/Infinity and invalid UTF-8."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise StrictJSONError("not valid JSON: nested too deeply") from None


def load_json_or_yaml(text: str) -> Any:
    """Parse a JSON or YAML document (YAML is a superset), rejecting duplicate keys."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except RecursionError:
        raise StrictJSONError("not valid JSON or YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StrictJSONError(f"not valid JSON or YAML{where}: {problem}") from None
