"""The review evaluator the policy engine calls.

``AttestationReview.review(policy, subject)`` decides a policy's ``review``
block for every artifact of a subject (images of a workload, or the plan
file of a Terraform run): each must be pinned by digest and covered by an
accepted attestation, or be an exempt image. The result carries every
reason, the command that would fix it, and evidence for the audit trail.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import shlex
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from controller.attest.chain import ChainVerifier
from controller.attest.checks import Deployer
from controller.attest.dsse import EnvelopeError, parse
from controller.attest.files import read_envelope
from controller.attest.statement import StatementError, normalize_digest, peek_subject_keys
from controller.attest.trust import Trust, load_trust
from controller.attest.verify import (
    ArtifactVerdict,
    Circumstances,
    Requirements,
    SignatureCache,
    Verifier,
)
from controller.errors import InputError
from controller.policy.documents import GuardPolicy, GuardTrustSpec, Review
from controller.policy.results import Artifact, Result, Subject
from controller.policy.reviewer import ReviewOutcome


class EnvelopeSource(Protocol):
    """Where candidate envelopes come from: the raw bytes of every envelope
    that might cover a digest. Returning too many is safe (each is verified);
    returning too few only denies."""

    def for_digest(self, digest: str) -> Sequence[bytes]: ...


class EnvelopeList:
    """An in-memory source: envelopes that claim a digest, or all of them when
    none does (so a replayed envelope is reported as a subject mismatch)."""

    def __init__(self, envelopes: Iterable[bytes]) -> None:
        self.envelopes = tuple(envelopes)
        self._index: dict[str, list[bytes]] = {}
        for raw in self.envelopes:
            try:
                claimed = peek_subject_keys(parse(raw).payload)
            except EnvelopeError:
                continue
            for digest in claimed:
                self._index.setdefault(digest, []).append(raw)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> EnvelopeList:
        """Envelope files: DSSE JSON or ReviewAttestation documents."""
        return cls(read_envelope(path) for path in paths)

    def for_digest(self, digest: str) -> Sequence[bytes]:
        return tuple(self._index.get(digest, ())) or self.envelopes


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AttestationReview:
    """Implements the engine's ``ReviewEvaluator`` with signed attestations.

    A request from a Kubernetes controller's own identity (the subject's
    ``requester.controller``, decided once where the subject is built, from
    ``request.userInfo`` and never from ``ownerReferences``) skips only the
    checks that age and the deployer rules, so scaling and rescheduling
    never fail because an attestation aged. ``on_verdict`` observes each
    artifact verdict (True when accepted), for metrics.
    """

    def __init__(
        self,
        trust: Trust | GuardTrustSpec,
        envelopes: EnvelopeSource,
        now: Callable[[], dt.datetime] = _utcnow,
        cache: SignatureCache | None = None,
        on_verdict: Callable[[bool], None] | None = None,
    ) -> None:
        self.trust = trust if isinstance(trust, Trust) else Trust.from_spec(trust)
        self.envelopes = envelopes
        self.now = now
        self.verifier = Verifier(self.trust, cache)
        self.on_verdict = on_verdict

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome:
        """The review of every artifact of the subject. Whatever this raises
        the engine (``Engine.review_findings``, the one catch-all for a
        failing evaluator) turns into an error finding, never a pass."""
        review = policy.spec.review
        if review is None:
            return ReviewOutcome(Result.passed)
        requirements = Requirements.from_review(review)
        circumstances = self._circumstances(subject)
        reasons: list[str] = []
        fixes: list[str] = []
        evidence: dict[str, Any] = {
            "envelopes": [],
            "approvers": {},
            # Artifact digest -> the envelope that covered it.
            "accepted": {},
            "exempted": [],
            "checks": "all but expiry, maxAge and deployer (controller identity)"
            if circumstances.controller
            else "all",
        }
        errored = False
        for artifact in subject.artifacts:
            if artifact.kind == "image" and _exempt(artifact.reference, review.exempt_images):
                evidence["exempted"].append(artifact.reference)
                continue
            if artifact.digest is None:
                reasons.append(
                    f"{artifact.reference}: not pinned by digest (tag-only images are denied)"
                )
                fixes.append(
                    f"developer: pin {artifact.reference} by digest (IMAGE@sha256:<digest>)"
                )
                continue
            try:
                verdict = self._verify(artifact, requirements, circumstances)
            except (InputError, StatementError) as exc:
                reasons.append(f"{artifact.reference}: cannot be verified: {exc}")
                errored = True
                continue
            except Exception as exc:  # a broken envelope source must deny, not crash
                reasons.append(f"{artifact.reference}: attestations unavailable: {exc}")
                errored = True
                continue
            evidence["envelopes"].extend(verdict.examined)
            if verdict.ok:
                evidence["approvers"][verdict.digest] = list(verdict.approvers)
                evidence["accepted"][verdict.digest] = verdict.accepted
                if verdict.chain:
                    # Which provenance, commit and review (or source summary) covered it.
                    evidence.setdefault("chain", {})[verdict.digest] = dict(verdict.chain)
                continue
            reasons.extend(f"{artifact.reference}: {r}" for r in verdict.reasons)
            # Each failure names who must act; with no attestation at all, the
            # release pipeline must make one, and this is its command.
            fixes.extend(verdict.fixes or (review_command(verdict.digest, artifact, review),))
        evidence["envelopes"] = sorted(set(evidence["envelopes"]))
        if not reasons:
            return ReviewOutcome(Result.passed, evidence=evidence)
        return ReviewOutcome(
            Result.error if errored else Result.fail,
            tuple(reasons),
            fix="; ".join(dict.fromkeys(fixes)),
            evidence=evidence,
        )

    def _verify(
        self, artifact: Artifact, requirements: Requirements, circumstances: Circumstances
    ) -> ArtifactVerdict:
        assert artifact.digest is not None
        digest = normalize_digest(artifact.digest)
        if requirements.provenance is not None:
            verdict = ChainVerifier(self.verifier).verify(
                digest,
                self.envelopes.for_digest,
                requirements,
                _with_introduced(circumstances, artifact.introduced),
            )
        else:
            verdict = self.verifier.verify(
                digest,
                self.envelopes.for_digest(digest),
                requirements,
                _with_introduced(circumstances, artifact.introduced),
            )
        if self.on_verdict is not None:
            self.on_verdict(verdict.ok)
        return verdict

    def _circumstances(self, subject: Subject) -> Circumstances:
        # A request (Kubernetes) always has a deployer; one that names nobody
        # is an unknown deployer, which the deployer rules refuse.
        requester = subject.requester
        controller = requester is not None and requester.controller
        deployer = None
        if requester is not None and not controller:
            deployer = Deployer(username=requester.username, groups=requester.groups)
        return Circumstances(now=self.now(), controller=controller, deployer=deployer)


def _with_introduced(circumstances: Circumstances, introduced: bool) -> Circumstances:
    return Circumstances(
        now=circumstances.now,
        introduced=introduced,
        controller=circumstances.controller,
        deployer=circumstances.deployer,
    )


def _exempt(reference: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(reference, p) for p in patterns)


def review_command(digest: str, artifact: Artifact, review: Review) -> str:
    """What the release pipeline runs to attest this artifact, for the
    release engineer: the key, repository and branch are the policy's, the
    change's facts are placeholders the pipeline fills."""
    subject = (
        f"--subject-file {shlex.quote(artifact.reference)}"
        if artifact.kind == "plan"
        else f"--digest {shlex.quote(_image_name(artifact.reference))}@{digest}"
    )
    return (
        "release engineer: attest it in the release pipeline after review: "
        f"guard attest review --key {review.attesters[0]}.key "
        f"--repository {shlex.quote(review.repositories[0])} "
        f"--target-ref {shlex.quote(review.target_refs[0])} "
        "--revision <commit> --change-id <id> --author <login>=<id> "
        f"--approval <login>=<id> {subject} --output review.json"
    )


def _image_name(reference: str) -> str:
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def evaluator_for_files(trust: Path | None, envelopes: Sequence[Path]) -> AttestationReview:
    """An evaluator over files: a trust file (none means the empty trust)
    and envelope files. ``guard policy test`` builds one per GuardPolicyTest."""
    loaded = load_trust([trust]) if trust is not None else Trust()
    return AttestationReview(loaded, EnvelopeList.from_files(envelopes))
