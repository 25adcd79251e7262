"""A test case's values are bounded in depth like a plan's: the CEL runtime
walks values recursively, and YAML anchors can nest a case far deeper than
the parser's own limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.cli import main
from controller.policy import documents
from controller.policy.documents import CASE_MAX_DEPTH


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3 * CASE_MAX_DEPTH), st.sampled_from(["object", "oldObject", "request"]))
def test_a_case_nested_deeper_than_the_limit_is_refused(depth: int, field: str) -> None:
    case = {"name": "c", "object": {}, "expect": {"result": "pass"}}
    case[field] = {"x": nested(depth - 1)}  # the mapping is one level
    if depth <= CASE_MAX_DEPTH:
        documents.TestCase.model_validate(case)
        return
    with pytest.raises(ValidationError, match=f"{field}: nested more than {CASE_MAX_DEPTH}"):
        documents.TestCase.model_validate(case)


def test_anchors_that_nest_a_case_too_deep_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each anchor stays under the YAML parser's nesting limit; together they
    reach thousands of levels."""
    anchors = [f"&a{i} " + "[" * 90 + (f"*a{i - 1}" if i else "1") + "]" * 90 for i in range(60)]
    (tmp_path / "deep.test.yaml").write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardPolicyTest\nmetadata: {name: t}\n"
        "spec:\n  cases:\n    - name: deep\n"
        "      resource: {type: aws_s3_bucket, address: aws_s3_bucket.b}\n"
        f"      object:\n        pad: [{', '.join(anchors)}]\n        x: *a59\n"
        "      expect: {result: pass}\n"
    )
    assert main(["policy", "test", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"object: nested more than {CASE_MAX_DEPTH} levels deep" in err
    assert len(err.strip().splitlines()) == 1
