"""Sensitive values: masking them, and naming them so reports can be masked.

Terraform marks sensitive values with ``before_sensitive`` /
``after_sensitive``: a mask shaped like the value, ``true`` where the value
is sensitive. ``true`` for a whole resource object means every attribute is.

Two uses. Today values are masked before rules see them (:func:`masked`,
:func:`masked_object`). For masking at output time instead, so that rules
judge the real values, :func:`sensitive_texts` lists what a report must not
show, and :func:`controller.report.redact.redacted` blanks those texts in
every message of a decision.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

SENSITIVE_MASK = "(sensitive value)"


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


def masked_object(value: Mapping[str, Any] | None, mask: Any) -> Any:
    """A resource object masked by its mask; ``true`` masks every attribute.

    The object stays an object (rules read attributes of it), each attribute
    masked as if it were marked on its own.
    """
    if mask is True and isinstance(value, Mapping):
        return {key: masked(item, True) for key, item in value.items()}
    return masked(value, mask)


def sensitive_texts(value: Any, mask: Any) -> Iterator[str]:
    """The text of every scalar ``mask`` marks sensitive in ``value``.

    Strings as they are, numbers as a message would print them. Booleans are
    left out (one bit; blanking every "true" in a message would garble it
    and hide nothing), and so are empty strings and nulls.
    """
    if value is None or mask is None or mask is False:
        return
    if mask is True:
        yield from _scalars(value)
    elif isinstance(mask, Mapping) and isinstance(value, Mapping):
        for key, item in value.items():
            yield from sensitive_texts(item, mask.get(key))
    elif isinstance(mask, list) and isinstance(value, list):
        for position, item in enumerate(value[: len(mask)]):
            yield from sensitive_texts(item, mask[position])


def _scalars(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    elif isinstance(value, bool):
        return
    elif isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, int | float):
        yield str(value)


def _any_true(mask: Any) -> bool:
    if mask is True:
        return True
    if isinstance(mask, Mapping):
        return any(_any_true(v) for v in mask.values())
    if isinstance(mask, list):
        return any(_any_true(v) for v in mask)
    return False
