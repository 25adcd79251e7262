"""Answer "may guard's ServiceAccount do this?" from the rendered RBAC objects.

kmock has no authorization, so the operator tests record every request the
operator makes and ask :meth:`Permissions.is_granted` about each, then ask
:meth:`Permissions.unused` which granted permissions no request needed.
Matching follows Kubernetes RBAC: verbs, API groups, resources with
``resource/subresource`` and ``*`` forms, resourceNames, and the scope a
binding gives (a RoleBinding grants only inside its namespace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]

    @classmethod
    def from_manifest(cls, rule: Mapping[str, Any]) -> Rule:
        if rule.get("nonResourceURLs"):
            raise ValueError("nonResourceURLs rules are not expected in guard's RBAC")
        return cls(
            verbs=frozenset(rule.get("verbs", [])),
            api_groups=frozenset(rule.get("apiGroups", [])),
            resources=frozenset(rule.get("resources", [])),
            resource_names=frozenset(rule.get("resourceNames", [])),
        )

    def allows(self, verb: str, group: str, resource: str, subresource: str, name: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        combined = f"{resource}/{subresource}" if subresource else resource
        wanted = {"*", combined} | ({f"*/{subresource}"} if subresource else set())
        if not self.resources & wanted:
            return False
        return not self.resource_names or name in self.resource_names


@dataclass(frozen=True)
class Grant:
    """Rules given by one binding; ``namespace`` None means cluster-wide."""

    rules: tuple[Rule, ...]
    namespace: str | None


@dataclass(frozen=True)
class Permission:
    """One atomic permission, to compare what is granted with what is used."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str | None


@dataclass(frozen=True)
class ApiRequest:
    """The RBAC attributes of one HTTP request to the API server."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str | None = None
    name: str = ""


def _binds(binding: Mapping[str, Any], account: str, namespace: str) -> bool:
    for subject in binding.get("subjects", []):
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "ServiceAccount" and name == account and subject.get("namespace") == namespace:
            return True
        if kind == "User" and name == f"system:serviceaccount:{namespace}:{account}":
            return True
        if kind == "Group" and name in (
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ):
            return True
    return False


@dataclass(frozen=True)
class Permissions:
    """Everything the rendered objects grant to one ServiceAccount."""

    grants: tuple[Grant, ...]

    @classmethod
    def from_manifests(
        cls, manifests: Iterable[Mapping[str, Any]], account: str, namespace: str
    ) -> Permissions:
        manifests = list(manifests)
        roles = {
            (m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): tuple(
                Rule.from_manifest(r) for r in m.get("rules", [])
            )
            for m in manifests
            if m["kind"] in ("Role", "ClusterRole")
        }
        grants = []
        for m in manifests:
            if m["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not _binds(m, account, namespace):
                continue
            ref = m["roleRef"]
            scope = m["metadata"].get("namespace") if m["kind"] == "RoleBinding" else None
            role_namespace = scope if ref["kind"] == "Role" else None
            key = (ref["kind"], role_namespace, ref["name"])
            if key not in roles:
                raise LookupError(f"{m['kind']} {m['metadata']['name']} refers to missing {key}")
            grants.append(Grant(rules=roles[key], namespace=scope))
        return cls(tuple(grants))

    def is_granted(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str = "",
        namespace: str | None = None,
        name: str = "",
    ) -> bool:
        """True if some binding allows it. ``namespace`` None: cluster-scoped or all namespaces."""
        for grant in self.grants:
            if grant.namespace is not None and grant.namespace != namespace:
                continue
            if any(r.allows(verb, group, resource, subresource, name) for r in grant.rules):
                return True
        return False

    def permissions(self) -> set[Permission]:
        """Every atomic permission granted; wildcards are refused (they cannot be audited)."""
        found = set()
        for grant in self.grants:
            for rule in grant.rules:
                for field_name, values in (
                    ("verbs", rule.verbs),
                    ("apiGroups", rule.api_groups),
                    ("resources", rule.resources),
                ):
                    if any("*" in v for v in values):
                        raise ValueError(f"wildcard in {field_name}: {sorted(values)}")
                for verb in rule.verbs:
                    for group in rule.api_groups:
                        for combined in rule.resources:
                            resource, _, sub = combined.partition("/")
                            found.add(Permission(verb, group, resource, sub, grant.namespace))
        return found

    def unused(self, requests: Iterable[ApiRequest]) -> set[Permission]:
        """Granted permissions that none of ``requests`` needed."""
        used = {Permission(r.verb, r.group, r.resource, r.subresource, None) for r in requests}
        return {
            p
            for p in self.permissions()
            if Permission(p.verb, p.group, p.resource, p.subresource, None) not in used
        }


_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


def api_request(method: str, url: str) -> ApiRequest:
    """RBAC attributes of an HTTP call, as the API server derives them.

    ``GET /apis/guard.dev/v1alpha1/reviewattestations?watch=true`` is a
    cluster-wide ``watch``; ``PATCH .../namespaces/ns/x/name/status`` is a
    ``patch`` on ``x/status`` in ``ns``.
    """
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    if segments[:2] == ["api", "v1"]:
        group, rest = "", segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 3:
        group, rest = segments[1], segments[3:]
    else:
        raise ValueError(f"not a resource URL: {url}")
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces":
        # As the API server reads it: /namespaces/x is the namespace x (also
        # its status and finalize subresources); /namespaces/x/pods are pods in x.
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        raise ValueError(f"no resource in {url}")
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = _verb(method.upper(), bool(name), query.get("watch", ["false"])[0] in ("true", "1"))
    return ApiRequest(verb, group, resource, subresource, namespace, name)


def _verb(method: str, has_name: bool, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if has_name else "list"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method in verbs:
        return verbs[method]
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    raise ValueError(f"unexpected HTTP method {method}")
