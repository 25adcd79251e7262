"""The review evaluator as the engine uses it: artifacts, exemptions,
controllers, deployers, plans, evidence and the signature cache."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from controller.attest import checks
from controller.attest.keys import PublicKey
from controller.attest.review import AttestationReview, EnvelopeList, evaluator_for_files
from controller.attest.statement import utc
from controller.attest.trust import Trust
from controller.attest.verify import SignatureCache
from controller.errors import InputError
from controller.policy.documents import GuardTrustSpec
from controller.policy.engine import Engine
from controller.policy.results import Artifact, Result
from controller.policy.reviewer import ReviewEvaluator
from tests.attest import helpers as h
from tests.attest.helpers import Keys

CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def evaluator(
    keys: Keys,
    envelopes: Sequence[bytes],
    now: dt.datetime = h.NOW,
    cache: SignatureCache | None = None,
) -> AttestationReview:
    return AttestationReview(
        h.trust_spec(keys),
        EnvelopeList(envelopes),
        now=lambda: now,
        cache=cache,
    )


def expired(keys: Keys, **pred: object) -> bytes:
    long_ago = h.NOW - dt.timedelta(days=41)
    pred.setdefault("approvals", [h.approval("bob", "github:1002", approved_at=long_ago)])
    body = h.predicate(
        attestedAt=utc(h.NOW - dt.timedelta(days=40)),
        expiresAt=utc(h.NOW - dt.timedelta(days=10)),
        **pred,
    )
    return h.envelope(h.statement(body), [keys.ci])


def test_it_is_a_review_evaluator(keys: Keys) -> None:
    review: ReviewEvaluator = evaluator(keys, [])
    outcome = review.review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert outcome.reasons == (f"{h.IMAGE}@{h.DIGEST}: no review attestation found for {h.DIGEST}",)


def test_tag_only_images_are_denied_with_the_fix(keys: Keys) -> None:
    outcome = evaluator(keys, [h.envelope(signers=[keys.ci])]).review(
        h.policy(), h.deployment_subject(digest=None)
    )
    assert outcome.result is Result.fail
    assert outcome.reasons == (f"{h.IMAGE}:1.0: not pinned by digest (tag-only images are denied)",)
    assert outcome.fix == f"developer: pin {h.IMAGE}:1.0 by digest (IMAGE@sha256:<digest>)"


def test_exempt_images_pass_and_are_recorded(keys: Keys) -> None:
    sidecar = Artifact(reference="registry.example/mesh/proxy:1.2", digest=None)
    subject = h.deployment_subject(extra=[sidecar])
    review = evaluator(keys, [h.envelope(signers=[keys.ci])])
    blocked = review.review(h.policy(), subject)
    assert blocked.result is Result.fail
    allowed = review.review(h.policy(exemptImages=["registry.example/mesh/*"]), subject)
    assert allowed.result is Result.passed
    assert allowed.evidence["exempted"] == ["registry.example/mesh/proxy:1.2"]
    assert allowed.evidence["approvers"] == {h.DIGEST: ["bob"]}


def test_exempt_images_never_exempt_a_plan(keys: Keys) -> None:
    outcome = evaluator(keys, []).review(h.policy(exemptImages=["*"]), h.plan_subject(h.DIGEST))
    assert outcome.result is Result.fail
    assert outcome.evidence["exempted"] == []


def test_plan_subjects_are_verified_like_images(keys: Keys) -> None:
    plan_digest = h.OTHER_DIGEST
    envelope = h.envelope(h.statement(digests=[plan_digest]), [keys.ci])
    engine = Engine([h.policy()])
    passing = engine.evaluate(h.plan_subject(plan_digest), review=evaluator(keys, [envelope]))
    assert passing.findings == ()
    [finding] = engine.evaluate(h.plan_subject(plan_digest), review=evaluator(keys, [])).findings
    assert "--subject-file tfplan.bin" in finding.fix


def test_controller_requests_skip_expiry_but_not_signature_or_subject(keys: Keys) -> None:
    old = expired(keys)
    review = evaluator(keys, [old])
    user = review.review(h.policy(), h.deployment_subject())
    assert user.result is Result.fail
    assert any("expired at" in r for r in user.reasons)
    by_controller = review.review(
        h.policy(), h.deployment_subject(username=CONTROLLER, controller=True)
    )
    assert by_controller.result is Result.passed
    assert by_controller.evidence["checks"].startswith("all but expiry, maxAge and deployer")
    replayed = review.review(
        h.policy(),
        h.deployment_subject(digest=h.OTHER_DIGEST, username=CONTROLLER, controller=True),
    )
    assert replayed.result is Result.fail
    assert any("subject mismatch" in r for r in replayed.reasons)
    forged = evaluator(keys, [h.envelope(signers=[keys.stranger])]).review(
        h.policy(), h.deployment_subject(username=CONTROLLER, controller=True)
    )
    assert any("no trusted key verifies this signature" in r for r in forged.reasons)


def test_images_not_introduced_skip_expiry_but_keep_separation_of_duties(keys: Keys) -> None:
    review = evaluator(keys, [expired(keys)])
    assert review.review(h.policy(), h.deployment_subject(introduced=False)).result is Result.passed
    selfish = evaluator(keys, [expired(keys, approvals=[h.approval("alice", "github:1001")])])
    outcome = selfish.review(h.policy(), h.deployment_subject(introduced=False))
    assert outcome.reasons[0].endswith("alice approved their own change")
    assert not any("expired" in r for r in outcome.reasons)


def test_deployer_who_authored_the_change_is_refused(keys: Keys) -> None:
    review = evaluator(keys, [h.envelope(signers=[keys.ci])])
    policy = h.policy(deployer={"notAuthor": True})
    assert review.review(policy, h.deployment_subject(username="bob")).result is Result.passed
    outcome = review.review(policy, h.deployment_subject(username="alice@acme.example"))
    assert outcome.reasons == (
        f"{h.IMAGE}@{h.DIGEST}: deployer alice@acme.example is an author of the change "
        "(alice, github:1001): someone else must deploy it",
    )


def test_only_listed_deployers(keys: Keys) -> None:
    review = evaluator(keys, [h.envelope(signers=[keys.ci])])
    policy = h.policy(deployer={"allowed": ["group:deployers", "ci-bot"]})
    assert review.review(policy, h.deployment_subject(username="ci-bot")).result is Result.passed
    in_group = h.deployment_subject(username="dan", groups=["deployers"])
    assert review.review(policy, in_group).result is Result.passed
    outcome = review.review(policy, h.deployment_subject(username="dan"))
    assert outcome.result is Result.fail
    assert "deployer dan is not allowed to deploy reviewed changes" in outcome.reasons[0]


def test_one_accepted_envelope_among_bad_ones_is_enough(keys: Keys) -> None:
    good = h.envelope(signers=[keys.ci])
    bad = h.envelope(signers=[keys.stranger])
    outcome = evaluator(keys, [bad, b"{", good]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.passed
    assert len(outcome.evidence["envelopes"]) == 2  # the two that claim the digest


def test_every_envelope_reason_is_kept_and_labelled(keys: Keys) -> None:
    unknown = h.envelope(signers=[keys.stranger])
    selfish = h.envelope(
        h.statement(h.predicate(approvals=[h.approval("alice", "github:1001")])), [keys.ci]
    )
    outcome = evaluator(keys, [unknown, selfish]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert len(outcome.reasons) == 3
    assert all(": envelope " in r for r in outcome.reasons)


def test_signatures_are_cached_but_expiry_is_checked_every_time(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = PublicKey.verify

    def counting(self: PublicKey, signature: bytes, data: bytes) -> bool:
        calls.append(self.keyid)
        return original(self, signature, data)

    monkeypatch.setattr(PublicKey, "verify", counting)
    cache = SignatureCache()
    envelope = h.envelope(signers=[keys.ci])
    first = evaluator(keys, [envelope], cache=cache).review(h.policy(), h.deployment_subject())
    assert first.result is Result.passed
    verified = len(calls)
    assert verified >= 1
    later = h.NOW + dt.timedelta(days=31)
    second = evaluator(keys, [envelope], now=later, cache=cache).review(
        h.policy(maxAge="60d"), h.deployment_subject()
    )
    assert len(calls) == verified  # no signature verified again
    assert second.result is Result.fail
    assert any("expired at" in r for r in second.reasons)


def test_a_failing_envelope_source_denies_with_an_error(keys: Keys) -> None:
    class Broken:
        def for_digest(self, digest: str) -> Sequence[bytes]:
            raise ConnectionError("index unavailable")

    review = AttestationReview(h.trust_spec(keys), Broken(), now=lambda: h.NOW)
    outcome = review.review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.error
    assert outcome.reasons == (
        f"{h.IMAGE}@{h.DIGEST}: attestations unavailable: index unavailable",
    )


def test_empty_trust_accepts_nothing(keys: Keys) -> None:
    review = AttestationReview(
        GuardTrustSpec(), EnvelopeList([h.envelope(signers=[keys.ci])]), now=lambda: h.NOW
    )
    outcome = review.review(h.policy(), h.deployment_subject())
    assert outcome.reasons == (
        f"{h.IMAGE}@{h.DIGEST}: no trusted key verifies this signature: the trust has no keys "
        "(pass a GuardTrust)",
    )


def test_two_person_keys_and_a_listed_approval_of_one_principal_count_once(keys: Keys) -> None:
    spec = h.trust_spec(keys).model_dump(by_alias=True)
    spec["keys"].append(
        {
            "name": "bob-2",
            "publicKey": keys.carol.public.pem(),
            "role": "person",
            "principal": "github:1002",
        }
    )
    spec["keys"] = [k for k in spec["keys"] if k["name"] != "carol"]
    trust = GuardTrustSpec.model_validate(spec)
    envelope = h.envelope(signers=[keys.ci, keys.bob, keys.carol])
    review = AttestationReview(trust, EnvelopeList([envelope]), now=lambda: h.NOW)
    outcome = review.review(h.policy(minApprovals=2), h.deployment_subject())
    assert outcome.reasons[-1].endswith(
        "1 of 2 approvals from reviewers who are not authors (counted: bob)"
    )
    carol_trusted = evaluator(keys, [envelope]).review(
        h.policy(minApprovals=2), h.deployment_subject()
    )
    assert carol_trusted.result is Result.passed
    assert carol_trusted.evidence["approvers"][h.DIGEST] == ["bob", "carol"]


def test_all_of_refuses_to_be_empty() -> None:
    with pytest.raises(ValueError, match="empty AllOf would pass anything"):
        checks.AllOf()


def test_trust_refuses_an_identity_owned_by_two_principals(keys: Keys) -> None:
    spec = GuardTrustSpec.model_validate(
        {
            "principals": [
                {"id": "github:1", "aliases": ["email:x@acme.example"]},
                {"id": "github:2", "aliases": ["email:X@acme.example"]},
            ]
        }
    )
    with pytest.raises(InputError, match="belongs to both principal 'github:1' and 'github:2'"):
        Trust.from_spec(spec)


def test_identity_map_resolves_aliases(keys: Keys) -> None:
    trust = Trust.from_spec(h.trust_spec(keys))
    assert trust.canonical("gitlab:77") == "github:1001"
    assert trust.canonical("email:Alice@acme.example") == "github:1001"  # merging: stricter
    assert trust.canonical("github:1002") == "github:1002"
    assert trust.principal_of("email:Alice@acme.example") is None  # allow-lists: exact
    assert trust.principal_of_user("alice@acme.example") == "github:1001"
    bob = next(k for k in trust.keys if k.name == "bob")
    assert bob.principal == "github:1002"


def test_policy_test_factory_reads_trust_and_envelope_files(keys: Keys, tmp_path: Path) -> None:

    trust = h.write_yaml(tmp_path / "trust.yaml", h.trust_document(keys))
    envelope = tmp_path / "review.json"
    envelope.write_bytes(h.envelope(signers=[keys.ci]))
    accepted = evaluator_for_files(trust, [envelope]).review(h.policy(), h.deployment_subject())
    assert accepted.result is Result.passed
    untrusted = evaluator_for_files(None, [envelope]).review(h.policy(), h.deployment_subject())
    assert untrusted.result is Result.fail


def test_one_reviewer_under_two_ids_counts_once(keys: Keys) -> None:
    approvals = [h.approval("bob", "github:1002"), h.approval("bob-mail", "email:bob@acme.example")]
    envelope = h.envelope(h.statement(h.predicate(approvals=approvals)), [keys.ci])
    outcome = evaluator(keys, [envelope]).review(h.policy(minApprovals=2), h.deployment_subject())
    assert outcome.reasons == (
        f"{h.IMAGE}@{h.DIGEST}: 1 of 2 approvals from reviewers who are not authors (counted: bob)",
    )


def test_candidate_envelopes_are_capped(keys: Keys) -> None:
    from controller.attest.verify import MAX_CANDIDATES

    flood = [h.envelope(signers=[keys.stranger]) for _ in range(MAX_CANDIDATES + 3)]
    good = h.envelope(signers=[keys.ci])
    outcome = evaluator(keys, [*flood, good]).review(h.policy(), h.deployment_subject())
    assert outcome.result is Result.fail
    assert outcome.reasons[-1].endswith(
        f"4 more envelope(s) for {h.DIGEST} were not examined (limit {MAX_CANDIDATES}): "
        "remove stale attestations"
    )
    assert evaluator(keys, [good, *flood]).review(h.policy(), h.deployment_subject()).result is (
        Result.passed
    )


def test_signature_cache_is_bounded() -> None:
    cache = SignatureCache(size=2)
    for name in ("a", "b", "c"):
        cache.put(name, "k", True)
    assert len(cache) == 2
    assert (cache.get("a", "k"), cache.get("c", "k")) == (None, True)
    disabled = SignatureCache(size=0)
    disabled.put("a", "k", True)
    assert disabled.get("a", "k") is None
