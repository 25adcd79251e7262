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
from controller.policy.loader import load_bundle
from controller.policy.matching import matches
from controller.policy.results import Subject

POLICIES = load_bundle(bundled_policies_path(), tests=False).policies
SHARED = Engine(POLICIES)

_terraform = st.builds(
    lambda kind, rtype, action, acl: Subject(
        target=Target.terraform,
        address=f"{rtype}.x",
        kind=kind,
        type=rtype,
        name="x",
        namespace=None,
        action=action,
        object={"acl": acl, "tags": {"owner": "a"}, "bucket": "b"},
    ),
    st.sampled_from(("resource", "plan")),
    st.sampled_from(("aws_s3_bucket", "aws_security_group", "aws_db_instance", "null_resource")),
    st.sampled_from(("create", "update", "delete", "replace")),
    st.sampled_from(("private", "public-read")),
)
_kubernetes = st.builds(
    lambda kind, namespace, labels, image: Subject(
        target=Target.kubernetes,
        address=f"{kind} {namespace}/x",
        kind=kind,
        type=kind,
        name="x",
        namespace=namespace,
        action="create",
        object=_pod_object(kind, labels, image),
        labels=labels,
    ),
    st.sampled_from(("Pod", "Deployment", "CronJob")),
    st.sampled_from(("default", "kube-system", "shop")),
    st.dictionaries(st.sampled_from(("owner", "app")), st.sampled_from(("a", "b")), max_size=2),
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
    assert SHARED.matching(subject) == expected
    fresh = Engine(POLICIES).evaluate(subject)
    shared = SHARED.evaluate(subject)
    assert shared.matched == fresh.matched
    assert [(f.policy, f.rule, f.result, f.message) for f in shared.findings] == [
        (f.policy, f.rule, f.result, f.message) for f in fresh.findings
    ]
