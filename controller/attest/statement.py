"""in-toto statements and the change-review predicate.

Statement v1 is what guard writes; v0.1 is accepted because cosign emits it.
The predicate type is pinned: a statement about anything else (provenance,
SBOM...) never counts as a review, whoever signed it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, ValidationError

from controller.attest import dsse
from controller.attest.files import read_envelope
from controller.errors import InputError
from controller.policy.identity import (
    GitRef,
    Login,
    PrincipalId,
    Repository,
    ascii_lower,
    match_key,
    not_one_of,
)
from controller.policy.problems import validation_problems
from controller.policy.strictmodel import Strict
from controller.strict import StrictJSONError, loads

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = (STATEMENT_V1, STATEMENT_V01)
CHANGE_REVIEW_PREDICATE = "https://guard.dev/attestation/change-review/v1"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# A source revision: SHA-1 (40) or SHA-256 (64) object names.
_REVISION = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# Subjects that name a source revision rather than an artifact: SLSA build
# provenance links the images built from it to it.
SOURCE_ALGORITHMS = ("gitCommit", "gitTree")


class StatementError(InputError, ValueError):
    """A payload that is not an acceptable statement, with the reason."""


def normalize_digest(value: str) -> str:
    """``sha256:<64 lower-case hex>``, or ``StatementError``."""
    text = value.strip()
    algorithm, _, hex_part = text.partition(":")
    candidate = f"{algorithm.lower()}:{hex_part.lower()}"
    if not _DIGEST.match(candidate):
        raise StatementError(f"{value!r} is not a sha256 digest (sha256:<64 hex characters>)")
    return candidate


def normalize_revision(value: str, algorithm: str = "gitCommit") -> str:
    """``gitCommit:<40 or 64 lower-case hex>`` (or ``gitTree:``), or ``StatementError``."""
    text = value.strip().lower()
    if algorithm not in SOURCE_ALGORITHMS or not _REVISION.match(text):
        raise StatementError(
            f"{value!r} is not a full {algorithm} (40 or 64 hexadecimal characters)"
        )
    return f"{algorithm}:{text}"


def normalize_subject(value: str) -> str:
    """A subject key: ``sha256:HEX`` for an artifact, ``gitCommit:HEX`` or
    ``gitTree:HEX`` for a source revision; ``StatementError`` otherwise."""
    algorithm, sep, rest = value.strip().partition(":")
    if sep and algorithm in SOURCE_ALGORITHMS:
        return normalize_revision(rest, algorithm)
    return normalize_digest(value)


def subject_key(algorithm: str, value: str) -> str | None:
    """The key under which a statement's ``digest`` entry is judged and
    indexed, or None for an algorithm guard does not compare."""
    try:
        return normalize_subject(f"{algorithm}:{value}") if algorithm else None
    except StatementError:
        return None


# --------------------------------------------------------------------------- predicate


class _Model(Strict):
    """Predicate models, as strict as guard's documents: camelCase only,
    unknown fields rejected (a misspelt ``expiresAt`` or an ``expires_at``
    must not silently mean "never expires"), no string or boolean coerced
    into a number, no number into a timestamp."""


def _no_control(value: Any) -> Any:
    """Free text that ends up in reasons and logs: no control or invisible
    format characters, so it can neither forge a line nor hide a difference."""
    if isinstance(value, str):
        for position, character in enumerate(value):
            if unicodedata.category(character) in ("Cc", "Cf"):
                raise ValueError(
                    f"{value!a} contains a control or invisible character at position {position}"
                )
    return value


Text = Annotated[str, Field(min_length=1, max_length=1024), BeforeValidator(_no_control)]
# Ids and revisions are compared, so they are one visible ASCII token: "  "
# == "  " must not make a stale approval current, and a padded or look-alike
# id must not look new.
Token = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[!-~]+$")]
# A measurement is a number: strict, so "95" or true never pass a minimum,
# and finite (overflowing JSON numbers are refused before this, too).
Measure = Annotated[float, Field(allow_inf_nan=False)]

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# Far enough from datetime's limits that adding a clock skew never overflows.
_YEARS = (1970, 9000)


def _timestamp(value: Any) -> Any:
    """An RFC 3339 timestamp with a zone, as text; numbers (epoch seconds, or
    digits in a string) are refused: ``"expiresAt": 99999999999`` is not a date."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!a} is not a valid date and time") from None
    else:
        shown = f"{value!a}" if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(
            f"{shown} is not an RFC 3339 timestamp: write it like 2024-05-01T12:00:00Z"
        )
    if parsed.tzinfo is None:
        raise ValueError("a timestamp needs a time zone (Z or +HH:MM)")
    if not _YEARS[0] <= parsed.year <= _YEARS[1]:
        raise ValueError(f"year {parsed.year} is out of range ({_YEARS[0]}-{_YEARS[1]})")
    return parsed


Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp)]


