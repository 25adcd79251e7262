"""The base of every guard document model, in a module of its own so that
the document parts defined outside ``documents`` (``provenance``) share it."""

from __future__ import annotations

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
        # The docstring under each field is its description: in the CRDs
        # (`kubectl explain`) and in docs/reference.md.
        use_attribute_docstrings=True,
    )
