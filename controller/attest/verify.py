"""Verify one artifact digest against one review requirement.

The order matters for safety: the envelope is parsed under hard limits, its
payload type is pinned before any cryptography, signatures are checked
against every trusted key (keyids are only hints), and only a statement
signed by a trusted key is read at all. Then the composable checks run on
every call; only signature results are cached, keyed by the envelope's
digest and the key, because nothing else is a pure function of the bytes.

Its size is the candidate selection (claims first, junk last, bounded), the
signature cache and the per-envelope judgement, which share one set of
limits; the checks themselves live in ``checks``.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.attest import checks
from controller.attest.checks import AllOf, Check, Claim, Deployer, tally
from controller.attest.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, EnvelopeError, parse
from controller.attest.forgecheck import ForgeEvidence
from controller.attest.keyless import keyless_signers
from controller.attest.statement import (
    ChangeReview,
    Statement,
    StatementError,
    normalize_subject,
    parse_statement,
)
from controller.attest.trust import Trust, TrustedKey
from controller.policy.documents import DeployerRules, ForgeRules, RequiredCheck, Review
from controller.policy.provenance import ProvenanceRequirements, SourceSummaries

# Each candidate can cost (signatures x keys) verifications when uncached; a
# flood of envelopes naming one digest must not stall admission.
MAX_CANDIDATES = 32


@dataclass(frozen=True)
class Requirements:
    """What must hold, taken from a policy's ``review`` block.

    Without a policy (``baseline``) any trusted attester counts and the
    repository, branch and checks are not constrained, but one independent
    approval is still required: separation of duties is never optional.
    """

    attesters: frozenset[str] | None
    repositories: tuple[str, ...] | None
    target_refs: tuple[str, ...] | None
    min_approvals: int = 1
    allow_bots: bool = False
    required_checks: tuple[RequiredCheck, ...] = ()
    max_age: dt.timedelta | None = None
    max_age_label: str = ""
    deployer: DeployerRules = field(default_factory=DeployerRules)
    # The chain from image to review (``chain``): when set, an image is
    # covered only through build provenance and its commit.
    provenance: ProvenanceRequirements | None = None
    source_summaries: SourceSummaries | None = None
    forge: ForgeRules | None = None
    # Roles whose signatures count only when keyless (``review.requireKeyless``).
    keyless_roles: frozenset[str] = frozenset()

    @classmethod
    def from_review(cls, review: Review) -> Requirements:
        return cls(
            provenance=review.provenance,
            source_summaries=review.accept_source_vsa,
            attesters=frozenset(review.attesters),
            repositories=tuple(review.repositories),
            target_refs=tuple(review.target_refs),
            min_approvals=review.min_approvals,
            allow_bots=review.allow_bots,
            required_checks=tuple(review.required_checks),
            max_age=review.max_age_delta,
            max_age_label=review.max_age or "",
            deployer=review.deployer,
            forge=review.forge,
            keyless_roles=frozenset(review.require_keyless),
        )

    @classmethod
    def baseline(cls) -> Requirements:
        return cls(attesters=None, repositories=None, target_refs=None)


@dataclass(frozen=True)
class Circumstances:
    """Facts about the request, not the attestation.

    ``introduced``: the request brings this artifact in, so expiry and maxAge
    apply. ``controller``: a Kubernetes controller made the request
    (autoscaling, rescheduling): the time-based checks and the deployer rules
    are skipped, everything the review itself says still counts.
    """

    now: dt.datetime
    introduced: bool = True
    controller: bool = False
    deployer: Deployer | None = None


# An envelope that is unsigned, tampered with, malformed or not a change
# review: only the pipeline that attests can make a good one.
FIX_RESIGN = (
    "release engineer: re-run the release pipeline so a trusted attester key signs a "
    "change-review attestation (this one is unsigned, changed after signing, or malformed)"
)


@dataclass(frozen=True)
class ArtifactVerdict:
    """The outcome for one digest: accepted by one envelope, or every reason why not."""

    digest: str
    ok: bool
    reasons: tuple[str, ...] = ()
    accepted: str | None = None
    approvers: tuple[str, ...] = ()
    examined: tuple[str, ...] = ()
    # Who must do what next, one line per kind of failure (see ``checks``).
    fixes: tuple[str, ...] = ()
    # How the chain covered it (``chain``): provenance, commit, the review
    # or source summary used, as (name, value) pairs for the audit trail.
    chain: tuple[tuple[str, str], ...] = ()


def checks_for(requirements: Requirements, circumstances: Circumstances) -> AllOf[Claim]:
    """The checks that apply in these circumstances."""
    selected: list[Check[Claim]] = [
        checks.SubjectMatches(),
        checks.VouchedByAttester(requirements.attesters),
    ]
    if requirements.repositories is not None:
        selected.append(checks.RepositoryIn(requirements.repositories))
    if requirements.target_refs is not None:
        selected.append(checks.TargetRefIn(requirements.target_refs))
    # A controller's request (scaling, rescheduling) never fails because an
    # attestation aged; what the review said never ages, so it still counts.
    if circumstances.introduced and not circumstances.controller:
        selected.append(checks.NotExpired())
        selected.append(checks.NotFromTheFuture())
        if requirements.max_age is not None:
            selected.append(checks.NotTooOld(requirements.max_age, requirements.max_age_label))
    # Reviews read from a forge are judged on what the forge showed, with
    # fail-closed defaults when the policy has no review.forge block.
    selected.append(ForgeEvidence(requirements.forge))
    selected.append(
        checks.EnoughApprovals(
            requirements.min_approvals, requirements.allow_bots, requirements.forge
        )
    )
    if requirements.required_checks:
        selected.append(checks.ChecksPassed(requirements.required_checks))
    if (
        not circumstances.controller
        and circumstances.deployer is not None
        and (requirements.deployer.not_author or requirements.deployer.allowed)
    ):
        selected.append(checks.DeployerAllowed(requirements.deployer))
    return AllOf(*selected)


class SignatureCache:
    """Bounded memo of "does some signature in envelope E verify with key K".

    Keyed by the envelope's digest and the key's id (a hash of the key
    itself), so an entry stays true across trust reloads; shared between
    requests, hence the lock. ``on_lookup`` observes every lookup (True for
    a hit), so metrics count without subclassing.
    """

    def __init__(
        self, size: int = 4096, *, on_lookup: Callable[[bool], None] | None = None
    ) -> None:
        self.size = size
        self.on_lookup = on_lookup
        self._results: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, envelope: str, keyid: str) -> bool | None:
        with self._lock:
            found = self._results.get((envelope, keyid))
            if found is not None:
                self._results.move_to_end((envelope, keyid))
        if self.on_lookup is not None:
            self.on_lookup(found is not None)
        return found

    def put(self, envelope: str, keyid: str, verified: bool) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._results[(envelope, keyid)] = verified
            while len(self._results) > self.size:
                self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


class Verifier:
    """Verifies artifact digests against requirements with one trust."""

    def __init__(self, trust: Trust, cache: SignatureCache | None = None) -> None:
        self.trust = trust
        self.cache = cache if cache is not None else SignatureCache()

    # ----------------------------------------------------------- signatures

    def signers(self, envelope: Envelope) -> tuple[TrustedKey, ...]:
        """Trusted keys with a verifying signature. Every key is tried, keyid or not.

        Keys named by a signature's keyid go first; a signature that verified
        with one public key is not tried again with other keys (it cannot
        verify with a different key), which keeps the uncached cost near one
        verification per signature when keyids are honest.

        A Sigstore bundle is signed by its certificate's key, never by a
        listed key: its signers are the trusted identities it verifies as.
        """
        if envelope.bundle is not None:
            return keyless_signers(envelope, self.trust).signers
        results: dict[str, bool] = {}
        pending: set[str] = set()
        for key in self.trust.keys:
            cached = self.cache.get(envelope.digest, key.public.keyid)
            if cached is None:
                pending.add(key.public.keyid)
            else:
                results[key.public.keyid] = cached
        if pending:
            results.update(self._verify_signatures(envelope, pending))
        return tuple(k for k in self.trust.keys if results.get(k.public.keyid))

    def _verify_signatures(self, envelope: Envelope, keyids: set[str]) -> dict[str, bool]:
        message = envelope.pae()
        publics = {k.public.keyid: k.public for k in self.trust.keys if k.public.keyid in keyids}
        hinted = [k for s in envelope.signatures if (k := s.keyid) in publics]
        order = list(dict.fromkeys([*hinted, *publics]))
        unclaimed = list(envelope.signatures)
        results: dict[str, bool] = {}
        for keyid in order:
            public = publics[keyid]
            match = next((s for s in unclaimed if public.verify(s.sig, message)), None)
            results[keyid] = match is not None
            if match is not None:
                unclaimed = [s for s in unclaimed if s is not match and s.sig != match.sig]
            self.cache.put(envelope.digest, keyid, results[keyid])
        return results

    def signers_for(
        self, envelope: Envelope, requirements: Requirements
    ) -> tuple[tuple[TrustedKey, ...], list[str]]:
        """The signers that count under these requirements, and why any
        signer does not: a listed key never counts for a role the policy
        requires keyless signatures for."""
        signers = self.signers(envelope)
        if not requirements.keyless_roles:
            return signers, []
        kept = tuple(k for k in signers if k.keyless or k.role not in requirements.keyless_roles)
        refused = [
            f"key {k.name!r} ({k.role}) does not count: the policy requires keyless "
            f"signatures for the {k.role} role (review.requireKeyless)"
            for k in signers
            if k not in kept
        ]
        return kept, refused

    def known_unsigned(self, envelope: Envelope) -> bool:
        """Whether the cache already knows no trusted key signed this envelope.

        Such envelopes are examined last, so that junk posted for a digest
        cannot crowd a real attestation out of the candidate limit.
        """
        if envelope.bundle is not None:
            # Only a lookup, never a verification: a bundle's outcome is
            # known after it was judged once (``bundle.verify_bundle`` caches it).
            return False
        return bool(self.trust.keys) and all(
            self.cache.get(envelope.digest, k.public.keyid) is False for k in self.trust.keys
        )

    def unsigned_reasons(self, envelope: Envelope) -> list[str]:
        """Why no signature verified. A signature that verifies under no
        trusted key may come from a key the trust does not list *or* from a
        trusted key over bytes changed since: the two cannot be told apart,
        so neither is claimed."""
        if envelope.bundle is not None:
            return list(keyless_signers(envelope, self.trust).reasons)
        reasons: list[str] = []
        if not self.trust.keys:
            return [
                "no trusted key verifies this signature: the trust has no keys (pass a GuardTrust)"
            ]
        by_hint = {k.public.keyid: k for k in self.trust.keys} | {
            k.name: k for k in self.trust.keys
        }
        for signature in envelope.signatures:
            claimed = by_hint.get(signature.keyid)
            if claimed is not None:
                reasons.append(
                    f"signature claims key {claimed.name!r} but does not verify with it: the "
                    "envelope was changed after signing, or the keyid was relabelled"
                )
            else:
                hint = f"keyid {signature.keyid[:16]!a}" if signature.keyid else "no keyid"
                reasons.append(
                    f"no trusted key verifies this signature ({hint}): it was made with a key "
                    "the trust does not list, or the envelope was changed after signing"
                )
        return list(dict.fromkeys(reasons))

    # ----------------------------------------------------------- verification

    def verify(
        self,
        digest: str,
        envelopes: Sequence[bytes],
        requirements: Requirements,
        circumstances: Circumstances,
        extra: Sequence[Check[Claim]] = (),
    ) -> ArtifactVerdict:
        """The verdict for one subject (an artifact digest, or a source
        revision such as ``gitCommit:HEX``); ``extra`` checks apply on top of
        the requirements' own (the chain adds what links a commit to a build)."""
        digest = normalize_subject(digest)
        if not envelopes:
            return ArtifactVerdict(digest, False, (f"no review attestation found for {digest}",))
        parsed: list[Envelope | str] = []
        for index, raw in enumerate(envelopes):
            read = _parse(raw)
            if isinstance(read, EnvelopeError):
                parsed.append(f"envelope #{index + 1} is malformed: {read}")
            else:
                parsed.append(read)
        # Envelopes that claim this digest are judged first; the others only
        # explain a miss. Claims are not trusted here: the checks re-verify.
        statements: dict[str, Statement | StatementError] = {}
        for item in parsed:
            if isinstance(item, Envelope) and item.digest not in statements:
                statements[item.digest] = _statement(item)
        claiming = [
            e
            for e in parsed
            if isinstance(e, Envelope)
            and isinstance(statement := statements[e.digest], Statement)
            and digest in statement.subject_keys
        ]
        candidates: Sequence[Envelope | str] = sorted(
            claiming or parsed, key=lambda e: isinstance(e, Envelope) and self.known_unsigned(e)
        )
        skipped = max(0, len(candidates) - MAX_CANDIDATES)
        candidates = candidates[:MAX_CANDIDATES]
        checks_used = checks_for(requirements, circumstances)
        if extra:
            checks_used = AllOf(checks_used, *extra)
        reasons: list[str] = []
        fixes: dict[str, None] = {}
        examined: list[str] = []
        label = len(candidates) > 1
        for candidate in candidates:
            if isinstance(candidate, str):
                reasons.append(candidate)
                fixes[FIX_RESIGN] = None
                continue
            examined.append(candidate.digest)
            own, approvers, own_fixes = self._judge(
                candidate,
                statements[candidate.digest],
                digest,
                requirements,
                circumstances,
                checks_used,
            )
            if not own:
                return ArtifactVerdict(
                    digest, True, (), candidate.digest, approvers, tuple(examined)
                )
            prefix = f"envelope {candidate.short_id}: " if label else ""
            reasons.extend(prefix + r for r in own)
            fixes.update(dict.fromkeys(own_fixes))
        if skipped:
            reasons.append(
                f"{skipped} more envelope(s) for {digest} were not examined (limit "
                f"{MAX_CANDIDATES}): remove stale attestations"
            )
        return ArtifactVerdict(
            digest, False, tuple(reasons), None, (), tuple(examined), tuple(fixes)
        )

    def _judge(
        self,
        envelope: Envelope,
        parsed: Statement | StatementError,
        digest: str,
        requirements: Requirements,
        circumstances: Circumstances,
        checks_used: Check[Claim],
    ) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
        """Why one envelope does not cover the digest (none: it does), the
        approvers that counted, and who must do what next."""
        resign = (FIX_RESIGN,)
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return (
                [
                    f"payloadType {envelope.payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE!r}: "
                    "not an in-toto statement"
                ],
                (),
                resign,
            )
        signers, refused = self.signers_for(envelope, requirements)
        if not signers:
            return refused or self.unsigned_reasons(envelope), (), resign
        # Read only now that a trusted key signed it.
        if isinstance(parsed, StatementError):
            return [str(parsed)], (), resign
        statement = parsed
        review = _change_review_of(envelope.payload)
        if isinstance(review, StatementError):
            return [str(review)], (), resign
        claim = Claim(
            digest=digest,
            envelope=envelope,
            statement=statement,
            review=review,
            signers=signers,
            trust=self.trust,
            now=circumstances.now,
            deployer=circumstances.deployer,
        )
        verdict = checks_used.check(claim)
        if not verdict.ok:
            return list(verdict.reasons), (), verdict.fixes
        counted = tally(claim, requirements.allow_bots, requirements.forge).counted
        return [], tuple(sorted(counted.values())), ()


# Parsing is memoised by the exact bytes (the same envelopes come with every
# request for an image); results are immutable values, and every check,
# signatures included, still runs on every request. Bounded so that even
# envelopes at the size cap keep the cache to tens of MiB; a miss only costs
# a parse.
_PARSE_CACHE_SIZE = 256


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse(raw: bytes | str) -> Envelope | EnvelopeError:
    try:
        return parse(raw)
    except EnvelopeError as exc:
        return exc


def parsed_envelope(raw: bytes) -> Envelope | EnvelopeError:
    """The envelope of these bytes (memoised), or why it cannot be read."""
    return _parse(raw)


def _statement(envelope: Envelope) -> Statement | StatementError:
    """The envelope's statement, parsed once; not trusted until a signature verifies."""
    return _statement_of(envelope.payload)


parsed_statement = _statement


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _statement_of(payload: bytes) -> Statement | StatementError:
    try:
        return parse_statement(payload)
    except StatementError as exc:
        return exc


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _change_review_of(payload: bytes) -> ChangeReview | StatementError:
    """The payload's change-review predicate (the statement of these bytes)."""
    statement = _statement_of(payload)
    if isinstance(statement, StatementError):
        return statement
    try:
        return statement.change_review()
    except StatementError as exc:
        return exc
