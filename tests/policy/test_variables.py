"""The CEL variables contract: pod specs of every workload kind."""

from __future__ import annotations

from typing import Any

import pytest

from controller.policy.variables import containers_of, pod_spec_of


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Deployment", "spec": "oops"},
        {"kind": "Deployment", "spec": {"template": ["x"]}},
        {"kind": "Deployment", "spec": {"template": {"spec": None}}},
        {"kind": "Deployment", "spec": {"template": {"spec": {"containers": "x"}}}},
    ],
)
def test_malformed_pod_templates_give_an_empty_pod_spec_not_a_traceback(
    obj: dict[str, Any],
) -> None:
    spec = pod_spec_of("Deployment", obj)
    assert isinstance(spec, dict)
    assert containers_of(spec) == []
