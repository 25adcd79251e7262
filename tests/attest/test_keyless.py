"""Keyless attestations: Sigstore bundles verified offline with identities.

Real public bundles and trusted roots (tests/attest/data/sigstore/README.md
says where each comes from) verify with no network, and are rejected after a
byte flip, under another identity, and under another root; the GitHub
certificate's facts are cross-checked against the build provenance.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.attest import fulcio
from controller.attest.dsse import EnvelopeError, parse
from controller.attest.fulcio import FulcioIdentity
from controller.attest.keyless import CertificateAgrees
from controller.attest.keys import generate
from controller.attest.provenance import ProvenanceClaim, read_provenance
from controller.attest.statement import parse_statement
from controller.attest.trust import Trust
from controller.attest.verify import Requirements, Verifier
from controller.errors import InputError
from controller.policy.documents import GuardTrustSpec, Review
from tests.attest.chains import sign
from tests.attest.sigstore_authority import Authority

DATA = Path(__file__).parent / "data" / "sigstore"
PUBLIC_GOOD = (DATA / "public-good-trusted-root.json").read_text()
STAGING = (DATA / "staging-trusted-root.json").read_text()
REUSABLE = (DATA / "reusable-workflow-attestation.sigstore.json").read_bytes()
CUSTOM_ISSUER = (DATA / "custom-issuer.sigstore.json").read_bytes()
STAGING_BUNDLE = (DATA / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
ATTEST_WORKFLOW = "github/artifact-attestations-workflows/.github/workflows/attest.yml"
ATTEST_COMMIT = "09b495c3f12c7881b3cc17209a327792065c1a1d"


def github_identity(**overrides: Any) -> dict[str, Any]:
    """The identity of the reusable-workflow fixture, exactly."""
    github: dict[str, Any] = {
        "repository": "malancas/attest-demo",
        "repositoryId": "804070735",
        "ownerId": "16248153",
        "refs": ["refs/heads/main"],
        "reusableWorkflow": ATTEST_WORKFLOW,
        "workflowRefs": [ATTEST_COMMIT],
        "events": ["workflow_dispatch"],
    }
    github.update(overrides)
    return {
        "name": "demo-builder",
        "role": "builder",
        "root": "public-good",
        "issuer": "https://token.actions.githubusercontent.com",
        "github": github,
    }


def trust_of(*identities: dict[str, Any], root: str = PUBLIC_GOOD) -> Trust:
    spec = GuardTrustSpec.model_validate(
        {
            "trustedRoots": [{"name": "public-good", "trustedRoot": root}],
            "identities": list(identities) or [github_identity()],
        }
    )
    return Trust.from_spec(spec)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline means offline: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network use during keyless verification: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def signer_names(trust: Trust, raw: bytes) -> list[str]:
    return [s.name for s in Verifier(trust).signers(parse(raw))]


def reasons(trust: Trust, raw: bytes) -> str:
    return " | ".join(Verifier(trust).unsigned_reasons(parse(raw)))


# --------------------------------------------------------------------------- accepted


def test_a_github_artifact_attestation_verifies_offline_as_its_identity() -> None:
    trust = trust_of()
    envelope = parse(REUSABLE)
    signers = Verifier(trust).signers(envelope)
    assert [(s.name, s.role) for s in signers] == [("demo-builder", "builder")]
    certificate = signers[0].certificate
    assert certificate is not None
    assert certificate.get(fulcio.SOURCE_REPOSITORY_ID) == "804070735"
    assert certificate.get(fulcio.BUILD_SIGNER_DIGEST) == ATTEST_COMMIT
    statement = parse_statement(envelope.payload)
    assert statement.predicate_type == "https://slsa.dev/provenance/v1"


def test_a_rekor_v2_bundle_verifies_with_an_exact_subject() -> None:
    """sigstore-python's staging bundle: Rekor v2 entry, RFC 3161 timestamp."""
    bundle = json.loads(STAGING_BUNDLE)
    certificate = bundle["verificationMaterial"]["certificate"]["rawBytes"]
    from_certificate = _identity_of_raw(certificate)
    identity = {
        "name": "staging-signer",
        "role": "builder",
        "root": "public-good",
        "issuer": from_certificate.issuer,
        "subject": from_certificate.subjects[0],
    }
    assert signer_names(trust_of(identity, root=STAGING), STAGING_BUNDLE) == ["staging-signer"]
    # The same bundle is not signed as far as the public-good root knows.
    assert "does not verify against trusted root" in reasons(
        trust_of(identity, root=PUBLIC_GOOD), STAGING_BUNDLE
    )


