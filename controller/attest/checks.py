"""The review requirement as small composable checks.

Each check looks at one verified claim and returns a ``Verdict``: success,
or failure with every reason, worded for the person who has to fix it.
``AllOf`` runs every check and keeps every reason (not just the first), and
refuses to be built empty: a check that trivially passes is a misuse
waiting to happen.

Its size is the number of checks, each small and independent, plus the
"who must do what" line each failure carries; keeping them side by side is
what lets a reader see that every failure names its fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from controller.attest.dsse import Envelope
from controller.attest.forgerules import approval_problem
from controller.attest.statement import ChangeReview, Person, Statement, utc
from controller.attest.trust import Trust, TrustedKey
from controller.policy.documents import DeployerRules, ForgeRules, RequiredCheck
from controller.policy.identity import (
    GROUP_PREFIX,
    IdentityError,
    ascii_lower,
    check_id,
    kubernetes_id,
    match_key,
    visible_ascii,
)

# Clocks drift; an attestation stamped a little ahead of ours is not forged.
CLOCK_SKEW = dt.timedelta(minutes=5)


# What to do next, for the person who can do it (a denial names them): the
# developer who owns the change, the release engineer who runs the pipeline
# that attests, the person deploying, and the policy author.
FIX_APPROVAL = (
    "developer: get an approval from someone who is not an author, on the change's last revision"
)
FIX_REFRESH = "release engineer: re-run the release pipeline to refresh the attestation"
FIX_CLOCK = "release engineer: check the attester's clock, then re-run the release pipeline"
FIX_SUBJECT = (
    "release engineer: deploy the image the attestation names, or attest this digest "
    "in the release pipeline"
)
FIX_ATTESTER = (
    "release engineer: attest in the release pipeline with a key the policy lists in "
    "spec.review.attesters (an author's key never vouches for their own change)"
)
FIX_REPOSITORY = (
    "policy author: if this repository may deploy here, add it to spec.review.repositories "
    "(if it may not, deploy an image built from one the policy lists)"
)
FIX_TARGET_REF = (
    "developer: merge the change into a branch the policy lists and deploy the image built there"
)
FIX_CHECKS = "developer: make the required checks pass, then re-run the release pipeline"
FIX_NOT_AUTHOR = "deployer: someone who is not an author of the change must deploy it"
FIX_UNMAPPED = (
    "platform team: add kubernetes:USERNAME to the deployer's principal in the GuardTrust, "
    "or list the CD service account in spec.review.deployer.allowed"
)
FIX_UNKNOWN_DEPLOYER = (
    "CI user: name the deployer (guard kube check --user NAME); in the cluster every "
    "request names one"
)
FIX_DEPLOYER = "deployer: deploy through an identity spec.review.deployer.allowed lists"


@dataclass(frozen=True)
class Verdict:
    """Success when there are no reasons; ``fixes`` say who does what next."""

    reasons: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


SUCCESS = Verdict()


def failure(*reasons: str, fix: str) -> Verdict:
    if not reasons:
        raise ValueError("a failure needs a reason")
    return Verdict(tuple(reasons), (fix,))


@dataclass(frozen=True)
class Deployer:
    """Who asks to deploy (Kubernetes ``request.userInfo``)."""

    username: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    """An envelope whose statement is signed by at least one trusted key,
    looked at for one artifact digest at one moment."""

    digest: str
    envelope: Envelope
    statement: Statement
    review: ChangeReview
    signers: tuple[TrustedKey, ...]
    trust: Trust
    now: dt.datetime
    deployer: Deployer | None = None

    def author_of(self, identity: str) -> Person | None:
        """The author an identity resolves to, after the identity map."""
        canonical = self.trust.canonical(identity)
        for author in self.review.authors:
            if self.trust.canonical(author.id) == canonical:
                return author
        return None


# What a check looks at: a review ``Claim`` here; build provenance and source
# summaries have claims of their own (``provenance``, ``summary``).
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


class Check(Protocol[C_contra]):
    def check(self, claim: C_contra, /) -> Verdict: ...


class AllOf(Generic[C]):
    """Every check must pass; every reason of every failing check is kept."""

    def __init__(self, *checks: Check[C]) -> None:
        if not checks:
            raise ValueError("AllOf needs at least one check: an empty AllOf would pass anything")
        self.checks = checks

    def check(self, claim: C) -> Verdict:
        reasons: list[str] = []
        fixes: dict[str, None] = {}
        for check in self.checks:
            verdict = check.check(claim)
            reasons.extend(verdict.reasons)
            fixes.update(dict.fromkeys(verdict.fixes))
        return Verdict(tuple(reasons), tuple(fixes))


# --------------------------------------------------------------------------- what was signed


class SubjectMatches:
    """The artifact's digest (from the deployed object) is a subject of the
    statement: an attestation for one image never covers another."""

    def check(self, claim: Claim) -> Verdict:
        covered = claim.statement.subject_keys
        if claim.digest in covered:
            return SUCCESS
        shown = ", ".join(covered) or "no sha256 digest"
        return failure(
            f"subject mismatch: envelope covers {shown}, not {claim.digest}", fix=FIX_SUBJECT
        )


@dataclass(frozen=True)
class VouchedByAttester:
    """Signed by an attester key the policy names, which does not belong to
    an author (an author cannot vouch for their own change).

    ``names`` is None when no policy is given: any trusted attester key.
    """

    names: frozenset[str] | None

    def check(self, claim: Claim) -> Verdict:
        attesters = [k for k in claim.signers if k.role == "attester"]
        allowed = [k for k in attesters if self.names is None or k.name in self.names]
        reasons: list[str] = []
        for key in allowed:
            author = claim.author_of(key.principal) if key.principal else None
            if author is None:
                return SUCCESS
            reasons.append(
                f"attester key {key.name!r} belongs to author {author.login} ({author.id}), "
                "so it cannot vouch for this change"
            )
        if not reasons:
            signed = ", ".join(f"{k.name!r} ({k.role})" for k in claim.signers)
            wanted = ", ".join(sorted(self.names)) if self.names is not None else "any"
            reasons.append(
                f"not signed by an attester the policy accepts (review.attesters: {wanted}); "
                f"signed by {signed}"
            )
        return Verdict(tuple(reasons), (FIX_ATTESTER,))


def matches_any(value: str | None, patterns: Sequence[str], *, fold_case: bool = False) -> bool:
    """Whether ``value`` matches one of the shell patterns (never when absent)."""
    if value is None:
        return False
    # ASCII case only: str.casefold maps "ſ" (long s) to "s", which would let
    # github.com/acme/ſhop pass for github.com/acme/shop.
    if fold_case:
        value, patterns = ascii_lower(value), [ascii_lower(p) for p in patterns]
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def subject_covered(keys: Sequence[str], key: str, what: str, fix: str) -> Verdict:
    """Whether a statement's subject digests (``keys``) include ``key``."""
    if key in keys:
        return SUCCESS
    listed = ", ".join(keys) or "no digest guard compares"
    return failure(f"{what} covers {listed}, not {key}", fix=fix)


