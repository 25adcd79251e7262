"""Sigstore bundles, verified offline against a trusted root given as data.

The cryptography is sigstore-python's (``sigstore.verify.Verifier``): the
signing certificate's chain to the root's certificate authority at the
signed time (the transparency log's integrated time or a signed RFC 3161
timestamp), the log entry's inclusion proof (checkpoint signed by the log's
key) or its signed inclusion promise, the certificate transparency SCT, and
the DSSE signature with the certificate's key. Nothing here fetches: the
verifier is built from the root alone, never from TUF, and DSSE verification
never asks the log.

The certificate's *identity* is not judged here (see ``keyless``): sigstore
is given a policy that accepts any identity, and guard matches the identity
structurally afterwards, so every mismatch gets its own reason.

sigstore (with the TUF, HTTP and RFC 3161 clients it loads) takes a large
part of a second to import; only a bundle or a trust with a trusted root
needs it, so it is imported on first use (``_sigstore``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from controller.errors import InputError
from controller.strict import StrictJSONError, loads

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_ROOT_CACHE = 16
_VERIFY_CACHE = 1024


class TrustedRootError(InputError):
    """A trusted root that cannot be used, naming where and why."""


@dataclass(frozen=True)
class _Sigstore:
    """The parts of sigstore guard uses, loaded once."""

    bundle: Any
    trusted_root: Any
    root_message: Any
    verifier: Any
    any_identity: Any


@functools.cache
def _sigstore() -> _Sigstore:
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import UnsafeNoOp
    from sigstore_models.trustroot.v1 import TrustedRoot as RootMessage

    # The identity is matched by guard after verification (``keyless``);
    # sigstore warns on every use of its accept-any policy, which would log
    # once per admission request.
    logging.getLogger("sigstore.verify.policy").setLevel(logging.ERROR)
    return _Sigstore(
        Bundle,
        TrustedRoot,
        RootMessage,
        Verifier,
        UnsafeNoOp,
    )


@functools.lru_cache(maxsize=_ROOT_CACHE)
def _root(text: str) -> Any:
    """The sigstore ``Verifier`` for a trusted root's JSON text (parsed once)."""
    library = _sigstore()
    try:
        document = loads(text.encode("utf-8"))
    except StrictJSONError as exc:
        raise TrustedRootError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
        raise TrustedRootError(f"mediaType must be {TRUSTED_ROOT_MEDIA_TYPE!r}")
    try:
        root = library.trusted_root(library.root_message.from_json(text))
        if not root.get_fulcio_certs():
            raise TrustedRootError("it names no certificate authority")
        return library.verifier(trusted_root=root)
    except TrustedRootError:
        raise
    except Exception as exc:  # the library's models raise many kinds
        raise TrustedRootError(_one_line(exc)) from None


def check_trusted_root(text: str, where: str) -> str:
    """The root's fingerprint (sha256 of its text) once it loads, or
    ``TrustedRootError`` naming ``where``."""
    try:
        _root(text)
    except TrustedRootError as exc:
        raise TrustedRootError(f"{where}: not a usable Sigstore trusted root: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verified:
    """A bundle that verified against a root: its signing certificate and
    the DSSE payload it covers."""

    certificate: x509.Certificate
    payload_type: str
    payload: bytes


@functools.lru_cache(maxsize=_VERIFY_CACHE)
def verify_bundle(raw: bytes, root_text: str) -> Verified | str:
    """Verify a bundle offline against one trusted root: the verified
    certificate and payload, or the reason it does not verify.

    Pure in its two arguments, hence cached: the same bundle comes with
    every request for its image.
    """
    library = _sigstore()
    try:
        verifier = _root(root_text)
    except TrustedRootError as exc:
        return f"the trusted root is not usable: {exc}"
    try:
        bundle = library.bundle.from_json(raw)
    except Exception as exc:
        return f"the bundle cannot be read: {_one_line(exc)}"
    try:
        payload_type, payload = verifier.verify_dsse(bundle, library.any_identity())
    except Exception as exc:
        return _one_line(exc)
    certificate = bundle.signing_certificate
    if not isinstance(certificate, x509.Certificate):
        return "the bundle has no signing certificate"
    return Verified(certificate, str(payload_type), bytes(payload))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