def _identity_of_raw(raw: str) -> FulcioIdentity:
    return fulcio.identity_of(x509.load_der_x509_certificate(base64.b64decode(raw)))


# --------------------------------------------------------------------------- rejected


def test_a_byte_flip_in_the_payload_is_rejected() -> None:
    bundle = json.loads(REUSABLE)
    payload = bytearray(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload[payload.index(b"804070735")] ^= 0x01  # 904070735: another repository id
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    raw = json.dumps(bundle).encode()
    assert signer_names(trust_of(), raw) == []
    assert "does not verify against trusted root 'public-good'" in reasons(trust_of(), raw)


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("signature", ("dsseEnvelope", "signatures", 0, "sig")),
        ("certificate", ("verificationMaterial", "certificate", "rawBytes")),
        (
            "inclusion proof",
            ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "rootHash"),
        ),
        (
            "signed entry timestamp",
            ("verificationMaterial", "tlogEntries", 0, "inclusionPromise", "signedEntryTimestamp"),
        ),
    ],
)
def test_a_byte_flip_anywhere_that_is_signed_is_rejected(field: str, path: tuple[Any, ...]) -> None:
    bundle = json.loads(REUSABLE)
    node: Any = bundle
    for part in path[:-1]:
        node = node[part]
    data = bytearray(base64.b64decode(node[path[-1]]))
    data[len(data) // 2] ^= 0x01
    node[path[-1]] = base64.b64encode(bytes(data)).decode()
    raw = json.dumps(bundle).encode()
    assert signer_names(trust_of(), raw) == [], field
    assert reasons(trust_of(), raw), field


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"repositoryId": "804070736"}, "source repository id is 804070735, not 804070736"),
        ({"ownerId": "1"}, "repository owner id is 16248153, not 1"),
        (
            {"repository": "malancas/attest-demo2"},
            "source repository is https://github.com/malancas/attest-demo, not",
        ),
        ({"refs": ["refs/tags/v*"]}, "source ref is refs/heads/main, not one of refs/tags/v*"),
        ({"events": ["push"]}, "triggered by workflow_dispatch, not push"),
        (
            {"runnerEnvironments": ["self-hosted"]},
            "runner environment is github-hosted, not self-hosted",
        ),
        (
            {"workflowRefs": ["0" * 40]},
            f"signing workflow ran at {ATTEST_COMMIT} (commit {ATTEST_COMMIT}), not at one of",
        ),
        (
            {
                "reusableWorkflow": None,
                "workflowRefs": [],
                "workflow": ".github/workflows/shared.yml",
            },
            "signing workflow is https://github.com/github/artifact-attestations-workflows",
        ),
    ],
)
def test_every_identity_mismatch_has_its_reason(override: dict[str, Any], expected: str) -> None:
    trust = trust_of(github_identity(**override))
    assert signer_names(trust, REUSABLE) == []
    assert expected in reasons(trust, REUSABLE)


def test_another_issuer_is_another_identity() -> None:
    """custom-issuer.sigstore.json names GitHub's issuer with a path suffix."""
    identity = github_identity(
        repository="too-legit/attest",
        repositoryId="851894824",
        ownerId="180348046",
        reusableWorkflow=None,
        workflowRefs=[],
        workflow=".github/workflows/integration.yml",
    )
    trust = trust_of(identity)
    assert signer_names(trust, CUSTOM_ISSUER) == []
    assert (
        "issuer is https://token.actions.githubusercontent.com/hammer-time, not "
        "https://token.actions.githubusercontent.com" in reasons(trust, CUSTOM_ISSUER)
    )
    exact = {**identity, "issuer": "https://token.actions.githubusercontent.com/hammer-time"}
    assert signer_names(trust_of(exact), CUSTOM_ISSUER) == ["demo-builder"]


