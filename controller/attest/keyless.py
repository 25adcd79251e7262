"""Keyless signers: which trusted Sigstore identities signed a bundle.

A bundle is verified offline against each trusted root an identity names
(``bundle``); then the certificate's identity is matched *structurally*
against each identity of that root: the issuer exactly, and for GitHub
Actions every fact Fulcio copied from the workflow's token (repository and
owner by numeric id, source ref, the signing workflow and its ref, the
trigger, the runner). Each mismatch is a reason of its own.

The signing workflow must be pinned: a workflow of the repository runs from
the source ref (a protected ref the identity lists) or from a ref in
``workflowRefs``; a reusable workflow of another repository only at a
commit in ``workflowRefs``, since another repository's branch can move.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from controller.attest import fulcio
from controller.attest.bundle import Verified, verify_bundle
from controller.attest.checks import SUCCESS, Verdict, failure
from controller.attest.dsse import Envelope
from controller.attest.fulcio import FulcioIdentity, identity_of
from controller.attest.keys import KeyFileError, PublicKey
from controller.attest.provenance import BuildProvenance, ProvenanceClaim, repository_name, shown
from controller.attest.trust import Trust, TrustedKey
from controller.policy.identity import ascii_lower
from controller.policy.keyless import GitHubWorkflowIdentity, SigstoreIdentity


@dataclass(frozen=True)
class KeylessOutcome:
    """The trusted identities that signed a bundle, or every reason none did."""

    signers: tuple[TrustedKey, ...] = ()
    reasons: tuple[str, ...] = ()


def keyless_signers(envelope: Envelope, trust: Trust) -> KeylessOutcome:
    """Verify the envelope's bundle against the trust's roots and match identities."""
    if envelope.bundle is None:
        raise ValueError("not a bundle")
    if not trust.identities:
        return KeylessOutcome(
            reasons=(
                "this Sigstore bundle was signed keyless, and the trust lists no identity "
                "(spec.identities) to match its certificate",
            )
        )
    signers: list[TrustedKey] = []
    reasons: list[str] = []
    used = dict.fromkeys(i.root for i in trust.identities)
    for root in used:
        verified = verify_bundle(envelope.bundle, trust.roots[root])
        if isinstance(verified, str):
            reasons.append(f"bundle does not verify against trusted root {root!r}: {verified}")
            continue
        if verified.payload_type != envelope.payload_type or verified.payload != envelope.payload:
            reasons.append("bundle's verified payload differs from its envelope")
            continue
        identity = identity_of(verified.certificate)
        for candidate in (i for i in trust.identities if i.root == root):
            mismatches = match(candidate, identity)
            if mismatches:
                reasons.append(
                    f"certificate for {shown(identity.short)} is not identity "
                    f"{candidate.name!r}: {'; '.join(mismatches)}"
                )
                continue
            signer = _signer(candidate, verified, identity)
            if signer is None:
                reasons.append(f"certificate key of identity {candidate.name!r} is not supported")
            else:
                signers.append(signer)
    if signers:
        return KeylessOutcome(tuple(signers))
    return KeylessOutcome(reasons=tuple(dict.fromkeys(reasons)))


def _signer(
    identity: SigstoreIdentity, verified: Verified, certificate: FulcioIdentity
) -> TrustedKey | None:
    try:
        public = PublicKey.of(verified.certificate.public_key(), f"identity {identity.name!r}")
    except KeyFileError:
        return None
    return TrustedKey(identity.name, identity.role, identity.principal, public, certificate)


def match(identity: SigstoreIdentity, certificate: FulcioIdentity) -> list[str]:
    """Every way the certificate differs from the identity (none: it matches)."""
    reasons: list[str] = []
    if certificate.issuer != identity.issuer:
        reasons.append(f"issuer is {shown(certificate.issuer)}, not {identity.issuer}")
    if identity.subject is not None and identity.subject not in certificate.subjects:
        reasons.append(
            f"subject is {shown(', '.join(certificate.subjects) or None)}, not {identity.subject}"
        )
    if identity.github is not None:
        reasons.extend(_github(identity.github, certificate))
    return reasons


def _github(wanted: GitHubWorkflowIdentity, certificate: FulcioIdentity) -> list[str]:
    reasons: list[str] = []
    get = certificate.get
    server = wanted.server.rstrip("/")
    repository_uri = get(fulcio.SOURCE_REPOSITORY_URI)
    expected_uri = f"{server}/{wanted.repository}"
    if repository_uri is None or ascii_lower(repository_uri) != ascii_lower(expected_uri):
        reasons.append(f"source repository is {shown(repository_uri)}, not {expected_uri}")
    repository_id = get(fulcio.SOURCE_REPOSITORY_ID)
    if repository_id != wanted.repository_id:
        reasons.append(
            f"source repository id is {shown(repository_id)}, not {wanted.repository_id} "
            "(a re-created or renamed repository has another id)"
        )
    if wanted.owner_id is not None:
        owner_id = get(fulcio.SOURCE_REPOSITORY_OWNER_ID)
        if owner_id != wanted.owner_id:
            reasons.append(f"repository owner id is {shown(owner_id)}, not {wanted.owner_id}")
    source_ref = get(fulcio.SOURCE_REPOSITORY_REF)
    if source_ref is None or not any(fnmatch.fnmatchcase(source_ref, p) for p in wanted.refs):
        reasons.append(f"source ref is {shown(source_ref)}, not one of {', '.join(wanted.refs)}")
    trigger = get(fulcio.BUILD_TRIGGER)
    if trigger not in wanted.events:
        reasons.append(
            f"the run was triggered by {shown(trigger)}, not {' or '.join(wanted.events)}"
        )
    runner = get(fulcio.RUNNER_ENVIRONMENT)
    if runner not in wanted.runner_environments:
        reasons.append(
            f"runner environment is {shown(runner)}, not {' or '.join(wanted.runner_environments)}"
        )
    reasons.extend(_signer_workflow(wanted, certificate, source_ref))
    return reasons


def _signer_workflow(
    wanted: GitHubWorkflowIdentity, certificate: FulcioIdentity, source_ref: str | None
) -> list[str]:
    """The workflow that signed is the one named, pinned as required."""
    server = wanted.server.rstrip("/")
    signer = certificate.get(fulcio.BUILD_SIGNER_URI)
    digest = certificate.get(fulcio.BUILD_SIGNER_DIGEST)
    location, at, ref = (signer or "").rpartition("@")
    if wanted.workflow is not None:
        expected = f"{server}/{wanted.repository}/{wanted.workflow}"
    else:
        expected = f"{server}/{wanted.reusable_workflow}"
    if not at or ascii_lower(location) != ascii_lower(expected):
        return [f"signing workflow is {shown(signer)}, not {expected}"]
    if not wanted.workflow_refs:
        # A workflow of the repository, from the very ref that was built.
        if ref != source_ref:
            return [
                f"signing workflow ran from {shown(ref)}, not the source ref "
                f"{shown(source_ref)} (list other refs in workflowRefs)"
            ]
        return []
    pinned = [r for r in wanted.workflow_refs if not r.startswith("refs/")]
    globs = [r for r in wanted.workflow_refs if r.startswith("refs/")]
    if digest is not None and digest in pinned:
        return []
    if ref.startswith("refs/") and any(fnmatch.fnmatchcase(ref, p) for p in globs):
        return []
    return [
        f"signing workflow ran at {shown(ref)} (commit {shown(digest)}), not at one of "
        f"{', '.join(wanted.workflow_refs)}"
    ]


def source_repository(certificate: FulcioIdentity) -> str | None:
    """The certificate's source repository as policies name it (host/owner/name)."""
    uri = certificate.get(fulcio.SOURCE_REPOSITORY_URI)
    return repository_name(uri) if uri else None


