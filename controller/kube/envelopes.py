"""Where the webhook finds candidate envelopes for an image digest.

Three places: the ``ReviewAttestation`` index (built from the watch stream,
keyed by the subject digests the envelope *claims*), the workload's
``guard.dev/attestations`` annotation, and, only when both miss, one bounded
read of the API in the workload's namespace (see ``fallback``). Nothing found
here is trusted: the verifier checks signatures, subjects, expiry and
separation of duties on every request. Indexing only decides which envelopes
are worth verifying.

Namespaces are not a trust boundary for attestations: an envelope is
self-authenticating (a trusted key signed it), it names image digests, not
namespaces, and anyone who may deploy can carry any envelope in the
annotation anyway. So a ReviewAttestation in any watched namespace counts for
a workload in any other. But namespaces do decide the *order* in which
candidates are examined: the verifier examines a bounded number per digest,
and anyone allowed to create ReviewAttestations somewhere can claim any
digest. Candidates from the workload's own namespace come first, then its
annotation, then other namespaces, so a flood of bogus claims from one
namespace cannot push another namespace's real attestation out of view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.attest import dsse
from controller.attest.provenance import peek_source_commits
from controller.attest.statement import peek_subject_keys
from controller.errors import InputError
from controller.kube.subjects import annotations_of
from controller.strict import StrictJSONError, loads

ANNOTATION = "guard.dev/attestations"
# An annotation may carry a few envelopes (one per image of a multi-container
# pod); more is a way to make admission burn CPU.
MAX_ANNOTATION_ENVELOPES = 16


@dataclass(frozen=True)
class IndexedEnvelope:
    """One envelope as the index holds it: where it came from and its exact text."""

    source: str  # "ReviewAttestation ns/name" or "annotation"
    text: bytes
    digests: tuple[str, ...]
    # The ReviewAttestation's namespace, which orders candidates (never trust).
    namespace: str | None = None


def index_entries(
    envelope_text: str, source: str, namespace: str | None = None
) -> tuple[dict[str, IndexedEnvelope], str | None]:
    """Index keys (every claimed subject digest: image and file digests, and
    the ``gitCommit``/``gitTree`` revisions reviews and source summaries
    name) for one envelope, or why none.

    The envelope is parsed with the verifier's own strict parser so that the
    index never holds something the verifier would refuse to read.
    """
    raw = envelope_text.encode("utf-8")
    try:
        envelope = dsse.parse(raw)
    except InputError as exc:
        return {}, str(exc)
    if envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        return {}, f"payloadType {envelope.payload_type!r} is not {dsse.IN_TOTO_PAYLOAD_TYPE}"
    digests = peek_subject_keys(envelope.payload)
    if not digests:
        return {}, (
            "the statement names no sha256, gitCommit or gitTree subject digest (or is not an "
            "in-toto statement)"
        )
    entry = IndexedEnvelope(source=source, text=raw, digests=tuple(digests), namespace=namespace)
    return {digest: entry for digest in digests}, None


def annotation_envelopes(kind: str, obj: Mapping[str, Any] | None) -> tuple[list[bytes], list[str]]:
    """Envelopes carried inline by the object, and problems found reading them.

    The annotation is a JSON list whose items are envelopes, either as JSON
    objects or as JSON strings holding the envelope text. Problems are
    reported, never fatal: a bad annotation only means no evidence from it.
    """
    texts: list[bytes] = []
    problems: list[str] = []
    for found in annotations_of(kind, obj):
        value = found.get(ANNOTATION)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"annotation {ANNOTATION} must be a string")
            continue
        try:
            items = loads(value)
        except StrictJSONError as exc:
            problems.append(f"annotation {ANNOTATION} is not valid JSON: {exc}")
            continue
        if not isinstance(items, list):
            items = [items]
        if len(items) > MAX_ANNOTATION_ENVELOPES:
            problems.append(
                f"annotation {ANNOTATION} holds {len(items)} envelopes; only the first "
                f"{MAX_ANNOTATION_ENVELOPES} are read"
            )
            items = items[:MAX_ANNOTATION_ENVELOPES]
        for position, item in enumerate(items):
            if isinstance(item, str):
                texts.append(item.encode("utf-8"))
            elif isinstance(item, dict):
                texts.append(json.dumps(item, separators=(",", ":")).encode("utf-8"))
            else:
                problems.append(
                    f"annotation {ANNOTATION}[{position}] must be an envelope object or string"
                )
    unique = list(dict.fromkeys(texts))
    return unique, problems


@dataclass(frozen=True)
class Candidates:
    """Candidate envelope texts per digest for one request, and how they were found."""

    by_digest: Mapping[str, tuple[bytes, ...]]
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def for_digest(self, digest: str) -> Sequence[bytes]:
        """The verifier's ``EnvelopeSource`` interface."""
        return self.by_digest.get(digest, ())

    def missing(self, digests: Iterable[str]) -> list[str]:
        return [d for d in digests if not self.by_digest.get(d)]


def gather(
    digests: Iterable[str],
    indexed: Mapping[str, Iterable[IndexedEnvelope]],
    inline: Sequence[bytes],
    notes: Sequence[str] = (),
    *,
    namespace: str | None = None,
) -> Candidates:
    """Candidates per digest from the index plus every inline envelope.

    Inline envelopes are offered for every digest (the verifier matches
    subjects itself); indexed ones only for the digests they claim. Order:
    the workload's ``namespace``, its annotation, then other namespaces.
    """
    by_digest: dict[str, tuple[bytes, ...]] = {}
    sources: dict[str, tuple[str, ...]] = {}
    for digest in dict.fromkeys(digests):
        texts: dict[bytes, str] = {}
        entries = list(indexed.get(digest, ()))
        for entry in entries:
            if entry.namespace == namespace:
                texts.setdefault(entry.text, entry.source)
        for text in inline:
            texts.setdefault(text, "annotation")
        for entry in entries:
            texts.setdefault(entry.text, entry.source)
        by_digest[digest] = tuple(texts)
        sources[digest] = tuple(texts.values())
    return Candidates(by_digest=by_digest, sources=sources, notes=tuple(notes))


def merge(
    first: Candidates, extra: Mapping[str, Iterable[IndexedEnvelope]], note: str
) -> Candidates:
    """Add envelopes found by the fallback read to the candidates."""
    by_digest = {d: list(texts) for d, texts in first.by_digest.items()}
    sources = {d: list(s) for d, s in first.sources.items()}
    for digest, entries in extra.items():
        if digest not in by_digest:
            continue
        for entry in entries:
            if entry.text not in by_digest[digest]:
                by_digest[digest].append(entry.text)
                sources[digest].append(entry.source)
    return Candidates(
        by_digest={d: tuple(t) for d, t in by_digest.items()},
        sources={d: tuple(s) for d, s in sources.items()},
        notes=(*first.notes, note) if note else first.notes,
    )


def combine(first: Candidates, more: Candidates) -> Candidates:
    """Candidates for more keys (the commits build provenance names) added
    to those already gathered."""
    return Candidates(
        by_digest={**first.by_digest, **more.by_digest},
        sources={**first.sources, **more.sources},
        notes=(*first.notes, *more.notes),
    )


def built_from(candidates: Candidates) -> list[str]:
    """The commits (``gitCommit:HEX``) that build provenance among the
    candidates names, not yet gathered: whose reviews the chain will ask for."""
    texts = [t for found in candidates.by_digest.values() for t in found]
    return [c for c in peek_source_commits(texts) if c not in candidates.by_digest]
