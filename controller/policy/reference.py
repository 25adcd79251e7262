"""Generate docs/reference.md from the document models.

Every field of every document kind, with its type, default, allowed values
and what it does, is written from the same pydantic models that validate the
documents (field descriptions are the attribute docstrings under each field),
so the reference cannot describe a field guard does not have or miss one it
has. ``make docs`` rewrites the file; a test fails when the checked-in copy
drifts, and when a field has no description.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from controller.policy.baseline import GuardBaseline
from controller.policy.documents import DOCUMENT_KINDS, ReviewAttestationSpec
from controller.policy.strictmodel import documented_schema

TITLE = "# Document reference"
INTRO = """\
<!-- Generated from the document models by `make docs`. Do not edit. -->

Every guard document is a Kubernetes object: `apiVersion: guard.dev/v1alpha1`,
`kind`, `metadata.name` and a `spec`. Fields are camelCase; a field not listed
here is an error, never ignored (a typo must not switch a guardrail off).
Server-set metadata (`uid`, `resourceVersion`, `managedFields`…) is ignored.
Durations are written `30d`, `720h`, `1h30m` or `90s`; ids are `SYSTEM:VALUE`
(see [identities.md](identities.md)).
"""


@dataclass(frozen=True)
class Field:
    """One field of a document, flattened to its dotted path."""

    path: str
    type: str
    required: bool
    default: str
    allowed: str
    description: str


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with a top-level ``$ref`` and a nullable ``anyOf`` folded in."""
    out = dict(schema)
    while "$ref" in out:
        target = defs[out.pop("$ref").rsplit("/", 1)[-1]]
        out = {**target, **out}
    options = out.get("anyOf")
    if options:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) == 1:
            rest = {k: v for k, v in out.items() if k != "anyOf"}
            return _resolve({**non_null[0], **rest}, defs)
    return out


def _type(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    schema = _resolve(schema, defs)
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), defs)}"
    if kind == "object" and "properties" not in schema:
        values = schema.get("additionalProperties")
        if not values and isinstance(schema.get("patternProperties"), dict):
            values = next(iter(schema["patternProperties"].values()), None)
        return f"map of {_type(values, defs)}" if isinstance(values, dict) else "object"
    if "anyOf" in schema:
        return " or ".join(_type(o, defs) for o in schema["anyOf"])
    if schema.get("format") == "date":
        return "date"
    if "enum" in schema or "const" in schema:
        return "string"
    return str(kind or "any")


def _allowed(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    schema = _resolve(schema, defs)
    if schema.get("type") == "array":
        return _allowed(schema.get("items", {}), defs)
    values = schema.get("enum") or ([schema["const"]] if "const" in schema else [])
    if values:
        return ", ".join(f"`{v}`" for v in values)
    limits = []
    for key, text in (("minimum", "≥ {}"), ("maximum", "≤ {}"), ("maxLength", "at most {} chars")):
        if key in schema:
            limits.append(text.format(schema[key]))
    return ", ".join(limits)


def _text(value: Any) -> str:
    return " ".join(str(value).replace("``", "`").split()).replace("|", "\\|")


def _default(schema: Mapping[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value in (None, [], {}):
        return "none" if value is None else f"`{json.dumps(value)}`"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def fields(model: type[BaseModel], prefix: str = "spec") -> Iterator[Field]:
    """Every field under ``prefix``, depth first, in the model's order."""
    raw = documented_schema(model)
    yield from _walk(raw, raw.get("$defs", {}), prefix, set())


def _walk(
    schema: Mapping[str, Any], defs: Mapping[str, Any], prefix: str, seen: set[str]
) -> Iterator[Field]:
    schema = _resolve(schema, defs)
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        ref = sub.get("$ref") or (sub.get("items") or {}).get("$ref")
        resolved = _resolve(sub, defs)
        described = sub.get("description") or resolved.get("description") or ""
        yield Field(
            path=path,
            type=_type(sub, defs),
            required=name in required,
            default=_default(sub),
            allowed=_allowed(sub, defs),
            description=_text(described),
        )
        if ref in seen:
            continue  # a recursive model: its fields are listed once
        inner = resolved
        if inner.get("type") == "array":
            inner = _resolve(inner.get("items", {}), defs)
            path += "[]"
        if "properties" in inner:
            yield from _walk(inner, defs, path, seen | ({ref} if ref else set()))


# A real, tested file of each kind, linked from its section.
EXAMPLES = {
    "GuardPolicy": "policies/review.yaml",
    "GuardTrust": "examples/keys/demo-trust.yaml",
    "GuardException": "examples/exceptions/retire-legacy-orders-db.yaml",
    "GuardPolicyTest": "policies/no-host-path.test.yaml",
    "ReviewAttestation": "examples/attestations/app-reviewed.yaml",
}


def _kinds() -> list[tuple[str, type[BaseModel]]]:
    found: list[tuple[str, type[BaseModel]]] = []
    kinds: dict[str, type[BaseModel]] = {**DOCUMENT_KINDS, "GuardBaseline": GuardBaseline}
    for kind, document in kinds.items():
        spec = document.model_fields["spec"].annotation
        if isinstance(spec, type) and issubclass(spec, BaseModel):
            found.append((kind, spec))
    if "ReviewAttestation" not in DOCUMENT_KINDS:
        found.append(("ReviewAttestation", ReviewAttestationSpec))
    return found


def render() -> str:
    parts = [TITLE, "", INTRO]
    kinds = _kinds()
    parts.append("Kinds: " + ", ".join(f"[{k}](#{k.lower()})" for k, _ in kinds) + ".\n")
    for kind, spec in kinds:
        parts.append(f"## {kind}\n")
        parts.append(_text(spec.__doc__ or "") + "\n")
        parts.append("| field | type | required | default | allowed | what it does |")
        parts.append("|---|---|---|---|---|---|")
        for field in fields(spec):
            parts.append(
                f"| `{field.path}` | {field.type} | {'yes' if field.required else ''} | "
                f"{field.default} | {field.allowed} | {field.description} |"
            )
        if kind in EXAMPLES:
            parts.append(f"\nExample: [`{EXAMPLES[kind]}`](../{EXAMPLES[kind]}).")
        parts.append("")
    return "\n".join(parts)


def undescribed() -> list[str]:
    """Fields without a description: each must say what it does."""
    return [
        f"{kind}: {f.path}" for kind, spec in _kinds() for f in fields(spec) if not f.description
    ]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reference.md")
    target.write_text(render(), encoding="utf-8")
    print(target)