# --------------------------------------------------------------------------- provenance


FIX_KEYLESS_PROVENANCE = (
    "release engineer: the build provenance and its signing certificate describe different "
    "runs; attest the build from the run that built it (actions/attest-build-provenance)"
)


class CertificateAgrees:
    """Build provenance signed keyless by a GitHub Actions workflow says what
    the signing certificate says: the same repository (name and ids),
    commit, ref, trigger, runner and top-level workflow.

    ``gh attestation verify`` checks the certificate against its flags, and
    guard's provenance checks read the predicate; without this link, a
    trusted workflow could sign provenance describing another run (another
    repository with the same commit, a protected ref it did not build).
    """

    def check(self, claim: ProvenanceClaim) -> Verdict:
        reasons: list[str] = []
        for signer in claim.signers:
            certificate = signer.certificate
            if signer.role != "builder" or certificate is None:
                continue
            if certificate.get(fulcio.SOURCE_REPOSITORY_URI) is None:
                continue  # not a GitHub Actions certificate: nothing to compare
            reasons.extend(
                f"{claim.about()}: {r} (signer {signer.name!r})"
                for r in _disagreements(claim.provenance, certificate)
            )
        if reasons:
            return failure(*reasons, fix=FIX_KEYLESS_PROVENANCE)
        return SUCCESS


def _disagreements(provenance: BuildProvenance, certificate: FulcioIdentity) -> list[str]:
    get = certificate.get
    source = provenance.sources[0] if len(provenance.sources) == 1 else None
    pairs: list[tuple[str, str | None, str | None]] = [
        (
            "source repository",
            source.repository if source else None,
            source_repository(certificate),
        ),
        (
            "source commit",
            source.commit.partition(":")[2] if source and source.commit else None,
            ascii_lower(get(fulcio.SOURCE_REPOSITORY_DIGEST) or "") or None,
        ),
        ("source ref", source.ref if source else None, get(fulcio.SOURCE_REPOSITORY_REF)),
        ("repository id", provenance.repository_id, get(fulcio.SOURCE_REPOSITORY_ID)),
        ("repository owner id", provenance.owner_id, get(fulcio.SOURCE_REPOSITORY_OWNER_ID)),
        ("event", provenance.event, get(fulcio.BUILD_TRIGGER)),
        ("runner environment", provenance.runner_environment, get(fulcio.RUNNER_ENVIRONMENT)),
        ("workflow", _workflow(provenance), get(fulcio.BUILD_CONFIG_URI)),
    ]
    return [
        f"its {what} is {shown(said)}, but the signing certificate says {shown(certified)}"
        for what, said, certified in pairs
        # A field the provenance leaves out is judged by the policy's own
        # checks (which require what they need); one it states must agree.
        if said is not None and said != certified
    ]


def _workflow(provenance: BuildProvenance) -> str | None:
    """The top-level workflow as Fulcio spells it: ``REPOSITORY_URL/PATH@REF``."""
    if not (
        provenance.workflow_repository and provenance.workflow_path and provenance.workflow_ref
    ):
        return None
    repository = provenance.workflow_repository.removeprefix("git+").rstrip("/")
    return f"{repository}/{provenance.workflow_path}@{provenance.workflow_ref}"
