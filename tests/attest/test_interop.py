"""Interoperability with real cosign output, securesystemslib, and the DSSE spec."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]

from controller.attest import dsse
from controller.attest.keys import (
    KeyFileError,
    PrivateKey,
    generate,
    load_private_key,
    load_public_key,
)
from controller.attest.statement import STATEMENT_V01, parse_statement
from controller.attest.trust import Trust
from controller.attest.verify import Circumstances, Requirements, Verifier
from controller.policy.documents import GuardTrustSpec
from tests.attest import helpers as h

# Copied from ../shared/fixtures/cosign (public sigstore/cosign test data; see its README).
COSIGN = Path(__file__).parent / "data" / "cosign"


def _cosign_envelope() -> bytes:
    return base64.b64decode((COSIGN / "cosign_blob_slsa_envelope.b64").read_text().strip())


def _cosign_key() -> bytes:
    return (COSIGN / "cosign_test_pubkey.pem").read_bytes()


def _attester_trust(pem: str) -> Trust:
    spec = GuardTrustSpec.model_validate(
        {"keys": [{"name": "cosign", "publicKey": pem, "role": "attester"}]}
    )
    return Trust.from_spec(spec)


# --------------------------------------------------------------------------- DSSE spec


def test_pae_matches_the_dsse_specification_vector() -> None:
    # From the DSSE v1 protocol document's test vector.
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("t\u00e9", "\u00e9".encode()) == b"DSSEv1 3 t\xc3\xa9 2 \xc3\xa9"


# --------------------------------------------------------------------------- cosign


def test_cosign_envelope_verifies_with_its_key() -> None:
    envelope = dsse.parse(_cosign_envelope())
    key = load_public_key(_cosign_key(), "cosign_test_pubkey.pem")
    assert envelope.payload_type == dsse.IN_TOTO_PAYLOAD_TYPE
    assert [key.verify(s.sig, envelope.pae()) for s in envelope.signatures] == [True]


def test_cosign_statement_v01_names_the_blob() -> None:
    statement = parse_statement(dsse.parse(_cosign_envelope()).payload)
    blob = (COSIGN / "cosign_blob.txt").read_bytes()
    assert statement.type == STATEMENT_V01
    assert statement.subject_digests == ("sha256:" + hashlib.sha256(blob).hexdigest(),)


def test_cosign_envelope_gets_past_the_signature_then_fails_on_predicate_type() -> None:
    blob_digest = "sha256:" + hashlib.sha256((COSIGN / "cosign_blob.txt").read_bytes()).hexdigest()
    verifier = Verifier(_attester_trust(_cosign_key().decode()))
    verdict = verifier.verify(
        blob_digest, [_cosign_envelope()], Requirements.baseline(), Circumstances(now=h.NOW)
    )
    assert not verdict.ok
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("wrong predicate type 'https://slsa.dev/provenance/v0.2'")


def test_cosign_envelope_rejected_with_any_other_key() -> None:
    envelope = dsse.parse(_cosign_envelope())
    for other in (generate("ecdsa"), generate("ed25519")):
        assert not any(other.public.verify(s.sig, envelope.pae()) for s in envelope.signatures)
        verdict = Verifier(_attester_trust(other.public.pem())).verify(
            parse_statement(envelope.payload).subject_digests[0],
            [_cosign_envelope()],
            Requirements.baseline(),
            Circumstances(now=h.NOW),
        )
        assert verdict.reasons == (
            "no trusted key verifies this signature (no keyid): it was made with a key the "
            "trust does not list, or the envelope was changed after signing",
        )


def test_cosign_envelope_rejected_after_any_payload_byte_change() -> None:
    envelope = dsse.parse(_cosign_envelope())
    key = load_public_key(_cosign_key(), "cosign")
    signature = envelope.signatures[0].sig
    assert key.verify(signature, envelope.pae())
    for index in range(len(envelope.payload)):
        changed = bytearray(envelope.payload)
        changed[index] ^= 0x01
        raw = dsse.serialize(envelope.payload_type, bytes(changed), envelope.signatures)
        assert not key.verify(signature, dsse.parse(raw).pae()), f"byte {index}"


def test_cosign_encrypted_key_decrypts_with_its_password_and_signs() -> None:
    data = (COSIGN / "cosign_sigstore_encrypted_key_password_hello.pem").read_bytes()
    key = load_private_key(data, "cosign.key", lambda: b"hello")
    assert key.public.algorithm == "ecdsa-p256-sha256"
    message = dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, h.statement())
    assert key.public.verify(key.sign(message), message)


def test_cosign_encrypted_key_refuses_a_wrong_or_missing_password() -> None:
    data = (COSIGN / "cosign_sigstore_encrypted_key_password_hello.pem").read_bytes()
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(data, "cosign.key", lambda: b"hellO")
    with pytest.raises(KeyFileError, match="the key is encrypted: set GUARD_KEY_PASSWORD"):
        load_private_key(data, "cosign.key", lambda: None)


def test_keys_written_encrypted_use_the_cosign_format_and_read_back() -> None:
    key = generate("ed25519")
    pem = key.private_pem(b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert load_private_key(pem, "k", lambda: b"s3cret").keyid == key.keyid


# --------------------------------------------------------------------------- securesystemslib


def _crypto_pair(kind: str) -> tuple[PrivateKey, CryptoSigner]:
    if kind == "ecdsa":
        private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = ec.generate_private_key(
            ec.SECP256R1()
        )
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    ours = PrivateKey.of(private, kind)
    theirs = CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid=ours.keyid))
    return ours, theirs


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_guard_verifies_envelopes_securesystemslib_signs(kind: str) -> None:
    ours, theirs = _crypto_pair(kind)
    envelope = SslibEnvelope(h.statement(), dsse.IN_TOTO_PAYLOAD_TYPE, {})
    envelope.sign(theirs)
    raw = json.dumps(envelope.to_dict()).encode()
    trust = GuardTrustSpec.model_validate(
        {"keys": [{"name": "ci", "publicKey": ours.public.pem(), "role": "attester"}]}
    )
    verdict = Verifier(Trust.from_spec(trust)).verify(
        h.DIGEST, [raw], Requirements.baseline(), Circumstances(now=h.NOW)
    )
    assert verdict.ok, verdict.reasons
    assert verdict.approvers == ("bob",)


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_securesystemslib_verifies_envelopes_guard_signs(kind: str) -> None:
    ours, theirs = _crypto_pair(kind)
    raw = h.envelope(signers=[ours])
    envelope = SslibEnvelope.from_dict(json.loads(raw))
    accepted = envelope.verify([theirs.public_key], 1)
    assert list(accepted) == [ours.keyid]
    tampered = SslibEnvelope.from_dict(json.loads(raw))
    tampered.payload = tampered.payload.replace(b"bob", b"eve")
    with pytest.raises(VerificationError):
        tampered.verify([theirs.public_key], 1)
