"""Response bodies shaped exactly as the forges document them.

GitHub: the field lists, types and nesting come from githubkit's models,
which are generated from GitHub's REST API description
(github/rest-api-description, descriptions/api.github.com, API version
2022-11-28). ``example(Model)`` fills every required field of a model with
a plausible value of its documented type; a fake response overlays the
fields a scenario is about, and ``checked`` validates the whole body
against the model the real client parses it with before it is served, so
the fake cannot drift from the API without a test failing.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

_STAMP = "2026-01-05T10:00:00Z"


def _is_unset(annotation: Any) -> bool:
    if get_origin(annotation) is not Literal:
        return False
    return any(type(a).__name__ == "Unset" or repr(a) == "<UNSET>" for a in get_args(annotation))


def _value(annotation: Any, name: str, depth: int) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if not _is_unset(a)]
        if type(None) in options:
            return None
        return _value(options[0], name, depth)
    if origin is Literal:
        return get_args(annotation)[0]
    if origin in (list, typing.List):  # noqa: UP006
        return []
    if origin in (dict, typing.Dict):  # noqa: UP006
        return {}
    if annotation is str:
        return f"https://api.github.com/{name}" if name.endswith("url") else name
    if annotation is bool:
        return False
    if annotation is int:
        return 1
    if annotation is float:
        return 1.0
    if annotation is dt.datetime:
        return _STAMP
    if annotation is dt.date:
        return _STAMP[:10]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return example(annotation, depth + 1)
    return None


def example(model: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    """Every required field of ``model`` (by its JSON name), typed as documented."""
    if depth > 12:
        raise RecursionError(f"{model.__name__} nests too deeply")
    body: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            body[field.alias or name] = _value(field.annotation, name, depth)
    return body


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, nested mappings merged."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def checked(annotation: Any, body: Any) -> Any:
    """``body``, after validating it as the client will parse it."""
    TypeAdapter(annotation).validate_python(body)
    return body
