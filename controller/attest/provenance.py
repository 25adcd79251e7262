"""SLSA build provenance: which commit an image was built from, and how.

Provenance v1 (``https://slsa.dev/provenance/v1``) is what GitHub artifact
attestations and most builders sign today; v0.2 is still read, as older
generators emit it. The predicate is a foreign format, so it is read field
by field into ``BuildProvenance`` and every field guard relies on must have
the type it expects: a wrong type is a reason, never a default.

The checks below look at one ``ProvenanceClaim`` each and say what is wrong
with it in a line the builder's owner can act on. They run only once a
trusted key signed the envelope (see ``chain``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.attest import dsse
from controller.attest.checks import SUCCESS, Verdict, failure, matches_any, subject_covered
from controller.attest.dsse import Envelope
from controller.attest.statement import (
    Statement,
    StatementError,
    normalize_revision,
    parse_statement,
)
from controller.attest.trust import TrustedKey
from controller.errors import InputError
from controller.policy.identity import ascii_lower
from controller.policy.provenance import (
    FORBIDDEN_EVENTS,
    GITHUB_WORKFLOW_BUILD_TYPES,
    SourceRepository,
)

PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
PROVENANCE_TYPES = (PROVENANCE_V1, PROVENANCE_V02)
# GitHub's hosted runners: the builder id names the environment when the
# run's parameters do not.
_HOSTED_BUILDER = "https://github.com/actions/runner/github-hosted"

FIX_BUILDER = (
    "platform team: sign build provenance with a builder key the policy lists in "
    "spec.review.provenance.builders (and builderIds, buildTypes)"
)
FIX_SOURCE = (
    "release engineer: build the image from one commit of a repository and ref the policy "
    "lists in spec.review.provenance (repositories by name and id, refs)"
)
FIX_RUN = (
    "release engineer: build the image in a run the policy allows (spec.review.provenance."
    "github: events, workflows, workflowRefs, runnerEnvironments), e.g. on push to the "
    "protected branch"
)


# Reasons quote what a signed statement says; a long value is cut there.
_SHOWN_CHARS = 200


def shown(value: str | None) -> str:
    """A value read from a statement, printable in one reason line whatever
    it holds: a builder's key is trusted to say how it built, not to write
    the denial's text (no line breaks, no invisible characters)."""
    if value is None:
        return "(none)"
    text = value if value.isascii() and value.isprintable() else ascii(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


@dataclass(frozen=True)
class GitSource:
    """One git entry of the build's inputs: ``git+<repository>@<ref>``."""

    uri: str
    repository: str  # host/owner/name, as policies and reviews spell it
    ref: str | None
    commit: str | None  # ``gitCommit:HEX``


@dataclass(frozen=True)
class BuildProvenance:
    predicate_type: str
    build_type: str
    builder_id: str
    sources: tuple[GitSource, ...]
    # GitHub Actions facts (None when the provenance does not carry them).
    event: str | None = None
    repository_id: str | None = None
    owner_id: str | None = None
    workflow_path: str | None = None
    workflow_ref: str | None = None
    workflow_repository: str | None = None
    runner_environment: str | None = None

    @property
    def github_actions(self) -> bool:
        return self.build_type in GITHUB_WORKFLOW_BUILD_TYPES or self.event is not None


def repository_name(uri: str) -> str:
    """``https://github.com/Acme/shop.git`` → ``github.com/acme/shop``: how
    policies and reviews name a repository (compared ASCII case-insensitively)."""
    text = uri.removeprefix("git+")
    scheme, sep, rest = text.partition("://")
    if sep and scheme in ("https", "http", "ssh", "git"):
        text = rest.split("@", 1)[-1] if scheme == "ssh" else rest
    return ascii_lower(text.rstrip("/").removesuffix(".git"))


def _field(data: Any, path: str, kind: type, *, required: bool = True) -> Any:
    """``data[a][b]...`` by a dotted path, of the given type, or StatementError."""
    value = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is str and not value):
        wanted = "a non-empty string" if kind is str else f"a {kind.__name__}"
        raise StatementError(f"build provenance field {path} is missing or not {wanted}")
    return value


