"""The policies that judge what controllers make from an object, remembered
by shape, are the ones worked out afresh.

``decide.made_from`` is remembered per policy set, keyed by the matching
shape of the object and of each template it holds (kind, namespace, the
labels selectors read). Generated workloads, with labels from a small
alphabet so that shapes repeat, must get the same answer from the memory as
from working it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.kube.decide import _made_from, made_from
from controller.kube.state import FileInputs, PolicySet, build_policy_set
from controller.policy.documents import Action, Target
from controller.policy.results import Requester, Subject
from tests.kube.helpers import write_documents


def policy(name: str, match: dict[str, Any], review: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "match": {"kubernetes": match},
        "rules": [{"name": "r", "target": "kubernetes", "expression": "true", "message": "m"}],
    }
    if review:
        spec["review"] = {
            "minApprovals": 1,
            "attesters": ["ci"],
            "repositories": ["github.com/example/app"],
            "targetRefs": ["refs/heads/main"],
        }
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


POLICIES = [
    policy(
        "pods-of-team-a", {"kinds": ["Pod"], "labelSelector": {"matchLabels": {"team": "a"}}}, True
    ),
    policy("pods-in-prod", {"kinds": ["Pod"], "namespaces": {"include": ["prod"]}}, True),
    policy("replicasets", {"kinds": ["ReplicaSet"]}, False),
    policy(
        "no-tier",
        {"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
        True,
    ),
    policy("deployments", {"kinds": ["Deployment"]}, True),
]
KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"]
labels = st.dictionaries(
    st.sampled_from(["team", "tier", "app"]), st.sampled_from(["a", "b"]), max_size=3
)


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> PolicySet:
    path: Path = tmp_path_factory.mktemp("made-from") / "p.yaml"
    files = FileInputs.load([write_documents(path, POLICIES)], [])
    return build_policy_set(files, (), enforcement=Action.deny)


def workload(kind: str, own: dict[str, str], template: dict[str, str]) -> dict[str, Any]:
    pod = {"metadata": {"labels": template}, "spec": {"containers": [{"name": "c"}]}}
    spec: dict[str, Any] = (
        pod["spec"]
        if kind == "Pod"
        else {"jobTemplate": {"spec": {"template": pod}}}
        if kind == "CronJob"
        else {"template": pod}
    )
    return {"kind": kind, "metadata": {"name": "w", "labels": own}, "spec": spec}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(KINDS),
    st.sampled_from(["prod", "dev"]),
    labels,
    labels,
    st.booleans(),
)
def test_remembered_upstream_policies_are_the_ones_worked_out(
    policies: PolicySet,
    kind: str,
    namespace: str,
    own: dict[str, str],
    template: dict[str, str],
    controller: bool,
) -> None:
    subject = Subject(
        target=Target.kubernetes,
        address=f"{kind} {namespace}/w",
        kind=kind,
        type=kind,
        name="w",
        namespace=namespace,
        action="create",
        object=workload(kind, own, template),
        requester=Requester(username="u", controller=controller),
        labels=own,
    )
    expected = [] if controller else list(_made_from(policies, subject))
    assert made_from(policies, subject) == expected
    assert made_from(policies, subject) == expected  # and again, from the memory
