"""The helpers the operator tests build on answer as Kubernetes does."""

from __future__ import annotations

import re

import pytest

from tests.chart.admission import AdmissionRequest, webhooks_for
from tests.chart.helm import CHART, render, webhook_configuration
from tests.chart.rbac import ApiRequest, Permission, Permissions, api_request


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        (
            "GET",
            "/apis/guard.dev/v1alpha1/guardpolicies",
            ApiRequest("list", "guard.dev", "guardpolicies"),
        ),
        (
            "GET",
            "/apis/guard.dev/v1alpha1/guardpolicies?watch=true&resourceVersion=5",
            ApiRequest("watch", "guard.dev", "guardpolicies"),
        ),
        (
            "GET",
            "/apis/guard.dev/v1alpha1/namespaces/team-a/reviewattestations/app-1",
            ApiRequest("get", "guard.dev", "reviewattestations", "", "team-a", "app-1"),
        ),
        (
            "PATCH",
            "/apis/guard.dev/v1alpha1/namespaces/team-a/reviewattestations/app-1/status",
            ApiRequest("patch", "guard.dev", "reviewattestations", "status", "team-a", "app-1"),
        ),
        (
            "PATCH",
            "/apis/guard.dev/v1alpha1/guardpolicies/p/status",
            ApiRequest("patch", "guard.dev", "guardpolicies", "status", None, "p"),
        ),
        (
            "POST",
            "/api/v1/namespaces/team-a/events",
            ApiRequest("create", "", "events", "", "team-a"),
        ),
        ("GET", "/api/v1/namespaces", ApiRequest("list", "", "namespaces")),
        (
            "GET",
            "/api/v1/namespaces/team-a",
            ApiRequest("get", "", "namespaces", "", "team-a", "team-a"),
        ),
        (
            "PUT",
            "/api/v1/namespaces/team-a/finalize",
            ApiRequest("update", "", "namespaces", "finalize", "team-a", "team-a"),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/team-a/pods",
            ApiRequest("deletecollection", "", "pods", "", "team-a"),
        ),
        (
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            ApiRequest("list", "apiextensions.k8s.io", "customresourcedefinitions"),
        ),
    ],
)
def test_api_request_attributes(method: str, url: str, expected: ApiRequest) -> None:
    assert api_request(method, url) == expected


def test_api_request_refuses_what_is_not_a_resource() -> None:
    with pytest.raises(ValueError, match="not a resource URL"):
        api_request("GET", "/version")


ROLES = [
    {
        "kind": "ClusterRole",
        "metadata": {"name": "read"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
    },
    {
        "kind": "Role",
        "metadata": {"name": "cm", "namespace": "ns1"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["get"],
                "resourceNames": ["only"],
            }
        ],
    },
    {
        "kind": "ClusterRole",
        "metadata": {"name": "sub"},
        "rules": [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}],
    },
]
SUBJECT = [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]


def _permissions(*bindings: dict[str, object]) -> Permissions:
    return Permissions.from_manifests([*ROLES, *bindings], "op", "sys")


def test_rolebinding_to_a_clusterrole_grants_only_in_its_namespace() -> None:
    permissions = _permissions(
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns1"},
            "roleRef": {"kind": "ClusterRole", "name": "read"},
            "subjects": SUBJECT,
        }
    )
    assert permissions.is_granted("get", "", "pods", namespace="ns1")
    assert permissions.is_granted("get", "", "pods", "log", namespace="ns1")
    assert not permissions.is_granted("get", "", "pods", namespace="ns2")
    assert not permissions.is_granted("get", "", "pods")
    assert not permissions.is_granted("get", "", "pods", "exec", namespace="ns1")
    assert not permissions.is_granted("list", "", "pods", namespace="ns1")


