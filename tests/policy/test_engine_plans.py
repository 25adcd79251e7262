"""The engine's per-shape memory never decides differently from working it out.

Matching and evaluation plans are remembered per subject shape for the life
of an engine; the key must hold everything that decides. Generated subjects
(Terraform types, actions and the plan subject; Kubernetes kinds, namespaces
and labels) are judged by one long-lived engine and by a fresh engine each
time: the matched policies and the findings must be the same.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.bundled import bundled_policies_path
from controller.policy.documents import Target
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle, parse_documents
from controller.policy.matching import matches
from controller.policy.results import Subject

SELECTORS = """\
apiVersion: guard.dev/v1alpha1
kind: GuardPolicy
metadata: {name: selected-by-label}
spec:
  match:
    kubernetes:
      labelSelector:
        matchLabels: {app: a}
        matchExpressions: [{key: owner, operator: NotIn, values: [b]}]
  rules:
    - {name: r, target: kubernetes, expression: "false", message: selected}
---
apiVersion: guard.dev/v1alpha1
kind: GuardPolicy
metadata: {name: selected-without-owner}
spec:
  match:
    kubernetes:
      labelSelector:
        matchExpressions: [{key: owner, operator: DoesNotExist}]
  rules:
    - {name: r, target: kubernetes, expression: "false", message: no owner}
"""
POLICIES = (
    *load_bundle(bundled_policies_path(), tests=False).policies,
    *(loaded.document for loaded in parse_documents(SELECTORS, "selectors.yaml")),
)
SHARED = Engine(POLICIES)


def _subject(
    target: Target, kind: str, rtype: str, namespace: str | None, action: str, obj: Any, **more: Any
) -> Subject:
    return Subject(
        target=target,
        address=f"{rtype} {namespace}/x" if namespace else f"{rtype}.x",
        kind=kind,
        type=rtype,
        name="x",
        namespace=namespace,
        action=action,
        object=obj,
        **more,
    )


_terraform = st.builds(
    lambda kind, rtype, action, acl: _subject(
        Target.terraform, kind, rtype, None, action, {"acl": acl, "tags": {"owner": "a"}}
    ),
    st.sampled_from(("resource", "plan")),
    st.sampled_from(("aws_s3_bucket", "aws_security_group", "aws_db_instance", "null_resource")),
    st.sampled_from(("create", "update", "delete", "replace")),
    st.sampled_from(("private", "public-read")),
)
_kubernetes = st.builds(
    lambda kind, namespace, labels, image: _subject(
        Target.kubernetes,
        kind,
        kind,
        namespace,
        "create",
        _pod_object(kind, labels, image),
        labels=labels,
    ),
    st.sampled_from(("Pod", "Deployment", "CronJob")),
    st.sampled_from(("default", "kube-system", "shop")),
    st.dictionaries(
        st.sampled_from(("owner", "app", "pod-template-hash")),
        st.sampled_from(("a", "b")),
        max_size=3,
    ),
    st.sampled_from(("ghcr.io/example/app:1", "docker.io/library/nginx@sha256:" + "a" * 64)),
)


def _pod_object(kind: str, labels: dict[str, str], image: str) -> dict[str, Any]:
    spec = {"containers": [{"name": "c", "image": image}]}
    if kind == "Pod":
        return {"kind": kind, "metadata": {"name": "x", "labels": labels}, "spec": spec}
    template = {"metadata": {"labels": labels}, "spec": spec}
    body = {"template": template}
    if kind == "CronJob":
        body = {"jobTemplate": {"spec": {"template": template}}}
    return {"kind": kind, "metadata": {"name": "x", "labels": labels}, "spec": body}


@settings(max_examples=150, deadline=None)
@given(st.one_of(_terraform, _kubernetes))
def test_remembered_shapes_decide_as_a_fresh_engine_does(subject: Subject) -> None:
    expected = tuple(p for p in SHARED._candidates if matches(p, subject))
    if subject.target is Target.kubernetes and subject.namespace != "kube-system":
        # The generated labels do select the label-selected policies sometimes.
        assert ("selected-without-owner" in {p.name for p in expected}) is (
            "owner" not in subject.labels
        )
    assert SHARED.matching(subject) == expected
    fresh = Engine(POLICIES).evaluate(subject)
    shared = SHARED.evaluate(subject)
    assert shared.matched == fresh.matched
    assert [(f.policy, f.rule, f.result, f.message) for f in shared.findings] == [
        (f.policy, f.rule, f.result, f.message) for f in fresh.findings
    ]