def _is(choices: tuple[str, ...], what: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError(not_one_of(value, choices, what))

    return BeforeValidator(check)


class Person(_Model):
    """Someone who wrote or reviewed the change. ``id`` is the immutable id
    (``github:1234``); ``login`` is for display (and bot detection), never
    compared as an identity."""

    id: PrincipalId
    login: Login
    kind: Annotated[Literal["human", "bot"], _is(("human", "bot"), "a kind of person")] = "human"


class Revision(_Model):
    git_commit: Token
    git_tree: Token | None = None


class Change(_Model):
    """The code review. ``headRevision`` is the last revision reviewed: squash
    and rebase merges build a commit nobody approved directly."""

    system: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
    id: Token
    uri: Token | None = None
    head_revision: Token


class Approval(_Model):
    reviewer: Person
    reviewed_revision: Token
    approved_at: Timestamp


class CheckRun(_Model):
    """A CI check. ``value``/``threshold`` carry measured numbers (coverage...)."""

    name: Text
    result: Annotated[
        Literal["pass", "fail", "skip"], _is(("pass", "fail", "skip"), "a check result")
    ]
    value: Measure | None = None
    threshold: Measure | None = None


class ChangeReview(_Model):
    """The change-review predicate (``https://guard.dev/attestation/change-review/v1``)."""

    repository: Repository
    revision: Revision
    target_ref: GitRef
    change: Change
    authors: Annotated[list[Person], Field(min_length=1, max_length=256)]
    approvals: Annotated[list[Approval], Field(max_length=256)] = Field(default_factory=list)
    checks: Annotated[list[CheckRun], Field(max_length=256)] = Field(default_factory=list)
    attester: Token
    attested_at: Timestamp
    expires_at: Timestamp

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def read_change_review(data: Any, where: str = "predicate") -> ChangeReview:
    """Validate a predicate, or ``StatementError`` naming each bad field."""
    try:
        return ChangeReview.model_validate(data)
    except ValidationError as exc:
        raise StatementError(
            f"invalid change-review predicate: {validation_problems(ChangeReview, exc, prefix=where, limit=5)}"
        ) from None


def new_review(data: Any, where: str) -> ChangeReview:
    """The predicate ``guard attest review`` is about to sign, or ``InputError``
    in one line: every bad field (an id without its system, ``targetRef:
    main``, a number for ``expiresAt``...) and every reason it could never
    count (see ``check_new_review``)."""
    try:
        review = read_change_review(data)
    except StatementError as exc:
        raise InputError(f"{where}: {exc}") from None
    check_new_review(review)
    return review


def check_new_review(review: ChangeReview) -> None:
    """Refuse to attest a review that could never count as written.

    ``guard attest review`` calls this before signing: an approval by an
    author (same id, or the same login under another id) never counts, and
    an attestation that expires before it was made is a mistake. Raises
    ``InputError`` with every problem in one line.
    """
    problems: list[str] = []
    author_ids = {match_key(a.id): a for a in review.authors}
    author_logins = {ascii_lower(a.login): a for a in review.authors}
    for index, approval in enumerate(review.approvals):
        reviewer = approval.reviewer
        author = author_ids.get(match_key(reviewer.id)) or author_logins.get(
            ascii_lower(reviewer.login)
        )
        if author is not None:
            problems.append(
                f"approvals[{index}]: {reviewer.login} ({reviewer.id}) is also an author of the "
                f"change ({author.login}, {author.id}): an author's approval never counts; ask "
                "someone who did not write the change to review it"
            )
    if review.expires_at <= review.attested_at:
        problems.append(
            f"expiresAt {utc(review.expires_at)} is not after attestedAt "
            f"{utc(review.attested_at)}: give a positive expiry such as 30d"
        )
    if problems:
        raise InputError("refusing to attest: " + "; ".join(problems))


# --------------------------------------------------------------------------- statement


@dataclass(frozen=True)
class SubjectEntry:
    name: str
    digests: Mapping[str, str]

    @property
    def sha256(self) -> str | None:
        value = self.digests.get("sha256")
        return f"sha256:{value.lower()}" if isinstance(value, str) else None

    @property
    def keys(self) -> tuple[str, ...]:
        """Every digest guard compares: sha256, gitCommit, gitTree."""
        found = (
            subject_key(a, v)
            for a, v in self.digests.items()
            if a == "sha256" or a in SOURCE_ALGORITHMS
        )
        return tuple(k for k in found if k is not None)


@dataclass(frozen=True)
class Statement:
    """A parsed statement; the predicate stays raw until its type is checked."""

    type: str
    predicate_type: str
    subjects: tuple[SubjectEntry, ...]
    predicate: Any

    @property
    def subject_digests(self) -> tuple[str, ...]:
        return tuple(s.sha256 for s in self.subjects if s.sha256)

    @functools.cached_property
    def subject_keys(self) -> tuple[str, ...]:
        """Artifact digests and source revisions, as ``normalize_subject`` spells them
        (computed once: every check of every request asks)."""
        return tuple(dict.fromkeys(k for s in self.subjects for k in s.keys))

    def change_review(self) -> ChangeReview:
        """The predicate as a change review, or ``StatementError`` saying why not."""
        if self.predicate_type != CHANGE_REVIEW_PREDICATE:
            raise StatementError(
                f"wrong predicate type {self.predicate_type!r}: a review attestation has "
                f"{CHANGE_REVIEW_PREDICATE}"
            )
        return read_change_review(self.predicate)


def parse_statement(payload: bytes) -> Statement:
    """Parse the exact payload bytes that were signed."""
    try:
        document = loads(payload)
    except StrictJSONError as exc:
        raise StatementError(f"payload is not a valid statement: {exc}") from None
    if not isinstance(document, dict):
        raise StatementError("payload is not a statement (not a JSON object)")
    statement_type = document.get("_type")
    if statement_type not in STATEMENT_TYPES:
        raise StatementError(
            f"statement _type {statement_type!r} is not an in-toto Statement v1 or v0.1"
        )
    predicate_type = document.get("predicateType")
    if not isinstance(predicate_type, str):
        raise StatementError("statement has no predicateType")
    raw_subjects = document.get("subject")
    if not isinstance(raw_subjects, list) or not raw_subjects:
        raise StatementError("statement has no subject")
    subjects = []
    for index, item in enumerate(raw_subjects):
        digests = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
        ):
            raise StatementError(f"statement subject[{index}] has no digest map")
        name = item.get("name", "")
        subjects.append(SubjectEntry(name=name if isinstance(name, str) else "", digests=digests))
    return Statement(
        type=statement_type,
        predicate_type=predicate_type,
        subjects=tuple(subjects),
        predicate=document.get("predicate"),
    )


