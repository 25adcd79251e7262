"""SLSA source verification summaries: a source platform's word on a commit.

A verification summary (``https://slsa.dev/verification_summary/v1``) whose
subject is a commit says that a verifier checked the commit's source
controls (branch protection, required review, history) and which SLSA
source level they meet. Where a policy's ``review.acceptSourceVSA`` allows
it, such a summary, signed by a trusted ``verifier`` key, stands in for
guard's own review of the commit. It is weaker evidence: the approval count
and "the approver is not the author" come from the platform's settings, not
from who approved, so guard's own predicate stays the default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from controller.attest.checks import CLOCK_SKEW, SUCCESS, Verdict, failure, subject_covered
from controller.attest.dsse import Envelope
from controller.attest.provenance import repository_name, shown
from controller.attest.statement import Statement, StatementError, Timestamp, utc
from controller.attest.trust import TrustedKey
from controller.policy.identity import ascii_lower

VSA_V1 = "https://slsa.dev/verification_summary/v1"

FIX_SUMMARY = (
    "platform team: have a verifier the policy lists (spec.review.acceptSourceVSA.verifiers) "
    "publish a PASSED source verification summary for this commit, or attest a review of it"
)

_TIMESTAMP: TypeAdapter[dt.datetime] = TypeAdapter(Timestamp)


@dataclass(frozen=True)
class SourceSummary:
    result: str
    verified_levels: tuple[str, ...]
    resource_uri: str
    source_refs: tuple[str, ...]
    time_verified: dt.datetime
    verifier_id: str | None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StatementError(f"verification summary field {where} is not a list of strings")
    return tuple(value)


def _refs(predicate: Mapping[str, Any]) -> tuple[str, ...]:
    """``sourceRefs``, spelt ``source_refs`` by some verifiers, at the top
    level or under ``annotations``."""
    annotations = predicate.get("annotations")
    places = [predicate, annotations if isinstance(annotations, Mapping) else {}]
    found: list[str] = []
    for place in places:
        for key in ("sourceRefs", "source_refs"):
            found.extend(_strings(place.get(key), key))
    return tuple(dict.fromkeys(found))


def read_summary(statement: Statement) -> SourceSummary:
    """The statement's predicate as a verification summary, or ``StatementError``."""
    if statement.predicate_type != VSA_V1:
        raise StatementError(
            f"wrong predicate type {statement.predicate_type!r}: a source verification summary "
            f"has {VSA_V1}"
        )
    predicate = statement.predicate
    if not isinstance(predicate, Mapping):
        raise StatementError("verification summary predicate is not an object")
    result = predicate.get("verificationResult")
    resource = predicate.get("resourceUri")
    if not isinstance(result, str) or not isinstance(resource, str):
        raise StatementError(
            "verification summary needs verificationResult and resourceUri as strings"
        )
    try:
        verified_at = _TIMESTAMP.validate_python(predicate.get("timeVerified"))
    except ValidationError:
        raise StatementError(
            "verification summary timeVerified is missing or not an RFC 3339 timestamp"
        ) from None
    verifier = predicate.get("verifier")
    verifier_id = verifier.get("id") if isinstance(verifier, Mapping) else None
    return SourceSummary(
        result=result,
        verified_levels=_strings(predicate.get("verifiedLevels"), "verifiedLevels"),
        resource_uri=resource,
        source_refs=_refs(predicate),
        time_verified=verified_at,
        verifier_id=verifier_id if isinstance(verifier_id, str) else None,
    )


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class SummaryClaim:
    """A summary signed by at least one trusted key, looked at for the commit
    one build provenance names, with that build's repository and ref."""

    commit: str
    repository: str
    ref: str
    envelope: Envelope
    statement: Statement
    summary: SourceSummary
    signers: tuple[TrustedKey, ...]
    now: dt.datetime

    def about(self) -> str:
        return f"source summary for {self.commit.partition(':')[2][:12]}"


class SummarySubjectMatches:
    def check(self, claim: SummaryClaim) -> Verdict:
        keys = claim.statement.subject_keys
        return subject_covered(keys, claim.commit, "source summary", FIX_SUMMARY)


@dataclass(frozen=True)
class SignedByVerifier:
    """A verifier key the policy lists; no other role vouches for a summary."""

    names: Sequence[str]

    def check(self, claim: SummaryClaim) -> Verdict:
        if any(k.role == "verifier" and k.name in self.names for k in claim.signers):
            return SUCCESS
        signed = ", ".join(f"{k.name!r} ({k.role})" for k in claim.signers)
        return failure(
            f"{claim.about()} is not signed by a verifier the policy lists "
            f"(review.acceptSourceVSA.verifiers: {', '.join(self.names)}); signed by {signed}",
            fix=FIX_SUMMARY,
        )


class SummaryPassed:
    def check(self, claim: SummaryClaim) -> Verdict:
        if claim.summary.result == "PASSED":
            return SUCCESS
        return failure(
            f"{claim.about()} has verificationResult {shown(claim.summary.result)!r}, not PASSED",
            fix=FIX_SUMMARY,
        )


@dataclass(frozen=True)
class LevelsVerified:
    required: Sequence[str]

    def check(self, claim: SummaryClaim) -> Verdict:
        missing = [r for r in self.required if r not in claim.summary.verified_levels]
        if not missing:
            return SUCCESS
        return failure(
            f"{claim.about()} verified {', '.join(map(shown, claim.summary.verified_levels)) or 'no level'}, "
            f"not {', '.join(missing)}",
            fix=FIX_SUMMARY,
        )


class SameSource:
    """The summary is about the repository and ref the image was built from."""

    def check(self, claim: SummaryClaim) -> Verdict:
        reasons = []
        uri = claim.summary.resource_uri
        if not uri.startswith("git+") or repository_name(uri) != ascii_lower(claim.repository):
            reasons.append(
                f"{claim.about()} is about {shown(uri)}, not the repository the image was built from "
                f"(git+https://{claim.repository})"
            )
        if claim.ref not in claim.summary.source_refs:
            reasons.append(
                f"{claim.about()} does not name {claim.ref} among its source refs "
                f"({', '.join(map(shown, claim.summary.source_refs)) or 'none'})"
            )
        return Verdict(tuple(reasons), (FIX_SUMMARY,) if reasons else ())


@dataclass(frozen=True)
class SummaryFresh:
    max_age: dt.timedelta
    label: str

    def check(self, claim: SummaryClaim) -> Verdict:
        verified = claim.summary.time_verified
        if verified > claim.now + CLOCK_SKEW:
            return failure(
                f"{claim.about()} was verified in the future ({utc(verified)}): check the "
                "verifier's clock",
                fix=FIX_SUMMARY,
            )
        if claim.now - verified <= self.max_age:
            return SUCCESS
        return failure(
            f"{claim.about()} is too old: verified at {utc(verified)}, more than maxAge "
            f"{self.label} ago",
            fix=FIX_SUMMARY,
        )
