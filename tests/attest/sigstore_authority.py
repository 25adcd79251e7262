"""A Sigstore instance of the tests' own, made with ``cryptography``: a
certificate authority (root), a certificate transparency log key, a
transparency log key; bundles (v0.3, Rekor v1 ``dsse`` entries) with an
embedded SCT, an inclusion proof with a signed checkpoint and a signed
inclusion promise, and the matching trusted root.

Real bundles cannot be re-signed, so the negative cases that need a
certificate or a log entry of a chosen shape use this authority: a
certificate used outside its validity at the signed time, a log entry signed
by another log, a certificate from another authority. Every piece follows
the formats sigstore verifies (RFC 6962 SCTs, RFC 6962 Merkle leaves, C2SP
signed notes), so a bundle made here verifies exactly as a real one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.attest import dsse, fulcio

ISSUER = "https://token.actions.githubusercontent.com"
_SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _log_id(public: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_der(public)).digest()


def _utf8(text: str) -> bytes:
    """A DER UTF8String, as Fulcio encodes its newer extensions."""
    data = text.encode()
    if len(data) < 128:
        return bytes([0x0C, len(data)]) + data
    return bytes([0x0C, 0x81, len(data)]) + data


def _octet_string(data: bytes) -> bytes:
    if len(data) < 128:
        return bytes([0x04, len(data)]) + data
    if len(data) < 256:
        return bytes([0x04, 0x81, len(data)]) + data
    return bytes([0x04, 0x82]) + struct.pack("!H", len(data)) + data


def _usage(*, authority: bool) -> x509.KeyUsage:
    """A CA signs certificates; a signing certificate signs artifacts, nothing else."""
    flags = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(
        digital_signature=not authority, key_cert_sign=authority, crl_sign=authority, **flags
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Authority:
    """One Sigstore instance: CA, CT log and transparency log keys."""

    start: dt.datetime
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    log_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    name: str = "guard tests"

    def __post_init__(self) -> None:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} root"),
            ]
        )
        public = self.ca_key.public_key()
        self.root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start - dt.timedelta(days=1))
            .not_valid_after(self.start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_usage(authority=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    # ------------------------------------------------------------------ the root

    def trusted_root(self) -> str:
        start = (self.start - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_der(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": _b64(_log_id(key.public_key()))},
            }

        document = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.log_key, "https://rekor.guard.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name} root"},
                    "uri": "https://fulcio.guard.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.root.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log(self.ct_key, "https://ctfe.guard.test")],
            "timestampAuthorities": [],
        }
        return json.dumps(document)

    # ------------------------------------------------------------------ certificates

    def certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        subject: str,
        not_before: dt.datetime,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        extensions: dict[str, str] | None = None,
    ) -> x509.Certificate:
        """A Fulcio-style code-signing certificate with an embedded SCT."""
        facts = {fulcio.ISSUER: ISSUER, **(extensions or {})}
        serial = x509.random_serial_number()

        def builder() -> x509.CertificateBuilder:
            made = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.root.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(not_before)
                .not_valid_after(not_before + lifetime)
                .add_extension(_usage(authority=False), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                    critical=False,
                )
                .add_extension(
                    x509.SubjectAlternativeName([x509.UniformResourceIdentifier(subject)]),
                    critical=True,
                )
            )
            for oid, value in sorted(facts.items()):
                made = made.add_extension(
                    x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), _utf8(value)),
                    critical=False,
                )
            return made

        # The SCT signs the certificate without its SCT list (RFC 6962 3.2):
        # a certificate made without it has exactly that TBSCertificate.
        pre = builder().sign(self.ca_key, hashes.SHA256())
        sct = self._sct(pre.tbs_certificate_bytes, not_before)
        final = (
            builder()
            .add_extension(x509.UnrecognizedExtension(_SCT_OID, _octet_string(sct)), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        assert final.tbs_precertificate_bytes == pre.tbs_certificate_bytes
        return final

    def _sct(self, tbs: bytes, when: dt.datetime) -> bytes:
        timestamp = int(when.timestamp() * 1000)
        issuer_key_hash = _log_id(self.ca_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + struct.pack("!I", len(tbs))[1:]
            + tbs
            + struct.pack("!H", 0)
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            bytes([0])
            + _log_id(self.ct_key.public_key())
            + struct.pack("!QH", timestamp, 0)
            + bytes([4, 3])
            + struct.pack("!H", len(signature))
            + signature
        )
        one = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(one)) + one

    # ------------------------------------------------------------------ bundles

    def bundle(
        self,
        statement: dict[str, Any],
        *,
        subject: str = "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main",
        issued: dt.datetime | None = None,
        integrated: dt.datetime | None = None,
        extensions: dict[str, str] | None = None,
        log: Authority | None = None,
    ) -> bytes:
        """A bundle over ``statement``: certificate issued at ``issued``,
        logged (the signed time) at ``integrated``; ``log`` signs the entry
        when another instance's log should (default: this one's)."""
        issued = issued or self.start
        integrated = integrated or issued + dt.timedelta(minutes=1)
        log_key = (log or self).log_key
        key = _key()
        certificate = self.certificate(key, subject, issued, extensions=extensions)
        payload = json.dumps(statement).encode()
        signature = key.sign(
            dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256())
        )
        envelope = {
            "payloadType": dsse.IN_TOTO_PAYLOAD_TYPE,
            "payload": _b64(payload),
            "signatures": [{"sig": _b64(signature)}],
        }
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = json.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                    },
                    "payloadHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(payload).hexdigest(),
                    },
                    "signatures": [{"signature": _b64(signature), "verifier": _b64(pem)}],
                },
            },
            separators=(",", ":"),
        ).encode()
        log_id = _log_id(log_key.public_key())
        integrated_time = int(integrated.timestamp())
        promise = json.dumps(
            {
                "body": _b64(body),
                "integratedTime": integrated_time,
                "logID": log_id.hex(),
                "logIndex": 0,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        root_hash = hashlib.sha256(b"\x00" + body).digest()  # a tree of one leaf
        note = f"rekor.guard.test - 1\n1\n{_b64(root_hash)}\n"
        note_signature = log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + f"\n\u2014 rekor.guard.test {_b64(log_id[:4] + note_signature)}\n"
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {
                    "rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))
                },
                "tlogEntries": [
                    {
                        "logIndex": "0",
                        "logId": {"keyId": _b64(log_id)},
                        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                        "integratedTime": str(integrated_time),
                        "inclusionPromise": {
                            "signedEntryTimestamp": _b64(
                                log_key.sign(promise, ec.ECDSA(hashes.SHA256()))
                            )
                        },
                        "inclusionProof": {
                            "logIndex": "0",
                            "rootHash": _b64(root_hash),
                            "treeSize": "1",
                            "hashes": [],
                            "checkpoint": {"envelope": checkpoint},
                        },
                        "canonicalizedBody": _b64(body),
                    }
                ],
            },
            "dsseEnvelope": envelope,
        }
        return json.dumps(bundle).encode()
