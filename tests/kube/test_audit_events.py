"""The audit log (stdout, file, rotation), the digests of what is in force,
the events an answer plans and their rate limits."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.cli import build_parser
from controller.kube import audit as audit_module
from controller.kube.audit import AuditLog, RotatingFile
from controller.kube.decide import judge
from controller.kube.events import EventLimiter, EventReason, EventRecorder, planned_events
from controller.kube.metrics import Metrics
from controller.kube.request import parse_review
from controller.kube.result import AdmissionResult, Reason, refuse
from controller.kube.state import FileInputs, build_policy_set, documents_digest
from controller.policy.documents import Action, GuardPolicy
from tests.kube.helpers import (
    NO_PRIVILEGED,
    TEST_POLICIES,
    WEB,
    Cast,
    admission_review,
    workload,
    write_documents,
)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_audit_lines_go_to_the_stream_and_the_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = AuditLog(tmp_path / "audit" / "audit.jsonl", stream=stream)
    log.write(refuse("uid-1", Reason.malformed, "bad", code=400))
    log.close()
    streamed = stream.getvalue().splitlines()
    assert streamed == _lines(tmp_path / "audit" / "audit.jsonl")
    record = json.loads(streamed[0])
    assert (record["uid"], record["decision"], record["reason"]) == ("uid-1", "deny", "malformed")


def test_rotation_keeps_n_backups_and_never_splits_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rotating = RotatingFile(path, max_bytes=110, backups=2)
    lines = [
        json.dumps({"n": n, "pad": "x" * 30}) for n in range(12)
    ]  # 50-51 bytes with the newline
    for line in lines:
        rotating.write_line(line)
    rotating.close()
    current, first, second = path, rotating.backup_path(1), rotating.backup_path(2)
    assert not rotating.backup_path(3).exists()
    kept = _lines(second) + _lines(first) + _lines(current)
    assert kept == lines[-len(kept) :]  # newest last, in order, none split
    assert all(len(_lines(p)) == 2 for p in (second, first, current))
    assert rotating.rotations == 5


def test_rotation_without_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rotating = RotatingFile(path, max_bytes=50, backups=0)
    for n in range(5):
        rotating.write_line(json.dumps({"n": n, "pad": "y" * 30}))
    rotating.close()
    assert [json.loads(line)["n"] for line in _lines(path)] == [4]
    assert list(tmp_path.iterdir()) == [path]


def test_an_existing_file_counts_towards_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("z" * 90 + "\n")
    rotating = RotatingFile(path, max_bytes=100, backups=1)
    rotating.write_line("0123456789")
    rotating.close()
    assert _lines(path) == ["0123456789"]
    assert _lines(rotating.backup_path(1)) == ["z" * 90]


def test_serve_audit_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["serve", "--audit-file", "/tmp/a.log", "--audit-max-bytes", "1000", "--audit-backups", "7"]
    )
    assert (args.audit_max_bytes, args.audit_backups) == (1000, 7)
    defaults = parser.parse_args(["serve"])
    assert defaults.audit_max_bytes > 0 and defaults.audit_backups > 0
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--audit-backups", "-1"])


def test_digests_of_policies_and_trust_in_force(tmp_path: Path) -> None:
    cast = Cast.make()
    policies_file = write_documents(tmp_path / "p.yaml", TEST_POLICIES)
    trust_file = write_documents(tmp_path / "t.yaml", [cast.trust_document()])
    files = FileInputs.load([policies_file], [trust_file])
    built = build_policy_set(files, (), enforcement=Action.deny)
    assert built.policy_digest == documents_digest(files.policies)
    assert built.trust_digest == documents_digest([spec for spec, _ in files.trust_specs])
    assert built.policy_digest.startswith("sha256:") and len(built.policy_digest) == 71
    # The same documents in another order and layout: the same digest.
    reordered = write_documents(tmp_path / "q.yaml", list(reversed(TEST_POLICIES)))
    again = FileInputs.load([reordered], [trust_file])
    assert build_policy_set(again, (), enforcement=Action.deny).policy_digest == (
        built.policy_digest
    )
    # One changed field: another digest.
    changed = json.loads(json.dumps(NO_PRIVILEGED))
    changed["spec"]["action"] = "warn"
    other = [changed if p is NO_PRIVILEGED else p for p in TEST_POLICIES]
    edited = FileInputs.load([write_documents(tmp_path / "r.yaml", other)], [trust_file])
    assert build_policy_set(edited, (), enforcement=Action.deny).policy_digest != (
        built.policy_digest
    )


# --------------------------------------------------------------------------- events


def _denied(dry_run: bool = False) -> AdmissionResult:
    files = FileInputs(policies=(GuardPolicy.model_validate(NO_PRIVILEGED),))
    policies = build_policy_set(files, (), enforcement=Action.deny)
    review = admission_review(
        workload("Pod", "p", "dev", WEB, privileged=True), dry_run=dry_run, user="carol"
    )
    return judge(parse_review(review), policies, None)


def test_a_denial_plans_one_event_per_denying_policy() -> None:
    result = _denied()
    events = planned_events(result)
    assert [(e.policy, e.reason) for e in events] == [("no-privileged", EventReason.denied)]
    assert "denied CREATE Pod dev/p by carol: [no-privileged/not-privileged]" in events[0].message
    assert events[0].related == {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "dev"}
    assert planned_events(_denied(dry_run=True)) == []


def test_event_body_is_about_the_cluster_scoped_policy() -> None:
    recorder = EventRecorder(
        None,
        Metrics(),
        EventLimiter(key_rate=0, key_burst=1, global_rate=0, global_burst=1),
        instance="guard-0",
    )
    event = planned_events(_denied())[0]
    body = recorder.body(event, "1234-uid", earlier=3)
    assert body["metadata"]["namespace"] == "default"
    assert body["involvedObject"] == {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicy",
        "name": "no-privileged",
        "uid": "1234-uid",
    }
    assert "namespace" not in body["involvedObject"]
    assert body["count"] == 4
    assert body["message"].endswith("(3 similar event(s) suppressed by guard's rate limit)")
    assert body["reportingComponent"] == "guard" and body["reportingInstance"] == "guard-0"
    assert body["type"] == "Warning" and body["action"] == "Deny"


def test_limiter_per_key_and_global() -> None:
    now = [0.0]
    limiter = EventLimiter(
        key_rate=1.0, key_burst=2, global_rate=0.0, global_burst=5, clock=lambda: now[0]
    )
    a, b = ("a", EventReason.denied), ("b", EventReason.denied)
    assert [limiter.allow(a) for _ in range(3)] == [True, True, False]
    now[0] += 1.0  # one token back for key a
    assert [limiter.allow(a) for _ in range(2)] == [True, False]
    assert [limiter.allow(b) for _ in range(3)] == [True, True, False]
    now[0] += 10.0  # keys refill, the global cap (5, no refill) is spent
    assert limiter.allow(a) is False


def test_suppressed_events_ride_on_the_next_posted_one() -> None:
    now = [0.0]
    posted: list[dict[str, Any]] = []

    async def post(namespace: str, body: Mapping[str, Any]) -> None:
        posted.append({"namespace": namespace, **body})

    limiter = EventLimiter(
        key_rate=1.0, key_burst=1, global_rate=0.0, global_burst=100, clock=lambda: now[0]
    )
    recorder = EventRecorder(post, Metrics(), limiter)
    event = planned_events(_denied())[0]

    async def scenario() -> None:
        worker = asyncio.create_task(recorder.run())
        sent = [recorder.submit(event, {}) for _ in range(4)]  # 1 posted, 3 suppressed
        now[0] += 1.0
        sent.append(recorder.submit(event, {}))  # refilled: posted, carrying the 3
        while not recorder.idle.is_set():
            await asyncio.sleep(0)
        worker.cancel()
        assert sent == [True, False, False, False, True]

    asyncio.run(scenario())
    assert [p["count"] for p in posted] == [1, 4]
    assert posted[1]["message"].endswith("(3 similar event(s) suppressed by guard's rate limit)")
    assert {p["namespace"] for p in posted} == {"default"}
    assert (recorder.posted, recorder.suppressed, recorder.failed) == (2, 3, 0)


def test_a_failing_api_server_only_counts_failures() -> None:
    async def post(namespace: str, body: Mapping[str, Any]) -> None:
        raise ConnectionError("API server unreachable")

    limiter = EventLimiter(key_rate=0, key_burst=10, global_rate=0, global_burst=10)
    recorder = EventRecorder(post, Metrics(), limiter)

    async def scenario() -> None:
        worker = asyncio.create_task(recorder.run())
        recorder.record(_denied(), {})
        while not recorder.idle.is_set():
            await asyncio.sleep(0)
        worker.cancel()

    asyncio.run(scenario())
    assert (recorder.posted, recorder.failed) == (0, 1)


def test_a_record_that_cannot_be_rendered_still_leaves_a_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(result: AdmissionResult) -> dict[str, Any]:
        raise ValueError("unrenderable")

    monkeypatch.setattr(audit_module, "audit_record", broken)
    stream = io.StringIO()
    AuditLog(stream=stream).write(refuse("uid-2", Reason.error, "x", code=500))
    record = json.loads(stream.getvalue())
    assert (record["uid"], record["decision"]) == ("uid-2", "deny")
    assert "unrenderable" in record["recordError"]
