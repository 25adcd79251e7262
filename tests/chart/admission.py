"""Which webhooks of a rendered ValidatingWebhookConfiguration a request reaches.

Plays the API server's part for the operator tests (kmock has no admission):
rules, namespaceSelector and matchConditions are evaluated as Kubernetes
does, the conditions with a real CEL engine, so a test sends exactly the
requests the chart would let through to guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel

NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class AdmissionRequest:
    """The attributes of a request that decide which webhooks see it."""

    group: str
    version: str
    resource: str
    operation: str
    namespace: str
    username: str
    subresource: str = ""
    groups: tuple[str, ...] = ()
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def request_variable(self) -> dict[str, Any]:
        """The ``request`` variable of matchConditions (the fields guard's split uses)."""
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "resource": {"group": self.group, "version": self.version, "resource": self.resource},
            "subResource": self.subresource,
            "userInfo": {"username": self.username, "groups": list(self.groups)},
        }


def _rule_matches(rule: Mapping[str, Any], request: AdmissionRequest) -> bool:
    operations = rule.get("operations", [])
    if "*" not in operations and request.operation not in operations:
        return False
    groups = rule.get("apiGroups", [])
    if "*" not in groups and request.group not in groups:
        return False
    versions = rule.get("apiVersions", [])
    if "*" not in versions and request.version not in versions:
        return False
    if rule.get("scope", "*") == "Cluster" and request.namespace:
        return False
    if rule.get("scope", "*") == "Namespaced" and not request.namespace:
        return False
    for pattern in rule.get("resources", []):
        resource, _, subresource = pattern.partition("/")
        if resource not in ("*", request.resource):
            continue
        if subresource == "*" or subresource == request.subresource:
            return True
    return False


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# The API server type-checks matchConditions with ``request`` declared; its
# fields are dynamic here (guard's chart writes only field reads and tests).
_ENV = cel.NewEnv(variables={"request": cel.Type.DYN})


def _conditions_match(conditions: Sequence[Mapping[str, Any]], request: AdmissionRequest) -> bool:
    activation = _ENV.Activation({"request": request.request_variable()})
    for condition in conditions:
        result = _ENV.compile(condition["expression"]).eval(activation)
        if result.type() == cel.Type.ERROR:
            raise ValueError(f"matchCondition {condition['name']}: {result.value()}")
        verdict = result.plain_value()
        if not isinstance(verdict, bool):
            raise TypeError(f"matchCondition {condition['name']} returned {verdict!r}")
        if not verdict:
            return False
    return True


def webhooks_for(config: Mapping[str, Any], request: AdmissionRequest) -> list[dict[str, Any]]:
    """The webhooks the API server would call for ``request``, in order."""
    labels = {**request.namespace_labels, NAME_LABEL: request.namespace}
    reached = []
    for webhook in config["webhooks"]:
        if not any(_rule_matches(rule, request) for rule in webhook.get("rules", [])):
            continue
        if request.namespace and not _selector_matches(
            webhook.get("namespaceSelector", {}), labels
        ):
            continue
        if not _conditions_match(webhook.get("matchConditions", []), request):
            continue
        reached.append(dict(webhook))
    return reached
