"""The checked-in CRDs are exactly what the models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.policy import crds

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "guard" / "crds"


def test_checked_in_crds_match_the_models() -> None:
    expected = crds.rendered()
    actual = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    assert sorted(actual) == sorted(expected), "run `make crds`"
    for name, text in expected.items():
        assert actual[name] == text, f"{name} drifted from the models: run `make crds`"


def _walk(node: Any, path: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    for banned in ("$ref", "anyOf", "allOf", "oneOf", "definitions", "$defs"):
        if banned in node:
            problems.append(f"{path}: {banned} is not allowed in a structural schema")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    for name, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.{name}", problems)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", problems)


def test_schemas_are_structural_and_keep_the_review_block() -> None:
    for kind in crds.KINDS:
        document = crds.crd(kind)
        schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        problems: list[str] = []
        _walk(schema["properties"]["spec"], kind.kind, problems)
        assert problems == []
    policy = crds.crd(crds.KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    review = policy["properties"]["spec"]["properties"]["review"]["properties"]
    for field in (
        "minApprovals",
        "attesters",
        "repositories",
        "targetRefs",
        "maxAge",
        "allowBots",
        "requiredChecks",
        "exemptImages",
        "deployer",
        "breakGlass",
    ):
        assert field in review, field


def test_crd_files_parse_as_kubernetes_objects() -> None:
    for path in CRD_DIR.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        assert document["kind"] == "CustomResourceDefinition"
        assert document["spec"]["group"] == "guard.dev"