def test_another_root_rejects_the_bundle() -> None:
    assert signer_names(trust_of(root=STAGING), REUSABLE) == []
    assert "does not verify against trusted root 'public-good'" in reasons(
        trust_of(root=STAGING), REUSABLE
    )


def test_an_invalid_signature_bundle_is_rejected() -> None:
    raw = (DATA / "sigstoreBundle-invalid-signature.json").read_bytes()
    assert signer_names(trust_of(), raw) == []
    assert reasons(trust_of(), raw).startswith("bundle does not verify")


def test_npm_intoto_bundles_are_rejected_with_the_reason() -> None:
    """npm's provenance bundles are logged as Rekor ``intoto`` entries, which
    sigstore-python does not verify: rejected, saying so."""
    for name in ("sigstore-js-2.1.0-bundle.json", "sigstore-js-2.1.0-bundle-v0.1.json"):
        raw = (DATA / name).read_bytes()
        assert signer_names(trust_of(), raw) == []
        assert "dsse/hashedrekord" in reasons(trust_of(), raw)


def test_a_trust_without_identities_says_so() -> None:
    trust = Trust()
    assert Verifier(trust).signers(parse(REUSABLE)) == ()
    assert "lists no identity" in reasons(trust, REUSABLE)


# --------------------------------------------------------------------------- reading


def test_a_bundle_is_read_wherever_an_envelope_is() -> None:
    envelope = parse(REUSABLE)
    assert envelope.bundle == REUSABLE
    assert envelope.payload_type == "application/vnd.in-toto+json"
    assert len(envelope.signatures) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mediaType": "application/vnd.dev.sigstore.bundle+json;version=9"},
            "not a Sigstore bundle",
        ),
        ({"extra": 1}, "bundle has unknown field(s): extra"),
        ({"dsseEnvelope": None}, "carries no DSSE envelope"),
        ({"verificationMaterial": []}, "verificationMaterial must be an object"),
    ],
)
def test_malformed_bundles_are_refused_with_one_line(change: dict[str, Any], message: str) -> None:
    bundle = json.loads(REUSABLE)
    bundle.update(change)
    with pytest.raises(
        EnvelopeError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse(json.dumps(bundle))


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
@example(position=1871, bit=0)  # "rekor.sigstore.dev" on the checkpoint's signature line
def test_no_single_bit_flip_yields_a_signer(position: int, bit: int) -> None:
    """Hostile bundles: flipping any bit either breaks parsing or verification,
    never yields a signer for changed bytes."""
    data = bytearray(REUSABLE)
    index = position % len(data)
    data[index] ^= 1 << bit
    raw = bytes(data)
    try:
        envelope = parse(raw)
    except EnvelopeError:
        return
    signers = Verifier(trust_of()).signers(envelope)
    if signers:
        # Only what no signature covers may change and still verify (JSON
        # whitespace, the log's name on its checkpoint signature line: the
        # log is known by its key); the signed content and the signer are
        # then the original's.
        original = parse(REUSABLE)
        assert envelope.payload == original.payload
        assert signers == Verifier(trust_of()).signers(original)


# --------------------------------------------------------------------------- the trust


def test_a_reusable_workflow_must_be_pinned_to_a_commit() -> None:
    with pytest.raises(ValidationError, match="reusableWorkflow must be pinned"):
        GuardTrustSpec.model_validate(
            {
                "trustedRoots": [{"name": "public-good", "trustedRoot": PUBLIC_GOOD}],
                "identities": [github_identity(workflowRefs=["refs/heads/main"])],
            }
        )


def test_forbidden_events_cannot_be_trusted() -> None:
    with pytest.raises(ValidationError, match="pull_request_target"):
        trust_of(github_identity(events=["pull_request_target"]))


def test_an_identity_names_a_defined_root() -> None:
    with pytest.raises(ValidationError, match=r"spec\.trustedRoots does not define"):
        GuardTrustSpec.model_validate({"identities": [github_identity()]})


def test_a_broken_trusted_root_is_refused_at_load() -> None:
    with pytest.raises(InputError, match="not a usable Sigstore trusted root"):
        trust_of(root='{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
    with pytest.raises(InputError, match="mediaType must be"):
        trust_of(root="{}")


def test_identity_and_key_names_are_one_namespace() -> None:
    with pytest.raises(ValidationError, match="key names must be unique: demo-builder"):
        GuardTrustSpec.model_validate(
            {
                "keys": [{"name": "demo-builder", "publicKey": "x", "role": "builder"}],
                "trustedRoots": [{"name": "public-good", "trustedRoot": PUBLIC_GOOD}],
                "identities": [github_identity()],
            }
        )


# --------------------------------------------------------------------------- provenance


def _claim(raw: bytes, trust: Trust) -> ProvenanceClaim:
    envelope = parse(raw)
    statement = parse_statement(envelope.payload)
    signers = Verifier(trust).signers(envelope)
    digest = statement.subject_keys[0]
    return ProvenanceClaim(digest, envelope, statement, read_provenance(statement), signers)


def test_the_certificate_and_the_provenance_agree() -> None:
    claim = _claim(REUSABLE, trust_of())
    assert claim.signers
    assert CertificateAgrees().check(claim).ok


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "repository_id",
            "1",
            "its repository id is 1, but the signing certificate says 804070735",
        ),
        (
            "owner_id",
            "2",
            "its repository owner id is 2, but the signing certificate says 16248153",
        ),
        ("event", "push", "its event is push, but the signing certificate says workflow_dispatch"),
        (
            "workflow_ref",
            "refs/heads/dev",
            "its workflow is https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/dev",
        ),
    ],
)
def test_provenance_that_disagrees_with_its_certificate_is_refused(
    field: str, value: str, expected: str
) -> None:
    claim = _claim(REUSABLE, trust_of())
    changed = ProvenanceClaim(
        claim.digest,
        claim.envelope,
        claim.statement,
        claim.provenance.__class__(**{**claim.provenance.__dict__, field: value}),
        claim.signers,
    )
    verdict = CertificateAgrees().check(changed)
    assert not verdict.ok
    assert any(expected in r for r in verdict.reasons)


