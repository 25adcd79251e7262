"""The change as GitHub (github.com or Enterprise Server) tells it.

Every fact comes from the REST API through githubkit, whose models are
generated from GitHub's own API description, so a response that is not
shaped as documented is refused, not guessed at:

- the change: ``GET /repos/{o}/{r}/pulls/{n}`` (``merged_at``,
  ``merge_commit_sha``, ``head.sha``, ``base.ref``, ``base.repo.id``,
  ``commits``); from a commit, ``GET /repos/{o}/{r}/commits/{sha}/pulls``;
- its commits: ``GET /repos/{o}/{r}/compare/{base}...{head}``, every page
  (the pull request's own commit list stops at 250), and their count must
  equal ``commits``;
- who pushed to its branch: ``GET /repos/{o}/{r}/activity`` (push,
  force-push and branch creation, by ``actor.id``); where that cannot be
  read, the branch's rules (``GET /repos/{o}/{r}/rules/branches/{b}``,
  ``require_last_push_approval``);
- approvals: ``GET /repos/{o}/{r}/pulls/{n}/reviews``, the latest
  APPROVED / CHANGES_REQUESTED / DISMISSED state per reviewer, with the
  ``commit_id`` it was given on, and the reviewer's permission from
  ``GET /repos/{o}/{r}/collaborators/{login}/permission``;
- checks of the head: ``GET .../commits/{sha}/check-runs`` and ``.../status``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
from githubkit import GitHub, Response
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.utils import UNSET
from githubkit_schemas.v2022_11_28.models import (
    PullRequest,
    PullRequestReview,
    RepositoryCollaboratorPermission,
    SimpleUser,
)
from pydantic import ValidationError

from controller.attest.statement import PERMISSIONS, utc
from controller.forge.errors import ForgeError, Refused
from controller.forge.model import (
    ChangeRecord,
    People,
    co_authors,
    host_of,
    id_system,
    noreply_user_id,
)
from controller.forge.retry import Budget, RetryLater

T = TypeVar("T")

DEFAULT_API_URL = "https://api.github.com"
API_VERSION: Literal["2022-11-28"] = "2022-11-28"
# The account GitHub commits as when a change is merged or edited on the web:
# by id on github.com; an Enterprise Server has its own web-flow account,
# whose id differs per instance but whose login users cannot take.
WEB_FLOW_ID = 19864447
WEB_FLOW_LOGIN = "web-flow"
PER_PAGE = 100
# Pages read from one list at most: a change with 100,000 commits or reviews
# is refused rather than read for an hour.
MAX_PAGES = 100
# Review states that set a reviewer's verdict; COMMENTED and PENDING do not.
_VERDICT_STATES = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")
_CONCLUSIONS = {"success": "pass", "neutral": "skip", "skipped": "skip"}
_STATUSES = {"success": "pass"}
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


@dataclass(frozen=True)
class Target:
    """What to read: one pull request, or the merged change of one commit."""

    owner: str
    name: str
    pull_request: int | None = None
    commit: str | None = None
    target_ref: str | None = None
    approver_teams: tuple[str, ...] = ()


def _is_web_flow(user: SimpleUser, host: str) -> bool:
    if host == "github.com":
        return user.id == WEB_FLOW_ID
    return user.login == WEB_FLOW_LOGIN and user.type == "User"


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


@dataclass
class GitHubReader:
    token: str
    api_url: str = DEFAULT_API_URL
    budget: Budget = field(default_factory=Budget)
    slug: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        self.client = GitHub(
            self.token,
            base_url=self.api_url + "/",
            auto_retry=False,
            http_cache=False,
            timeout=30.0,
            user_agent="guard-attest",
        )
        # The API version every GitHub Enterprise Server still serves, and the
        # one whose pull requests carry merge_commit_sha (2026-03-10 dropped it).
        self.rest = self.client.rest(API_VERSION)

    # ----------------------------------------------------------- transport

    def _call(self, what: str, request: Callable[[], Response[T]]) -> Response[T]:
        def attempt() -> Response[T]:
            try:
                return request()
            except RateLimitExceeded as exc:
                raise RetryLater(
                    exc.retry_after.total_seconds(), "rate limited by GitHub", rate_limited=True
                ) from None
            except RequestFailed as exc:
                status = exc.response.status_code
                if status >= 500:
                    raise RetryLater(
                        _retry_after(exc.response.raw_response),
                        f"GitHub answered HTTP {status}",
                        rate_limited=False,
                    ) from None
                raise self._refused(what, status) from None
            except RequestTimeout:
                raise RetryLater(0, "GitHub did not answer in time", rate_limited=False) from None
            except RequestError as exc:
                raise RetryLater(
                    0, f"cannot reach GitHub at {self.api_url} ({exc.exc})", rate_limited=False
                ) from None
            except GitHubException as exc:
                raise ForgeError(f"{what}: {exc!r}") from None

        return self.budget.call(what, attempt)

    def _refused(self, what: str, status: int) -> Refused:
        if status == 401:
            why = "GitHub refused the token (HTTP 401): set GITHUB_TOKEN to a valid token"
        elif status == 403:
            why = (
                "the token lacks the permission to read this (HTTP 403): give it read access "
                "to the repository's contents, pull requests and checks"
            )
        elif status == 404:
            why = "not found (HTTP 404): check the name, or the token cannot see it"
        else:
            why = f"GitHub answered HTTP {status}"
        return Refused(f"{what}: {why}", status)

    def _get(self, what: str, request: Callable[[], Response[T]]) -> T:
        response = self._call(what, request)
        try:
            return response.parsed_data
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise ForgeError(
                f"{what}: the response is not shaped as GitHub documents it ({where}: "
                f"{first['msg']})"
            ) from None

    def _pages(self, what: str, request: Callable[[int], Response[list[T]]]) -> Iterator[T]:
        for page in range(1, MAX_PAGES + 1):
            items = self._get(f"{what} (page {page})", functools.partial(request, page))
            yield from items
            if len(items) < PER_PAGE:
                return
        raise ForgeError(f"{what}: more than {MAX_PAGES} pages; refusing to read on")

    # ----------------------------------------------------------- reading

    def read(self, target: Target) -> ChangeRecord:
        rest = self.rest
        owner, name = target.owner, target.name
        self.slug = (owner, name)
        slug = f"{owner}/{name}"
        repo = self._get(f"repository {slug}", lambda: rest.repos.get(owner, name))
        host = host_of(repo.html_url, "repository html_url")
        system = id_system("github", host)

        def qualified(value: int) -> str:
            return f"{system}:{value}"

        number = target.pull_request
        if number is None:
            assert target.commit is not None
            number = self._change_of_commit(target, repo.id, repo.default_branch)
        pr = self._get(f"pull request {slug}#{number}", lambda: rest.pulls.get(owner, name, number))
        where = f"pull request {slug}#{number}"
        self._check_merged(pr, where, repo.id, target)
        assert pr.merge_commit_sha is not None
        tree = self._get(
            f"commit {pr.merge_commit_sha}",
            lambda: rest.git.get_commit(owner, name, pr.merge_commit_sha or ""),
        ).tree.sha
        authors = People()
        self._person(authors, pr.user, "author", qualified)
        self._commits(authors, pr, where, host, qualified)
        pushers_read, note = self._pushers(authors, pr, repo.id, qualified)
        settings = {"lastPushApprovalRequired": self._last_push_rule(owner, name, pr.base.ref)}
        approvals = self._approvals(pr, where, target, qualified)
        return ChangeRecord(
            forge="github",
            api_url=self.api_url,
            repository=f"{host}/{repo.full_name}",
            repository_id=qualified(repo.id),
            owner_id=qualified(repo.owner.id),
            change_id=str(pr.number),
            change_url=pr.html_url,
            target_ref=f"refs/heads/{pr.base.ref}",
            head_revision=pr.head.sha,
            revision=pr.merge_commit_sha,
            tree=tree,
            commit_count=pr.commits,
            authors=authors,
            approvals=approvals,
            checks=self._checks(owner, name, pr.head.sha),
            pushers_read=pushers_read,
            pushers_note=note,
            settings=settings,
            approver_teams=list(target.approver_teams),
        )

    def _change_of_commit(self, target: Target, repo_id: int, default_branch: str) -> int:
        """The one merged pull request whose merge commit is the commit, into
        this repository's target branch. The endpoint also lists open
        changes and changes from forks that contain the commit."""
        rest = self.rest
        sha = target.commit or ""
        branch = (target.target_ref or f"refs/heads/{default_branch}").removeprefix("refs/heads/")
        listed = list(
            self._pages(
                f"pull requests of commit {sha}",
                lambda page: rest.repos.list_pull_requests_associated_with_commit(
                    target.owner, target.name, sha, page=page, per_page=PER_PAGE
                ),
            )
        )
        found = [
            p
            for p in listed
            if p.merged_at is not None
            and p.merge_commit_sha == sha
            and p.base.repo.id == repo_id
            and p.base.ref == branch
        ]
        if len(found) != 1:
            seen = ", ".join(f"#{p.number}" for p in listed) or "none"
            raise ForgeError(
                f"commit {sha}: {len(found)} merged pull requests into refs/heads/{branch} of "
                f"{target.owner}/{target.name} have it as their merge commit (pull requests "
                f"listed with it: {seen}); attest the commit a merge made"
            )
        number: int = found[0].number
        return number

    def _check_merged(self, pr: PullRequest, where: str, repo_id: int, target: Target) -> None:
        if pr.merged_at is None or not pr.merge_commit_sha:
            raise ForgeError(
                f"{where} is not merged ({pr.state}): only a merged change can be attested"
            )
        if pr.base.repo.id != repo_id:
            raise ForgeError(f"{where}: its base repository is not this repository")
        if target.target_ref and f"refs/heads/{pr.base.ref}" != target.target_ref:
            raise ForgeError(
                f"{where} was merged into refs/heads/{pr.base.ref}, not {target.target_ref}"
            )
        if target.commit and pr.merge_commit_sha != target.commit:
            raise ForgeError(f"{where}: its merge commit is not {target.commit}")

    def _person(
        self,
        people: People,
        user: SimpleUser | None,
        role: str,
        qualified: Callable[[int], str],
    ) -> bool:
        """Record an account; False when there is none to record."""
        if user is None:
            return False
        people.add(qualified(user.id), user.login, role, bot=user.type == "Bot")
        return True

    def _commits(
        self,
        people: People,
        pr: PullRequest,
        where: str,
        host: str,
        qualified: Callable[[int], str],
    ) -> None:
        rest = self.rest
        owner, name = self.slug
        basehead = f"{pr.base.sha}...{pr.head.sha}"
        commits = []
        total = None
        for page in range(1, MAX_PAGES + 1):
            comparison = self._get(
                f"{where}: commits (page {page})",
                functools.partial(
                    rest.repos.compare_commits,
                    owner,
                    name,
                    basehead,
                    page=page,
                    per_page=PER_PAGE,
                ),
            )
            total = comparison.total_commits
            commits.extend(comparison.commits)
            if len(comparison.commits) < PER_PAGE or len(commits) >= total:
                break
        if total != pr.commits or len(commits) != pr.commits:
            raise ForgeError(
                f"{where}: read {len(commits)} commits (the comparison counts {total}), but the "
                f"pull request has {pr.commits}: refusing a partial list of authors"
            )
        for commit in commits:
            details = commit.commit
            for role, user, person in (
                ("commit-author", commit.author, details.author),
                ("committer", commit.committer, details.committer),
            ):
                if isinstance(user, SimpleUser):
                    if role == "committer" and _is_web_flow(user, host):
                        continue
                    self._person(people, user, role, qualified)
                elif person is not None:
                    self._email(
                        people, person.email or "", person.name or "", role, host, qualified
                    )
            for co_name, email in co_authors(details.message):
                self._email(people, email, co_name, "co-author", host, qualified)

    def _email(
        self,
        people: People,
        email: str,
        name: str,
        role: str,
        host: str,
        qualified: Callable[[int], str],
    ) -> None:
        user_id = noreply_user_id(email, host)
        if user_id is not None:
            login = email.partition("@")[0].partition("+")[2] or name
            people.add(qualified(int(user_id)), login, role)
        else:
            people.add_email(email, name, role)

    def _pushers(
        self, people: People, pr: PullRequest, repo_id: int, qualified: Callable[[int], str]
    ) -> tuple[bool, str | None]:
        """Everyone who pushed to the head branch (they are authors), or why unknown."""
        head_repo = pr.head.repo
        if head_repo is None or head_repo.id != repo_id:
            return False, "the head branch is in a fork"
        rest = self.rest
        owner, name = self.slug
        ref = f"refs/heads/{pr.head.ref}"
        after: str | None = None
        for _ in range(MAX_PAGES):
            try:
                response = self._call(
                    f"pushes to {ref}",
                    functools.partial(
                        rest.repos.list_activities,
                        owner,
                        name,
                        ref=ref,
                        per_page=PER_PAGE,
                        after=after or UNSET,
                    ),
                )
            except Refused as exc:
                if exc.status in (403, 404):
                    return False, "the token cannot read the repository's activity"
                raise
            try:
                activities = response.parsed_data
            except ValidationError:
                raise ForgeError(
                    f"pushes to {ref}: the response is not shaped as GitHub documents it"
                ) from None
            for activity in activities:
                if activity.activity_type in ("push", "force_push", "branch_creation"):
                    if activity.actor is None:
                        return False, f"a push to {ref} has no actor"
                    self._person(people, activity.actor, "pusher", qualified)
            link = _LINK_NEXT.search(response.headers.get("link", ""))
            if link is None:
                return True, None
            after = httpx.URL(link.group(1)).params.get("after")
            if not after:
                return True, None
        raise ForgeError(f"pushes to {ref}: more than {MAX_PAGES} pages; refusing to read on")

    def _last_push_rule(self, owner: str, name: str, branch: str) -> bool:
        """Whether a ruleset on the branch requires approval of the most recent push."""
        try:
            rules = list(
                self._pages(
                    f"rules of branch {branch}",
                    lambda page: self.rest.repos.get_branch_rules(
                        owner, name, branch, page=page, per_page=PER_PAGE
                    ),
                )
            )
        except Refused as exc:
            if exc.status in (403, 404):
                return False
            raise
        for rule in rules:
            parameters = getattr(rule, "parameters", None)
            if rule.type == "pull_request" and getattr(
                parameters, "require_last_push_approval", False
            ):
                return True
        return False

    def _approvals(
        self,
        pr: PullRequest,
        where: str,
        target: Target,
        qualified: Callable[[int], str],
    ) -> list[dict[str, Any]]:
        rest = self.rest
        owner, name = self.slug
        latest: dict[int, PullRequestReview] = {}

        def reviews(page: int) -> Response[list[PullRequestReview]]:
            return rest.pulls.list_reviews(owner, name, pr.number, page=page, per_page=PER_PAGE)

        for review in self._pages(f"{where}: reviews", reviews):
            # Reviews come oldest first; a comment does not change a verdict.
            if review.user is not None and review.state in _VERDICT_STATES:
                latest[review.user.id] = review
        approvals = []
        for review in latest.values():
            user = review.user
            if review.state != "APPROVED" or user is None:
                continue
            submitted = review.submitted_at
            if not isinstance(submitted, dt.datetime):
                continue
            approval: dict[str, Any] = {
                "reviewer": {
                    "id": qualified(user.id),
                    "login": user.login,
                    "kind": "bot" if user.type == "Bot" else "human",
                },
                # Null after a force-push dropped the reviewed commit: it
                # can never equal the head, so the approval is stale.
                "reviewedRevision": review.commit_id or "unknown",
                "approvedAt": utc(submitted),
                "permission": self._permission(owner, name, user.login),
            }
            if target.approver_teams:
                approval["teams"] = [
                    t for t in target.approver_teams if self._member(t, user.login)
                ]
            approvals.append(approval)
        return approvals

    def _permission(self, owner: str, name: str, login: str) -> str:
        try:
            found: RepositoryCollaboratorPermission = self._get(
                f"permission of {login}",
                lambda: self.rest.repos.get_collaborator_permission_level(owner, name, login),
            )
        except Refused as exc:
            if exc.status == 404:
                return "none"
            raise
        role = found.role_name if found.role_name in PERMISSIONS else found.permission
        return role if role in PERMISSIONS else "none"

    def _member(self, team: str, login: str) -> bool:
        org, _, slug = team.partition("/")
        try:
            membership = self._get(
                f"membership of {login} in team {team}",
                lambda: self.rest.teams.get_membership_for_user_in_org(org, slug, login),
            )
        except Refused as exc:
            if exc.status == 404:
                return False
            raise
        active: bool = membership.state == "active"
        return active

    def _checks(self, owner: str, name: str, sha: str) -> list[dict[str, Any]]:
        rest = self.rest
        checks: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            runs = self._get(
                f"check runs of {sha} (page {page})",
                functools.partial(
                    rest.checks.list_for_ref, owner, name, sha, page=page, per_page=PER_PAGE
                ),
            )
            for run in runs.check_runs:
                result = _CONCLUSIONS.get(run.conclusion or "", "fail")
                checks.append({"name": run.name, "result": result})
            if len(runs.check_runs) < PER_PAGE:
                break
        status = self._get(
            f"statuses of {sha}",
            lambda: rest.repos.get_combined_status_for_ref(owner, name, sha, per_page=PER_PAGE),
        )
        for item in status.statuses:
            checks.append({"name": item.context, "result": _STATUSES.get(item.state, "fail")})
        return checks