def peek_subject_keys(payload: bytes) -> tuple[str, ...]:
    """Every subject key (digests and revisions) of an unverified payload,
    for indexing only; never for trust."""
    try:
        return parse_statement(payload).subject_keys
    except StatementError:
        return ()


def build_statement(subjects: Sequence[tuple[str, str]], predicate: ChangeReview) -> bytes:
    """A Statement v1 over ``(name, sha256:hex)`` or ``(name, gitCommit:hex)``
    subjects, as UTF-8 JSON bytes."""
    if not subjects:
        raise StatementError("a statement needs at least one subject digest")
    entries = []
    for name, digest in subjects:
        algorithm, _, hex_part = normalize_subject(digest).partition(":")
        entry: dict[str, Any] = {"digest": {algorithm: hex_part}}
        if name:
            entry = {"name": name, **entry}
        entries.append(entry)
    document = {
        "_type": STATEMENT_V1,
        "subject": entries,
        "predicateType": CHANGE_REVIEW_PREDICATE,
        "predicate": predicate.to_json_dict(),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode("utf-8")


def utc(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as timestamps are written in statements."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_names_in_file(path: Path) -> frozenset[str]:
    """The CI check names an attestation file carries, unverified: for
    ``guard policy lint`` to compare with ``review.requiredChecks``. A file
    that cannot be read carries none (the policy tests report it)."""
    try:
        statement = parse_statement(dsse.parse(read_envelope(path)).payload)
    except (InputError, StatementError):
        return frozenset()
    predicate = statement.predicate
    checks = predicate.get("checks") if isinstance(predicate, dict) else None
    if not isinstance(checks, list):
        return frozenset()
    return frozenset(
        c["name"] for c in checks if isinstance(c, dict) and isinstance(c.get("name"), str)
    )
