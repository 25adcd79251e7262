"""Least privilege, proven: the chart grants exactly what the operator uses.

kmock has no authorization, so the emulated API records every request the
real operator sends while it works through everything it does (watching,
status reports, the fallback read, events); each must be granted by the
chart's rendered RBAC, and each granted permission must have been used.
"""

from __future__ import annotations

import json

from controller.kube.inherit import template_digest
from tests.chart.helm import render_chart
from tests.chart.rbac import Permissions, api_request
from tests.kube.helpers import (
    CONTROLLER_USER,
    IMAGE,
    NO_PRIVILEGED,
    UNATTESTED,
    Cast,
    admission_review,
    attestation_resource,
    digest_of,
    envelope,
    workload,
)
from tests.operator.harness import RunningGuard

WAIT = 10.0
NAMESPACE = "guard-system"

TRUST = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardTrust",
    "metadata": {"name": "extra-people"},
    "spec": {"principals": [{"id": "github:4242", "aliases": ["kubernetes:erin@example.com"]}]},
}
EXCEPTION = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardException",
    "metadata": {"name": "legacy-batch"},
    "spec": {
        "policy": "no-privileged",
        "target": "legacy/*",
        "reason": "vendor image, replaced in Q3",
        "owner": "team-batch",
        "expires": "2099-01-01",
    },
}


BASELINE = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardBaseline",
    "metadata": {"name": "rbac-legacy"},
    "spec": {
        "owner": "platform-team",
        "reason": "ran before guard",
        "expires": "2099-01-01",
        "entries": [
            {
                "kind": "ReplicaSet",
                "namespace": "legacy",
                "name": "legacy-rs",
                "uid": "rs-uid-1",
                "templateDigest": template_digest(
                    "ReplicaSet", workload("ReplicaSet", "legacy-rs", "legacy", UNATTESTED)
                ),
            }
        ],
    },
}


def exercise(guard: RunningGuard, cast: Cast) -> None:
    """Make the operator do everything it does in production, once."""
    # Status reports on every kind of document.
    digest = digest_of("rbac release")
    guard.api.create(
        "reviewattestations", attestation_resource("rbac", "prod", envelope(cast.ci, [digest]))
    )
    broken = json.loads(json.dumps(NO_PRIVILEGED))
    broken["metadata"]["name"] = "rbac-broken"
    broken["spec"]["rules"][0]["expression"] = "containers.all(c, "
    broken["spec"]["match"] = {"kubernetes": {"namespaces": {"include": ["rbac-broken"]}}}
    guard.api.create("guardpolicies", broken)
    guard.api.create("guardtrusts", TRUST)
    guard.api.create("guardexceptions", EXCEPTION)
    guard.api.create("guardbaselines", BASELINE)
    for kind, namespace, name in (
        ("ReviewAttestation", "prod", "rbac"),
        ("GuardPolicy", None, "rbac-broken"),
        ("GuardTrust", None, "extra-people"),
        ("GuardException", None, "legacy-batch"),
        ("GuardBaseline", None, "rbac-legacy"),
    ):
        assert guard.runtime.watch_log.wait_for(kind, namespace, name, "MODIFIED", WAIT), kind
    # The fallback read: an attestation the index has not seen yet.
    racing = digest_of("rbac racing release")
    guard.api.store_silently(
        "reviewattestations",
        attestation_resource("racing", "prod-rbac", envelope(cast.ci, [racing])),
    )
    answer = guard.post(
        admission_review(workload("Deployment", "w", "prod-rbac", f"{IMAGE}@{racing}"))
    )
    assert answer.allowed, answer.message
    # The owner read on an index miss: a controller's Pod of a ReplicaSet
    # the owner index has not seen (its owners are watched from the start).
    silent = workload("ReplicaSet", "legacy-rs", "legacy", UNATTESTED)
    silent["metadata"]["uid"] = "rs-uid-1"
    guard.api.store_workload_silently(silent)
    pod = workload("Pod", "legacy-rs-1", "legacy", UNATTESTED)
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-rs", "uid": "rs-uid-1",
         "controller": True}
    ]  # fmt: skip
    assert guard.post(admission_review(pod, user=CONTROLLER_USER)).allowed
    assert (
        "GET",
        "/apis/apps/v1/namespaces/legacy/replicasets?fieldSelector=metadata.name%3Dlegacy-rs",
    ) in guard.api.requests
    # A denial, which posts an Event on the policy.
    assert not guard.post(admission_review(workload("Deployment", "w", "prod", UNATTESTED))).allowed
    assert guard.runtime.events.idle.wait(WAIT)
    assert guard.api.events(), "the denial should have posted an Event"


def granted_by_the_chart() -> Permissions:
    rendered = render_chart({}, namespace=NAMESPACE)
    account = rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    return Permissions.from_manifests(rendered.manifests, account, NAMESPACE)


def test_chart_rbac_grants_exactly_what_the_operator_uses(guard: RunningGuard, cast: Cast) -> None:
    exercise(guard, cast)
    resource_requests = []
    for method, url in guard.api.requests:
        segments = [part for part in url.split("?", 1)[0].split("/") if part]
        discovery = (
            segments in (["api"], ["apis"], ["version"])
            or (segments[0] == "api" and len(segments) <= 2)
            or (segments[0] == "apis" and len(segments) <= 3)
        )
        if discovery:
            continue  # discovery: every authenticated client may read it
        resource_requests.append(api_request(method, url))
    assert resource_requests
    permissions = granted_by_the_chart()
    refused = sorted(
        {f"{r.verb} {r.group or 'core'}/{r.resource}{'/' + r.subresource if r.subresource else ''}"
         f" in {r.namespace or 'cluster'}"
         for r in resource_requests
         if not permissions.is_granted(r.verb, r.group, r.resource, r.subresource, r.namespace, r.name)}
    )  # fmt: skip
    assert refused == [], "the operator needs permissions the chart does not grant"
    unused = sorted(str(p) for p in permissions.unused(resource_requests))
    assert unused == [], "the chart grants permissions the operator never uses"
