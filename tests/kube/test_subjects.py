"""Workloads into subjects: images, digests, what a request introduces."""

from __future__ import annotations

import pytest

from controller.kube.subjects import (
    annotations_of,
    image_digest,
    images_of,
    workload_subject,
)
from controller.policy.results import Requester
from controller.policy.variables import request_variable
from tests.kube.helpers import SIDECAR_DIGEST, WEB, WEB_DIGEST, WEB_V2, workload

HEX = "a" * 64


@pytest.mark.parametrize(
    ("image", "digest"),
    [
        (f"nginx@sha256:{HEX}", f"sha256:{HEX}"),
        (f"registry:5000/team/app:1.2@sha256:{HEX}", f"sha256:{HEX}"),
        ("nginx:1.25", None),
        ("nginx", None),
        (f"nginx@sha256:{HEX[:-1]}", None),
        (f"nginx@sha256:{HEX.upper()}", None),
        (f"nginx@sha512:{'a' * 128}", None),
    ],
)
def test_digest_comes_only_from_a_pinned_reference(image: str, digest: str | None) -> None:
    assert image_digest(image) == digest


@pytest.mark.parametrize(
    "kind", ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
)
def test_images_of_every_container_list(kind: str) -> None:
    obj = workload(kind, "w", "ns", WEB, WEB)
    spec = obj["spec"] if kind == "Pod" else None
    if kind == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif kind != "Pod":
        spec = obj["spec"]["template"]["spec"]
    assert spec is not None
    spec["initContainers"] = [{"name": "init", "image": "init:1"}]
    spec["ephemeralContainers"] = [{"name": "debug", "image": "debug:1"}]
    assert images_of(kind, obj) == [WEB, "init:1", "debug:1"]


def _subject(operation: str, new: list[str], old: list[str] | None = None):  # type: ignore[no-untyped-def]
    return workload_subject(
        kind="Deployment",
        name="web",
        namespace="prod",
        operation=operation,
        obj=workload("Deployment", "web", "prod", *new),
        old_obj=workload("Deployment", "web", "prod", *old) if old is not None else None,
        requester=Requester("carol", ("devs",)),
    )


def test_create_introduces_every_image() -> None:
    subject = _subject("CREATE", [WEB, "proxy:1"])
    assert [(a.reference, a.digest, a.introduced) for a in subject.artifacts] == [
        (WEB, WEB_DIGEST, True),
        ("proxy:1", None, True),
    ]
    assert subject.address == "Deployment prod/web"
    assert request_variable(subject) == {
        "operation": "CREATE",
        "userInfo": {"username": "carol", "groups": ["devs"]},
        "dryRun": False,
        "subResource": None,
    }


def test_update_with_the_same_images_introduces_nothing() -> None:
    subject = _subject("UPDATE", [WEB], [WEB])
    assert [a.introduced for a in subject.artifacts] == [False]


def test_update_introduces_only_the_changed_images() -> None:
    sidecar = f"sidecar@{SIDECAR_DIGEST}"
    subject = _subject("UPDATE", [WEB_V2, sidecar], [WEB, sidecar])
    assert [(a.reference, a.introduced) for a in subject.artifacts] == [
        (WEB_V2, True),
        (sidecar, False),
    ]


def test_annotations_of_object_and_templates() -> None:
    cronjob = workload("CronJob", "c", "ns", WEB, annotations={"a": "1"})
    cronjob["spec"]["jobTemplate"]["metadata"] = {"annotations": {"b": "2"}}
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"] = {"c": "3"}
    assert [dict(a) for a in annotations_of("CronJob", cronjob)] == [
        {"a": "1"},
        {"b": "2"},
        {"c": "3"},
    ]


def test_policy_test_cases_are_judged_as_admission_judges_them() -> None:
    from controller.kube.subjects import case_subject
    from controller.policy.documents import TestCase

    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "prod"},
        "spec": {
            "containers": [{"name": "a", "image": "r/a@sha256:" + "a" * 64}],
            "volumes": [{"name": "tools", "image": {"reference": "r/tools:1"}}],
        },
    }
    case = TestCase.model_validate(
        {"name": "c", "object": pod, "request": {"userInfo": {"username": "carol", "groups": ["dev"]}},
         "expect": {"result": "pass"}}
    )  # fmt: skip
    subject = case_subject(case)
    assert subject.address == "Pod prod/p"
    assert subject.requester == Requester(username="carol", groups=("dev",))
    assert request_variable(subject)["operation"] == "CREATE"
    assert {(a.reference, a.digest is None) for a in subject.artifacts} == {
        ("r/a@sha256:" + "a" * 64, False),
        ("r/tools:1", True),  # image volumes need a pinned, reviewed image too
    }