@dataclass(frozen=True)
class RepositoryIn:
    """The change was made in a repository the policy names (globs allowed).

    ASCII case-insensitive, as hosts and repository paths on GitHub and
    GitLab are; never wider (the predicate refuses non-ASCII names, and this
    check refuses them again).
    """

    repositories: tuple[str, ...]

    def check(self, claim: Claim) -> Verdict:
        repository = claim.review.repository
        if repository.isascii() and matches_any(repository, self.repositories, fold_case=True):
            return SUCCESS
        return failure(
            f"repository {claim.review.repository!r} is not one the policy accepts "
            f"({', '.join(self.repositories)})",
            fix=FIX_REPOSITORY,
        )


@dataclass(frozen=True)
class TargetRefIn:
    """The change was merged into a branch the policy names (globs allowed).

    Case-sensitive, as git refs are: ``refs/heads/MAIN`` is another branch,
    perhaps an unprotected one an author pushed alone.
    """

    target_refs: tuple[str, ...]

    def check(self, claim: Claim) -> Verdict:
        if matches_any(claim.review.target_ref, self.target_refs, fold_case=False):
            return SUCCESS
        return failure(
            f"target ref {claim.review.target_ref!r} is not one the policy accepts "
            f"({', '.join(self.target_refs)})",
            fix=FIX_TARGET_REF,
        )


# --------------------------------------------------------------------------- time


class NotExpired:
    def check(self, claim: Claim) -> Verdict:
        if claim.now < claim.review.expires_at:
            return SUCCESS
        return failure(f"expired at {utc(claim.review.expires_at)}", fix=FIX_REFRESH)


class NotFromTheFuture:
    def check(self, claim: Claim) -> Verdict:
        if claim.review.attested_at <= claim.now + CLOCK_SKEW:
            return SUCCESS
        return failure(
            f"attested in the future ({utc(claim.review.attested_at)}): check the attester's clock",
            fix=FIX_CLOCK,
        )