def _git_source(entry: Any, where: str) -> GitSource | None:
    if not isinstance(entry, Mapping):
        raise StatementError(f"build provenance {where} is not an object")
    uri = entry.get("uri")
    digest = entry.get("digest")
    if digest is not None and not (
        isinstance(digest, Mapping) and all(isinstance(v, str) for v in digest.values())
    ):
        raise StatementError(f"build provenance {where}.digest is not a digest map")
    digests: Mapping[str, str] = digest or {}
    if not (isinstance(uri, str) and uri.startswith("git+")) and "gitCommit" not in digests:
        return None
    if not isinstance(uri, str):
        raise StatementError(f"build provenance {where} has a gitCommit but no uri")
    location, at, ref = uri.removeprefix("git+").rpartition("@")
    if not at:
        location, ref = uri.removeprefix("git+"), ""
    raw = digests.get("gitCommit") or digests.get("sha1")
    commit = None
    if raw is not None:
        try:
            commit = normalize_revision(raw)
        except StatementError:
            commit = None
    return GitSource(uri, repository_name(location), ref or None, commit)


def read_provenance(statement: Statement) -> BuildProvenance:
    """The statement's predicate as build provenance, or ``StatementError``."""
    predicate = statement.predicate
    if statement.predicate_type == PROVENANCE_V1:
        return _v1(predicate)
    if statement.predicate_type == PROVENANCE_V02:
        return _v02(predicate)
    raise StatementError(
        f"wrong predicate type {statement.predicate_type!r}: build provenance has "
        f"{' or '.join(PROVENANCE_TYPES)}"
    )


def _v1(predicate: Any) -> BuildProvenance:
    dependencies = _field(predicate, "buildDefinition.resolvedDependencies", list, required=False)
    sources = [
        _git_source(entry, f"buildDefinition.resolvedDependencies[{index}]")
        for index, entry in enumerate(dependencies or [])
    ]
    github = _field(predicate, "buildDefinition.internalParameters.github", dict, required=False)
    github = github or {}
    runner = _field(
        predicate, "buildDefinition.externalParameters.runner_environment", str, required=False
    ) or _text(github, "runner_environment")
    builder_id = _field(predicate, "runDetails.builder.id", str)
    return BuildProvenance(
        predicate_type=PROVENANCE_V1,
        build_type=_field(predicate, "buildDefinition.buildType", str),
        builder_id=builder_id,
        sources=tuple(s for s in sources if s is not None),
        event=_text(github, "event_name"),
        repository_id=_text(github, "repository_id"),
        owner_id=_text(github, "repository_owner_id"),
        workflow_path=_field(
            predicate, "buildDefinition.externalParameters.workflow.path", str, required=False
        ),
        workflow_ref=_field(
            predicate, "buildDefinition.externalParameters.workflow.ref", str, required=False
        ),
        workflow_repository=_field(
            predicate,
            "buildDefinition.externalParameters.workflow.repository",
            str,
            required=False,
        ),
        runner_environment=runner or ("github-hosted" if builder_id == _HOSTED_BUILDER else None),
    )


