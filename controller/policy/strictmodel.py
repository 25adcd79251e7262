"""The base of every guard document model, in a module of its own so that
the document parts defined outside ``documents`` (``provenance``) share it.

The docstring under each field is its description, in the CRDs (``kubectl
explain``) and in docs/reference.md. Only those generators read it, so it is
read from the source when they ask (``documented_schema``), not when the
models are defined: reading every model's source took a tenth of a second
of every ``guard`` command's start-up.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Strict(BaseModel):
    """Base of every spec model: camelCase fields only, unknown fields
    rejected, no type coercion."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        strict=True,
        frozen=True,
        defer_build=True,
    )


def complete_guard_models() -> None:
    """Build the validator of every guard model now.

    Guard's models build their validators when first used (``defer_build``),
    so a command builds only those of the documents it reads. A long-running
    process (``guard serve``) builds them all once at start-up instead: no
    request pays for a build, and no two threads build one at the same time.
    """
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("controller.") and not cls.__pydantic_complete__:
            cls.model_rebuild()


def documented_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema (by alias, for validation) with the docstring
    under each field of every guard model in it as that field's description,
    placed as pydantic places a description (its keys stay sorted)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    models = _strict_models()
    for name, schema in [(model.__name__, raw), *raw.get("$defs", {}).items()]:
        cls = models.get(name)
        properties = schema.get("properties")
        if cls is None or not isinstance(properties, dict):
            continue
        docs = field_docstrings(cls)
        for field_name, info in cls.model_fields.items():
            alias = info.alias or field_name
            prop = properties.get(alias)
            if field_name in docs and isinstance(prop, dict) and "description" not in prop:
                properties[alias] = dict(sorted({**prop, "description": docs[field_name]}.items()))
    return raw


def _strict_models() -> dict[str, type[Strict]]:
    found: dict[str, type[Strict]] = {}
    pending: list[type[Strict]] = [Strict]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


@functools.cache
def field_docstrings(cls: type[BaseModel]) -> dict[str, str]:
    """The docstring written under each annotated field of ``cls`` and of
    the guard models it inherits from (the nearest class wins)."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if isinstance(base, type) and issubclass(base, Strict) and base is not Strict:
            docs.update(_own_docstrings(base))
    return docs


def _own_docstrings(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs
