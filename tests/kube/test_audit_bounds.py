"""What one request can make guard write is bounded: the denial message,
the warnings, each audit line, and how many full records one requester gets
a second. Every decision still leaves a line naming its uid, verdict and
requester; the bounds never change a decision.

The hostile request of record: a Deployment with 2,000 unreviewed images
and 16 inline envelopes, sent as dry runs (which write audit lines but
change nothing). Unbounded, one such request wrote a 12 MB audit line and a
620 KB denial message, and 13 of them rotated every older record out of the
audit files.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.kube import wording
from controller.kube.audit import DETAIL_BURST, DETAIL_RATE, AuditLog
from controller.kube.decide import decided, subject_of
from controller.kube.record import MAX_LINE_BYTES, audit_line
from controller.kube.request import parse_review
from controller.kube.result import AdmissionResult, Reason, refuse
from controller.kube.runtime import GuardRuntime
from controller.kube.settings import ServeSettings
from controller.kube.shapes import MAX_DEPTH
from controller.kube.state import FileInputs
from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Result
from tests.kube.helpers import (
    IMAGE,
    TEST_POLICIES,
    WEB,
    Cast,
    admission_review,
    digest_of,
    envelope,
    workload,
    write_documents,
)

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flood(
    images: int = 2000, envelopes: int = 16, *, user: str = "mallory", dry_run: bool = True
) -> AdmissionResult:
    """The answer to the hostile request of record, built without spending
    the seconds it takes to verify 32,000 signatures: the same findings,
    evidence and wording the judge produces."""
    references = [f"{IMAGE}-{n}@{digest_of(str(n))}" for n in range(images)]
    request = parse_review(
        admission_review(
            workload("Deployment", "web", "prod", *references), user=user, dry_run=dry_run
        )
    )
    subject = subject_of(request)
    reasons = tuple(
        f"{reference}: envelope {n:012x}: signed by an unknown key (keyid '0e595320b2b1bcf0'): "
        "no trusted key verifies it"
        for reference in references
        for n in range(envelopes)
    )
    fix = "; ".join(
        "guard attest review --key ci.key --repository github.com/example/app --target-ref "
        f"refs/heads/main --revision <commit> --digest {reference} --output review.json"
        for reference in references
    )
    # The upstream policy judges what controllers make from it: same fix.
    findings = [
        Finding(
            policy=name,
            rule="review",
            severity=Severity.critical,
            action=Action.deny,
            result=Result.fail,
            target=Target.kubernetes,
            address=subject.address,
            message=f"no accepted review attestation: {reasons[0]} (and {len(reasons) - 1} more)",
            fix=fix,
            reasons=found,
        )
        for name, found in (("require-review", reasons), ("require-review-upstream", ()))
    ]
    envelope_digests = [f"sha256:{n:064x}" for n in range(envelopes)]
    evidence = {
        "candidates": {a.digest: ["annotation"] * envelopes for a in subject.artifacts},
        "review": {
            "require-review": {"result": "fail", "envelopes": envelope_digests, "approvers": {}}
        },
    }
    return decided(request, subject, Decision.of(findings, subjects=1), Action.deny, evidence)


@pytest.fixture(scope="module")
def hostile() -> AdmissionResult:
    return flood()


# --------------------------------------------------------------------------- one request


def test_the_denial_message_stays_within_its_caps(hostile: AdmissionResult) -> None:
    message = hostile.message
    assert len(message) <= wording.MAX_DENIAL_CHARS
    assert all(len(line) <= wording.MAX_LINE_CHARS for line in message.splitlines())
    # Two findings share one fix: it is shown once, and shortened.
    assert message.count("fix: ") == 1
    assert "more characters)" in message
    assert "and 31990 more (see the audit log)" in message
    assert hostile.allowed is False and hostile.code == 403


def test_one_hostile_request_writes_one_line_of_at_most_64_kib(hostile: AdmissionResult) -> None:
    stream = io.StringIO()
    AuditLog(stream=stream).write(hostile)
    [line] = stream.getvalue().splitlines()
    assert len(line.encode()) <= MAX_LINE_BYTES
    record = json.loads(line)
    # The decision is whole ...
    assert (record["uid"], record["decision"], record["request"]["user"]) == (
        hostile.uid,
        "deny",
        "mallory",
    )
    assert record["message"] == hostile.message
    assert record["request"]["dryRun"] is True
    # ... and the detail says what was cut, so the counts survive.
    truncated = record["truncated"]
    assert truncated["limit"] == MAX_LINE_BYTES and truncated["bytes"] > 8 * 1024 * 1024
    kept = len(record["findings"][0]["reasons"])
    assert kept + truncated["dropped"]["findings[].reasons"] == 32000
    assert len(record["artifacts"]) + truncated["dropped"]["artifacts"] == 2000
    assert truncated["shortened"]["findings[].fix"] == 2


def test_a_record_within_the_limit_is_written_whole() -> None:
    result = flood(images=3, envelopes=2)
    stream = io.StringIO()
    AuditLog(stream=stream).write(result)
    record = json.loads(stream.getvalue())
    assert "truncated" not in record
    assert len(record["findings"][0]["reasons"]) == 6
    assert len(record["artifacts"]) == 3


def test_the_real_admission_path_is_bounded_too(tmp_path: Path) -> None:
    cast = Cast.make()
    files = FileInputs.load(
        [write_documents(tmp_path / "p.yaml", TEST_POLICIES)],
        [write_documents(tmp_path / "t.yaml", [cast.trust_document()])],
    )
    references = [f"{IMAGE}-{n}@{digest_of(str(n))}" for n in range(400)]
    digests = [r.split("@")[1] for r in references]
    bogus = [envelope(cast.stranger, digests, attester=f"x{n}") for n in range(2)]
    obj = workload(
        "Deployment", "web", "prod", *references,
        annotations={"guard.dev/attestations": json.dumps(bogus)},
    )  # fmt: skip
    stream = io.StringIO()

    async def lister(_plural: str, _namespace: str | None) -> list[Mapping[str, Any]]:
        return []

    runtime = GuardRuntime(
        ServeSettings(policy_paths=()), files, lister=lister, audit=AuditLog(stream=stream)
    )
    request = parse_review(admission_review(obj, dry_run=True))
    result = asyncio.run(runtime.admit(request, attestations={}, resources=()))
    runtime.finish(result, 0.0)
    assert not result.allowed
    assert len(result.message) <= wording.MAX_DENIAL_CHARS
    [line] = stream.getvalue().splitlines()
    assert len(line.encode()) <= MAX_LINE_BYTES
    assert json.loads(line)["truncated"]["dropped"]["artifacts"] > 0


def test_thirteen_hostile_dry_runs_leave_older_records_in_place(
    tmp_path: Path, hostile: AdmissionResult
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, stream=None)  # default rotation: 50 MiB, 3 backups
    log.write(refuse("marker-uid", Reason.malformed, "the record to keep", code=400))
    for _ in range(13):
        log.write(hostile)
    log.close()
    assert log.rotations == 0
    assert json.loads(path.read_text().splitlines()[0])["uid"] == "marker-uid"
    assert path.stat().st_size <= 14 * MAX_LINE_BYTES


# --------------------------------------------------------------------------- one requester, many requests


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_requester_gets_full_records_at_a_rate_then_summaries() -> None:
    clock = Clock()
    stream = io.StringIO()
    log = AuditLog(stream=stream, clock=clock)
    small = flood(images=2, envelopes=1)
    answers = [flood(images=2, envelopes=1) for _ in range(DETAIL_BURST + 10)]
    for answer in answers:
        log.write(answer)
    records = _records(stream)
    assert len(records) == DETAIL_BURST + 10
    assert all("findings" in r for r in records[:DETAIL_BURST])
    summaries = records[DETAIL_BURST:]
    assert all(r["detail"] == "suppressed" and "findings" not in r for r in summaries)
    # A summary names the decision, the requester and what the full record would count.
    assert [r["uid"] for r in records] == [a.uid for a in answers]
    assert {(r["decision"], r["request"]["user"], r["request"]["dryRun"]) for r in summaries} == {
        ("deny", "mallory", True)
    }
    assert summaries[0]["counts"] == {"findings": 2, "denials": 2, "artifacts": 2}
    # Someone else is not held back by mallory.
    other = flood(images=2, envelopes=1, user="carol")
    log.write(other)
    assert "findings" in _records(stream)[-1]
    # Time passes: the next full record is preceded by the count of summaries.
    clock.now += 1.0
    log.write(small)
    counted, full = _records(stream)[-2:]
    assert counted["event"] == "audit-detail-suppressed"
    assert counted["message"].startswith("suppressed 10 records from mallory")
    assert (counted["user"], counted["suppressed"]) == ("mallory", 10)
    assert full["uid"] == small.uid and "findings" in full
    assert log.suppressed == 10


def test_suppressed_records_are_counted_when_the_log_closes() -> None:
    clock = Clock()
    stream = io.StringIO()
    log = AuditLog(stream=stream, clock=clock, detail_burst=1, detail_rate=0.5)
    for _ in range(4):
        log.write(flood(images=1, envelopes=1))
    log.close()
    last = _records(stream)[-1]
    assert (last["event"], last["suppressed"]) == ("audit-detail-suppressed", 3)


def test_the_allowance_refills_at_the_documented_rate() -> None:
    clock = Clock()
    stream = io.StringIO()
    log = AuditLog(stream=stream, clock=clock)
    for _ in range(DETAIL_BURST):
        log.write(flood(images=1, envelopes=1))
    answer = flood(images=1, envelopes=1)
    for _ in range(100):  # ten seconds of ten requests a second
        clock.now += 0.1
        log.write(answer)
    full = 100 - log.suppressed
    assert full == pytest.approx(10 * DETAIL_RATE, abs=1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "", "c"]), st.floats(min_value=0, max_value=2)),
        max_size=80,
    )
)
def test_every_decision_leaves_exactly_one_line_with_its_uid(
    steps: list[tuple[str, float]],
) -> None:
    clock = Clock()
    stream = io.StringIO()
    log = AuditLog(stream=stream, clock=clock, detail_burst=3, detail_rate=1.0)
    answers = []
    for user, wait in steps:
        clock.now += wait
        answer = (
            refuse(f"bad-{len(answers)}", Reason.malformed, "unreadable", code=400)
            if not user
            else flood(images=1, envelopes=1, user=user)
        )
        answers.append(answer)
        log.write(answer)
    log.close()
    records = _records(stream)
    decisions = [r for r in records if "event" not in r]
    assert [r["uid"] for r in decisions] == [a.uid for a in answers]
    assert all(r["decision"] == "deny" for r in decisions)
    # Whatever was summarised is counted, once.
    counted = sum(r["suppressed"] for r in records if r.get("event") == "audit-detail-suppressed")
    assert counted == sum(1 for r in decisions if r.get("detail") == "suppressed")


# --------------------------------------------------------------------------- any record, any finding


_TEXT = st.text(max_size=300) | st.text(alphabet="\U0001f600\x00\u2028é", max_size=40_000)
_RECORDS = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: (
        st.lists(inner, max_size=60) | st.dictionaries(st.text(max_size=12), inner, max_size=30)
    ),
    max_leaves=200,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.fixed_dictionaries(
        {"uid": st.text(max_size=200), "decision": st.sampled_from(["deny", "allow"])},
        optional={"message": _TEXT, "request": _RECORDS, "findings": _RECORDS, "evidence": _RECORDS, "warnings": st.lists(_TEXT, max_size=30)},
    )
)  # fmt: skip
def test_any_record_is_one_json_line_within_the_limit(record: dict[str, Any]) -> None:
    line = audit_line(record)
    assert len(line.encode()) <= MAX_LINE_BYTES
    assert len(line.splitlines()) == 1
    parsed = json.loads(line)
    assert parsed["decision"] == record["decision"]


def _shown_whole(text: str) -> bool:
    """Nothing kube-apiserver drops a warning for, nothing that splits a line."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


