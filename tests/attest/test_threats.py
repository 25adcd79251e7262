"""One table of attacks and mistakes, each run through ``guard attest verify``
and through the engine's review finding.

Every case starts from the valid attestation of ``test_valid_attestation_*``
and changes one thing, so the named check is the only thing that can reject
it: remove that check and the case passes, and this test fails.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller import cli
from controller.attest import dsse
from controller.attest.review import AttestationReview, EnvelopeList
from controller.attest.statement import utc
from controller.policy.engine import Engine
from controller.policy.results import Result
from tests.attest import helpers as h
from tests.attest.helpers import Keys


@dataclass(frozen=True)
class Scenario:
    envelope: bytes
    digest: str = h.DIGEST
    review: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Keys], Scenario]
    reason: str
    cli_exit: int = 1  # 2 where the envelope itself is malformed input


def _valid(k: Keys) -> Scenario:
    return Scenario(h.envelope(signers=[k.ci]))


def _with(k: Keys, **pred: Any) -> Scenario:
    return Scenario(h.envelope(h.statement(h.predicate(**pred)), [k.ci]))


def _tampered(k: Keys) -> Scenario:
    good = h.statement()
    sigs = h.signed(good, k.ci)
    evil = good.replace(b'"bob"', b'"eve"')
    assert evil != good
    return Scenario(h.envelope(evil, signatures=sigs))


def _duplicate_signatures(k: Keys) -> Scenario:
    payload = h.statement()
    ci, bob = h.signed(payload, k.ci, k.bob)
    # bob's one signature three times, relabelled, to look like more reviewers
    copies = [bob, dsse.Signature(bob.sig, "carol"), dsse.Signature(bob.sig, k.carol.keyid)]
    return Scenario(h.envelope(payload, signatures=[ci, *copies]), review={"minApprovals": 2})


def _author_person_key(k: Keys) -> Scenario:
    payload = h.statement(h.predicate(approvals=[]))
    return Scenario(h.envelope(payload, [k.ci, k.alice]))


def _duplicate_envelope_keys(k: Keys) -> Scenario:
    good = json.loads(h.envelope(signers=[k.ci]))
    evil = dsse.serialize(dsse.IN_TOTO_PAYLOAD_TYPE, h.statement(h.predicate(approvals=[])), [])
    evil_payload = json.loads(evil)["payload"]
    text = json.dumps(good)[:-1] + f', "payload": "{evil_payload}"}}'
    return Scenario(text.encode())


def _duplicate_payload_keys(k: Keys) -> Scenario:
    payload = h.statement()
    doubled = payload[:-2] + b', "repository": "github.com/evil/shop"}}'
    assert doubled.count(b'"repository"') == 2
    return Scenario(h.envelope(doubled, [k.ci]))


def _oversized(k: Keys) -> Scenario:
    padding = "x" * (dsse.MAX_ENVELOPE_BYTES + 1)
    pred = h.predicate(
        change={"system": "github", "id": "42", "headRevision": h.HEAD, "uri": padding}
    )
    return Scenario(h.envelope(h.statement(pred), [k.ci]))


def _raw_check_value(k: Keys, value: bytes, review: dict[str, Any] | None = None) -> Scenario:
    """A coverage check whose ``value`` is written as raw JSON text."""
    checks = [
        {"name": "unit-tests", "result": "pass"},
        {"name": "coverage", "result": "pass", "value": "RAW"},
    ]
    payload = h.statement(h.predicate(checks=checks)).replace(b'"RAW"', value)
    assert value in payload
    return Scenario(h.envelope(payload, [k.ci]), review=review or {})


def _blank_revisions(k: Keys, revision: str) -> Scenario:
    change = {"system": "github", "id": "42", "headRevision": revision}
    approvals = [h.approval("bob", "github:1002", revision=revision)]
    return _with(k, change=change, approvals=approvals)


CASES = [
    Case("tampered payload", _tampered, "signature claims key 'ci' but does not verify"),
    Case(
        "swapped payloadType",
        lambda k: Scenario(h.envelope(signers=[k.ci], payload_type="application/json")),
        "payloadType 'application/json' is not",
    ),
    Case(
        "wrong predicate type",
        lambda k: Scenario(
            h.envelope(h.statement(predicate_type="https://slsa.dev/provenance/v1"), [k.ci])
        ),
        "wrong predicate type 'https://slsa.dev/provenance/v1'",
    ),
    Case(
        "subject mismatch (replay onto another image)",
        lambda k: Scenario(h.envelope(signers=[k.ci]), digest=h.OTHER_DIGEST),
        f"subject mismatch: envelope covers {h.DIGEST}, not {h.OTHER_DIGEST}",
    ),
    Case(
        "other repository",
        lambda k: _with(k, repository="github.com/evil/shop"),
        "repository 'github.com/evil/shop' is not one the policy accepts",
    ),
    Case(
        "other branch",
        lambda k: _with(k, targetRef="refs/heads/feature"),
        "target ref 'refs/heads/feature' is not one the policy accepts",
    ),
    Case(
        "unknown key",
        lambda k: Scenario(h.envelope(signers=[k.stranger])),
        "no trusted key verifies this signature",
    ),
    Case(
        "relabelled keyid",
        lambda k: Scenario(
            h.envelope(signatures=h.signed(h.statement(), k.stranger, keyids=[k.ci.keyid]))
        ),
        "signature claims key 'ci' but does not verify with it",
    ),
    Case(
        "duplicate signatures toward a threshold",
        _duplicate_signatures,
        "1 of 2 approvals from reviewers who are not authors (counted: bob)",
    ),
    Case(
        "an author's person key posing as an approval",
        _author_person_key,
        "person key 'alice' belongs to author alice (github:1001)",
    ),
    Case(
        "attester key of an author",
        lambda k: Scenario(h.envelope(signers=[k.laptop])),
        "attester key 'laptop' belongs to author alice",
    ),
    Case(
        "expired",
        lambda k: _with(k, expiresAt=utc(h.NOW - dt.timedelta(hours=1))),
        f"expired at {utc(h.NOW - dt.timedelta(hours=1))}",
    ),
    Case(
        "too old",
        lambda k: _with(k, attestedAt=utc(h.NOW - dt.timedelta(days=8))),
        "too old: attested at",
    ),
    Case(
        "self-approval",
        lambda k: _with(k, approvals=[h.approval("alice", "github:1001")]),
        "alice approved their own change",
    ),
    Case(
        "approval by an alias of the author",
        lambda k: _with(k, approvals=[h.approval("alice-gl", "gitlab:77")]),
        "gitlab:77 is an alias of author alice (github:1001)",
    ),
    Case(
        "bot approval",
        lambda k: _with(k, approvals=[h.approval("renovate", "github:2000", kind="bot")]),
        "renovate is a bot: bot approvals do not count",
    ),
    Case(
        "approval of a stale revision",
        lambda k: _with(k, approvals=[h.approval("bob", "github:1002", revision="0ld0ld")]),
        f"bob approved revision 0ld0ld, not the head revision {h.HEAD} (stale approval)",
    ),
    Case(
        "missing check",
        lambda k: _with(k, checks=[{"name": "coverage", "result": "pass", "value": 90}]),
        "required check 'unit-tests' is missing",
    ),
    Case(
        "failed check",
        lambda k: _with(
            k,
            checks=[
                {"name": "unit-tests", "result": "fail"},
                {"name": "coverage", "result": "pass", "value": 90},
            ],
        ),
        "required check 'unit-tests' did not pass (result fail)",
    ),
    Case(
        "check below its threshold",
        lambda k: _with(
            k,
            checks=[
                {"name": "unit-tests", "result": "pass"},
                {"name": "coverage", "result": "pass", "value": 70},
            ],
        ),
        "required check 'coverage' has value 70, below the minimum 80",
    ),
    Case(
        "branch differing only in case",
        lambda k: _with(k, targetRef="refs/heads/MAIN"),
        "target ref 'refs/heads/MAIN' is not one the policy accepts",
    ),
    Case(
        "self-approval behind an invisible character",
        lambda k: _with(k, approvals=[h.approval("alice", "github:1001\u200b")]),
        "predicate.approvals[0].reviewer.id: id 'github:1001\\u200b' contains an invisible "
        "format character (U+200B)",
    ),
    Case(
        "self-approval behind full-width and upper-case letters",
        lambda k: _with(k, approvals=[h.approval("alice", "\uff27ITHUB:\uff11001")]),
        "contains the non-ASCII character '\\uff27' (U+FF27 FULLWIDTH LATIN CAPITAL LETTER G)",
    ),
    Case(
        "approval by an id with a look-alike letter from another script",
        lambda k: _with(k, approvals=[h.approval("alice", "g\u0456thub:1001")]),
        "contains the non-ASCII character '\\u0456' (U+0456 CYRILLIC SMALL LETTER",
    ),
    Case(
        "bot approval not marked as a bot",
        lambda k: _with(k, approvals=[h.approval("renovate[bot]", "github:2000")]),
        "renovate[bot] is a bot: bot approvals do not count",
    ),
    Case(
        "empty head and reviewed revisions",
        lambda k: _blank_revisions(k, ""),
        "predicate.change.headRevision",
    ),
    Case(
        "blank head and reviewed revisions",
        lambda k: _blank_revisions(k, "  "),
        "predicate.change.headRevision",
    ),
    Case(
        "approval given after the attestation was made",
        lambda k: _with(
            k,
            approvals=[
                {
                    **h.approval("bob", "github:1002"),
                    "approvedAt": utc(h.NOW + dt.timedelta(days=1)),
                }
            ],
        ),
        "bob approved at",
    ),
    Case(
        "check value overflowing to infinity",
        lambda k: _raw_check_value(k, b"1e400"),
        "not a finite number",
    ),
    Case(
        "check value as a string",
        lambda k: _raw_check_value(k, b'"95"'),
        "predicate.checks[1].value",
    ),
    Case(
        "check value as a boolean",
        lambda k: _raw_check_value(
            k, b"true", {"requiredChecks": [{"name": "coverage", "min": 1}]}
        ),
        "predicate.checks[1].value",
    ),
    Case(
        "integer too long to read in the statement",
        lambda k: _raw_check_value(k, b"9" * 5000),
        "number too long",
    ),
    Case(
        "duplicate JSON keys in the envelope",
        _duplicate_envelope_keys,
        "duplicate key 'payload'",
        cli_exit=2,
    ),
    Case(
        "duplicate JSON keys in the signed statement",
        _duplicate_payload_keys,
        "duplicate key 'repository'",
    ),
    Case("oversized envelope", _oversized, "larger than the 262144-byte limit", cli_exit=2),
]


@pytest.fixture(scope="module")
def trust_file(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trust")
    return h.write_yaml(folder / "trust.yaml", h.trust_document(keys))


def run_cli(
    scenario: Scenario, trust_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    envelope_file = tmp_path / "envelope.json"
    envelope_file.write_bytes(scenario.envelope)
    policy_file = h.write_yaml(tmp_path / "policy.yaml", h.policy_document(**scenario.review))
    code = cli.main(
        [
            "attest",
            "verify",
            str(envelope_file),
            "--trust",
            str(trust_file),
            "--digest",
            scenario.digest,
            "--policy",
            str(policy_file),
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_engine(scenario: Scenario, keys: Keys) -> list[Any]:
    evaluator = AttestationReview(
        h.trust_spec(keys), EnvelopeList([scenario.envelope]), now=lambda: h.NOW
    )
    engine = Engine([h.policy(**scenario.review)])
    return list(engine.evaluate(h.deployment_subject(scenario.digest), review=evaluator).findings)


def test_valid_attestation_passes_the_cli(
    keys: Keys, trust_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(_valid(keys), trust_file, tmp_path, capsys)
    assert code == 0, output
    assert output.startswith("verified: ")
    assert "approved by bob" in output


def test_valid_attestation_passes_the_engine(keys: Keys) -> None:
    assert run_engine(_valid(keys), keys) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_threat_rejected_by_cli(
    case: Case,
    keys: Keys,
    trust_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run_cli(case.build(keys), trust_file, tmp_path, capsys)
    assert code == case.cli_exit, output
    assert case.reason in output
    assert "Traceback" not in output


FIX_AUDIENCES = {
    "developer", "release engineer", "policy author", "deployer", "platform team", "CI user",
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_threat_rejected_by_engine(case: Case, keys: Keys) -> None:
    findings = run_engine(case.build(keys), keys)
    assert [(f.policy, f.rule, f.result) for f in findings] == [
        ("reviewed-changes", "review", Result.fail)
    ]
    finding = findings[0]
    assert finding.denies
    assert any(case.reason in reason for reason in finding.reasons), finding.reasons
    # Every fix line names who must act, and none tells a developer to run
    # the attester's command for a problem only someone else can fix.
    for fix in finding.fix.split("; "):
        assert fix.split(":", 1)[0] in FIX_AUDIENCES, fix
