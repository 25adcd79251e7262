"""Property suites over envelopes, statements, deployers and trust files.

Whatever the input, the verifier returns a verdict with one-line reasons
(never an exception), and no mutation turns a denial into an admission
unless it removes the reason itself.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.attest import dsse
from controller.attest.checks import Deployer
from controller.attest.trust import Trust, load_trust
from controller.attest.verify import Circumstances, Requirements, Verifier
from controller.errors import InputError
from controller.policy.documents import GuardTrustSpec, Review
from controller.policy.loader import DocumentError
from tests.attest import helpers as h
from tests.policy.mutations import hostile_mutation, look_alike, look_alike_mutation

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = h.Keys.make()
# Made once: an ECDSA signature's length varies, and the strategies below
# must draw from the same envelope on every run to replay an example.
SIGNED = h.envelope(signers=[KEYS.ci])
TRUST = Trust.from_spec(h.trust_spec(KEYS))
REVIEW = Review.model_validate(h.review_block(deployer={"notAuthor": True}))
REQUIREMENTS = Requirements.from_review(REVIEW)


def verify(envelope: bytes, username: str = "bob") -> Any:
    circumstances = Circumstances(now=h.NOW, deployer=_deployer(username))
    verdict = Verifier(TRUST).verify(h.DIGEST, [envelope], REQUIREMENTS, circumstances)
    for reason in verdict.reasons:
        assert reason and "\n" not in reason and "\r" not in reason, reason
    return verdict


def _deployer(username: str) -> Deployer:
    return Deployer(username=username)


def sign(predicate: Any) -> bytes:
    document = json.loads(h.statement())
    document["predicate"] = predicate
    return h.envelope(json.dumps(document).encode(), [KEYS.ci])


SELF_APPROVED = h.predicate(approvals=[h.approval("alice", "github:1001")])


def test_the_seeds() -> None:
    assert verify(sign(h.predicate())).ok
    assert not verify(sign(SELF_APPROVED)).ok


@SETTINGS
@given(hostile_mutation(SELF_APPROVED))
def test_a_mutated_predicate_is_judged_and_only_a_new_reviewer_can_admit_it(
    mutation: tuple[Any, tuple[str | int, ...]],
) -> None:
    predicate, path = mutation
    verdict = verify(sign(predicate))
    event("admitted" if verdict.ok else "denied")
    if verdict.ok:
        # Only a change to who wrote or who approved can remove "alice
        # approved her own change".
        assert path[:1] in (("authors",), ("approvals",)), path


@SETTINGS
@given(look_alike_mutation(SELF_APPROVED))
def test_a_look_alike_anywhere_in_a_denied_predicate_keeps_it_denied(
    mutation: tuple[Any, tuple[str | int, ...]],
) -> None:
    predicate, path = mutation
    verdict = verify(sign(predicate))
    event(f"{'invalid' if 'invalid change-review' in str(verdict.reasons) else 'judged'}")
    assert not verdict.ok, path


@SETTINGS
@given(st.data())
def test_bytes_changed_in_a_signed_envelope_never_change_what_is_admitted(
    data: st.DataObject,
) -> None:
    original = SIGNED
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    if action == "flip":
        mutated = (
            original[:position]
            + bytes([original[position] ^ (byte or 1)])
            + original[position + 1 :]
        )
    elif action == "insert":
        mutated = original[:position] + bytes([byte]) + original[position:]
    else:
        mutated = original[:position] + original[position + 1 :]
    verdict = verify(mutated)
    if verdict.ok:
        # Only a change that leaves payload and signatures as they were (JSON
        # spacing, the keyid hint) can still verify.
        before, after = dsse.parse(original), dsse.parse(mutated)
        assert (after.payload_type, after.payload) == (before.payload_type, before.payload)
        assert [s.sig for s in after.signatures] == [s.sig for s in before.signatures]


MAPPED = {"bob": True, "carol@acme.example": True, "alice@acme.example": False}


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(sorted(MAPPED)).flatmap(look_alike),
        st.sampled_from(sorted(MAPPED)),
    )
)
def test_only_an_exactly_mapped_deployer_who_is_no_author_may_deploy(username: str) -> None:
    verdict = verify(h.envelope(signers=[KEYS.ci]), username)
    assert verdict.ok is MAPPED.get(username, False), (username, verdict.reasons)


TRUST_DOCUMENT = h.trust_document(KEYS)


@SETTINGS
@given(hostile_mutation(TRUST_DOCUMENT))
def test_a_mutated_trust_file_loads_or_says_where_and_why_in_one_line(
    mutation: tuple[Any, tuple[str | int, ...]],
) -> None:
    document, _ = mutation
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trust.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        try:
            load_trust([path])
        except (InputError, DocumentError) as exc:
            assert "\n" not in str(exc).strip(), str(exc)
            assert str(exc).startswith(str(path))


@SETTINGS
@given(look_alike_mutation(TRUST_DOCUMENT, ("spec", "principals")))
def test_a_look_alike_alias_never_maps_the_original_username(
    mutation: tuple[Any, tuple[str | int, ...]],
) -> None:
    document, path = mutation
    try:
        spec = GuardTrustSpec.model_validate(document["spec"])
        trust = Trust.from_spec(spec)
    except (ValidationError, InputError):
        event("refused")
        return
    event("loaded")
    changed = [
        name
        for name in ("alice@acme.example", "bob", "carol@acme.example")
        if trust.principal_of_user(name) != TRUST.principal_of_user(name)
    ]
    # A look-alike alias maps only its own spelling, never the original one.
    assert all(trust.principal_of_user(name) is None for name in changed), (path, changed)
