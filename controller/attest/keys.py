"""Public and private keys: loading, signing, verifying, key ids.

Supported: ECDSA P-256 with SHA-256 and DER signatures (what ``cosign attest
--key`` makes), Ed25519, and RSA (2048 bits or more; PKCS#1 v1.5 and PSS with
SHA-256 both verify). Private keys are PKCS#8 PEM (optionally encrypted),
traditional EC/RSA PEM, or cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY`` files
(scrypt + NaCl secretbox), so a team can reuse keys it already has.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import nacl.exceptions
import nacl.secret
import nacl.utils
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from controller.errors import InputError

PublicKeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKeyType = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
KeyKind = Literal["ecdsa", "ed25519", "rsa"]
KEY_KINDS: tuple[KeyKind, ...] = ("ecdsa", "ed25519", "rsa")

MIN_RSA_BITS = 2048
COSIGN_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# cosign's parameters; reading refuses much larger ones so a hostile key file
# cannot make us allocate gigabytes.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024

PasswordSource = Callable[[], bytes | None]


class KeyFileError(InputError):
    """A key that cannot be used, naming where it came from and why."""


def keyid_of(public_key: PublicKeyType) -> str:
    """sha256 of the DER SubjectPublicKeyInfo: stable across PEM formatting."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _algorithm(key: PublicKeyType, source: str) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{source}: ECDSA curve {key.curve.name} is not supported (P-256)")
        return "ecdsa-p256-sha256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if key.key_size < MIN_RSA_BITS:
        raise KeyFileError(
            f"{source}: RSA key of {key.key_size} bits is too small ({MIN_RSA_BITS}+)"
        )
    return f"rsa{key.key_size}-sha256"


