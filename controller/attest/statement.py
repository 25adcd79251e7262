"""in-toto statements and the change-review predicate.

Statement v1 is what guard writes; v0.1 is accepted because cosign emits it.
The predicate type is pinned: a statement about anything else (provenance,
SBOM...) never counts as a review, whoever signed it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from controller.errors import InputError
from controller.policy.problems import validation_problems
from controller.strict import StrictJSONError, loads

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = (STATEMENT_V1, STATEMENT_V01)
CHANGE_REVIEW_PREDICATE = "https://guard.dev/attestation/change-review/v1"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


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


# --------------------------------------------------------------------------- predicate


class _Model(BaseModel):
    """Predicate models: camelCase, unknown fields rejected (a misspelt
    ``expiresAt`` must not silently mean "never expires")."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


Text = Annotated[str, Field(min_length=1, max_length=1024)]
# Ids and revisions are compared, so they carry no spaces: "  " == "  " must
# not make a stale approval current, and a padded id must not look new.
Token = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^\S+$")]
# A measurement is a number: strict, so "95" or true never pass a minimum,
# and finite (overflowing JSON numbers are refused before this, too).
Measure = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Person(_Model):
    """Someone who wrote or reviewed the change. ``id`` is the immutable id
    (``github:1234``); ``login`` is for display only and never compared."""

    id: Token
    login: Text
    kind: Literal["human", "bot"] = "human"


class Revision(_Model):
    git_commit: Token
    git_tree: Token | None = None


class Change(_Model):
    """The code review. ``headRevision`` is the last revision reviewed: squash
    and rebase merges build a commit nobody approved directly."""

    system: Text
    id: Text
    uri: str | None = None
    head_revision: Token


class Approval(_Model):
    reviewer: Person
    reviewed_revision: Token
    approved_at: AwareDatetime


class CheckRun(_Model):
    """A CI check. ``value``/``threshold`` carry measured numbers (coverage...)."""

    name: Text
    result: Literal["pass", "fail", "skip"]
    value: Measure | None = None
    threshold: Measure | None = None


class ChangeReview(_Model):
    """The change-review predicate (``https://guard.dev/attestation/change-review/v1``)."""

    repository: Text
    revision: Revision
    target_ref: Text
    change: Change
    authors: Annotated[list[Person], Field(min_length=1, max_length=256)]
    approvals: Annotated[list[Approval], Field(max_length=256)] = Field(default_factory=list)
    checks: Annotated[list[CheckRun], Field(max_length=256)] = Field(default_factory=list)
    attester: Text
    attested_at: AwareDatetime
    expires_at: AwareDatetime

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- statement


@dataclass(frozen=True)
class SubjectEntry:
    name: str
    digests: Mapping[str, str]

    @property
    def sha256(self) -> str | None:
        value = self.digests.get("sha256")
        return f"sha256:{value.lower()}" if isinstance(value, str) else None


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

    def change_review(self) -> ChangeReview:
        """The predicate as a change review, or ``StatementError`` saying why not."""
        if self.predicate_type != CHANGE_REVIEW_PREDICATE:
            raise StatementError(
                f"wrong predicate type {self.predicate_type!r}: a review attestation has "
                f"{CHANGE_REVIEW_PREDICATE}"
            )
        try:
            return ChangeReview.model_validate(self.predicate)
        except ValidationError as exc:
            problems = validation_problems(exc, prefix="predicate", limit=5)
            raise StatementError(
                "invalid change-review predicate: " + "; ".join(problems)
            ) from None


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


def peek_subject_digests(payload: bytes) -> tuple[str, ...]:
    """Subject digests of an unverified payload, for indexing only; never for trust."""
    try:
        return parse_statement(payload).subject_digests
    except StatementError:
        return ()


def build_statement(subjects: Sequence[tuple[str, str]], predicate: ChangeReview) -> bytes:
    """A Statement v1 over ``(name, sha256:hex)`` subjects, as UTF-8 JSON bytes."""
    if not subjects:
        raise StatementError("a statement needs at least one subject digest")
    entries = []
    for name, digest in subjects:
        hex_part = normalize_digest(digest).removeprefix("sha256:")
        entry: dict[str, Any] = {"digest": {"sha256": hex_part}}
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
