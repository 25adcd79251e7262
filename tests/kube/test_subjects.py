"""Workloads into subjects: images, digests, what a request introduces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.cli import main
from controller.errors import InputError
from controller.kube.subjects import (
    annotations_of,
    case_subject,
    image_digest,
    images_of,
    workload_subject,
)
from controller.policy import documents
from controller.policy.results import Requester
from controller.policy.variables import request_variable
from tests.kube.helpers import (
    NO_PRIVILEGED,
    SIDECAR_DIGEST,
    WEB,
    WEB_DIGEST,
    WEB_V2,
    workload,
    write_documents,
)
from tests.kube.mutations import JSON_VALUES

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
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "prod"},
        "spec": {
            "containers": [{"name": "a", "image": "r/a@sha256:" + "a" * 64}],
            "volumes": [{"name": "tools", "image": {"reference": "r/tools:1"}}],
        },
    }
    case = documents.TestCase.model_validate(
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


_POD = {
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "prod"},
    "spec": {"containers": [{"name": "a", "image": "r/a:1"}]},
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"request": {"userInfo": "carol"}}, "request.userInfo must be an object, not a string"),
        ({"request": {"userInfo": ["carol"]}}, "request.userInfo must be an object, not an array"),
        ({"request": {"userInfo": {"username": 7}}},
         "request.userInfo.username must be a string, not a number"),
        ({"request": {"userInfo": {"groups": "dev"}}},
         "request.userInfo.groups must be a list of strings"),
        ({"request": {"dryRun": "yes"}}, "request.dryRun must be a boolean, not a string"),
        ({"request": {"subResource": ["status"]}}, "request.subResource must be a string"),
        ({"object": {**_POD, "metadata": ["p"]}}, "object.metadata must be an object, not an array"),
        ({"object": {**_POD, "spec": {"containers": {"a": {}}}}},
         "object.spec.containers must be an array, not an object"),
    ],
)  # fmt: skip
def test_a_policy_test_case_with_a_malformed_request_names_the_case_and_field(
    change: dict[str, Any], problem: str
) -> None:
    case = documents.TestCase.model_validate(
        {"name": "odd case", "object": _POD, "expect": {"result": "pass"}, **change}
    )
    with pytest.raises(InputError) as caught:
        case_subject(case)
    assert str(caught.value).startswith("GuardPolicyTest case 'odd case': ")
    assert problem in str(caught.value)


def test_guard_policy_test_reports_a_string_user_info_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicyTest",
        "metadata": {"name": "t"},
        "spec": {
            "cases": [
                {
                    "name": "string user",
                    "policies": ["no-privileged"],
                    "object": _POD,
                    "request": {"userInfo": "carol"},
                    "expect": {"result": "pass"},
                }
            ]
        },
    }
    path = write_documents(tmp_path / "t.yaml", [NO_PRIVILEGED, document])
    assert main(["policy", "test", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "guard: error: GuardPolicyTest case 'string user': request.userInfo must be an "
        "object, not a string"
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["operation", "userInfo", "dryRun", "subResource", "other"]),
        JSON_VALUES | st.dictionaries(st.sampled_from(["username", "groups", "uid", "extra"]),
                                      JSON_VALUES),
    )
)  # fmt: skip
def test_any_case_request_is_a_subject_or_an_input_error(request_: dict[str, Any]) -> None:
    try:
        case = documents.TestCase.model_validate(
            {"name": "any", "object": _POD, "request": request_, "expect": {"result": "pass"}}
        )
    except ValidationError:
        reject()  # the document model refuses it before any subject is built
    try:
        subject = case_subject(case)
    except InputError as exc:
        assert str(exc).startswith("GuardPolicyTest case 'any': request.")
    else:
        assert subject.requester is not None
