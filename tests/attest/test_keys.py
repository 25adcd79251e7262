"""Key loading and the signature algorithms."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from controller.attest.keys import (
    KeyFileError,
    PrivateKey,
    PublicKey,
    generate,
    keyid_of,
    load_private_key,
    load_public_key,
)


def _no_password() -> bytes | None:
    return None


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
def test_generated_keys_sign_and_verify_through_pem(kind: str) -> None:
    key = generate(kind)  # type: ignore[arg-type]
    private = load_private_key(key.private_pem(), "k", _no_password)
    public = load_public_key(key.public.pem(), "k.pub")
    assert public.keyid == key.keyid == private.keyid
    signature = private.sign(b"data")
    assert public.verify(signature, b"data")
    assert not public.verify(signature, b"date")
    assert not public.verify(b"garbage", b"data")


def test_rsa_verifies_pkcs1v15_and_pss() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = PublicKey.of(private.public_key(), "rsa")
    pkcs1 = private.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    pss = private.sign(
        b"m", padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256()
    )
    assert public.verify(pkcs1, b"m")
    assert public.verify(pss, b"m")
    assert not public.verify(pss, b"n")


def test_keyid_is_sha256_of_the_der_public_key() -> None:
    key = generate("ecdsa")
    assert keyid_of(key.public.key) == key.keyid
    assert len(key.keyid) == 64


def test_unsupported_curves_and_small_rsa_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(KeyFileError, match="secp384r1 is not supported"):
        PublicKey.of(p384, "k")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyFileError, match="1024 bits is too small"):
        PrivateKey.of(small, "k")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"hello", "not a PEM public key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "use the .pub file"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "cannot read public key"),
    ],
)
def test_bad_public_keys_say_why(data: bytes, problem: str) -> None:
    with pytest.raises(KeyFileError, match=problem):
        load_public_key(data, "trust.yaml: key 'ci'")


def test_bad_private_keys_say_why() -> None:
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(b"nope", "k", _no_password)
    public = generate("ecdsa").public.pem().encode()
    with pytest.raises(KeyFileError, match="'PUBLIC KEY' is not a private key"):
        load_private_key(public, "k", _no_password)
    broken = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ne30=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    with pytest.raises(KeyFileError, match="not a valid cosign encrypted key"):
        load_private_key(broken, "k", lambda: b"pw")


def test_pkcs8_encrypted_keys_ask_for_the_password() -> None:
    key = generate("ecdsa")
    pem = key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert load_private_key(pem, "k", lambda: b"pw").keyid == key.keyid
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(pem, "k", lambda: b"px")
    with pytest.raises(KeyFileError, match="the key is encrypted"):
        load_private_key(pem, "k", _no_password)


def test_hostile_scrypt_parameters_are_refused() -> None:
    import base64
    import json

    document = {
        "kdf": {"name": "scrypt", "params": {"N": 2**30, "r": 8, "p": 1}, "salt": "AAAA"},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(b"n" * 24).decode()},
        "ciphertext": "AAAA",
    }
    body = base64.b64encode(json.dumps(document).encode())
    pem = (
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
        + body
        + b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    )
    with pytest.raises(KeyFileError, match="out of range"):
        load_private_key(pem, "k", lambda: b"pw")
