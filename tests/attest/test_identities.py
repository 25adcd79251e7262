"""Identity look-alikes never widen an allow-list, deployers are proven not
to be authors, and signatures are reported for what is known about them.

Regression tests, one class each: repository and id look-alikes, bot logins
that pass for humans, a Kubernetes username nobody mapped, an envelope
changed after signing, and what ``guard attest review`` refuses to sign.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.attest import dsse
from controller.attest.checks import Claim, RepositoryIn, is_bot
from controller.attest.review import AttestationReview, EnvelopeList
from controller.attest.statement import (
    ChangeReview,
    Person,
    StatementError,
    check_new_review,
    new_review,
    parse_statement,
    read_change_review,
    utc,
)
from controller.attest.trust import Trust
from controller.errors import InputError
from controller.policy.documents import GuardTrust, GuardTrustSpec, parse_duration
from controller.policy.loader import DocumentError, parse_documents
from controller.policy.results import Result
from tests.attest import helpers as h
from tests.attest.helpers import Keys

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def review_of(keys: Keys, envelopes: Sequence[bytes], trust: Any = None) -> AttestationReview:
    return AttestationReview(
        trust if trust is not None else h.trust_spec(keys),
        EnvelopeList(envelopes),
        now=lambda: h.NOW,
    )


def signed(keys: Keys, **predicate: Any) -> bytes:
    return h.envelope(h.statement(h.predicate(**predicate)), [keys.ci])


def reasons(keys: Keys, envelope: bytes, **policy: Any) -> tuple[str, ...]:
    outcome = review_of(keys, [envelope]).review(h.policy(**policy), h.deployment_subject())
    assert outcome.result is Result.fail
    return outcome.reasons


# --------------------------------------------------------------------------- repositories


@pytest.mark.parametrize(
    "repository",
    [
        "github.com/acme/\u017fhop",  # long s: casefolds to "s"
        "github.com/acme/\u0455hop",  # Cyrillic dze
        "github.com/acme/shop\u200b",
        "github.com/acme/\uff53hop",  # full-width s
        "github.com/acme/shop ",
    ],
)
def test_a_repository_look_alike_is_refused_not_matched(keys: Keys, repository: str) -> None:
    found = reasons(keys, signed(keys, repository=repository))
    assert len(found) == 1
    assert "invalid change-review predicate: predicate.repository: repository" in found[0]


def test_repositories_still_match_in_ascii_case_only() -> None:
    check = RepositoryIn(("github.com/acme/shop",))
    review = h.predicate(repository="GitHub.com/Acme/Shop")
    claim = _claim(ChangeReview.model_validate(review))
    assert check.check(claim).ok
    # Even past the model (model_construct), a non-ASCII name never matches.
    forged = ChangeReview.model_construct(
        **{**claim.review.__dict__, "repository": "github.com/acme/\u017fhop"}
    )
    assert not check.check(_claim(forged)).ok


def _claim(review: ChangeReview) -> Claim:
    payload = h.statement()
    envelope = dsse.build(dsse.IN_TOTO_PAYLOAD_TYPE, payload)
    return Claim(h.DIGEST, envelope, parse_statement(payload), review, (), Trust(), h.NOW)


# --------------------------------------------------------------------------- bots


@pytest.mark.parametrize(
    "login",
    [
        "renovate[bot] ",
        "renovate[bot]\u200b",
        "renovate\uff3bbot\uff3d",
        "renovate[bot]\n",
        "r\u0435novate[bot]",
    ],
)
def test_a_bot_login_dressed_as_a_human_is_refused(keys: Keys, login: str) -> None:
    envelope = signed(keys, approvals=[h.approval(login, "github:2000")])
    [reason] = reasons(keys, envelope)
    assert "predicate.approvals[0].reviewer.login: login" in reason


@pytest.mark.parametrize(
    "login", ["renovate-bot", "ci_bot", "deploy.bot", "dependabot", "Renovate"]
)
def test_bots_without_a_bot_marker_are_still_bots(keys: Keys, login: str) -> None:
    assert is_bot(Person.model_validate({"id": "github:2000", "login": login}))
    found = reasons(keys, signed(keys, approvals=[h.approval(login, "github:2000")]))
    assert f"{login} is a bot: bot approvals do not count" in found[0]


def test_a_human_login_is_a_human() -> None:
    for login in ("bob", "bot-ham", "abbot", "robert"):
        assert not is_bot(Person.model_validate({"id": "github:1002", "login": login}))


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "fake",
    ["g\u0456thub:1001", "github:\u0661001", "github:01001", "GitHub:1001", "github:1001 ", "1001"],
)
def test_an_author_id_look_alike_cannot_let_the_real_id_approve(keys: Keys, fake: str) -> None:
    """Written as the author, alice approves under her real id: never counted."""
    envelope = signed(
        keys,
        authors=[h.person("alice", fake)],
        approvals=[h.approval("alice", "github:1001")],
    )
    [reason] = reasons(keys, envelope)
    assert reason.startswith(f"{h.IMAGE}@{h.DIGEST}: invalid change-review predicate: ")
    assert "predicate.authors[0].id: id" in reason


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"expiresAt": 4102444800}, "predicate.expiresAt: a int is not an RFC 3339 timestamp"),
        ({"expiresAt": "4102444800"}, "predicate.expiresAt: '4102444800' is not an RFC 3339"),
        ({"expiresAt": True}, "predicate.expiresAt: a bool is not an RFC 3339"),
        ({"attestedAt": "9999-12-31T23:59:59Z"}, "year 9999 is out of range"),
        ({"targetRef": "main"}, "predicate.targetRef: targetRef 'main' is not a full git ref"),
        ({"expires_at": "2030-01-01T00:00:00Z"}, "predicate.expires_at: unknown field"),
    ],
)
def test_values_that_are_not_guards_predicate_are_refused(
    keys: Keys, changes: dict[str, Any], problem: str
) -> None:
    [reason] = reasons(keys, signed(keys, **changes))
    assert problem in reason


def test_every_problem_of_a_hostile_predicate_fits_one_line() -> None:
    authors = [h.person("a\n", f"github:{i}\u202e") for i in range(1, 40)]
    with pytest.raises(StatementError) as caught:
        read_change_review(h.predicate(authors=authors))
    message = str(caught.value)
    assert "\n" not in message and "\u202e" not in message
    assert message.endswith("more")


# --------------------------------------------------------------------------- deployers


def notauthor(keys: Keys, username: str, groups: Sequence[str] = (), **deployer: Any) -> Any:
    review = review_of(keys, [h.envelope(signers=[keys.ci])])
    policy = h.policy(deployer={"notAuthor": True, **deployer})
    subject = h.deployment_subject(
        username=username, groups=groups, controller=username == CONTROLLER
    )
    return review.review(policy, subject)


def test_the_authors_kubernetes_username_is_the_author(keys: Keys) -> None:
    outcome = notauthor(keys, "alice@acme.example")  # kubernetes:alice@acme.example is alice's
    assert outcome.result is Result.fail
    assert outcome.reasons == (
        f"{h.IMAGE}@{h.DIGEST}: deployer alice@acme.example is an author of the change "
        "(alice, github:1001): someone else must deploy it",
    )


@pytest.mark.parametrize("username", ["alice", "Alice@acme.example", "oidc:alice", "dave"])
def test_a_deployer_nobody_mapped_is_denied_with_the_alias_to_add(
    keys: Keys, username: str
) -> None:
    outcome = notauthor(keys, username)
    assert outcome.result is Result.fail
    [reason] = outcome.reasons
    assert f"deployer {username} is not mapped to a principal" in reason
    assert f"add kubernetes:{username} to the aliases of their principal" in reason


def test_an_email_alias_does_not_map_the_username_of_the_same_spelling(keys: Keys) -> None:
    """The bug: alice@example.com deployed alice's change; email:alice@example.com was her alias."""
    spec = {"principals": [{"id": "github:1001", "aliases": ["email:alice@acme.example"]}]}
    spec["keys"] = h.trust_spec(keys).model_dump(by_alias=True)["keys"]
    review = review_of(keys, [h.envelope(signers=[keys.ci])], GuardTrustSpec.model_validate(spec))
    outcome = review.review(
        h.policy(deployer={"notAuthor": True}),
        h.deployment_subject(username="alice@acme.example"),
    )
    assert outcome.result is Result.fail
    assert "is not mapped to a principal" in outcome.reasons[0]