def test_the_certificate_is_valid_at_the_signed_time_only() -> None:
    """The fixture's certificate lived ten minutes in May 2024: it verifies
    now only because the log's signed time falls inside those minutes."""
    certificate = parse(REUSABLE)
    bundle = json.loads(REUSABLE)
    integrated = int(bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"])
    signed = dt.datetime.fromtimestamp(integrated, dt.UTC)
    der = base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"])
    parsed = x509.load_der_x509_certificate(der)
    assert parsed.not_valid_before_utc <= signed <= parsed.not_valid_after_utc
    assert parsed.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert Verifier(trust_of()).signers(certificate)


# --------------------------------------------------------------------------- requireKeyless


def test_a_policy_may_require_keyless_signatures_for_a_role() -> None:
    """``review.requireKeyless: [builder]``: the provenance signed with a
    listed builder key no longer counts; the keyless one still does."""
    key = generate()
    spec = GuardTrustSpec.model_validate(
        {
            "keys": [{"name": "ci-builder", "publicKey": key.public.pem(), "role": "builder"}],
            "trustedRoots": [{"name": "public-good", "trustedRoot": PUBLIC_GOOD}],
            "identities": [github_identity()],
        }
    )
    verifier = Verifier(Trust.from_spec(spec))
    statement = json.loads(parse(REUSABLE).payload)
    keyed = parse(sign(key, statement))
    strict = replace(Requirements.baseline(), keyless_roles=frozenset({"builder"}))
    assert [k.name for k in verifier.signers_for(keyed, Requirements.baseline())[0]] == [
        "ci-builder"
    ]
    signers, refused = verifier.signers_for(keyed, strict)
    assert signers == ()
    assert refused == [
        "key 'ci-builder' (builder) does not count: the policy requires keyless signatures "
        "for the builder role (review.requireKeyless)"
    ]
    assert [k.name for k in verifier.signers_for(parse(REUSABLE), strict)[0]] == ["demo-builder"]


def test_require_keyless_names_roles_only() -> None:
    document = {**_minimal_review(), "requireKeyless": ["bulider"]}
    with pytest.raises(ValidationError, match="builder"):
        Review.model_validate(document)
    assert Review.model_validate({**_minimal_review(), "requireKeyless": ["builder"]})


def _minimal_review() -> dict[str, Any]:
    return {
        "attesters": ["ci"],
        "repositories": ["github.com/a/b"],
        "targetRefs": ["refs/heads/main"],
    }


# --------------------------------------------------------------------------- the tests' own authority
# These cases need a certificate or a log entry of a chosen shape, which no
# real bundle has: they use tests/attest/sigstore_authority.py (a CA, a CT
# log key and a transparency log key made with ``cryptography``).

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SHOP = {
    fulcio.SOURCE_REPOSITORY_URI: "https://github.com/acme/shop",
    fulcio.SOURCE_REPOSITORY_ID: "4242",
    fulcio.SOURCE_REPOSITORY_OWNER_ID: "77",
    fulcio.SOURCE_REPOSITORY_REF: "refs/heads/main",
    fulcio.SOURCE_REPOSITORY_DIGEST: "1" * 40,
    fulcio.BUILD_SIGNER_URI: "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main",
    fulcio.BUILD_SIGNER_DIGEST: "1" * 40,
    fulcio.BUILD_CONFIG_URI: "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main",
    fulcio.BUILD_TRIGGER: "push",
    fulcio.RUNNER_ENVIRONMENT: "github-hosted",
}
STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"digest": {"sha256": "a" * 64}}],
    "predicateType": "https://example.test/anything",
    "predicate": {},
}


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority(START)