def test_resource_names_and_subresource_wildcards() -> None:
    permissions = _permissions(
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns1"},
            "roleRef": {"kind": "Role", "name": "cm"},
            "subjects": SUBJECT,
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "c"},
            "roleRef": {"kind": "ClusterRole", "name": "sub"},
            "subjects": SUBJECT,
        },
    )
    assert permissions.is_granted("get", "", "configmaps", namespace="ns1", name="only")
    assert not permissions.is_granted("get", "", "configmaps", namespace="ns1", name="other")
    assert permissions.is_granted("update", "apps", "deployments", "scale", namespace="x")
    assert not permissions.is_granted("update", "apps", "deployments", namespace="x")
    with pytest.raises(ValueError, match="wildcard"):
        permissions.permissions()


def test_bindings_to_someone_else_grant_nothing() -> None:
    other = [{"kind": "ServiceAccount", "name": "op", "namespace": "elsewhere"}]
    permissions = _permissions(
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "c"},
            "roleRef": {"kind": "ClusterRole", "name": "read"},
            "subjects": other,
        }
    )
    assert not permissions.is_granted("get", "", "pods", namespace="ns1")


def test_unused_lists_what_no_request_needed() -> None:
    permissions = _permissions(
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "c"},
            "roleRef": {"kind": "ClusterRole", "name": "read"},
            "subjects": SUBJECT,
        }
    )
    assert permissions.unused([api_request("GET", "/api/v1/namespaces/a/pods/p")]) == {
        Permission("get", "", "pods", "log", None)
    }


def test_render_returns_independent_copies() -> None:
    first = render({})
    first[0]["kind"] = "Changed"
    assert render({})[0]["kind"] != "Changed"


def test_webhook_selection_follows_the_rendered_configuration() -> None:
    config = webhook_configuration(
        {"webhook": {"controllerIdentities": ["system:serviceaccount:kube-system:job-controller"]}}
    )

    def reached(**overrides: object) -> list[str]:
        fields: dict[str, object] = {
            "group": "batch", "version": "v1", "resource": "jobs", "operation": "CREATE",
            "namespace": "team-a", "username": "alice",
        }  # fmt: skip
        fields.update(overrides)
        return [w["name"] for w in webhooks_for(config, AdmissionRequest(**fields))]  # type: ignore[arg-type]

    assert reached() == ["users.guard.dev"]
    assert reached(username="system:serviceaccount:kube-system:job-controller") == [
        "controllers.guard.dev"
    ]
    # Only the configured identities: another controller is treated as a user.
    assert reached(username="system:serviceaccount:kube-system:replicaset-controller") == [
        "users.guard.dev"
    ]
    assert reached(version="v1beta1") == []
    assert reached(operation="DELETE") == []
    assert reached(namespace="kube-system") == []
    assert reached(namespace_labels={"guard.dev/ignore": ""}) == []


def test_runbook_commands_name_real_objects() -> None:
    """The outage runbook's commands must work as written for release `guard`."""
    readme = (CHART / "README.md").read_text()
    runbook = readme[readme.index("## Outage runbook") : readme.index("## RBAC")]
    manifests = render({}, release="guard", namespace="guard-system")
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert ("ValidatingWebhookConfiguration", "guard") in names
    assert re.search(r"validatingwebhookconfiguration guard\b", runbook)
    assert ("Deployment", "guard") in names and "deploy/guard" in runbook
    assert ("Secret", "guard-tls") in names and "secret guard-tls" in runbook
    assert "certificate guard-serving" in runbook
    certificate_names = {
        m["metadata"]["name"]
        for m in render(
            {"certificates": {"mode": "certManager"}}, release="guard", namespace="guard-system"
        )
        if m["kind"] == "Certificate"
    }
    assert "guard-serving" in certificate_names
    # The JSON patch in step 1 targets the users' webhook by index.
    config = next(m for m in manifests if m["kind"] == "ValidatingWebhookConfiguration")
    assert '"path":"/webhooks/0/failurePolicy"' in runbook
    assert config["webhooks"][0]["name"] == "users.guard.dev"
    selector = "app.kubernetes.io/instance=guard"
    assert selector in runbook
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"]
        == "guard"
    )
