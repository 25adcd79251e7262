"""The chain from an image to the review of the commit it was built from.

Where a policy has ``review.provenance``, an image is covered only through
its build: build provenance signed by a pinned builder names the image
digest, one commit of a listed repository (by id) on a listed ref, and a run
the policy allows; then an accepted review attestation has that commit as
subject and as ``revision.gitCommit``, for the same repository and target
ref (or, where ``review.acceptSourceVSA`` allows it, an accepted source
verification summary does). Every broken link is its own reason.

Candidate envelopes are routed by their *claimed* predicate type only to
decide which path judges them; each path verifies signatures and reads the
statement only once a trusted key of the right role signed it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.attest.checks import AllOf, Check, Claim, Verdict, failure
from controller.attest.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from controller.attest.keyless import CertificateAgrees
from controller.attest.provenance import (
    PROVENANCE_TYPES,
    BuilderPinned,
    BuildProvenance,
    EventAllowed,
    OneGitSource,
    ProvenanceClaim,
    ProvenanceSubjectMatches,
    RunnerAllowed,
    SignedByBuilder,
    SourceRefListed,
    SourceRepositoryListed,
    WorkflowAllowed,
    read_provenance,
    repository_name,
)
from controller.attest.statement import (
    CHANGE_REVIEW_PREDICATE,
    Statement,
    StatementError,
    normalize_subject,
    parse_statement,
)
from controller.attest.summary import (
    VSA_V1,
    LevelsVerified,
    SameSource,
    SignedByVerifier,
    SummaryClaim,
    SummaryFresh,
    SummaryPassed,
    SummarySubjectMatches,
    read_summary,
)
from controller.attest.verify import (
    FIX_RESIGN,
    MAX_CANDIDATES,
    ArtifactVerdict,
    Circumstances,
    Requirements,
    Verifier,
    parsed_envelope,
    parsed_statement,
)
from controller.policy.identity import ascii_lower
from controller.policy.provenance import ProvenanceRequirements, SourceSummaries

Lookup = Callable[[str], Sequence[bytes]]

FIX_PROVENANCE = (
    "release engineer: publish build provenance for the image from the release pipeline "
    "(e.g. actions/attest-build-provenance), signed by a builder the policy pins"
)
FIX_COMMIT_REVIEW = (
    "release engineer: attest the review of the commit the image was built from, after the "
    "merge (guard attest review --subject-commit SHA --revision SHA, with the build's "
    "repository and target ref)"
)


@dataclass(frozen=True)
class Link:
    """What accepted build provenance says the image was built from."""

    commit: str  # gitCommit:HEX
    repository: str
    ref: str
    provenance: str  # the provenance envelope's digest

    @property
    def short(self) -> str:
        return self.commit.partition(":")[2][:12]


# --------------------------------------------------------------------------- the review's link


@dataclass(frozen=True)
class ReviewsTheBuiltCommit:
    """The review is of the commit that was built, in the build's repository
    and into the build's ref. ``revision.gitCommit`` is what was merged; a
    review whose revision is another commit (the change's head before a
    squash, say) vouches for something else."""

    link: Link

    def check(self, claim: Claim) -> Verdict:
        review = claim.review
        reasons = []
        if ascii_lower(review.revision.git_commit) != self.link.commit.partition(":")[2]:
            reasons.append(
                f"the review's revision.gitCommit is {review.revision.git_commit}, not the built "
                f"commit {self.link.short}"
            )
        if repository_name(review.repository) != self.link.repository:
            reasons.append(
                f"the review is for repository {review.repository}, but the image was built "
                f"from {self.link.repository}"
            )
        if review.target_ref != self.link.ref:
            reasons.append(
                f"the review is for a change into {review.target_ref}, but the image was built "
                f"from {self.link.ref}"
            )
        return Verdict(tuple(reasons), (FIX_COMMIT_REVIEW,) if reasons else ())


# --------------------------------------------------------------------------- check sets


def provenance_checks(requirements: ProvenanceRequirements) -> AllOf[ProvenanceClaim]:
    """The checks for build provenance. The source checks run only when
    there is one git source to look at (``OneGitSource`` says why not)."""
    return AllOf(
        ProvenanceSubjectMatches(),
        SignedByBuilder(requirements.builders),
        BuilderPinned(requirements.builder_ids, requirements.build_types),
        _IfOneSource(requirements),
        CertificateAgrees(),
    )


@dataclass(frozen=True)
class _IfOneSource:
    requirements: ProvenanceRequirements

    def check(self, claim: ProvenanceClaim) -> Verdict:
        one = OneGitSource().check(claim)
        if not one.ok:
            return one
        requirements = self.requirements
        selected: list[Check[ProvenanceClaim]] = [
            SourceRepositoryListed(requirements.repositories),
            SourceRefListed(requirements.refs),
        ]
        if claim.provenance.github_actions:
            github = requirements.github
            selected += [
                EventAllowed(github.events),
                WorkflowAllowed(github.workflows, github.workflow_refs or requirements.refs),
                RunnerAllowed(github.runner_environments),
            ]
        return AllOf(*selected).check(claim)


def summary_checks(
    summaries: SourceSummaries, requirements: Requirements, circumstances: Circumstances
) -> AllOf[SummaryClaim]:
    selected: list[Check[SummaryClaim]] = [
        SummarySubjectMatches(),
        SignedByVerifier(summaries.verifiers),
        SummaryPassed(),
        LevelsVerified(summaries.required_levels),
        SameSource(),
    ]
    # As for reviews: a controller's request never fails because evidence aged.
    if circumstances.introduced and not circumstances.controller and requirements.max_age:
        selected.append(SummaryFresh(requirements.max_age, requirements.max_age_label))
    return AllOf(*selected)


# --------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class _Read:
    raw: bytes
    envelope: Envelope
    statement: Statement  # unverified: for routing only


def _read(raw: bytes) -> _Read | None:
    envelope = parsed_envelope(raw)
    if not isinstance(envelope, Envelope) or envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        return None
    statement = parsed_statement(envelope)
    return None if isinstance(statement, StatementError) else _Read(raw, envelope, statement)


def _of_types(
    envelopes: Sequence[bytes],
    types: Sequence[str],
    subject: str,
    junk: Callable[[Envelope], bool] = lambda _: False,
) -> list[_Read]:
    """Envelopes claiming one of these predicate types, bounded: those that
    claim the subject first, ``junk`` (known to be signed by no trusted key)
    last, so that a flood of bogus claims cannot crowd a real one out."""
    found = [
        read
        for raw in dict.fromkeys(envelopes)
        if (read := _read(raw)) is not None and read.statement.predicate_type in types
    ]
    found.sort(key=lambda r: (subject not in r.statement.subject_keys, junk(r.envelope)))
    return found[:MAX_CANDIDATES]


# Reading is memoised by the exact payload, as statements are (``verify``):
# the same provenance comes with every request for an image, and the result
# is an immutable value; every check still runs on every request.
@functools.lru_cache(maxsize=256)
def _provenance_of(payload: bytes) -> BuildProvenance | StatementError:
    try:
        return read_provenance(parse_statement(payload))
    except StatementError as exc:
        return exc


class ChainVerifier:
    """Covers an image through build provenance and the review of its commit."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def verify(
        self,
        digest: str,
        lookup: Lookup,
        requirements: Requirements,
        circumstances: Circumstances,
    ) -> ArtifactVerdict:
        needs = requirements.provenance
        if needs is None:
            raise ValueError("the chain needs review.provenance")
        digest = normalize_subject(digest)
        envelopes = lookup(digest)
        candidates = _of_types(envelopes, PROVENANCE_TYPES, digest, self.verifier.known_unsigned)
        if not candidates:
            missing = [f"no build provenance found for {digest}"]
            if _of_types(envelopes, (CHANGE_REVIEW_PREDICATE,), digest):
                missing.append(
                    "a review of the image itself does not count: the policy requires build "
                    "provenance that links the image to a reviewed commit (review.provenance)"
                )
            return ArtifactVerdict(digest, False, tuple(missing), fixes=(FIX_PROVENANCE,))
        checks = provenance_checks(needs)
        reasons: list[str] = []
        fixes: dict[str, None] = {}
        examined: list[str] = []
        for candidate in candidates:
            envelope, statement = candidate.envelope, candidate.statement
            examined.append(envelope.digest)
            signers, refused = self.verifier.signers_for(envelope, requirements)
            if not signers:
                reasons.extend(
                    f"provenance {envelope.short_id}: {r}"
                    for r in refused or self.verifier.unsigned_reasons(envelope)
                )
                fixes[FIX_RESIGN] = None
                continue
            provenance = _provenance_of(envelope.payload)
            if isinstance(provenance, StatementError):
                reasons.append(f"provenance {envelope.short_id}: {provenance}")
                fixes[FIX_PROVENANCE] = None
                continue
            claim = ProvenanceClaim(digest, envelope, statement, provenance, signers)
            verdict = checks.check(claim)
            if not verdict.ok:
                reasons.extend(verdict.reasons)
                fixes.update(dict.fromkeys(verdict.fixes))
                continue
            source = claim.source
            assert source.commit is not None and source.ref is not None  # checked above
            link = Link(source.commit, source.repository, source.ref, envelope.digest)
            covered = self._commit(link, lookup, requirements, circumstances)
            examined.extend(covered.examined)
            if covered.ok:
                return ArtifactVerdict(
                    digest,
                    True,
                    accepted=covered.accepted,
                    approvers=covered.approvers,
                    examined=tuple(examined),
                    chain=(
                        ("provenance", envelope.digest),
                        ("commit", link.commit),
                        *covered.chain,
                    ),
                )
            reasons.extend(covered.reasons)
            fixes.update(dict.fromkeys(covered.fixes))
        return ArtifactVerdict(
            digest, False, tuple(dict.fromkeys(reasons)), None, (), tuple(examined), tuple(fixes)
        )

    def _commit(
        self, link: Link, lookup: Lookup, requirements: Requirements, circumstances: Circumstances
    ) -> ArtifactVerdict:
        """The review (or source summary) of the built commit."""
        envelopes = lookup(link.commit)
        reasons: list[str] = []
        fixes: dict[str, None] = {}
        examined: list[str] = []
        reviews = [r.raw for r in _of_types(envelopes, (CHANGE_REVIEW_PREDICATE,), link.commit)]
        if reviews:
            verdict = self.verifier.verify(
                link.commit,
                reviews,
                requirements,
                circumstances,
                extra=(ReviewsTheBuiltCommit(link),),
            )
            examined.extend(verdict.examined)
            if verdict.ok:
                return ArtifactVerdict(
                    link.commit,
                    True,
                    accepted=verdict.accepted,
                    approvers=verdict.approvers,
                    examined=tuple(examined),
                    chain=(("review", verdict.accepted or ""),),
                )
            reasons.extend(f"review of commit {link.short}: {r}" for r in verdict.reasons)
            fixes.update(dict.fromkeys(verdict.fixes))
        summaries = requirements.source_summaries
        if summaries is not None:
            found = _of_types(envelopes, (VSA_V1,), link.commit, self.verifier.known_unsigned)
            for read in found:
                envelope = read.envelope
                examined.append(envelope.digest)
                own = self._summary(
                    link, envelope, read.statement, summaries, requirements, circumstances
                )
                if own.ok:
                    return ArtifactVerdict(
                        link.commit,
                        True,
                        accepted=envelope.digest,
                        examined=tuple(examined),
                        chain=(("sourceSummary", envelope.digest),),
                    )
                reasons.extend(own.reasons)
                fixes.update(dict.fromkeys(own.fixes))
        what = "review or source verification summary" if summaries is not None else "review"
        lead = f"commit {link.short} has no accepted {what}"
        fixes.setdefault(FIX_COMMIT_REVIEW, None)
        return ArtifactVerdict(
            link.commit, False, (lead, *reasons), None, (), tuple(examined), tuple(fixes)
        )

    def _summary(
        self,
        link: Link,
        envelope: Envelope,
        statement: Statement,
        summaries: SourceSummaries,
        requirements: Requirements,
        circumstances: Circumstances,
    ) -> Verdict:
        signers, refused = self.verifier.signers_for(envelope, requirements)
        if not signers:
            return Verdict(
                tuple(
                    f"source summary {envelope.short_id}: {r}"
                    for r in refused or self.verifier.unsigned_reasons(envelope)
                ),
                (FIX_RESIGN,),
            )
        try:
            summary = read_summary(statement)
        except StatementError as exc:
            return failure(f"source summary {envelope.short_id}: {exc}", fix=FIX_RESIGN)
        claim = SummaryClaim(
            link.commit,
            link.repository,
            link.ref,
            envelope,
            statement,
            summary,
            signers,
            circumstances.now,
        )
        return summary_checks(summaries, requirements, circumstances).check(claim)


# The role that vouches for each kind of statement the chain reads.
_ROLE_OF = {**dict.fromkeys(PROVENANCE_TYPES, "builder"), VSA_V1: "verifier"}


def chain_link_status(verifier: Verifier, raw: bytes) -> tuple[bool, str] | None:
    """For a ReviewAttestation's informational status: whether a trusted key
    of the right role signed a provenance or summary envelope, and why not;
    None for any other statement (a review is judged as one)."""
    read = _read(raw)
    if read is None or read.statement.predicate_type not in _ROLE_OF:
        return None
    role = _ROLE_OF[read.statement.predicate_type]
    signers = verifier.signers(read.envelope)
    if any(k.role == role for k in signers):
        return True, f"signed by a trusted {role}"
    if signers:
        named = ", ".join(f"{k.name!r} ({k.role})" for k in signers)
        return False, f"not signed by a trusted {role} (signed by {named})"
    return False, "; ".join(verifier.unsigned_reasons(read.envelope))
