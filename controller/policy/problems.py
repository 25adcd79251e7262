"""One way to say what is wrong with a document: pydantic errors as one line.

Every reader of guard's models (files, custom resources, statements, CLI
flags) reports a rejected field the same way: its path
(``spec.rules[0].name``), the problem, what was given where a strict type
refused it, and the nearest field name for an unknown field (the typo it
usually is).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from controller.policy.identity import suggestion


def field_path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _unwrap(annotation: Any) -> Any:
    """The model or list inside ``Annotated``/``Optional`` wrappers."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return None
            annotation = options[0]
        else:
            return annotation


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, ...]:
    """The field names (as written) of the model at a location, for hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return ()
            current = field.annotation
        else:
            return ()
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return tuple(f.alias or n for n, f in current.model_fields.items())
    return ()


_TYPE_ERRORS = frozenset(
    {"int_type", "float_type", "bool_type", "string_type", "dict_type", "list_type"}
)


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "a list", dict: "a mapping", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def validation_problems(
    model: type[BaseModel], exc: ValidationError, *, prefix: str = "", limit: int | None = None
) -> str:
    """The problems of a failed validation in one line, each with its field path
    (``prefix`` before it); at most ``limit`` of them, saying how many more."""
    problems = []
    errors = exc.errors()
    for error in errors[:limit]:
        loc = error["loc"]
        path = ".".join(p for p in (prefix, field_path(loc)) if p)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in _TYPE_ERRORS and "input" in error:
            # Strict: "2" or true is not a number; say what was given.
            message = f"{message}, not {_type_name(error['input'])}"
        if error["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            nearest = suggestion(str(loc[-1]), known) if known and loc else None
            hint = f"did you mean {nearest!r}? " if nearest else ""
            message = f"unknown field ({hint}check its spelling; unknown fields are errors)"
        problems.append(f"{path}: {message}" if path else message)
    if limit is not None and len(errors) > limit:
        problems.append(f"and {len(errors) - limit} more")
    # One line: a value may carry a newline, and a message must not forge lines.
    return " ".join("; ".join(problems).splitlines())
