"""JUnit XML, which every CI system can display.

One test case per finding. A finding that denies is a ``failure`` (an
``error`` when the rule itself could not be evaluated); a waived finding is
``skipped`` with its exception; warnings and audits pass with their message
in ``system-out``. Every judged subject without findings is one passing
case, so a CI page shows what was checked, not only what failed; with
nothing at all, one passing case says so, because an empty suite reads as
"nothing ran". The change a case is about (``replace (tainted)``) is in its
text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from controller.policy.results import Decision, Finding, Result, Subject
from controller.report.base import ReportFormat
from controller.report.context import ReportContext
from controller.report.resources import describe_change, subject_results, subjects_by_address
from controller.report.summary import summary_line


class JunitFormat(ReportFormat):
    @property
    def name(self) -> str:
        return "junit"

    def render(self, decision: Decision, context: ReportContext) -> str:
        suites = ET.Element("testsuites", name="guard")
        suite = ET.SubElement(suites, "testsuite", name=context.command)
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("source", context.source),
            ("review", context.review),
            ("warnOnly", str(context.warn_only).lower()),
            ("summary", summary_line(decision, context)),
        ):
            ET.SubElement(properties, "property", name=name, value=value)
        for applied in context.exceptions:
            ET.SubElement(
                properties,
                "property",
                name=f"exception.{applied.name}",
                value=f"policy {applied.policy} on {', '.join(applied.addresses)}; owner "
                f"{applied.owner}; expires {applied.expires}; {applied.reason}",
            )
        for note in context.notes:
            ET.SubElement(properties, "property", name="note", value=note)

        failures = errors = skipped = 0
        subjects = subjects_by_address(context.subjects)
        for finding in decision.findings:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=finding.address,
                name=f"{finding.policy}/{finding.rule}",
                file=finding.location or context.source,
            )
            if finding.line:
                case.set("line", str(finding.line))
            body = _body(finding, subjects.get(finding.address))
            if finding.waiver is not None:
                skipped += 1
                ET.SubElement(case, "skipped", message=f"waived by {finding.waiver.label}")
            elif finding.denies:
                tag = "error" if finding.result is Result.error else "failure"
                if tag == "error":
                    errors += 1
                else:
                    failures += 1
                element = ET.SubElement(
                    case, tag, message=finding.message, type=f"{finding.severity.value}"
                )
                element.text = body
            else:
                out = ET.SubElement(case, "system-out")
                out.text = f"{finding.action.value}: {body}"
        tests = len(decision.findings)
        for judged in subject_results(decision, context.subjects):
            if judged.findings:
                continue
            tests += 1
            case = ET.SubElement(
                suite,
                "testcase",
                classname=judged.subject.address,
                name="guard policies",
                file=judged.subject.location or context.source,
            )
            ET.SubElement(case, "system-out").text = f"pass: {describe_change(judged.subject)}"
        if tests == 0:
            tests = 1
            ET.SubElement(suite, "testcase", classname=context.source, name="guard policies")
        for element in (suites, suite):
            element.set("tests", str(tests))
            element.set("failures", str(failures))
            element.set("errors", str(errors))
            element.set("skipped", str(skipped))
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _body(finding: Finding, subject: Subject | None) -> str:
    lines = [
        f"{finding.severity.value} {finding.result.value}: {finding.message}",
        *(f"- {reason}" for reason in finding.reasons),
    ]
    if subject is not None:
        lines.append(f"change: {describe_change(subject)}")
    if finding.fix:
        lines.append(f"fix: {finding.fix}")
    return "\n".join(lines)
