"""Keyless trust: Sigstore identities and the trusted roots that vouch for them.

A keyless signature is made with a short-lived certificate that a Sigstore
certificate authority (Fulcio) issued to an OIDC identity, and recorded in a
transparency log. Trusting it means trusting a *root* (the authority's
certificates, the log's keys, the timestamp authorities: a Sigstore
``trusted_root.json``) and an *identity* (who the certificate was issued to).

The root is data in the GuardTrust, never fetched: admission makes no network
calls, and an air-gapped cluster has no TUF repository to ask. The identity
is matched structurally: the issuer exactly, and for GitHub Actions the
repository and owner by numeric id, the workflow by path and ref, the event
and the runner, all read from the certificate's own extensions. There is no
free-form subject regex: ``https://github.com/acme/shop.*`` would also match
``acme/shop-fork`` and ``acme/shopping``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from controller.policy.identity import GitRefGlob, KeyName, PrincipalId, not_one_of
from controller.policy.provenance import (
    FORBIDDEN_EVENTS,
    RUNNER_ENVIRONMENTS,
    Event,
    RunnerEnvironment,
    _event,
)
from controller.policy.strictmodel import Strict

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_SERVER = "https://github.com"
# A Sigstore trusted root is a few KiB (public-good: about 6); a private
# instance with a long key history stays well under this.
MAX_TRUSTED_ROOT_CHARS = 256 * 1024

KeylessRole = Literal["attester", "person", "builder", "verifier"]

Digits = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")]
# A URL compared exactly: one visible ASCII token starting with https://.
HttpsUrl = Annotated[str, Field(min_length=9, max_length=1024, pattern=r"^https://[!-~]+$")]
# ``OWNER/REPO`` as GitHub spells it in URLs.
OwnerRepo = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", max_length=256),
]
WorkflowPath = Annotated[
    str,
    Field(pattern=r"^\.github/workflows/[A-Za-z0-9._/-]+\.ya?ml$", max_length=512),
]
# A workflow ref: a full ref glob, or a 40-hex commit (a reusable workflow
# pinned to a fixed revision).
WorkflowRef = Annotated[str, Field(pattern=r"^(refs/[!-~]*|[0-9a-f]{40})$", max_length=1024)]


def _runner(value: Any) -> Any:
    if isinstance(value, str) and value in RUNNER_ENVIRONMENTS:
        return value
    raise ValueError(not_one_of(value, RUNNER_ENVIRONMENTS, "a runner environment"))


class SigstoreRoot(Strict):
    """A Sigstore trusted root, given as data: the certificate authorities,
    transparency logs and timestamp authorities whose signatures count.

    Public-good Sigstore's root is the ``trusted_root.json`` target of
    ``https://tuf-repo-cdn.sigstore.dev``; GitHub's private instance (used for
    private repositories) is the one of ``https://tuf-repo.github.com``.
    """

    name: KeyName
    """The root's name, as identities' `root` refers to it."""
    trusted_root: Annotated[str, Field(min_length=2, max_length=MAX_TRUSTED_ROOT_CHARS)]
    """The `trusted_root.json` document (media type `application/vnd.dev.sigstore.trustedroot+json;version=0.1`), as JSON text."""


class GitHubWorkflowIdentity(Strict):
    """A GitHub Actions workflow identity, matched on the certificate's
    extensions (OIDs 1.3.6.1.4.1.57264.1.*), never on a pattern.

    The workflow that signs (the certificate's build signer) is either a
    workflow of the repository itself, on one of `refs`, or a reusable
    workflow of another repository pinned to a commit in `workflowRefs`.
    """

    server: HttpsUrl = GITHUB_SERVER
    """The GitHub server (`https://github.com`, or a GitHub Enterprise Server URL)."""
    repository: OwnerRepo
    """The source repository, `OWNER/REPO`; the source repository URI must be `SERVER/OWNER/REPO`."""
    repository_id: Digits
    """Its numeric id (`gh api repos/OWNER/REPO --jq .id`): a deleted and re-created repository of the same name has another."""
    owner_id: Digits | None = None
    """The owner's numeric id (`gh api users/OWNER --jq .id`); unset: not checked."""
    refs: list[GitRefGlob] = Field(min_length=1, max_length=64)
    """Source refs (globs) the run may be for, e.g. `refs/heads/main`, `refs/tags/v*`."""
    workflow: WorkflowPath | None = None
    """The signing workflow's path in the source repository (`.github/workflows/release.yml`); unset: `reusableWorkflow` must be set."""
    reusable_workflow: (
        Annotated[
            str,
            Field(
                pattern=r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+/\.github/workflows/[A-Za-z0-9._/-]+\.ya?ml$",
                max_length=1024,
            ),
        ]
        | None
    ) = None
    """A reusable workflow that signs, `OWNER/REPO/.github/workflows/FILE.yml` (e.g. GitHub's `github/artifact-attestations-workflows/.github/workflows/attest.yml`)."""
    workflow_refs: list[WorkflowRef] = Field(default_factory=list, max_length=64)
    """Refs the signing workflow may run from: a ref glob or a 40-hex commit; empty: the source ref (a workflow of the repository). A reusable workflow needs a commit here."""
    events: list[Annotated[Event, BeforeValidator(_event)]] = Field(
        default_factory=lambda: list[Event](["push"]), min_length=1
    )
    """Events that may trigger the run: `push` (the default), `release`, `workflow_dispatch`, `schedule`; never pull-request or comment triggers."""
    runner_environments: list[Annotated[RunnerEnvironment, BeforeValidator(_runner)]] = Field(
        default_factory=lambda: list[RunnerEnvironment](["github-hosted"]), min_length=1
    )
    """Runner environments allowed: `github-hosted` (the default), `self-hosted`."""

    @model_validator(mode="after")
    def _one_signer(self) -> GitHubWorkflowIdentity:
        if (self.workflow is None) == (self.reusable_workflow is None):
            raise ValueError("give exactly one of workflow and reusableWorkflow")
        if self.reusable_workflow is not None:
            floating = [r for r in self.workflow_refs if r.startswith("refs/")]
            if not self.workflow_refs or floating:
                raise ValueError(
                    "a reusableWorkflow must be pinned: list its 40-hex commit(s) in "
                    "workflowRefs (a branch or tag of another repository can move under you)"
                )
        return self


class SigstoreIdentity(Strict):
    """A keyless signer: whoever a trusted root's certificate authority
    certified for this identity may sign in `role`, as a key of that role would.

    Give `github` for GitHub Actions workflows, or `subject` (the
    certificate's e-mail or URI subject, compared exactly) for other issuers.
    """

    name: KeyName
    """The identity's name, as policies list signers (`review.attesters`, `review.provenance.builders`...); unique among keys and identities."""
    role: KeylessRole
    """What it may vouch for: `attester`, `person`, `builder`, `verifier` (as for keys)."""
    principal: PrincipalId | None = None
    """Whose identity it is (a `person` identity: its signature is one approval by this principal)."""
    root: KeyName
    """The name of the trusted root (`spec.trustedRoots`) whose authority certifies it."""
    issuer: HttpsUrl
    """The OIDC issuer, compared exactly (GitHub Actions: `https://token.actions.githubusercontent.com`)."""
    subject: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[!-~]+$")] | None = None
    """The certificate's subject (e-mail or URI), compared exactly; for issuers other than GitHub Actions."""
    github: GitHubWorkflowIdentity | None = None
    """A GitHub Actions workflow identity, matched on the certificate's extensions."""

    @model_validator(mode="after")
    def _one_match(self) -> SigstoreIdentity:
        if (self.subject is None) == (self.github is None):
            raise ValueError(f"identity {self.name!r}: give exactly one of subject and github")
        if self.role == "person" and not self.principal:
            raise ValueError(f"person identity {self.name!r} needs a principal")
        return self


__all__ = [
    "FORBIDDEN_EVENTS",
    "GITHUB_ISSUER",
    "GitHubWorkflowIdentity",
    "SigstoreIdentity",
    "SigstoreRoot",
]