@dataclass(frozen=True)
class PublicKey:
    """A verifying key with its key id and algorithm name."""

    key: PublicKeyType = field(compare=False, repr=False)
    keyid: str
    algorithm: str

    @classmethod
    def of(cls, key: object, source: str) -> PublicKey:
        if not isinstance(
            key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)
        ):
            raise KeyFileError(
                f"{source}: {type(key).__name__} keys are not supported (ECDSA P-256, Ed25519, RSA)"
            )
        return cls(key=key, keyid=keyid_of(key), algorithm=_algorithm(key, source))

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` over ``data`` verifies; never raises for bad signatures."""
        key = self.key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            else:
                return _verify_rsa(key, signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


def _verify_rsa(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> bool:
    paddings: tuple[padding.AsymmetricPadding, ...] = (
        padding.PKCS1v15(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
    )
    for pad in paddings:
        try:
            key.verify(signature, data, pad, hashes.SHA256())
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


@dataclass(frozen=True)
class PrivateKey:
    """A signing key. RSA signs with PSS (salt = digest length), which every
    verifier here and in securesystemslib accepts."""

    key: PrivateKeyType = field(compare=False, repr=False)
    public: PublicKey

    @classmethod
    def of(cls, key: object, source: str) -> PrivateKey:
        if not isinstance(
            key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
        ):
            raise KeyFileError(
                f"{source}: {type(key).__name__} keys are not supported (ECDSA P-256, Ed25519, RSA)"
            )
        return cls(key=key, public=PublicKey.of(key.public_key(), source))

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, data: bytes) -> bytes:
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(data, pss, hashes.SHA256())

    def private_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, or cosign's encrypted format when a password is given
        (so ``cosign`` can use a key made by ``guard keygen``)."""
        der = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if password is None:
            return self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        return _cosign_encrypt(der, password)


def generate(kind: KeyKind = "ecdsa") -> PrivateKey:
    key: PrivateKeyType
    if kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise InputError(f"unknown key type {kind!r} (one of {', '.join(KEY_KINDS)})")
    return PrivateKey.of(key, "generated key")


def load_public_key(data: bytes | str, source: str) -> PublicKey:
    """A PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if b"-----BEGIN PUBLIC KEY-----" not in raw:
        hint = " (this is a private key: use the .pub file)" if b"PRIVATE KEY" in raw else ""
        raise KeyFileError(f"{source}: not a PEM public key{hint}")
    try:
        key = serialization.load_pem_public_key(raw.strip())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source}: cannot read public key: {_first_line(exc)}") from None
    return PublicKey.of(key, source)


def load_private_key(data: bytes, source: str, password: PasswordSource) -> PrivateKey:
    """A private key file; ``password`` is asked for only if the key is encrypted."""
    text = data.strip()
    label = _pem_label(text)
    if label is None:
        raise KeyFileError(f"{source}: not a PEM private key")
    if label in COSIGN_LABELS:
        der = _cosign_decrypt(
            _pem_body(text, label, source), _need_password(password, source), source
        )
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(
                f"{source}: decrypted key is unreadable: {_first_line(exc)}"
            ) from None
        return PrivateKey.of(key, source)
    if "PRIVATE KEY" not in label:
        raise KeyFileError(f"{source}: PEM block {label!r} is not a private key")
    secret = _need_password(password, source) if "ENCRYPTED" in label else None
    try:
        key = serialization.load_pem_private_key(text, password=secret)
    except TypeError as exc:  # encrypted traditional PEM without the ENCRYPTED label
        if secret is not None:
            raise KeyFileError(f"{source}: {_first_line(exc)}") from None
        return _load_with_password(text, source, _need_password(password, source))
    except (ValueError, UnsupportedAlgorithm) as exc:
        problem = "wrong password or corrupt key" if secret else _first_line(exc)
        raise KeyFileError(f"{source}: cannot read private key: {problem}") from None
    return PrivateKey.of(key, source)


def _load_with_password(text: bytes, source: str, secret: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(text, password=secret)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{source}: cannot read private key: wrong password") from None
    return PrivateKey.of(key, source)


def _need_password(password: PasswordSource, source: str) -> bytes:
    secret = password()
    if secret is None:
        raise KeyFileError(
            f"{source}: the key is encrypted: set GUARD_KEY_PASSWORD, pass --password-env VAR, "
            "or run in a terminal to be prompted"
        )
    return secret


def _first_line(exc: Exception) -> str:
    """The gist of a library error: its first sentence."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text.split(". ", 1)[0].rstrip(".")


def _pem_label(text: bytes) -> str | None:
    start = text.find(b"-----BEGIN ")
    if start < 0:
        return None
    end = text.find(b"-----", start + 11)
    if end < 0:
        return None
    return text[start + 11 : end].decode("ascii", "replace")


def _pem_body(text: bytes, label: str, source: str) -> bytes:
    begin = f"-----BEGIN {label}-----".encode()
    end = f"-----END {label}-----".encode()
    try:
        body = text.split(begin, 1)[1].split(end, 1)[0]
    except IndexError:
        raise KeyFileError(f"{source}: PEM block {label!r} has no END line") from None
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except ValueError:
        raise KeyFileError(f"{source}: PEM body is not base64") from None


# --------------------------------------------------------------------------- cosign format


def _scrypt_key(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=_MAX_SCRYPT_MEMORY + 1024 * 1024, dklen=32
    )


def _cosign_encrypt(plaintext: bytes, password: bytes) -> bytes:
    salt = os.urandom(32)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt_key(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    ciphertext = box.encrypt(plaintext, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode("ascii"),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode("ascii")},
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
    }
    body = base64.b64encode(json.dumps(document, separators=(",", ":")).encode())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = COSIGN_LABELS[0].encode()
    return (
        b"\n".join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"])
        + b"\n"
    )


def _cosign_decrypt(body: bytes, password: bytes, source: str) -> bytes:
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
        kdf_name, cipher_name = kdf["name"], cipher["name"]
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{source}: not a valid cosign encrypted key") from None
    if kdf_name != "scrypt" or cipher_name != "nacl/secretbox":
        raise KeyFileError(f"{source}: unsupported key encryption {kdf_name}/{cipher_name}")
    if (
        n < 2
        or n & (n - 1)
        or not 0 < r <= 32
        or not 0 < p <= 16
        or 128 * r * n > _MAX_SCRYPT_MEMORY
    ):
        raise KeyFileError(f"{source}: scrypt parameters N={n} r={r} p={p} are out of range")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError(f"{source}: secretbox nonce has the wrong length")
    box = nacl.secret.SecretBox(_scrypt_key(password, salt, n, r, p))
    try:
        return bytes(box.decrypt(ciphertext, nonce))
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"{source}: wrong password (the key could not be decrypted)") from None