def test_a_mapped_reviewer_may_deploy(keys: Keys) -> None:
    assert notauthor(keys, "bob").result is Result.passed


def test_a_cd_service_account_named_in_allowed_needs_no_mapping(keys: Keys) -> None:
    account = "system:serviceaccount:cd:deployer"
    assert notauthor(keys, account, allowed=[account]).result is Result.passed
    assert notauthor(keys, account, allowed=[f"kubernetes:{account}"]).result is Result.passed


def test_a_group_in_allowed_does_not_excuse_an_unmapped_person(keys: Keys) -> None:
    outcome = notauthor(keys, "alice", groups=["deployers"], allowed=["group:deployers"])
    assert outcome.result is Result.fail
    assert "is not mapped to a principal" in outcome.reasons[0]


def test_controller_identities_stay_exempt_from_the_deployer_rules(keys: Keys) -> None:
    assert notauthor(keys, CONTROLLER).result is Result.passed


def test_a_username_that_is_an_authors_id_is_the_author_even_unmapped(keys: Keys) -> None:
    outcome = notauthor(keys, "github:1001")
    assert "deployer github:1001 is an author of the change" in outcome.reasons[0]


def test_a_hostile_username_is_shown_escaped_in_one_line(keys: Keys) -> None:
    outcome = notauthor(keys, "mallory\nguard allowed\u202e")
    assert outcome.result is Result.fail
    assert all("\n" not in r and "\u202e" not in r for r in outcome.reasons)