def shop_trust(authority: Authority, **overrides: Any) -> Trust:
    github = {
        "repository": "acme/shop",
        "repositoryId": "4242",
        "ownerId": "77",
        "refs": ["refs/heads/main"],
        "workflow": ".github/workflows/release.yml",
    }
    github.update(overrides)
    identity = {
        "name": "shop-release",
        "role": "attester",
        "root": "public-good",
        "issuer": "https://token.actions.githubusercontent.com",
        "github": github,
    }
    return trust_of(identity, root=authority.trusted_root())


def test_a_bundle_of_the_test_authority_verifies(authority: Authority) -> None:
    raw = authority.bundle(STATEMENT, extensions=SHOP)
    assert signer_names(shop_trust(authority), raw) == ["shop-release"]


def test_a_certificate_used_outside_its_validity_at_the_signed_time_is_rejected(
    authority: Authority,
) -> None:
    """The certificate lives ten minutes; logged thirty minutes after issue."""
    late = authority.bundle(STATEMENT, extensions=SHOP, integrated=START + dt.timedelta(minutes=30))
    assert signer_names(shop_trust(authority), late) == []
    assert "not valid at validation time" in reasons(shop_trust(authority), late)
    early = authority.bundle(STATEMENT, extensions=SHOP, integrated=START - dt.timedelta(minutes=1))
    assert signer_names(shop_trust(authority), early) == []


def test_an_entry_signed_by_another_log_is_rejected(authority: Authority) -> None:
    raw = authority.bundle(STATEMENT, extensions=SHOP, log=Authority(START))
    assert signer_names(shop_trust(authority), raw) == []
    assert "does not verify against trusted root" in reasons(shop_trust(authority), raw)


def test_a_certificate_of_another_authority_is_rejected(authority: Authority) -> None:
    raw = Authority(START).bundle(STATEMENT, extensions=SHOP)
    assert signer_names(shop_trust(authority), raw) == []


def test_a_pull_request_target_run_is_not_the_identity(authority: Authority) -> None:
    raw = authority.bundle(
        STATEMENT, extensions={**SHOP, fulcio.BUILD_TRIGGER: "pull_request_target"}
    )
    assert signer_names(shop_trust(authority), raw) == []
    assert "triggered by pull_request_target, not push" in reasons(shop_trust(authority), raw)


def test_a_workflow_from_an_unprotected_ref_is_not_the_identity(authority: Authority) -> None:
    """The source ref is protected, the workflow file came from a branch."""
    signer = "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/evil"
    raw = authority.bundle(STATEMENT, extensions={**SHOP, fulcio.BUILD_SIGNER_URI: signer})
    assert signer_names(shop_trust(authority), raw) == []
    assert "signing workflow ran from refs/heads/evil, not the source ref refs/heads/main" in (
        reasons(shop_trust(authority), raw)
    )
