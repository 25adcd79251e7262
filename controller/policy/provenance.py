"""A review policy's build-provenance requirements: the chain from image to review.

``review.provenance`` says which builds count: an image is covered when build
provenance signed by a pinned builder names it, was built from exactly one
commit of a listed repository (by name *and* numeric id: forks share commit
SHAs) on a listed ref, and that commit has an accepted review (or, where
``review.acceptSourceVSA`` allows it, a source verification summary).

For GitHub Actions builds the run's trigger matters as much as the commit: a
``pull_request_target``, ``workflow_run`` or ``issue_comment`` run may build
code nobody reviewed while naming a protected commit, so those events can
never be allowed, and only ``push`` is allowed unless the policy lists more.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field

from controller.policy.identity import GitRefGlob, KeyName, Repository, not_one_of
from controller.policy.strictmodel import Strict

# The build types whose GitHub facts (event, repository id, workflow, runner)
# guard reads: GitHub's own and the SLSA community's, which older
# attest-build-provenance releases and slsa-github-generator emit.
GITHUB_WORKFLOW_BUILD_TYPES: tuple[str, ...] = (
    "https://actions.github.io/buildtypes/workflow/v1",
    "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
)

Event = Literal["push", "release", "workflow_dispatch", "schedule"]
EVENTS: tuple[str, ...] = get_args(Event)
# Triggers that run with the base repository's credentials on code or
# commands from someone else: never a build of a reviewed commit.
FORBIDDEN_EVENTS: tuple[str, ...] = (
    "pull_request",
    "pull_request_target",
    "workflow_run",
    "issue_comment",
)
RunnerEnvironment = Literal["github-hosted", "self-hosted"]
RUNNER_ENVIRONMENTS: tuple[str, ...] = get_args(RunnerEnvironment)
SOURCE_LEVEL_4 = "SLSA_SOURCE_LEVEL_4"


def _event(value: Any) -> Any:
    if isinstance(value, str) and value in FORBIDDEN_EVENTS:
        raise ValueError(
            f"event {value!r} can never be allowed: a {value} run may build code nobody "
            "reviewed while naming a protected commit"
        )
    if isinstance(value, str) and value in EVENTS:
        return value
    raise ValueError(not_one_of(value, EVENTS, "an event guard accepts"))


def _runner(value: Any) -> Any:
    if isinstance(value, str) and value in RUNNER_ENVIRONMENTS:
        return value
    raise ValueError(not_one_of(value, RUNNER_ENVIRONMENTS, "a runner environment"))


# A URI or path compared exactly: one visible ASCII token.
Token = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[!-~]+$")]


class SourceRepository(Strict):
    """A repository by name (``github.com/acme/shop``) and by its numeric id
    (GitHub's ``repository_id``), which survives renames and is never reused."""

    name: Repository
    """The repository as reviews name it: host/owner/name (``github.com/acme/shop``)."""
    id: Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")]
    """Its numeric id, as text (GitHub: ``gh api repos/OWNER/REPO --jq .id``)."""


class GitHubRequirements(Strict):
    """What a GitHub Actions run must look like.

    ``workflows``: workflow file paths (``.github/workflows/release.yml``);
    empty means any workflow of the repository. ``workflowRefs``: the refs
    the workflow file may come from; empty means the policy's ``refs``.
    """

    workflows: list[Token] = Field(default_factory=list, max_length=64)
    """Workflow file paths that may build (``.github/workflows/release.yml``); empty: any."""
    workflow_refs: list[GitRefGlob] = Field(default_factory=list, max_length=64)
    """Refs the workflow file may come from (globs); empty: the policy's ``refs``."""
    runner_environments: list[Annotated[RunnerEnvironment, BeforeValidator(_runner)]] = Field(
        default_factory=lambda: list[RunnerEnvironment](["github-hosted"]), min_length=1
    )
    """Runner environments allowed: ``github-hosted`` (the default), ``self-hosted``."""
    events: list[Annotated[Event, BeforeValidator(_event)]] = Field(
        default_factory=lambda: list[Event](["push"]), min_length=1
    )
    """Events that may start the build: ``push`` (the default), ``release``,
    ``workflow_dispatch``, ``schedule``; never pull-request or comment triggers."""


class ProvenanceRequirements(Strict):
    """``review.provenance``: which builds of which sources count.

    ``builders`` are names of GuardTrust keys with the ``builder`` role;
    ``builderIds`` optionally pin ``runDetails.builder.id`` too.
    """

    builders: list[KeyName] = Field(min_length=1, max_length=64)
    """GuardTrust key names with the ``builder`` role whose provenance counts."""
    builder_ids: list[Token] = Field(default_factory=list, max_length=64)
    """``runDetails.builder.id`` values accepted (exact); empty: any."""
    build_types: list[Token] = Field(
        default_factory=lambda: list(GITHUB_WORKFLOW_BUILD_TYPES), min_length=1, max_length=64
    )
    """Build types accepted (exact); default: GitHub Actions workflow builds."""
    repositories: list[SourceRepository] = Field(min_length=1, max_length=256)
    """Source repositories, by name and numeric id, that images may be built from."""
    refs: list[GitRefGlob] = Field(min_length=1, max_length=64)
    """Refs (globs) the built commit may come from, e.g. ``refs/heads/main``."""
    github: GitHubRequirements = Field(default_factory=GitHubRequirements)
    """What a GitHub Actions run must look like (events, workflows, runners)."""


class SourceSummaries(Strict):
    """``review.acceptSourceVSA``: a source verification summary signed by one
    of ``verifiers`` (GuardTrust keys with the ``verifier`` role) may stand in
    for a review of the commit. Every level in ``requiredLevels`` must be
    among the summary's ``verifiedLevels``; it must be no older than the
    review's ``maxAge``."""

    verifiers: list[KeyName] = Field(min_length=1, max_length=64)
    """GuardTrust key names with the ``verifier`` role whose summaries count."""
    required_levels: list[Token] = Field(
        default_factory=lambda: [SOURCE_LEVEL_4], min_length=1, max_length=16
    )
    """Levels that must all be among ``verifiedLevels``; default ``SLSA_SOURCE_LEVEL_4``."""