def _v02(predicate: Any) -> BuildProvenance:
    materials = _field(predicate, "materials", list, required=False)
    sources = [
        _git_source(entry, f"materials[{index}]") for index, entry in enumerate(materials or [])
    ]
    environment = _field(predicate, "invocation.environment", dict, required=False) or {}
    config = _field(predicate, "invocation.configSource", dict, required=False) or {}
    config_uri = _text(config, "uri") or ""
    location, at, ref = config_uri.removeprefix("git+").rpartition("@")
    builder_id = _field(predicate, "builder.id", str)
    return BuildProvenance(
        predicate_type=PROVENANCE_V02,
        build_type=_field(predicate, "buildType", str),
        builder_id=builder_id,
        sources=tuple(s for s in sources if s is not None),
        event=_text(environment, "github_event_name"),
        repository_id=_text(environment, "github_repository_id"),
        owner_id=_text(environment, "github_repository_owner_id"),
        workflow_path=_text(config, "entryPoint"),
        workflow_ref=ref if at else None,
        workflow_repository=location if at else None,
        runner_environment="github-hosted" if builder_id == _HOSTED_BUILDER else None,
    )


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StatementError(f"build provenance field {key} is not a string")
    return value


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class ProvenanceClaim:
    """Build provenance signed by at least one trusted key, looked at for one
    image digest."""

    digest: str
    envelope: Envelope
    statement: Statement
    provenance: BuildProvenance
    signers: tuple[TrustedKey, ...]

    @property
    def source(self) -> GitSource:
        """The one git source (``OneGitSource`` has passed when this is read)."""
        return self.provenance.sources[0]

    def about(self) -> str:
        return f"provenance for {self.digest}"


class ProvenanceSubjectMatches:
    def check(self, claim: ProvenanceClaim) -> Verdict:
        keys = claim.statement.subject_keys
        return subject_covered(keys, claim.digest, "build provenance", FIX_SOURCE)


@dataclass(frozen=True)
class SignedByBuilder:
    """Signed by a key with the builder role that the policy pins. An
    attester's key vouches for reviews, never for how something was built."""

    names: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        if any(k.role == "builder" and k.name in self.names for k in claim.signers):
            return SUCCESS
        signed = ", ".join(f"{k.name!r} ({k.role})" for k in claim.signers)
        return failure(
            f"{claim.about()} is not signed by a builder the policy pins "
            f"(review.provenance.builders: {', '.join(self.names)}); signed by {signed}",
            fix=FIX_BUILDER,
        )


@dataclass(frozen=True)
class BuilderPinned:
    builder_ids: Sequence[str]
    build_types: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        reasons = []
        built = claim.provenance
        if self.builder_ids and built.builder_id not in self.builder_ids:
            reasons.append(
                f"{claim.about()} names builder {shown(built.builder_id)!r}, not one the policy pins "
                f"({', '.join(self.builder_ids)})"
            )
        if built.build_type not in self.build_types:
            reasons.append(
                f"{claim.about()} has build type {shown(built.build_type)!r}, not one the policy "
                f"accepts ({', '.join(self.build_types)})"
            )
        return Verdict(tuple(reasons), (FIX_BUILDER,) if reasons else ())


class OneGitSource:
    """Exactly one git input with a commit: with two, nothing says which one
    the image is made of, so neither review can vouch for it."""

    def check(self, claim: ProvenanceClaim) -> Verdict:
        sources = claim.provenance.sources
        if len(sources) == 1 and sources[0].commit is not None:
            return SUCCESS
        if not sources:
            reason = f"{claim.about()} names no git source (resolvedDependencies with gitCommit)"
        elif len(sources) > 1:
            reason = (
                f"{claim.about()} names {len(sources)} git sources "
                f"({', '.join(shown(s.uri) for s in sources)}): exactly one is required"
            )
        else:
            reason = (
                f"{claim.about()} names git source {shown(sources[0].uri)} without a full gitCommit"
            )
        return failure(reason, fix=FIX_SOURCE)


@dataclass(frozen=True)
class SourceRepositoryListed:
    """The source repository is listed by name, and the build's repository
    id is the one listed with it: a fork has the same commits under another
    id, and a deleted repository's name can be taken by someone else."""

    repositories: Sequence[SourceRepository]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        name = claim.source.repository
        listed = [r for r in self.repositories if ascii_lower(r.name) == name]
        if not listed:
            return failure(
                f"{claim.about()}: built from repository {shown(name)}, not one the policy lists "
                f"({', '.join(r.name for r in self.repositories)})",
                fix=FIX_SOURCE,
            )
        built_id = claim.provenance.repository_id
        if built_id is None:
            return failure(
                f"{claim.about()} names no repository id, so a fork of {shown(name)} cannot be told "
                "apart from it",
                fix=FIX_SOURCE,
            )
        if any(r.id == built_id for r in listed):
            return SUCCESS
        return failure(
            f"{claim.about()}: built from repository id {shown(built_id)}, but the policy pins {name} "
            f"to id {', '.join(r.id for r in listed)} (a fork or a re-created repository shares "
            "its name or commits)",
            fix=FIX_SOURCE,
        )


