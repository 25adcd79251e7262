"""DSSE v1 envelopes: strict parsing, the pre-authentication encoding, signing.

A signature covers ``PAE(payloadType, payload)`` over the exact payload bytes
decoded from the envelope; nothing is re-serialized before it is verified.
Parsing is hostile-input parsing: size and signature count are capped before
any cryptography runs, duplicate JSON keys and non-canonical base64 are
rejected, and unknown fields are errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.errors import InputError
from controller.strict import StrictJSONError, loads

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"

# Matches ReviewAttestation.spec.envelope's limit, so anything that fits a
# custom resource also fits here and nothing larger is ever parsed.
MAX_ENVELOPE_BYTES = 256 * 1024
# An attester plus a few reviewers co-signing; more is an attempt to make the
# verifier burn CPU.
MAX_SIGNATURES = 16
MAX_KEYID_CHARS = 256

_STANDARD_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


class EnvelopeError(InputError):
    """An envelope that cannot be parsed; the message says which part and why."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a signature actually covers.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths in ASCII
    decimal bytes. Including the type stops a signature over one kind of
    document being replayed as another.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode_strict(text: str, field: str) -> bytes:
    """Decode canonical base64 (standard or URL-safe alphabet, padded).

    Non-canonical text (whitespace, missing padding, stray bits in the last
    character) is rejected: it lets two different envelope texts carry one
    signature, which defeats caching by envelope digest and auditing.
    """
    if _STANDARD_B64.match(text):
        altchars = None
    elif _URLSAFE_B64.match(text):
        altchars = b"-_"
    else:
        raise EnvelopeError(f"{field} is not base64 (unexpected characters)")
    try:
        value = base64.b64decode(text.encode("ascii"), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{field} is not valid base64 (bad length or padding)") from None
    if base64.b64encode(value, altchars=altchars).decode("ascii") != text:
        raise EnvelopeError(f"{field} is not canonical base64 (padding or trailing bits)")
    return value


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Signature:
    """One DSSE signature. ``keyid`` is only a hint: every trusted key is tried."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. ``digest`` is the sha256 of the exact envelope text."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]
    digest: str
    # The Sigstore bundle this envelope came in (its exact text), when it
    # came in one: its signature is verified with the bundle's certificate,
    # never with a trusted key (see ``keyless``).
    bundle: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def short_id(self) -> str:
        """A readable handle for reasons and logs."""
        return self.digest.removeprefix("sha256:")[:12]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_json(self) -> bytes:
        return serialize(self.payload_type, self.payload, self.signatures)


def serialize(payload_type: str, payload: bytes, signatures: Iterable[Signature]) -> bytes:
    """The envelope's JSON text, standard base64, as other DSSE tools write it."""
    document = {
        "payloadType": payload_type,
        "payload": _b64(payload),
        "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in signatures],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def build(payload_type: str, payload: bytes, signatures: Iterable[Signature] = ()) -> Envelope:
    """A new envelope whose digest is that of its serialized text."""
    signatures = tuple(signatures)
    raw = serialize(payload_type, payload, signatures)
    return Envelope(payload_type, payload, signatures, sha256_digest(raw))


def parse(raw: bytes | str) -> Envelope:
    """Parse an envelope's text, enforcing every structural limit first."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(
            f"envelope is {len(data)} bytes, larger than the {MAX_ENVELOPE_BYTES}-byte limit"
        )
    try:
        document = loads(data)
    except StrictJSONError as exc:
        raise EnvelopeError(f"envelope is not valid: {exc}") from None
    if not isinstance(document, dict):
        raise EnvelopeError("envelope must be a JSON object")
    if "mediaType" in document:
        return _from_bundle(document, data)
    return _envelope(document, sha256_digest(data))


# A Sigstore bundle carries one envelope and its verification material; the
# media types of bundle v0.1 to v0.3 (two spellings of v0.3 are in use).
BUNDLE_MEDIA_TYPES = (
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
)


def _from_bundle(document: dict[str, object], data: bytes) -> Envelope:
    """The DSSE envelope inside a Sigstore bundle, keeping the bundle's text
    for verification. The rest of the bundle is read by sigstore itself."""
    media_type = document.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        shown = media_type if isinstance(media_type, str) else type(media_type).__name__
        raise EnvelopeError(
            f"bundle mediaType {shown[:100]!a} is not a Sigstore bundle guard reads (v0.1 to v0.3)"
        )
    unknown = sorted(
        set(document) - {"mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"}
    )
    if unknown:
        raise EnvelopeError(f"bundle has unknown field(s): {', '.join(unknown)}")
    inner = document.get("dsseEnvelope")
    if not isinstance(inner, dict):
        raise EnvelopeError(
            "bundle carries no DSSE envelope (dsseEnvelope): a bundle over a bare message "
            "signature is not an attestation"
        )
    if not isinstance(document.get("verificationMaterial"), dict):
        raise EnvelopeError("bundle field verificationMaterial must be an object")
    envelope = _envelope(inner, sha256_digest(data), "bundle dsseEnvelope")
    if len(envelope.signatures) != 1:
        raise EnvelopeError("a bundle's DSSE envelope must have exactly one signature")
    return Envelope(
        envelope.payload_type, envelope.payload, envelope.signatures, envelope.digest, data
    )


def _envelope(document: dict[str, object], digest: str, what: str = "envelope") -> Envelope:
    unknown = sorted(set(document) - {"payloadType", "payload", "signatures"})
    if unknown:
        raise EnvelopeError(f"{what} has unknown field(s): {', '.join(unknown)}")
    payload_type = document.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise EnvelopeError("envelope field payloadType must be a non-empty string")
    payload_text = document.get("payload")
    if not isinstance(payload_text, str):
        raise EnvelopeError("envelope field payload must be a base64 string")
    payload = b64decode_strict(payload_text, "payload")
    raw_signatures = document.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise EnvelopeError("envelope field signatures must be a non-empty list")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise EnvelopeError(
            f"envelope has {len(raw_signatures)} signatures, more than the limit of "
            f"{MAX_SIGNATURES}"
        )
    signatures = tuple(_signature(item, i) for i, item in enumerate(raw_signatures))
    return Envelope(payload_type, payload, signatures, digest)


def _signature(item: object, index: int) -> Signature:
    where = f"signatures[{index}]"
    if not isinstance(item, dict):
        raise EnvelopeError(f"{where} must be an object")
    unknown = sorted(set(item) - {"keyid", "sig"})
    if unknown:
        raise EnvelopeError(f"{where} has unknown field(s): {', '.join(unknown)}")
    keyid = item.get("keyid", "")
    if not isinstance(keyid, str) or len(keyid) > MAX_KEYID_CHARS:
        raise EnvelopeError(f"{where}.keyid must be a string of at most {MAX_KEYID_CHARS} chars")
    sig_text = item.get("sig")
    if not isinstance(sig_text, str) or not sig_text:
        raise EnvelopeError(f"{where}.sig must be a non-empty base64 string")
    return Signature(sig=b64decode_strict(sig_text, f"{where}.sig"), keyid=keyid)
