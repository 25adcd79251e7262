"""Validate rendered manifests: Kubernetes kinds with the schemas shipped by
``kubernetes-validate`` (strict: unknown fields fail), custom resources with
their CRD's openAPIV3Schema made strict the same way.

A strict CRD check matters because the API server silently prunes fields a
structural schema does not declare: a misspelt field would vanish instead of
failing.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    all_versions,
    schema_contents,
)
from referencing import Registry, Resource

from tests.chart.helm import CHART

VENDORED_SCHEMAS = Path(__file__).parent / "schemas"
GUARD_CRDS = CHART / "crds"

Manifest = Mapping[str, Any]


class InvalidManifest(AssertionError):
    """A manifest the API server would reject or prune, with where and why."""


def _schema_dir(kube_version: str) -> str:
    wanted = tuple(int(p) for p in kube_version.split(".")[:2])
    versions = [v for v in all_versions() if tuple(map(int, v.split(".")[:2])) <= wanted]
    if not versions:
        raise ValueError(f"kubernetes-validate has no schemas for {kube_version}")
    return f"v{versions[-1]}-local-strict"


@functools.cache
def _definitions(schema_dir: str) -> Registry[Any]:
    definitions = schema_contents(
        f"kubernetes-json-schema/{schema_dir}/_definitions.json", schema_dir
    )
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _core_validator(schema_dir: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    # kubernetes-validate names files kind-group-version, the group cut at its first dot.
    group, _, version = api_version.rpartition("/")
    short = f"{group.split('.')[0]}-{version}" if group else version
    schema = schema_contents(
        f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{short}.json", schema_dir
    )
    registry = Resource.from_contents(schema) @ _definitions(schema_dir)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _strict(schema: Any) -> Any:
    """Forbid what a structural schema would prune: undeclared object fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _crd_schema_for(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))  # type: ignore[no-any-return]
    raise LookupError(f"{crd['metadata']['name']} has no version {version}")


def _guard_crds() -> Iterator[Mapping[str, Any]]:
    for path in sorted(GUARD_CRDS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                yield document


@functools.cache
def custom_resource_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """The strict validator of a custom resource kind guard's chart renders or reads."""
    group, _, version = api_version.partition("/")
    if group == "guard.dev":
        for crd in _guard_crds():
            if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
                return jsonschema.Draft7Validator(_crd_schema_for(crd, version))
        raise LookupError(
            f"no CRD for {api_version} {kind} in {GUARD_CRDS} (generate them with `make crds`)"
        )
    vendored = VENDORED_SCHEMAS / f"{kind.lower()}-{group}-{version}.json"
    if not vendored.is_file():
        raise LookupError(f"no vendored schema for {api_version} {kind} ({vendored.name})")
    return jsonschema.Draft7Validator(_strict(json.loads(vendored.read_text())))


def _describe(manifest: Manifest, error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(root)"
    name = manifest.get("metadata", {}).get("name", "?")
    return f"{manifest.get('kind')} {name}: {where}: {error.message}"


def validate_core(manifest: Manifest, kube_version: str) -> None:
    """Validate a built-in kind against that Kubernetes version's strict schema."""
    validator = _core_validator(_schema_dir(kube_version), manifest["kind"], manifest["apiVersion"])
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidManifest("; ".join(_describe(manifest, e) for e in errors[:5]))


def validate_custom(manifest: Manifest) -> None:
    """Validate a custom resource against its CRD schema (strict)."""
    validator = custom_resource_validator(manifest["apiVersion"], manifest["kind"])
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidManifest("; ".join(_describe(manifest, e) for e in errors[:5]))


CUSTOM_GROUPS = ("guard.dev", "cert-manager.io", "monitoring.coreos.com")


def is_custom(manifest: Manifest) -> bool:
    return str(manifest["apiVersion"]).split("/")[0] in CUSTOM_GROUPS


def validate(manifest: Manifest, kube_version: str) -> None:
    if is_custom(manifest):
        validate_custom(manifest)
    else:
        validate_core(manifest, kube_version)
