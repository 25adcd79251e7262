"""Generate the CustomResourceDefinitions from the pydantic models.

The API server prunes every field a CRD schema lacks, silently. A ``review``
block dropped that way would be a silent allow, so the schemas are generated
from the same models the engine validates with, and a test fails when the
checked-in files drift (``make crds`` rewrites them).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from controller.policy.baseline import GuardBaselineSpec
from controller.policy.documents import (
    API_GROUP,
    GuardExceptionSpec,
    GuardPolicySpec,
    GuardPolicyTestSpec,
    GuardTrustSpec,
    ReviewAttestationSpec,
)
from controller.policy.strictmodel import documented_schema

VERSION = "v1alpha1"


@dataclass(frozen=True)
class CrdKind:
    kind: str
    plural: str
    scope: str
    spec: type[BaseModel]
    short_names: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...] = ()  # (name, type, jsonPath)


KINDS = (
    CrdKind("GuardPolicy", "guardpolicies", "Cluster", GuardPolicySpec, ("gpol",),
            (("Action", "string", ".spec.action"), ("Severity", "string", ".spec.severity"),
             ("Status", "string", ".status.state"))),
    CrdKind("GuardTrust", "guardtrusts", "Cluster", GuardTrustSpec, ("gtrust",),
            (("Status", "string", ".status.state"),)),
    CrdKind("GuardException", "guardexceptions", "Cluster", GuardExceptionSpec, ("gexc",),
            (("Policy", "string", ".spec.policy"), ("Target", "string", ".spec.target"),
             ("Expires", "string", ".spec.expires"))),
    CrdKind("ReviewAttestation", "reviewattestations", "Namespaced", ReviewAttestationSpec,
            ("rattest",),
            (("Verified", "string", ".status.verified"), ("Reason", "string", ".status.reason"))),
    CrdKind("GuardBaseline", "guardbaselines", "Cluster", GuardBaselineSpec, ("gbase",),
            (("Owner", "string", ".spec.owner"), ("Expires", "string", ".spec.expires"),
             ("Valid", "boolean", ".status.guard.valid"))),
)  # fmt: skip

# GuardPolicyTest is a file-only document (``guard policy test``); no CRD.
FILE_ONLY = (GuardPolicyTestSpec,)


def _resolve(schema: Any, defs: Mapping[str, Any]) -> Any:
    """Inline ``$ref``s and rewrite JSON Schema into a Kubernetes structural schema."""
    if isinstance(schema, list):
        return [_resolve(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, defs)
    options = schema.get("anyOf")
    if options is not None:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            resolved = _resolve({**non_null[0], **rest}, defs)
            resolved["nullable"] = True
            return resolved
    # Structural schemas have no patternProperties or propertyNames: a map's
    # values keep their schema as additionalProperties, and its keys are
    # checked by guard when it loads the document.
    patterned = schema.get("patternProperties")
    if isinstance(patterned, dict) and len(patterned) == 1:
        schema = {
            k: v for k, v in schema.items() if k not in ("patternProperties", "propertyNames")
        }
        schema["additionalProperties"] = next(iter(patterned.values()))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default", "$defs", "propertyNames"):
            continue
        if key == "description":
            out[key] = " ".join(str(value).replace("``", "`").split())
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _resolve(value, defs) if isinstance(value, dict) else value
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        extra = out.get("additionalProperties")
        if not isinstance(extra, dict) or not extra:
            out.pop("additionalProperties", None)
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif out.get("type") == "object":
        # Kubernetes forbids additionalProperties beside properties; unknown
        # fields are rejected by kubectl's strict field validation and by guard.
        out.pop("additionalProperties", None)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("format") == "date":
        out["type"] = "string"
    return out


def spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = documented_schema(model)
    return dict(_resolve(raw, raw.get("$defs", {})))


def crd(kind: CrdKind) -> dict[str, Any]:
    spec = spec_schema(kind.spec)
    spec["description"] = " ".join((kind.spec.__doc__ or kind.kind).replace("``", "`").split())
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec,
                    "status": {
                        "type": "object",
                        "description": "Informational only: guard never trusts it.",
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            }
        },
    }
    if kind.columns:
        version["additionalPrinterColumns"] = [
            {"name": n, "type": t, "jsonPath": p} for n, t, p in kind.columns
        ] + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["guard"],
            },
            "versions": [version],
        },
    }


HEADER = "# Generated from controller/policy/documents.py by `make crds`. Do not edit.\n"


def rendered() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {
        f"{API_GROUP}_{kind.plural}.yaml": HEADER
        + yaml.safe_dump(crd(kind), sort_keys=False, width=100)
        for kind in KINDS
    }


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "charts/guard/crds")
    for path in write(target):
        print(path)
