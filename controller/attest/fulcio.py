"""What a Fulcio certificate says about who signed: issuer, subject, and the
GitHub Actions facts Fulcio copies from the workflow's OIDC token.

The extensions under 1.3.6.1.4.1.57264.1 are Fulcio's (see Fulcio's
``docs/oid-info.md``): the first ones (.1 to .6) hold raw strings, the later
ones (.8 onwards) a DER UTF8String. Only what guard compares is read; a value
that is not a well-formed UTF8String is treated as absent, which can only
make a match fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

_FULCIO = "1.3.6.1.4.1.57264.1."
ISSUER_V1 = _FULCIO + "1"
ISSUER = _FULCIO + "8"
BUILD_SIGNER_URI = _FULCIO + "9"
BUILD_SIGNER_DIGEST = _FULCIO + "10"
RUNNER_ENVIRONMENT = _FULCIO + "11"
SOURCE_REPOSITORY_URI = _FULCIO + "12"
SOURCE_REPOSITORY_DIGEST = _FULCIO + "13"
SOURCE_REPOSITORY_REF = _FULCIO + "14"
SOURCE_REPOSITORY_ID = _FULCIO + "15"
SOURCE_REPOSITORY_OWNER_ID = _FULCIO + "17"
BUILD_CONFIG_URI = _FULCIO + "18"
BUILD_TRIGGER = _FULCIO + "20"

_UTF8_STRING = 0x0C


def _der_utf8(value: bytes) -> str | None:
    """The text of a DER UTF8String, or None if it is not exactly one."""
    if len(value) < 2 or value[0] != _UTF8_STRING:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(value) < 2 + count:
            return None
        length = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class FulcioIdentity:
    """The identity a signing certificate was issued to.

    ``extensions`` maps each Fulcio OID guard reads to its text.
    """

    issuer: str | None
    subjects: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()

    def get(self, oid: str) -> str | None:
        return dict(self.extensions).get(oid)

    @property
    def short(self) -> str:
        """A readable name for reasons: the subject and the issuer."""
        subject = self.subjects[0] if self.subjects else "(no subject)"
        return f"{subject} (issuer {self.issuer or 'unknown'})"


def identity_of(certificate: x509.Certificate) -> FulcioIdentity:
    """Read the issuer, subjects and Fulcio extensions of a certificate."""
    found: dict[str, str] = {}
    issuer_v1: str | None = None
    for extension in certificate.extensions:
        oid = extension.oid.dotted_string
        if not oid.startswith(_FULCIO) or not isinstance(
            extension.value, x509.UnrecognizedExtension
        ):
            continue
        raw = extension.value.value
        if oid == ISSUER_V1:
            try:
                issuer_v1 = raw.decode("utf-8")
            except UnicodeDecodeError:
                issuer_v1 = None
            continue
        text = _der_utf8(raw)
        if text is not None:
            found[oid] = text
    subjects: list[str] = []
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        subjects.extend(names.get_values_for_type(x509.UniformResourceIdentifier))
        subjects.extend(names.get_values_for_type(x509.RFC822Name))
    issuer = found.get(ISSUER, issuer_v1)
    return FulcioIdentity(issuer, tuple(subjects), tuple(sorted(found.items())))
