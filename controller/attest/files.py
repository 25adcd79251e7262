"""Envelope files: a DSSE envelope as JSON, or a ReviewAttestation holding one.

The resource form is what ``kubectl apply`` takes; the envelope inside it is
kept as the exact text that was written, so the bytes verified are the bytes
signed and duplicate keys stay detectable.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from controller.errors import InputError
from controller.policy.documents import API_VERSION, ReviewAttestation
from controller.policy.loader import DocumentError, parse_documents


def read_envelope(path: str | Path) -> bytes:
    """The envelope bytes from a DSSE JSON file or a ReviewAttestation document."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read envelope: {exc.strerror}") from None
    if raw.lstrip().startswith(b"{"):
        return raw.strip()
    try:
        documents = parse_documents(raw.decode("utf-8"), str(path))
    except (UnicodeDecodeError, DocumentError) as exc:
        raise InputError(
            f"{path}: neither a DSSE envelope nor a ReviewAttestation: {exc}"
        ) from None
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise InputError(f"{path}: not a ReviewAttestation: nested too deeply") from None
    found = [d.document for d in documents if isinstance(d.document, ReviewAttestation)]
    if len(found) != 1:
        raise InputError(f"{path}: expected one ReviewAttestation, found {len(found)}")
    return found[0].spec.envelope.strip().encode("utf-8")


def is_resource(path: str | Path) -> bool:
    """Whether an existing envelope file is in the ReviewAttestation form."""
    try:
        return not Path(path).read_bytes().lstrip().startswith(b"{")
    except OSError:
        return False


def resource_text(name: str, envelope: bytes) -> bytes:
    """A ReviewAttestation document holding the envelope text."""
    document = {
        "apiVersion": API_VERSION,
        "kind": "ReviewAttestation",
        "metadata": {"name": name},
        "spec": {"envelope": envelope.decode("utf-8")},
    }
    text = yaml.safe_dump(document, sort_keys=False, width=1 << 20)
    return text.rstrip("\n").encode("utf-8")