_FINDINGS = st.lists(
    st.builds(
        lambda message, fix, reasons, deny: Finding(
            policy="p", rule="review" if reasons else "r", severity=Severity.high,
            action=Action.deny if deny else Action.warn, result=Result.fail,
            target=Target.kubernetes, address="Pod ns/p", message=message, fix=fix,
            reasons=tuple(reasons),
        ),
        _TEXT, st.sampled_from(["", "pin it", "x" * 5000]) | _TEXT,
        st.lists(_TEXT, max_size=30), st.booleans(),
    ),
    max_size=40,
)  # fmt: skip


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_FINDINGS, st.booleans())
def test_any_denial_message_and_warnings_stay_within_the_caps(
    findings: list[Finding], dry_run: bool
) -> None:
    request = parse_review(admission_review(workload("Pod", "p", "ns", WEB), dry_run=dry_run))
    result = decided(request, subject_of(request), Decision.of(findings), Action.deny, {})
    denials = [f for f in findings if f.denies]
    assert result.allowed is (not denials)
    lines = result.message.splitlines()
    assert len(result.message) <= wording.MAX_DENIAL_CHARS
    assert all(len(line) <= wording.MAX_LINE_CHARS and _shown_whole(line) for line in lines)
    fixes = [line for line in lines if line.startswith("    fix: ")]
    assert len(fixes) == len(set(fixes))
    assert len(result.warnings) <= wording.MAX_WARNINGS + 1
    assert sum(len(w) for w in result.warnings) <= wording.MAX_WARNING_TOTAL_CHARS + 64


# --------------------------------------------------------------------------- the documented figures


def _figures(text: str) -> set[str]:
    """The bold figures of a text (bold words without a digit are headings)."""
    bold = (" ".join(found.split()) for found in re.findall(r"\*\*([^*]+)\*\*", text))
    return {figure for figure in bold if any(c.isdigit() for c in figure)}


def test_operations_guide_states_the_bounds_the_code_applies() -> None:
    section = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = section[section.index("## Bounds") :]
    section = section[: section.index("\n## ", 4)]
    expected = {
        f"{MAX_LINE_BYTES // 1024} KiB",
        f"{DETAIL_RATE:g} full records a second",
        f"{DETAIL_BURST} at once",
        f"{wording.MAX_DENIAL_CHARS // 1024} KiB",
        f"{wording.MAX_LINE_CHARS:,} characters",
        f"{wording.MAX_LISTED_FINDINGS} findings",
        f"{wording.MAX_LISTED_REASONS} reasons",
        f"{wording.MAX_WARNINGS} warnings",
        f"{wording.MAX_WARNING_CHARS} characters",
        f"{wording.MAX_WARNING_TOTAL_CHARS // 1024} KiB",
        f"{MAX_DEPTH} levels",
    }
    assert _figures(section) == expected
