"""One way to say what is wrong with a document: pydantic errors as lines.

Every reader of guard's models (files, custom resources, statements, CLI
flags) reports a rejected field the same way: its path (``spec.rules[0].name``)
and the problem, with unknown fields named as the typos they usually are.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

UNKNOWN_FIELD = "unknown field (check its spelling; unknown fields are errors)"


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic location as a path: ``spec.rules[0].name``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def validation_problems(
    exc: ValidationError, *, prefix: str = "", limit: int | None = None
) -> list[str]:
    """One ``path: problem`` line per error (the first ``limit`` of them)."""
    problems: list[str] = []
    for error in exc.errors()[:limit]:
        path = field_path(error["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = UNKNOWN_FIELD if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{path}: {message}" if path else message)
    return problems
