"""Hostile input and insider tricks beyond the threat table: parsers, trust,
deployers, controllers and the evaluator's fail-closed behaviour."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from controller import cli
from controller.attest import checks, dsse
from controller.attest.review import AttestationReview, EnvelopeList
from controller.attest.statement import CHANGE_REVIEW_PREDICATE
from controller.attest.trust import Trust
from controller.errors import InputError
from controller.policy.documents import GuardTrustSpec, RequiredCheck
from controller.policy.engine import Engine
from controller.policy.identity import check_id
from controller.policy.results import Result
from controller.strict import StrictJSONError, load_json_or_yaml, loads
from tests.attest import helpers as h
from tests.attest.helpers import Keys

CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def evaluator(keys: Keys, envelopes: Sequence[bytes], trust: Any = None) -> AttestationReview:
    return AttestationReview(
        trust if trust is not None else h.trust_spec(keys),
        EnvelopeList(envelopes),
        now=lambda: h.NOW,
    )


def good(keys: Keys) -> bytes:
    return h.envelope(signers=[keys.ci])


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1" * 5000, "number too long"),
        ('{"a": 1e400}', "not a finite number"),
        ('{"a": -1e400}', "not a finite number"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_json_numbers_and_nesting_that_confuse_parsers_are_refused(text: str, problem: str) -> None:
    with pytest.raises(StrictJSONError, match=problem):
        loads(text)


def test_yaml_nesting_bomb_is_refused() -> None:
    with pytest.raises(StrictJSONError, match="nested too deeply"):
        load_json_or_yaml("[" * 100_000)


def test_an_unreadable_envelope_never_breaks_the_others(keys: Keys) -> None:
    poisoned = b'{"payloadType": "x", "payload": "", "signatures": [], "n": ' + b"9" * 5000 + b"}"
    payload = h.statement().replace(b'"gitTree": "t1"', b'"gitTree": "t1", "n": ' + b"9" * 5000)
    poisoned_payload = h.envelope(payload, [keys.ci])
    review = evaluator(keys, [poisoned, poisoned_payload, good(keys)])
    assert review.review(h.policy(), h.deployment_subject()).result is Result.passed


def test_cli_reports_unreadable_numbers_and_deep_files_in_one_line(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = h.write_yaml(tmp_path / "trust.yaml", h.trust_document(keys))
    long_number = tmp_path / "long-number.json"
    long_number.write_bytes(b'{"payloadType": ' + b"9" * 5000 + b"}")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000)
    cases = [
        ([str(long_number), "--trust", str(trust)], "number too long"),
        ([str(deep), "--trust", str(trust)], "nested too deeply"),
        ([str(long_number), "--trust", str(deep)], "nested too deeply"),
    ]
    for args, problem in cases:
        code = cli.main(["attest", "verify", *args, "--digest", h.DIGEST])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("guard: error: ") and problem in err, err
        assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize("minimum", [math.nan, math.inf])
def test_a_minimum_that_is_not_a_finite_number_fails_closed(keys: Keys, minimum: float) -> None:
    claim_review = evaluator(keys, [good(keys)])
    policy = h.policy(requiredChecks=[{"name": "coverage", "min": 80}])
    assert claim_review.review(policy, h.deployment_subject()).result is Result.passed
    with pytest.raises(ValueError, match="finite number"):
        RequiredCheck(name="coverage", min=minimum)  # the document refuses it at load
    # The verifier still fails closed on one that reaches it some other way.
    required = (RequiredCheck.model_construct(name="coverage", min=minimum),)
    policy = policy.model_copy(
        update={
            "spec": policy.spec.model_copy(
                update={
                    "review": policy.spec.review.model_copy(  # type: ignore[union-attr]
                        update={"required_checks": list(required)}
                    )
                }
            )
        }
    )
    outcome = claim_review.review(policy, h.deployment_subject())
    assert outcome.result is Result.fail
    assert "minimum of required check 'coverage' is not a finite number" in outcome.reasons[0]


# --------------------------------------------------------------------------- identities and trust


@pytest.mark.parametrize(
    "identity", [" github:1001", "github:\u200b1001", "github:1001\u00a0", "github:\ufeff1001"]
)
def test_invisible_and_space_characters_make_no_identity_at_all(identity: str) -> None:
    """Not stripped into github:1001 (that would hide them), not a new id either."""
    with pytest.raises(ValueError, match="contains"):
        check_id(identity)


def test_one_public_key_under_two_names_is_refused(keys: Keys) -> None:
    """Otherwise the CI attester's one signature would also be carol's approval."""
    spec = h.trust_spec(keys).model_dump(by_alias=True)
    spec["keys"].append(
        {
            "name": "ci-as-carol",
            "publicKey": keys.ci.public.pem(),
            "role": "person",
            "principal": "github:1003",
        }
    )
    with pytest.raises(InputError, match="keys 'ci' and 'ci-as-carol' are the same public key"):
        Trust.from_spec(GuardTrustSpec.model_validate(spec))


def test_an_attester_key_that_is_also_an_authors_person_key_is_refused(keys: Keys) -> None:
    spec = h.trust_spec(keys).model_dump(by_alias=True)
    for entry in spec["keys"]:
        if entry["name"] == "alice":
            entry["publicKey"] = keys.ci.public.pem()
    with pytest.raises(InputError, match="keys 'ci' and 'alice' are the same public key"):
        Trust.from_spec(GuardTrustSpec.model_validate(spec))


# --------------------------------------------------------------------------- deployers


def test_allowed_deployers_are_matched_exactly_not_by_look_alike(keys: Keys) -> None:
    review = evaluator(keys, [good(keys)])
    policy = h.policy(deployer={"allowed": ["ci-bot"]})
    assert review.review(policy, h.deployment_subject(username="ci-bot")).result is Result.passed
    for lookalike in ("CI-BOT", "\uff43\uff49-bot", " ci-bot", "ci-bot\u200b"):
        outcome = review.review(policy, h.deployment_subject(username=lookalike))
        assert outcome.result is Result.fail, lookalike
        assert "is not allowed to deploy reviewed changes" in outcome.reasons[0]


def test_allowed_user_names_are_not_group_names(keys: Keys) -> None:
    review = evaluator(keys, [good(keys)])
    policy = h.policy(deployer={"allowed": ["ci-bot", "group:deployers"]})
    in_group_named_like_a_user = h.deployment_subject(username="dan", groups=["ci-bot"])
    assert review.review(policy, in_group_named_like_a_user).result is Result.fail
    in_group = h.deployment_subject(username="dan", groups=["deployers"])
    assert review.review(policy, in_group).result is Result.passed
    in_look_alike_group = h.deployment_subject(username="dan", groups=["Deployers"])
    assert review.review(policy, in_look_alike_group).result is Result.fail


def test_allowed_deployers_follow_the_trusts_explicit_aliases(keys: Keys) -> None:
    review = evaluator(keys, [good(keys)])
    policy = h.policy(deployer={"allowed": ["github:1002"]})
    as_alias = h.deployment_subject(username="bob")  # kubernetes:bob is bob's alias
    assert review.review(policy, as_alias).result is Result.passed
    # Another of bob's ids is not his Kubernetes username.
    as_other_id = h.deployment_subject(username="email:bob@acme.example")
    assert review.review(policy, as_other_id).result is Result.fail


def test_deployer_rules_deny_when_the_request_names_nobody(keys: Keys) -> None:
    review = evaluator(keys, [good(keys)])
    anonymous = h.deployment_subject(username="", groups=())
    for rules in ({"allowed": ["ci-bot"]}, {"notAuthor": True}):
        outcome = review.review(h.policy(deployer=rules), anonymous)
        assert outcome.result is Result.fail, rules
        assert "request.userInfo.username is missing" in outcome.reasons[0]
    assert review.review(h.policy(), anonymous).result is Result.passed


def test_controllers_skip_only_what_ages(keys: Keys) -> None:
    """A controller's request skips expiry, maxAge and the deployer rules, but
    an attestation with no independent approval never passes, not even there."""
    unreviewed = h.envelope(h.statement(h.predicate(approvals=[])), [keys.ci])
    review = evaluator(keys, [unreviewed])
    outcome = review.review(h.policy(), h.deployment_subject(username=CONTROLLER, controller=True))
    assert outcome.result is Result.fail
    assert any("approvals" in r for r in outcome.reasons)


# --------------------------------------------------------------------------- caching


def test_a_cached_signature_never_vouches_for_another_key(keys: Keys) -> None:
    from controller.attest.verify import SignatureCache

    cache = SignatureCache()
    signed_by_stranger = h.envelope(signers=[keys.stranger])
    first = AttestationReview(
        h.trust_spec(keys), EnvelopeList([signed_by_stranger]), now=lambda: h.NOW, cache=cache
    )
    assert first.review(h.policy(), h.deployment_subject()).result is Result.fail
    assert len(cache) > 0
    # Same envelope, same cache, stranger's key now trusted as a person key:
    # its signature alone (no attester) must still not pass.
    spec = h.trust_spec(keys).model_dump(by_alias=True)
    spec["keys"].append(
        {
            "name": "stranger",
            "publicKey": keys.stranger.public.pem(),
            "role": "person",
            "principal": "github:4000",
        }
    )
    second = AttestationReview(
        GuardTrustSpec.model_validate(spec),
        EnvelopeList([signed_by_stranger]),
        now=lambda: h.NOW,
        cache=cache,
    )
    outcome = second.review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert "not signed by an attester the policy accepts" in outcome.reasons[0]


# --------------------------------------------------------------------------- fail closed


def test_any_unexpected_exception_is_an_error_never_a_pass(keys: Keys) -> None:
    def broken_clock() -> dt.datetime:
        raise RuntimeError("clock unavailable")

    review = AttestationReview(h.trust_spec(keys), EnvelopeList([good(keys)]), now=broken_clock)
    [finding] = Engine([h.policy()]).evaluate(h.deployment_subject(), review=review).findings
    assert finding.result is Result.error and finding.denies
    assert finding.reasons == ("review could not be checked: clock unavailable",)


def test_a_check_that_raises_is_an_error(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: object, claim: checks.Claim) -> checks.Verdict:
        raise KeyError("boom")

    monkeypatch.setattr(checks.EnoughApprovals, "check", explode)
    outcome = evaluator(keys, [good(keys)]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.error
    assert outcome.reasons[0].endswith("'boom'")


def test_envelope_parse_limits_hold_for_every_source(keys: Keys) -> None:
    too_many = h.envelope(
        signatures=h.signed(h.statement(), *([keys.ci] * (dsse.MAX_SIGNATURES + 1)))
    )
    outcome = evaluator(keys, [too_many]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert "more than the limit of 16" in outcome.reasons[0]


# --------------------------------------------------------------------------- pinned types


@pytest.mark.parametrize(
    "payload_type",
    [
        "application/vnd.in-toto+json; charset=utf-8",
        "APPLICATION/VND.IN-TOTO+JSON",
        " application/vnd.in-toto+json",
        "application/vnd.in-toto+jsonl",
    ],
)
def test_payload_type_is_pinned_exactly(keys: Keys, payload_type: str) -> None:
    envelope = h.envelope(signers=[keys.ci], payload_type=payload_type)
    outcome = evaluator(keys, [envelope]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert f"payloadType {payload_type!r} is not" in outcome.reasons[0]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("_type", "https://in-toto.io/Statement/v1/", "is not an in-toto Statement"),
        ("_type", "http://in-toto.io/Statement/v1", "is not an in-toto Statement"),
        ("_type", "https://in-toto.io/Statement/v2", "is not an in-toto Statement"),
        ("predicateType", CHANGE_REVIEW_PREDICATE + "/", "wrong predicate type"),
        ("predicateType", CHANGE_REVIEW_PREDICATE.upper(), "wrong predicate type"),
        ("predicateType", CHANGE_REVIEW_PREDICATE.replace("/v1", "/v10"), "wrong predicate type"),
    ],
)
def test_statement_and_predicate_types_are_pinned_exactly(
    keys: Keys, field: str, value: str, problem: str
) -> None:
    document = json.loads(h.statement())
    document[field] = value
    envelope = h.envelope(json.dumps(document).encode(), [keys.ci])
    outcome = evaluator(keys, [envelope]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert problem in outcome.reasons[0]


@pytest.mark.parametrize(
    ("digest_map", "covers"),
    [
        ({"sha256": h.DIGEST.removeprefix("sha256:").upper()}, True),
        ({"sha256": h.DIGEST}, False),  # "sha256:" inside the value
        ({"SHA256": h.DIGEST.removeprefix("sha256:")}, False),
        ({"sha512": "ab" * 64}, False),
        ({"sha256": " " + h.DIGEST.removeprefix("sha256:")}, False),
    ],
)
def test_subject_digests_match_only_sha256_hex(
    keys: Keys, digest_map: dict[str, str], covers: bool
) -> None:
    document = json.loads(h.statement())
    document["subject"] = [{"name": h.IMAGE, "digest": digest_map}] * 2  # duplicates too
    envelope = h.envelope(json.dumps(document).encode(), [keys.ci])
    outcome = evaluator(keys, [envelope]).review(h.policy(), h.deployment_subject())
    assert (outcome.result is Result.passed) is covers, outcome.reasons
    if not covers:
        assert "subject mismatch" in outcome.reasons[0]


@pytest.mark.parametrize("field", ["attestedAt", "expiresAt"])
def test_timestamps_without_a_timezone_are_refused(keys: Keys, field: str) -> None:
    envelope = h.envelope(h.statement(h.predicate(**{field: "2030-01-01T00:00:00"})), [keys.ci])
    outcome = evaluator(keys, [envelope]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert f"predicate.{field}" in outcome.reasons[0]


def test_one_key_signing_twice_is_one_approval(keys: Keys) -> None:
    payload = h.statement(h.predicate(approvals=[]))
    first, second = h.signed(payload, keys.carol, keys.carol)
    assert first.sig != second.sig  # ECDSA: two different signatures by one key
    (attester,) = h.signed(payload, keys.ci)
    envelope = h.envelope(payload, signatures=[attester, first, second])
    outcome = evaluator(keys, [envelope]).review(h.policy(minApprovals=2), h.deployment_subject())
    assert outcome.result is Result.fail
    assert outcome.reasons[-1].endswith(
        "1 of 2 approvals from reviewers who are not authors (counted: carol)"
    )


def test_junk_known_to_be_unsigned_cannot_crowd_out_a_real_attestation(keys: Keys) -> None:
    from controller.attest.verify import MAX_CANDIDATES, SignatureCache

    cache = SignatureCache()
    junk = [h.envelope(h.statement(h.predicate(change={"system": "github", "id": str(i),
                                                       "headRevision": h.HEAD})),
                       signers=[keys.stranger]) for i in range(MAX_CANDIDATES + 3)]  # fmt: skip
    real = h.envelope(signers=[keys.ci])
    review = AttestationReview(
        h.trust_spec(keys), EnvelopeList([*junk, real]), lambda: h.NOW, cache=cache
    )
    # The first time, the real one is beyond the limit; the junk is now known unsigned.
    first = review.review(h.policy(), h.deployment_subject())
    assert first.result is Result.fail
    again = review.review(h.policy(), h.deployment_subject())
    assert again.result is Result.passed, again.reasons
