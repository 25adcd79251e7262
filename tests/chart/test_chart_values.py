"""Every value is documented and checked: a README row and a schema entry
with a description for each, no stale rows, and bad values fail at install
with the value's path and the reason."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, HelmError, render_chart

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
README = (CHART / "README.md").read_text()
# Accepted so the chart works as a dependency; not a guard setting.
SCHEMA_ONLY = {"global"}


def _leaves(
    value: Any, schema: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Value paths as documented: nested settings are walked, free-form maps,
    lists and empty objects are one value each."""
    properties = schema.get("properties")
    if isinstance(value, dict) and value and properties:
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            if key not in properties:
                raise AssertionError(f"values.yaml has {child_path} but the schema does not")
            yield from _leaves(child, properties[key], child_path)
    else:
        yield path, schema


LEAVES = dict(_leaves(VALUES, SCHEMA))


def _readme_rows() -> set[str]:
    section = README[README.index("## Values") :]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_values_are_found() -> None:
    assert {
        "enforcement",
        "webhook.failurePolicy",
        "certificates.mode",
        "trust.keys",
    } <= LEAVES.keys()


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_value_has_a_readme_row(path: str) -> None:
    assert path in _readme_rows(), f"README.md values table lacks a row for `{path}`"


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_value_has_a_described_schema_entry(path: str) -> None:
    assert LEAVES[path].get("description"), f"values.schema.json has no description for {path}"


def test_readme_has_no_stale_rows() -> None:
    assert _readme_rows() - LEAVES.keys() == SCHEMA_ONLY


def test_schema_has_no_value_missing_from_values_yaml() -> None:
    def walk(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
        for key, child in schema.get("properties", {}).items():
            child_path = f"{path}.{key}" if path else key
            if not isinstance(value, dict) or key not in value:
                yield child_path
            elif isinstance(value[key], dict) and value[key]:
                yield from walk(child, value[key], child_path)

    assert set(walk(SCHEMA, VALUES, "")) == SCHEMA_ONLY


def test_every_object_in_the_schema_refuses_unknown_keys() -> None:
    """A misspelt key must fail, not be ignored (it could switch a guardrail off)."""

    def walk(schema: dict[str, Any], path: str) -> Iterator[str]:
        if schema.get("properties") and schema.get("additionalProperties") is not False:
            yield path or "(root)"
        for key, child in schema.get("properties", {}).items():
            yield from walk(child, f"{path}.{key}" if path else key)

    assert list(walk(SCHEMA, "")) == []


# (values, words helm's message must contain)
BAD_VALUES = [
    ({"networkPolicy": {"enabled": True}}, ["networkPolicy.webhookFrom", "every source"]),
    ({"networkPolicy": {"webhookFrom": "10.0.0.0/8"}}, ["networkPolicy", "webhookFrom"]),
    ({"enforcement": "block"}, ["/enforcement", "'deny', 'warn', 'audit'"]),
    ({"enforcment": "warn"}, ["additional properties 'enforcment' not allowed"]),
    ({"replicaCount": 0}, ["/replicaCount", "minimum"]),
    ({"replicaCount": "2"}, ["/replicaCount", "integer"]),
    ({"webhook": {"failurePolicy": "Open"}}, ["/webhook/failurePolicy"]),
    ({"webhook": {"timeoutSeconds": 60}}, ["/webhook/timeoutSeconds", "maximum"]),
    ({"webhook": {"excludedNamespaces": ["Not_A_Namespace"]}}, ["/webhook/excludedNamespaces/0"]),
    (
        {"webhook": {"optOutLabel": "kubernetes.io/metadata.name"}},
        ["webhook.optOutLabel", "judge nothing"],
    ),
    (
        {"webhook": {"controllerIdentities": ['x"]) || true || (["']}},
        ["/webhook/controllerIdentities/0"],
    ),
    ({"certificates": {"mode": "selfSigned"}}, ["/certificates/mode"]),
    (
        {"certificates": {"mode": "secret"}},
        ["/certificates/secret/name", "/certificates/secret/caBundle"],
    ),
    ({"certificates": {"helm": {"generation": 0}}}, ["/certificates/helm/generation"]),
    (
        {"certificates": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}},
        ["/certificates/certManager/issuerRef", "name"],
    ),
    (
        {"certificates": {"certManager": {"duration": "90 days"}}},
        ["/certificates/certManager/duration"],
    ),
    ({"image": {"digest": "sha256:abc"}}, ["/image/digest"]),
    ({"image": {"tag": "1.0 beta"}}, ["/image/tag"]),
    (
        {
            "trust": {
                "keys": [
                    {"name": "alice", "role": "person", "publicKey": "-----BEGIN PUBLIC KEY-----"}
                ]
            }
        },
        ["/trust/keys/0", "principal"],
    ),
    (
        {
            "trust": {
                "keys": [{"name": "k", "role": "signer", "publicKey": "-----BEGIN PUBLIC KEY-----"}]
            }
        },
        ["/trust/keys/0/role"],
    ),
    (
        {"trust": {"keys": [{"name": "k", "role": "attester", "publicKey": "ssh-ed25519 AAAA"}]}},
        ["/trust/keys/0/publicKey"],
    ),
    ({"policies": {"extra": {"../escape.yaml": "x"}}}, ["/policies/extra"]),
    (
        {"podDisruptionBudget": {"maxUnavailable": 2}},
        ["podDisruptionBudget.maxUnavailable", "lower than replicaCount"],
    ),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, ["/metrics/serviceMonitor/interval"]),
    (
        {"topologySpreadConstraints": [{"maxSkew": 1}]},
        ["/topologySpreadConstraints/0", "topologyKey"],
    ),
]


@pytest.mark.parametrize(
    ("values", "words"), BAD_VALUES, ids=[json.dumps(v)[:60] for v, _ in BAD_VALUES]
)
def test_bad_values_fail_clearly(values: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(HelmError) as failure:
        render_chart(values)
    message = str(failure.value)
    for word in words:
        assert word in message, message


def test_documented_defaults_match_values_yaml() -> None:
    """A README default written as a plain scalar must be the real default."""
    section = README[README.index("## Values") :]
    for path, default in re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", section, flags=re.MULTILINE):
        if path not in LEAVES:
            continue
        node: Any = VALUES
        for part in path.split("."):
            node = node[part]
        if isinstance(node, bool):
            assert default == str(node).lower(), path
        elif isinstance(node, int | str) and not isinstance(node, bool):
            assert default.strip('"') == str(node), path
        elif node in ({}, []):
            assert default == json.dumps(node), path


def test_network_policy_admits_only_the_listed_peers() -> None:
    from tests.chart.validation import validate_core

    peers = [{"ipBlock": {"cidr": "10.0.0.0/16"}}]
    scrapers = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    rendered = render_chart(
        {"networkPolicy": {"enabled": True, "webhookFrom": peers, "metricsFrom": scrapers}}
    )
    [policy] = rendered.of_kind("NetworkPolicy")
    validate_core(policy, "1.33.0")
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook == {"ports": [{"port": "webhook", "protocol": "TCP"}], "from": peers}
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": scrapers}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert render_chart({}).of_kind("NetworkPolicy") == []
