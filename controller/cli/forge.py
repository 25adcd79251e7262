"""``guard attest review --from github|gitlab``: the predicate read from the forge.

The options, the environment CI systems already set (``GITHUB_TOKEN``,
``GITHUB_API_URL``, ``GITLAB_TOKEN`` or ``CI_JOB_TOKEN``, ``CI_API_V4_URL``)
and the wiring of the readers in ``controller.forge``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from typing import TYPE_CHECKING, Any

from controller.errors import InputError

if TYPE_CHECKING:
    from controller.forge.model import ChangeRecord

FORGES = ("github", "gitlab")
# Predicate flags the forge answers itself; giving one with --from is a mistake.
FORGE_ANSWERS = (
    "revision",
    "tree",
    "change_system",
    "change_id",
    "change_uri",
    "head_revision",
    "author",
    "bot_author",
    "approval",
    "bot_approval",
)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_SLUG = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")


def add_forge_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "read from the forge (instead of the predicate flags)",
        "guard reads authors, pushers, approvals, revisions and checks from the forge's API. "
        "--repository is then OWNER/NAME (GitHub); --target-ref, if given, must be the "
        "branch the change was merged into; --check values are added to the forge's checks.",
    )
    group.add_argument(
        "--from", dest="forge", choices=FORGES, metavar="FORGE", help="github or gitlab"
    )
    group.add_argument(
        "--pull-request", type=int, metavar="N", help="the merged pull request (GitHub)"
    )
    group.add_argument(
        "--commit",
        metavar="SHA",
        help="the merge commit that was built: guard finds the one merged change that made it",
    )
    group.add_argument("--project", metavar="PATH", help="the GitLab project, e.g. acme/shop")
    group.add_argument(
        "--merge-request", type=int, metavar="IID", help="the merged merge request (GitLab)"
    )
    group.add_argument(
        "--api-url",
        metavar="URL",
        help="the forge's API (default: $GITHUB_API_URL or https://api.github.com; "
        "$CI_API_V4_URL or https://gitlab.com/api/v4)",
    )
    group.add_argument(
        "--approver-team",
        action="append",
        default=[],
        metavar="ORG/TEAM",
        help="record each approver's membership of this team (GitHub) or group (GitLab), "
        "for policies with review.forge.approverTeams (repeatable)",
    )


def _used(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None)]


def _token(names: tuple[str, ...], forge: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    raise InputError(
        f"--from {forge}: no token: set {' or '.join(names)} to a token that can read the "
        "repository, its pull requests and checks"
    )


def forge_record(args: argparse.Namespace, now: dt.datetime) -> ChangeRecord:
    """Read the change from the forge ``--from`` names, or ``InputError``."""
    drop = _used(args, (*FORGE_ANSWERS, "input"))
    if drop:
        raise InputError(
            f"--from {args.forge} reads the change from the forge; drop {', '.join(drop)}"
        )
    for team in args.approver_team:
        if not _TEAM.match(team):
            raise InputError(f"--approver-team {team!r}: use ORG/TEAM (GitHub) or a group path")
    if args.commit is not None and not _SHA.match(args.commit):
        raise InputError(f"--commit {args.commit!r}: give the full commit id (40 hex digits)")
    if args.target_ref is not None and not args.target_ref.startswith("refs/heads/"):
        raise InputError(f"--target-ref {args.target_ref!r}: give a branch as refs/heads/NAME")
    if args.forge == "github":
        return _github(args)
    return _gitlab(args)


def _github(args: argparse.Namespace) -> ChangeRecord:
    # githubkit with its generated models and httpx take most of a second to
    # import; only --from github uses them, so every other command (verify,
    # sign, and the review of a CI script) never loads them.
    from controller.forge import github

    misplaced = _used(args, ("project", "merge_request"))
    if misplaced:
        raise InputError(f"--from github: {', '.join(misplaced)} are GitLab's; use --pull-request")
    slug = args.repository or os.environ.get("GITHUB_REPOSITORY", "")
    if not _SLUG.match(slug):
        raise InputError(
            f"--from github needs --repository OWNER/NAME (got {slug!r})"
            if slug
            else "--from github needs --repository OWNER/NAME"
        )
    if (args.pull_request is None) == (args.commit is None):
        raise InputError("--from github needs one of --pull-request N or --commit SHA")
    owner, name = slug.split("/")
    reader = github.GitHubReader(
        token=_token(("GITHUB_TOKEN",), "github"),
        api_url=args.api_url or os.environ.get("GITHUB_API_URL") or github.DEFAULT_API_URL,
    )
    return reader.read(
        github.Target(
            owner=owner,
            name=name,
            pull_request=args.pull_request,
            commit=args.commit,
            target_ref=args.target_ref,
            approver_teams=tuple(args.approver_team),
        )
    )


def _gitlab(args: argparse.Namespace) -> ChangeRecord:
    # python-gitlab and requests likewise, for --from gitlab alone.
    from controller.forge import gitlab

    misplaced = _used(args, ("repository", "pull_request"))
    if misplaced:
        raise InputError(f"--from gitlab: {', '.join(misplaced)} are GitHub's; use --project")
    project = args.project or os.environ.get("CI_PROJECT_PATH", "")
    if not project:
        raise InputError("--from gitlab needs --project PATH (or $CI_PROJECT_PATH)")
    if (args.merge_request is None) == (args.commit is None):
        raise InputError("--from gitlab needs one of --merge-request IID or --commit SHA")
    private = os.environ.get("GITLAB_TOKEN") or None
    job = None if private else os.environ.get("CI_JOB_TOKEN") or None
    if private is None and job is None:
        _token(("GITLAB_TOKEN", "CI_JOB_TOKEN"), "gitlab")
    reader = gitlab.GitLabReader(
        private_token=private,
        job_token=job,
        api_url=args.api_url or os.environ.get("CI_API_V4_URL") or gitlab.DEFAULT_API_URL,
    )
    return reader.read(
        gitlab.Target(
            project=project,
            merge_request=args.merge_request,
            commit=args.commit,
            target_ref=args.target_ref,
            approver_groups=tuple(args.approver_team),
        )
    )


def forge_predicate(
    args: argparse.Namespace, now: dt.datetime, checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """The predicate fields read from the forge, plus the pipeline's --check values."""
    return forge_record(args, now).predicate(now, checks)