@dataclass(frozen=True)
class SourceRefListed:
    refs: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        ref = claim.source.ref
        if matches_any(ref, self.refs):
            return SUCCESS
        return failure(
            f"{claim.about()}: built from ref {shown(ref)}, not one the policy lists "
            f"({', '.join(self.refs)})",
            fix=FIX_SOURCE,
        )


@dataclass(frozen=True)
class EventAllowed:
    """The run's trigger. Runs triggered by pull requests, comments or other
    runs may build code nobody reviewed while naming a protected commit."""

    events: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        event = claim.provenance.event
        if event in self.events:
            return SUCCESS
        if event is None:
            reason = f"{claim.about()} does not name the event that started the run"
        elif event in FORBIDDEN_EVENTS:
            reason = (
                f"{claim.about()} was built by a {event} run, which may build code nobody reviewed"
            )
        else:
            reason = (
                f"{claim.about()} was built by a {shown(event)} run; the policy allows "
                f"{', '.join(self.events)}"
            )
        return failure(reason, fix=FIX_RUN)


@dataclass(frozen=True)
class WorkflowAllowed:
    """The workflow file that ran, from which ref and repository."""

    paths: Sequence[str]
    refs: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        built = claim.provenance
        reasons = []
        if self.paths and built.workflow_path not in self.paths:
            reasons.append(
                f"{claim.about()}: workflow {shown(built.workflow_path)} is not one the "
                f"policy lists ({', '.join(self.paths)})"
            )
        if not matches_any(built.workflow_ref, self.refs):
            reasons.append(
                f"{claim.about()}: the workflow came from ref {shown(built.workflow_ref)}, "
                f"not one the policy lists ({', '.join(self.refs)})"
            )
        workflow_repository = (
            repository_name(built.workflow_repository) if built.workflow_repository else None
        )
        if workflow_repository != claim.source.repository:
            reasons.append(
                f"{claim.about()}: the workflow came from repository "
                f"{shown(workflow_repository)}, not the source repository "
                f"{shown(claim.source.repository)}"
            )
        return Verdict(tuple(reasons), (FIX_RUN,) if reasons else ())


@dataclass(frozen=True)
class RunnerAllowed:
    environments: Sequence[str]

    def check(self, claim: ProvenanceClaim) -> Verdict:
        runner = claim.provenance.runner_environment
        if runner in self.environments:
            return SUCCESS
        return failure(
            f"{claim.about()}: ran on a {shown(runner) if runner else 'unnamed'} runner; the policy allows "
            f"{', '.join(self.environments)}",
            fix=FIX_RUN,
        )


# Enough for every image of a pod; a flood of claims must not become a flood
# of index look-ups and API reads.
MAX_PEEKED_COMMITS = 16


def peek_source_commits(envelopes: Iterable[bytes]) -> tuple[str, ...]:
    """The commits that build provenance among unverified envelopes names
    (``gitCommit:HEX``), for look-ups only: which reviews to fetch. Nothing
    here is trusted; the chain verifies every link."""
    found: dict[str, None] = {}
    for raw in envelopes:
        found.update(dict.fromkeys(_commits_of(raw)))
        if len(found) >= MAX_PEEKED_COMMITS:
            break
    return tuple(found)[:MAX_PEEKED_COMMITS]


# The same envelopes come with every request for an image: read each once.
@functools.lru_cache(maxsize=256)
def _commits_of(raw: bytes) -> tuple[str, ...]:
    try:
        statement = parse_statement(dsse.parse(raw).payload)
        if statement.predicate_type not in PROVENANCE_TYPES:
            return ()
        sources = read_provenance(statement).sources
    except (InputError, StatementError):
        return ()
    return tuple(s.commit for s in sources if s.commit is not None)