@dataclass(frozen=True)
class NotTooOld:
    max_age: dt.timedelta
    label: str

    def check(self, claim: Claim) -> Verdict:
        if claim.now - claim.review.attested_at <= self.max_age:
            return SUCCESS
        return failure(
            f"too old: attested at {utc(claim.review.attested_at)}, more than maxAge "
            f"{self.label} ago",
            fix=FIX_REFRESH,
        )


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Tally:
    """Approvals that count (principal → display name) and why others do not."""

    counted: Mapping[str, str] = field(default_factory=dict)
    rejected: tuple[str, ...] = ()


# Automation that reviews under a login without a bot marker.
KNOWN_BOTS = frozenset({"dependabot", "renovate", "renovatebot", "github-actions", "mergify"})


def is_bot(person: Person) -> bool:
    """Marked as a bot, or named like one: GitHub App accounts log in as
    ``name[bot]``, self-hosted automation as ``name-bot`` (or ``_bot``,
    ``.bot``), and an attester that forgets ``kind`` must not turn one into a
    human reviewer. A human whose login ends so is only refused as a
    reviewer (fail closed), never admitted as one."""
    login = ascii_lower(person.login)
    return (
        person.kind == "bot"
        or login.endswith(("[bot]", "-bot", "_bot", ".bot"))
        or login in KNOWN_BOTS
    )


def tally(claim: Claim, allow_bots: bool, forge: ForgeRules | None = None) -> Tally:
    """Distinct principals who approved: predicate approvals and person-key
    signatures. ``forge``: the policy's ``review.forge`` rules, which (with
    their defaults for any review read from a forge) decide whose approval
    carries the permission to count."""
    review = claim.review
    counted: dict[str, str] = {}
    rejected: list[str] = []
    for approval in review.approvals:
        reviewer = approval.reviewer
        author = claim.author_of(reviewer.id)
        if author is not None:
            if match_key(author.id) == match_key(reviewer.id):
                rejected.append(f"{reviewer.login} approved their own change")
            else:
                rejected.append(
                    f"{reviewer.login} ({reviewer.id}) approved their own change: "
                    f"{reviewer.id} is an alias of author {author.login} ({author.id})"
                )
        elif is_bot(reviewer) and not allow_bots:
            rejected.append(
                f"{reviewer.login} is a bot: bot approvals do not count (review.allowBots is off)"
            )
        elif (problem := approval_problem(review, approval, forge)) is not None:
            rejected.append(problem)
        elif approval.reviewed_revision != review.change.head_revision:
            rejected.append(
                f"{reviewer.login} approved revision {approval.reviewed_revision}, not the head "
                f"revision {review.change.head_revision} (stale approval)"
            )
        elif approval.approved_at > review.attested_at + CLOCK_SKEW:
            # The attester cannot have seen an approval given after it attested.
            rejected.append(
                f"{reviewer.login} approved at {utc(approval.approved_at)}, after the "
                f"attestation was made ({utc(review.attested_at)})"
            )
        else:
            counted.setdefault(claim.trust.canonical(reviewer.id), reviewer.login)
    for key in claim.signers:
        if key.role != "person" or key.principal is None:
            continue
        author = claim.author_of(key.principal)
        if author is not None:
            rejected.append(
                f"person key {key.name!r} belongs to author {author.login} ({author.id}): "
                "an author's signature is not an approval"
            )
        else:
            counted.setdefault(key.principal, key.name)
    return Tally(counted=counted, rejected=tuple(rejected))


@dataclass(frozen=True)
class EnoughApprovals:
    """``minApprovals`` distinct principals who are not authors, not bots
    (unless allowed), and who approved the head revision."""

    min_approvals: int
    allow_bots: bool
    forge: ForgeRules | None = None

    def check(self, claim: Claim) -> Verdict:
        result = tally(claim, self.allow_bots, self.forge)
        count = len(result.counted)
        if count >= self.min_approvals:
            return SUCCESS
        names = ", ".join(sorted(result.counted.values())) or "none"
        # The specific refusals lead: "alice approved their own change" says
        # more than the count it causes.
        return failure(
            *result.rejected,
            f"{count} of {self.min_approvals} approvals from reviewers who are not authors "
            f"(counted: {names})",
            fix=FIX_APPROVAL,
        )


