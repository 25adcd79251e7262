"""Safety properties of the rendered chart, table-driven over the documented
values: a guard outage never blocks the control plane, node recovery or
guard's own repair; controllers always fail open; the pod runs restricted;
RBAC grants exactly the operator's needs."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from tests.chart.admission import AdmissionRequest, webhooks_for
from tests.chart.helm import NAMESPACE, Rendered, render_chart
from tests.chart.rbac import Permissions
from tests.chart.scenarios import scenarios

SCENARIOS = scenarios()
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
DEFAULT_CONTROLLERS = DEFAULT_CONTROLLER_IDENTITIES

# Every kind the operator judges: (group, version, resource, subresource).
JUDGED = (
    ("apps", "v1", "deployments", ""),
    ("apps", "v1", "statefulsets", ""),
    ("apps", "v1", "daemonsets", ""),
    ("apps", "v1", "replicasets", ""),
    ("", "v1", "pods", ""),
    ("", "v1", "pods", "ephemeralcontainers"),
    ("", "v1", "replicationcontrollers", ""),
    ("batch", "v1", "jobs", ""),
    ("batch", "v1", "cronjobs", ""),
)
# Requests guard must never see: they cannot introduce an image, and
# blocking them during an outage would stop the cluster from healing.
NOT_JUDGED = (
    ("", "v1", "pods", "status", "UPDATE"),
    ("", "v1", "pods", "binding", "CREATE"),
    ("", "v1", "pods", "eviction", "CREATE"),
    ("apps", "v1", "deployments", "scale", "UPDATE"),
    ("apps", "v1", "deployments", "", "DELETE"),
    ("", "v1", "configmaps", "", "CREATE"),
    ("", "v1", "namespaces", "", "CREATE"),
)


def _values(name: str) -> dict[str, Any]:
    return SCENARIOS[name]


def _setting(values: dict[str, Any], path: str, default: Any) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _controllers(values: dict[str, Any]) -> list[str]:
    return list(_setting(values, "webhook.controllerIdentities", DEFAULT_CONTROLLERS))


def _request(
    resource: tuple[str, str, str, str], username: str, namespace: str = "apps", **kw: Any
) -> AdmissionRequest:
    group, version, name, subresource = resource
    return AdmissionRequest(
        group=group,
        version=version,
        resource=name,
        subresource=subresource,
        operation=kw.pop("operation", "CREATE"),
        namespace=namespace,
        username=username,
        **kw,
    )


def _webhook_names(rendered: Rendered, request: AdmissionRequest) -> list[str]:
    config = rendered.one("ValidatingWebhookConfiguration")
    return [w["name"] for w in webhooks_for(config, request)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_system_and_own_namespaces_are_never_judged(name: str) -> None:
    values = _values(name)
    rendered = render_chart(values)
    never = [*SYSTEM_NAMESPACES, NAMESPACE, *_setting(values, "webhook.excludedNamespaces", [])]
    if _setting(values, "certificates.mode", "helm") == "certManager":
        never.append(_setting(values, "certificates.certManager.namespace", "cert-manager"))
    for namespace in never:
        for username in ("alice", *_controllers(values)):
            request = _request(JUDGED[0], username, namespace=namespace)
            assert _webhook_names(rendered, request) == [], (namespace, username)
    opt_out = _setting(values, "webhook.optOutLabel", "guard.dev/ignore")
    request = _request(JUDGED[0], "alice", namespace="team-a", namespace_labels={opt_out: "true"})
    assert _webhook_names(rendered, request) == []


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_failure_policies(name: str) -> None:
    values = _values(name)
    config = render_chart(values).one("ValidatingWebhookConfiguration")
    policies = {w["name"]: w["failurePolicy"] for w in config["webhooks"]}
    deny = _setting(values, "enforcement", "deny") == "deny"
    user_policy = _setting(values, "webhook.failurePolicy", "Fail") if deny else "Ignore"
    expected = {"users.guard.dev": user_policy}
    if _controllers(values):
        expected["controllers.guard.dev"] = "Ignore"
    assert policies == expected


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_request_reaches_exactly_one_webhook(name: str) -> None:
    """Users and CI reach the fail-closed webhook, controllers the fail-open one,
    for every kind and both operations; what guard must not judge reaches none."""
    values = _values(name)
    rendered = render_chart(values)
    controllers = _controllers(values)
    for resource in JUDGED:
        for operation in ("CREATE", "UPDATE"):
            user = _request(
                resource, "ci@example.com", operation=operation, groups=("system:authenticated",)
            )
            assert _webhook_names(rendered, user) == ["users.guard.dev"], resource
            # A user in a controller-like group is still a user.
            impostor = _request(
                resource,
                "mallory",
                operation=operation,
                groups=("system:serviceaccounts:kube-system",),
            )
            assert _webhook_names(rendered, impostor) == ["users.guard.dev"]
            for username in controllers:
                request = _request(resource, username, operation=operation)
                assert _webhook_names(rendered, request) == ["controllers.guard.dev"], (
                    resource,
                    username,
                )
    for group, version, kind, subresource, operation in NOT_JUDGED:
        request = _request((group, version, kind, subresource), "alice", operation=operation)
        assert _webhook_names(rendered, request) == [], (kind, subresource, operation)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_webhook_calls_reach_guard(name: str) -> None:
    values = _values(name)
    rendered = render_chart(values)
    config = rendered.one("ValidatingWebhookConfiguration")
    service = next(
        s
        for s in rendered.of_kind("Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook"
    )
    deployment = rendered.one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 8443, "metrics": 9090}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == "webhook"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    timeout = _setting(values, "webhook.timeoutSeconds", 5)
    for webhook in config["webhooks"]:
        assert webhook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "path": "/validate",
            "port": service_port["port"],
        }
        assert webhook["sideEffects"] == "NoneOnDryRun"
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["timeoutSeconds"] == timeout <= 10


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_pod_runs_restricted(name: str) -> None:
    pod = render_chart(_values(name)).one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all("hostPath" not in volume for volume in pod["volumes"])
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_availability(name: str) -> None:
    values = _values(name)
    rendered = render_chart(values)
    deployment = rendered.one("Deployment")
    replicas = _setting(values, "replicaCount", 2)
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budgets = rendered.of_kind("PodDisruptionBudget")
    if replicas > 1:
        (budget,) = budgets
        assert 0 < budget["spec"]["maxUnavailable"] < replicas
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    else:
        assert budgets == []
    pod = deployment["spec"]["template"]["spec"]
    for constraint in pod["topologySpreadConstraints"]:
        assert (
            constraint["labelSelector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert pod.get("priorityClassName") == _setting(values, "priorityClassName", None)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_serve_contract(name: str) -> None:
    """The container runs `guard serve` with the paths its volumes are mounted at."""
    values = _values(name)
    pod = render_chart(values).one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "serve"
    options: dict[str, list[str]] = {}
    flags = []
    index = 1
    while index < len(args):
        if index + 1 < len(args) and not args[index + 1].startswith("--"):
            options.setdefault(args[index], []).append(args[index + 1])
            index += 2
        else:
            flags.append(args[index])
            index += 1
    assert flags == ["--all-namespaces"]
    assert options["--enforcement"] == [_setting(values, "enforcement", "deny")]
    assert (
        options["--controller-identity"]
        if _controllers(values)
        else "--controller-identity" not in options
    )
    assert options.get("--controller-identity", []) == _controllers(values)
    assert options["--webhook-port"] == ["8443"] and options["--metrics-port"] == ["9090"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/guard/policies"] == "policies" and options["--policies"] == [
        "/etc/guard/policies"
    ]
    assert mounts["/etc/guard/trust"] == "trust" and options["--trust"] == ["/etc/guard/trust"]
    assert mounts["/etc/guard/tls"] == "tls"
    assert options["--tls-cert"] == ["/etc/guard/tls/tls.crt"]
    assert options["--tls-key"] == ["/etc/guard/tls/tls.key"]
    audit = _setting(values, "auditLog.enabled", False)
    assert ("--audit-file" in options) == audit
    if audit:
        assert mounts["/var/log/guard"] == "audit"
    assert all(not m.get("subPath") for m in container["volumeMounts"]), (
        "subPath mounts never update"
    )


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "ghcr.io/guard-dev/guard:0.1.0"),
        ({"image": {"tag": "1.2.3"}}, "ghcr.io/guard-dev/guard:1.2.3"),
        ({"image": {"digest": "sha256:" + "0" * 64}}, "ghcr.io/guard-dev/guard@sha256:" + "0" * 64),
        (
            {
                "image": {
                    "repository": "registry.example:5000/sec/guard",
                    "tag": "1.2.3",
                    "digest": "sha256:" + "1" * 64,
                }
            },
            "registry.example:5000/sec/guard:1.2.3@sha256:" + "1" * 64,
        ),
    ],
)
def test_image_reference(values: dict[str, Any], image: str) -> None:
    pod = render_chart(values).one("Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == image


def test_default_trust_is_empty() -> None:
    """No key ships with the chart: a demo key must never be trusted by default."""
    rendered = render_chart({})
    assert rendered.one("Secret", "-trust").get("data") in (None, {})
    projected = next(
        v
        for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "trust"
    )
    assert len(projected["projected"]["sources"]) == 1


def test_policy_and_trust_changes_roll_the_pods() -> None:
    base = render_chart({}).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    other_trust = render_chart({"trust": {"principals": [{"id": "github:1"}]}})
    changed = other_trust.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert changed["checksum/trust"] != base["checksum/trust"]
    assert changed["checksum/policies"] == base["checksum/policies"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_service_monitor_scrapes_the_metrics_service(name: str) -> None:
    values = _values(name)
    rendered = render_chart(values)
    monitors = rendered.of_kind("ServiceMonitor")
    if not _setting(values, "metrics.serviceMonitor.enabled", False):
        assert monitors == []
        return
    (monitor,) = monitors
    selected = [
        s
        for s in rendered.of_kind("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [
        f"{rendered.one('Deployment')['metadata']['name']}-metrics"
    ]
    assert monitor["spec"]["endpoints"][0]["port"] in {
        p["name"] for p in selected[0]["spec"]["ports"]
    }
    assert (
        _setting(values, "metrics.serviceMonitor.labels", {}).items()
        <= monitor["metadata"]["labels"].items()
    )


# ----------------------------------------------------------------------------- RBAC

# What the operator needs (the operator tests later check these against the
# requests it really makes): (verb, group, resource, subresource, namespace).
NEEDED = [
    *[
        (verb, "guard.dev", r, "", None)
        for verb in ("list", "watch")
        for r in (
            "guardpolicies",
            "guardtrusts",
            "guardexceptions",
            "reviewattestations",
            "guardbaselines",
        )
    ],
    ("list", "guard.dev", "reviewattestations", "", "team-a"),
    *[
        ("patch", "guard.dev", r, "status", None)
        for r in ("guardpolicies", "guardtrusts", "guardexceptions", "guardbaselines")
    ],
    # The owner index (watched), and the read of one owner on a miss (a list).
    *[
        (verb, group, r, "", None)
        for verb in ("list", "watch")
        for group, r in (
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("", "replicationcontrollers"),
        )
    ],
    ("list", "apps", "replicasets", "", "team-a"),
    ("patch", "guard.dev", "reviewattestations", "status", "team-a"),
    ("list", "apiextensions.k8s.io", "customresourcedefinitions", "", None),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions", "", None),
    ("create", "", "events", "", "default"),
]
# What a compromised guard must not be able to do.
FORBIDDEN = [
    ("get", "", "secrets", "", NAMESPACE),
    ("patch", "", "events", "", "default"),
    ("get", "guard.dev", "reviewattestations", "", "team-a"),
    ("list", "", "secrets", "", None),
    ("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", None),
    ("delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", None),
    ("create", "guard.dev", "guardexceptions", "", None),
    # Only cluster admins write baselines: they let unreviewed workloads run.
    ("create", "guard.dev", "guardbaselines", "", None),
    ("update", "guard.dev", "guardbaselines", "", None),
    ("patch", "guard.dev", "guardbaselines", "", None),
    ("get", "apps", "replicasets", "", "team-a"),
    ("update", "guard.dev", "guardpolicies", "", None),
    ("patch", "guard.dev", "guardpolicies", "", None),
    ("delete", "guard.dev", "reviewattestations", "", "team-a"),
    ("create", "guard.dev", "reviewattestations", "", "team-a"),
    ("patch", "", "namespaces", "", None),
    ("create", "", "pods", "", "team-a"),
    ("patch", "apps", "deployments", "", "team-a"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", None),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", "", None),
    ("impersonate", "", "users", "", None),
    ("create", "", "serviceaccounts", "token", NAMESPACE),
]


def _permissions(values: dict[str, Any]) -> Permissions:
    rendered = render_chart(values)
    account = rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert [sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")] == [account]
    return Permissions.from_manifests(rendered.manifests, account, NAMESPACE)


@pytest.mark.parametrize("name", ["defaults", "everything"])
@pytest.mark.parametrize(
    "needed", NEEDED, ids=lambda n: "-".join(p or "core" for p in n[:4] if p is not None)
)
def test_rbac_grants_what_the_operator_needs(
    name: str, needed: tuple[str, str, str, str, str | None]
) -> None:
    verb, group, resource, subresource, namespace = needed
    assert _permissions(_values(name)).is_granted(verb, group, resource, subresource, namespace)


@pytest.mark.parametrize(
    "forbidden", FORBIDDEN, ids=lambda n: "-".join(p or "core" for p in n[:4] if p is not None)
)
def test_rbac_refuses_the_rest(forbidden: tuple[str, str, str, str, str | None]) -> None:
    verb, group, resource, subresource, namespace = forbidden
    assert not _permissions({}).is_granted(verb, group, resource, subresource, namespace)


def test_nothing_in_the_chart_lets_anyone_write_a_baseline() -> None:
    """No role of the chart (aggregated to admin or edit, or bound to anyone)
    grants writing GuardBaselines: only cluster admins may."""
    rendered = render_chart({})
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for role in [*rendered.of_kind("ClusterRole"), *rendered.of_kind("Role")]:
        for rule in role.get("rules", []):
            if not {"guard.dev", "*"} & set(rule.get("apiGroups", [])):
                continue
            named = {"guardbaselines", "*"} & set(rule.get("resources", []))
            assert not (named and writes & set(rule.get("verbs", []))), role["metadata"]["name"]


def test_rbac_grants_nothing_beyond_the_list() -> None:
    """Every granted permission is one the list names: no wildcard, no extra verb."""
    permissions = _permissions({}).permissions()
    named = {(v, g, r, s) for v, g, r, s, _ in NEEDED}
    assert {(p.verb, p.group, p.resource, p.subresource) for p in permissions} == named