def _operations_trust() -> GuardTrust:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Mapping Kubernetes users to principals", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    [loaded] = parse_documents(block, "docs/operations.md")
    assert isinstance(loaded.document, GuardTrust)
    return loaded.document


def test_the_documented_mapping_loads_and_maps_exactly() -> None:
    trust = Trust.from_spec(_operations_trust().spec)
    assert trust.principal_of_user("alice@example.com") == "github:1001"
    assert trust.principal_of_user("oidc:bob") == "github:1002"
    assert trust.principal_of_user("Alice@example.com") is None
    assert trust.principal_of_user("bob") is None
    assert trust.maps_kubernetes_users


@pytest.mark.parametrize(
    ("alias", "problem"),
    [
        ("dana@example.com", "has no id system: write SYSTEM:VALUE, e.g. email:dana@example.com"),
        ("githib:1009", "did you mean 'github'?"),
        ("github:dana", "digits only"),
        ("email:dana@EXAMPLE.com", "write the domain in lower case (example.com)"),
        ("email:dana@b\u00fccher.example", "IDNA punycode (xn--bcher-kva.example)"),
        ("kubernetes:dana\u200b", "invisible format character (U+200B)"),
        ("kubernetes:d\u0430na", "CYRILLIC SMALL LETTER A"),
    ],
)
def test_trust_aliases_have_one_spelling(alias: str, problem: str) -> None:
    text = (
        "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: t}\n"
        f"spec:\n  principals: [{{id: 'github:1009', aliases: [{json.dumps(alias)}]}}]\n"
    )
    with pytest.raises(DocumentError) as caught:
        parse_documents(text, "t.yaml")
    assert "spec.principals[0].aliases[0]" in str(caught.value)
    assert problem in str(caught.value)


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("keyid", ["", "not-a-key-we-know"])
def test_a_tampered_envelope_is_not_reported_as_an_untrusted_one(keys: Keys, keyid: str) -> None:
    payload = h.statement()
    [signature] = h.signed(payload, keys.ci, keyids=[keyid])
    tampered = payload.replace(b'"bob"', b'"eve"')
    [reason] = reasons(keys, h.envelope(tampered, signatures=[signature]))
    assert "no trusted key verifies this signature" in reason
    assert "changed after signing" in reason
    assert "unknown key" not in reason


def test_a_signature_that_names_its_trusted_key_says_so(keys: Keys) -> None:
    payload = h.statement()
    signatures = h.signed(payload, keys.ci)
    tampered = payload.replace(b'"bob"', b'"eve"')
    [reason] = reasons(keys, h.envelope(tampered, signatures=signatures))
    assert "signature claims key 'ci' but does not verify with it" in reason


# --------------------------------------------------------------------------- attest review


def flags(**changes: Any) -> dict[str, Any]:
    now = h.NOW
    data = h.predicate(attestedAt=utc(now), expiresAt=utc(now + dt.timedelta(days=30)))
    data.update(changes)
    return data


def test_a_valid_new_review_is_accepted() -> None:
    assert new_review(flags(), "flags").repository == h.REPOSITORY


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"approvals": [h.approval("alice", "github:1001")]},
            "refusing to attest: approvals[0]: alice (github:1001) is also an author of the "
            "change (alice, github:1001): an author's approval never counts",
        ),
        (
            {"approvals": [h.approval("Alice", "github:4242")]},
            "approvals[0]: Alice (github:4242) is also an author of the change (alice, github:1001)",
        ),
        (
            {"approvals": [h.approval("alice-mail", "email:Alice@acme.example")],
             "authors": [h.person("alice", "email:alice@acme.example")]},
            "is also an author",
        ),
        ({"targetRef": "main"}, "flags: invalid change-review predicate: predicate.targetRef: "
         "targetRef 'main' is not a full git ref: write it as refs/heads/main"),
        ({"authors": [h.person("alice", "1001")]}, "id '1001' has no id system: write "
         "SYSTEM:VALUE, e.g. github:1001 or gitlab:1001"),
        ({"expiresAt": utc(h.NOW)}, "expiresAt"),
    ],
)  # fmt: skip
def test_attest_review_refuses_what_could_never_count(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InputError) as caught:
        new_review(flags(**changes), "flags")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_expiry_of_zero_is_refused_before_anything_is_signed() -> None:
    with pytest.raises(ValueError, match="is zero"):
        parse_duration("0s")
    review = ChangeReview.model_validate(flags(expiresAt=utc(h.NOW)))
    with pytest.raises(InputError, match="is not after attestedAt"):
        check_new_review(review)