@dataclass(frozen=True)
class ChecksPassed:
    """Every required CI check is present, passed, and meets its minimum."""

    required: tuple[RequiredCheck, ...]

    def check(self, claim: Claim) -> Verdict:
        reasons: list[str] = []
        for need in self.required:
            runs = [c for c in claim.review.checks if c.name == need.name]
            if not runs:
                reasons.append(f"required check {need.name!r} is missing")
                continue
            failed = [c for c in runs if c.result != "pass"]
            if failed:
                reasons.append(
                    f"required check {need.name!r} did not pass (result {failed[0].result})"
                )
                continue
            if need.min is not None:
                if not math.isfinite(need.min):
                    reasons.append(
                        f"the minimum of required check {need.name!r} is not a finite number "
                        f"({need.min}): fix the policy"
                    )
                    continue
                # "not >=" so that anything incomparable fails too.
                low = [c for c in runs if c.value is None or not c.value >= need.min]
                if low:
                    value = "no value" if low[0].value is None else f"value {low[0].value:g}"
                    reasons.append(
                        f"required check {need.name!r} has {value}, below the minimum {need.min:g}"
                    )
        return Verdict(tuple(reasons), (FIX_CHECKS,) if reasons else ())


def _shown(name: str) -> str:
    """A name from a request, printable in one line whatever it holds."""
    try:
        return visible_ascii(name, "name")
    except IdentityError:
        return ascii(name)


@dataclass(frozen=True)
class DeployerAllowed:
    """The optional deployer rules: the deployer is not an author, and is one
    of the listed users or in one of the listed ``group:NAME`` groups.

    ``notAuthor`` must be *proven*: the deployer's Kubernetes username is
    mapped to a principal by an exact ``kubernetes:USERNAME`` alias in the
    trust, and that principal is no author. A deployer the map cannot
    resolve is denied, with the alias to add, unless ``allowed`` names the
    username itself (a CD service account, which is nobody's alias).
    ``allowed`` is an allow-list: exact usernames, exact groups, or ids the
    trust resolves the username to; a look-alike name is someone else. A
    request that names nobody fails both rules.
    """

    rules: DeployerRules

    def check(self, claim: Claim) -> Verdict:
        deployer = claim.deployer
        if deployer is None:
            return SUCCESS
        if not deployer.username:
            return failure(
                "the deployer is unknown (request.userInfo.username is missing), so the "
                "review.deployer rules cannot be met",
                fix=FIX_UNKNOWN_DEPLOYER,
            )
        reasons: list[str] = []
        fixes: list[str] = []
        if self.rules.not_author:
            problem = self._not_author(claim, deployer)
            if problem is not None:
                reasons.append(problem[0])
                fixes.append(problem[1])
        if self.rules.allowed and not self._allowed(claim.trust, deployer):
            reasons.append(
                f"deployer {_shown(deployer.username)} is not allowed to deploy reviewed changes "
                f"(review.deployer.allowed: {', '.join(self.rules.allowed)})"
            )
            fixes.append(FIX_DEPLOYER)
        return Verdict(tuple(reasons), tuple(dict.fromkeys(fixes)))

    def _not_author(self, claim: Claim, deployer: Deployer) -> tuple[str, str] | None:
        """Why the deployer is not proven not to be an author, and the fix."""
        username = deployer.username
        principal = claim.trust.principal_of_user(username)
        # A username that is itself an author's id is refused even unmapped:
        # merging can only make this stricter.
        candidates = [principal] if principal is not None else []
        with contextlib.suppress(IdentityError):
            candidates.append(check_id(username))
        for candidate in candidates:
            author = claim.author_of(candidate)
            if author is not None:
                return (
                    f"deployer {_shown(username)} is an author of the change "
                    f"({author.login}, {author.id}): someone else must deploy it",
                    FIX_NOT_AUTHOR,
                )
        if principal is not None or self._named(username):
            return None
        return (
            f"deployer {_shown(username)} is not mapped to a principal, so guard cannot prove "
            "they are not an author (review.deployer.notAuthor): add "
            f"{_shown(kubernetes_id(username))} to the aliases of their principal in a "
            "GuardTrust, or list a CD service account in review.deployer.allowed",
            FIX_UNMAPPED,
        )

    def _named(self, username: str) -> bool:
        """Whether ``allowed`` names this username itself (not via a group)."""
        return username in self.rules.allowed or kubernetes_id(username) in self.rules.allowed

    def _allowed(self, trust: Trust, deployer: Deployer) -> bool:
        groups = {
            a.removeprefix(GROUP_PREFIX) for a in self.rules.allowed if a.startswith(GROUP_PREFIX)
        }
        if self._named(deployer.username) or groups.intersection(deployer.groups):
            return True
        principal = trust.principal_of_user(deployer.username)
        return principal is not None and any(
            trust.principal_of(entry) == principal
            for entry in self.rules.allowed
            if not entry.startswith(GROUP_PREFIX)
        )
