"""The change as GitLab (gitlab.com or self-managed) tells it.

Read through python-gitlab's HTTP layer (its retries off: waiting is
``retry``'s job), each response checked against the fields this module
reads, as GitLab's REST API documents them:

- the merge request: ``GET /projects/:id/merge_requests/:iid`` (``state``,
  ``merged_at``, ``merge_commit_sha``, ``squash_commit_sha``, ``sha``,
  ``target_branch``, ``source_project_id``); from a commit,
  ``GET /projects/:id/repository/commits/:sha/merge_requests``;
- its commits: ``GET .../merge_requests/:iid/commits``, every page, their
  number checked against ``X-Total``; e-mails resolved to accounts with
  ``GET /users?search=`` (exactly one match), else recorded unresolved;
- who pushed to its branch: ``GET /projects/:id/events?action=pushed``
  (``author_id``, ``push_data.ref``);
- approvals: ``GET .../merge_requests/:iid/approvals`` (``approved_by[]
  .user``, ``approved_at``), bound to a revision through
  ``GET .../merge_requests/:iid/versions`` (an approval given after the
  newest version approved its head); the approver's access level from
  ``GET /projects/:id/members/all/:user_id``; the project's
  ``reset_approvals_on_push`` and ``merge_requests_disable_committers_approval``
  from ``GET /projects/:id/approvals``;
- bots by account: ``GET /users/:id`` (``bot``); checks: ``GET
  /projects/:id/repository/commits/:sha/statuses``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import gitlab
import requests
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from controller.attest.statement import utc
from controller.forge.errors import ForgeError, Refused
from controller.forge.model import ChangeRecord, People, co_authors, host_of, id_system
from controller.forge.retry import Budget, RetryLater

M = TypeVar("M")

DEFAULT_API_URL = "https://gitlab.com/api/v4"
PER_PAGE = 100
MAX_PAGES = 100
# GitLab access levels onto repository permissions (see statement.PERMISSIONS).
ACCESS_LEVELS = ((50, "admin"), (40, "maintain"), (30, "write"), (15, "read"), (10, "read"))
_STATUSES = {"success": "pass", "skipped": "skip", "manual": "skip"}


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GitLabUser(_Shape):
    id: int
    username: str
    bot: bool = False


class Project(_Shape):
    id: int
    path_with_namespace: str
    web_url: str
    default_branch: str | None = None

    class Namespace(_Shape):
        id: int

    namespace: Namespace


class MergeRequest(_Shape):
    iid: int
    state: str
    web_url: str
    merged_at: dt.datetime | None = None
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    sha: str
    target_branch: str
    source_branch: str
    source_project_id: int
    target_project_id: int
    author: GitLabUser


class CommitItem(_Shape):
    id: str
    message: str = ""
    author_name: str = ""
    author_email: str = ""
    committer_name: str = ""
    committer_email: str = ""


class PushData(_Shape):
    ref: str | None = None
    ref_type: str | None = None


class Event(_Shape):
    author_id: int
    author: GitLabUser | None = None
    push_data: PushData | None = None


class Approver(_Shape):
    user: GitLabUser
    approved_at: dt.datetime | None = None


class Approvals(_Shape):
    approved_by: list[Approver]


class Version(_Shape):
    head_commit_sha: str
    created_at: dt.datetime


class Member(_Shape):
    access_level: int


class ApprovalSettings(_Shape):
    reset_approvals_on_push: bool = False
    merge_requests_disable_committers_approval: bool = False


class Status(_Shape):
    name: str
    status: str


@dataclass(frozen=True)
class Target:
    project: str
    merge_request: int | None = None
    commit: str | None = None
    target_ref: str | None = None
    approver_groups: tuple[str, ...] = ()


def _level(access: int) -> str:
    return next((name for floor, name in ACCESS_LEVELS if access >= floor), "none")


@dataclass
class GitLabReader:
    private_token: str | None
    job_token: str | None = None
    api_url: str = DEFAULT_API_URL
    budget: Budget = field(default_factory=Budget)
    _last: requests.Response | None = None

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        session = requests.Session()
        session.hooks["response"].append(self._keep)
        self.client = gitlab.Gitlab(
            url=self.api_url.removesuffix("/api/v4"),
            private_token=self.private_token,
            job_token=self.job_token,
            session=session,
            timeout=30,
            retry_transient_errors=False,
            user_agent="guard-attest",
        )
        self._users: dict[int, GitLabUser] = {}
        self._emails: dict[str, GitLabUser | None] = {}

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last = response

    # ----------------------------------------------------------- transport

    def _wait_hint(self) -> float:
        headers = self._last.headers if self._last is not None else {}
        value = headers.get("Retry-After", "")
        if value.isdigit():
            return float(value)
        reset = headers.get("RateLimit-Reset", "")
        if reset.isdigit():
            return max(float(reset) - dt.datetime.now(dt.UTC).timestamp(), 0.0)
        return 60.0

    def _request(self, what: str, path: str, query: dict[str, Any]) -> requests.Response:
        def attempt() -> requests.Response:
            try:
                response = self.client.http_request(
                    "get",
                    path,
                    query_data=query,
                    obey_rate_limit=False,
                    retry_transient_errors=False,
                    max_retries=0,
                )
            except gitlab.exceptions.GitlabHttpError as exc:
                status = exc.response_code or 0
                if status == 429:
                    raise RetryLater(
                        self._wait_hint(), "rate limited by GitLab", rate_limited=True
                    ) from None
                if status >= 500:
                    raise RetryLater(
                        0, f"GitLab answered HTTP {status}", rate_limited=False
                    ) from None
                raise self._refused(what, status) from None
            except gitlab.exceptions.GitlabAuthenticationError:
                raise self._refused(what, 401) from None
            except requests.RequestException as exc:
                raise RetryLater(
                    0,
                    f"cannot reach GitLab at {self.api_url} ({type(exc).__name__})",
                    rate_limited=False,
                ) from None
            assert isinstance(response, requests.Response)
            return response

        return self.budget.call(what, attempt)

    def _refused(self, what: str, status: int) -> Refused:
        if status == 401:
            token = "CI_JOB_TOKEN" if self.private_token is None else "GITLAB_TOKEN"
            why = f"GitLab refused the token (HTTP 401): set {token} to a valid token"
        elif status == 403:
            why = (
                "the token lacks the permission to read this (HTTP 403): give "
                "GITLAB_TOKEN the read_api scope"
            )
        elif status == 404:
            why = "not found (HTTP 404): check the path, or the token cannot see it"
        else:
            why = f"GitLab answered HTTP {status}"
        return Refused(f"{what}: {why}", status)

    def _get(self, what: str, path: str, shape: Any, query: dict[str, Any] | None = None) -> Any:
        response = self._request(what, path, query or {})
        try:
            return TypeAdapter(shape).validate_python(response.json())
        except (ValidationError, ValueError) as exc:
            detail = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:2])
                if isinstance(exc, ValidationError)
                else "not JSON"
            )
            raise ForgeError(
                f"{what}: the response is not shaped as GitLab documents it ({detail})"
            ) from None

    def _pages(
        self, what: str, path: str, shape: type[M], query: dict[str, Any] | None = None
    ) -> tuple[list[M], int | None]:
        """Every item of a list and the total GitLab announced (``X-Total``)."""
        items: list[M] = []
        total: int | None = None
        for page in range(1, MAX_PAGES + 1):
            response = self._request(
                f"{what} (page {page})", path, {**(query or {}), "page": page, "per_page": PER_PAGE}
            )
            try:
                batch = TypeAdapter(list[shape]).validate_python(response.json())  # type: ignore[valid-type]
            except (ValidationError, ValueError):
                raise ForgeError(
                    f"{what}: the response is not shaped as GitLab documents it"
                ) from None
            items.extend(batch)
            announced = response.headers.get("X-Total", "")
            total = int(announced) if announced.isdigit() else total
            if not response.headers.get("X-Next-Page") or len(batch) < PER_PAGE:
                return items, total
        raise ForgeError(f"{what}: more than {MAX_PAGES} pages; refusing to read on")

    def _each(
        self, what: str, path: str, shape: type[M], query: dict[str, Any] | None = None
    ) -> Iterator[M]:
        yield from self._pages(what, path, shape, query)[0]

    # ----------------------------------------------------------- reading

    def read(self, target: Target) -> ChangeRecord:
        encoded = quote(target.project, safe="")
        base = f"/projects/{encoded}"
        project: Project = self._get(f"project {target.project}", base, Project)
        host = host_of(project.web_url, "project web_url")
        system = id_system("gitlab", host)

        def qualified(value: int) -> str:
            return f"{system}:{value}"

        iid = target.merge_request
        if iid is None:
            iid = self._change_of_commit(target, base, project)
        where = f"merge request {target.project}!{iid}"
        mr_path = f"{base}/merge_requests/{iid}"
        mr: MergeRequest = self._get(where, mr_path, MergeRequest)
        revision = self._check_merged(mr, where, project, target)
        authors = People()
        self._account(authors, mr.author, "author", qualified)
        commits, total = self._pages(f"{where}: commits", f"{mr_path}/commits", CommitItem)
        if total is None or total != len(commits):
            raise ForgeError(
                f"{where}: read {len(commits)} commits but GitLab announced "
                f"{'no total' if total is None else total}: refusing a partial list of authors"
            )
        for commit in commits:
            for role, email, name in (
                ("commit-author", commit.author_email, commit.author_name),
                ("committer", commit.committer_email, commit.committer_name),
            ):
                self._email(authors, email, name, role, qualified)
            for co_name, email in co_authors(commit.message):
                self._email(authors, email, co_name, "co-author", qualified)
        pushers_read, note = self._pushers(authors, mr, base, qualified)
        settings: ApprovalSettings = self._get(
            f"approval settings of {target.project}", f"{base}/approvals", ApprovalSettings
        )
        approvals = self._approvals(mr, where, mr_path, base, settings, target, qualified)
        return ChangeRecord(
            forge="gitlab",
            api_url=self.api_url,
            repository=f"{host}/{project.path_with_namespace}",
            repository_id=qualified(project.id),
            owner_id=qualified(project.namespace.id),
            change_id=str(mr.iid),
            change_url=mr.web_url,
            target_ref=f"refs/heads/{mr.target_branch}",
            head_revision=mr.sha,
            revision=revision,
            tree=None,
            commit_count=len(commits),
            authors=authors,
            approvals=approvals,
            checks=self._checks(base, mr.sha),
            pushers_read=pushers_read,
            pushers_note=note,
            settings={
                "resetApprovalsOnPush": settings.reset_approvals_on_push,
                "committersMayNotApprove": settings.merge_requests_disable_committers_approval,
            },
            approver_teams=list(target.approver_groups),
        )

    def _change_of_commit(self, target: Target, base: str, project: Project) -> int:
        sha = target.commit or ""
        branch = (target.target_ref or f"refs/heads/{project.default_branch}").removeprefix(
            "refs/heads/"
        )
        listed = list(
            self._each(
                f"merge requests of commit {sha}",
                f"{base}/repository/commits/{sha}/merge_requests",
                MergeRequest,
            )
        )
        found = [
            mr
            for mr in listed
            if mr.state == "merged"
            and sha in (mr.merge_commit_sha, mr.squash_commit_sha)
            and mr.target_project_id == project.id
            and mr.target_branch == branch
        ]
        if len(found) != 1:
            seen = ", ".join(f"!{mr.iid}" for mr in listed) or "none"
            raise ForgeError(
                f"commit {sha}: {len(found)} merged merge requests into refs/heads/{branch} of "
                f"{target.project} made it (merge requests listed with it: {seen}); attest the "
                "commit a merge made"
            )
        return found[0].iid

    def _check_merged(self, mr: MergeRequest, where: str, project: Project, target: Target) -> str:
        if mr.state != "merged":
            raise ForgeError(
                f"{where} is not merged ({mr.state}): only a merged change can be attested"
            )
        if mr.target_project_id != project.id:
            raise ForgeError(f"{where}: its target project is not this project")
        if target.target_ref and f"refs/heads/{mr.target_branch}" != target.target_ref:
            raise ForgeError(
                f"{where} was merged into refs/heads/{mr.target_branch}, not {target.target_ref}"
            )
        # A fast-forward merge builds the head itself.
        revision = mr.merge_commit_sha or mr.squash_commit_sha or mr.sha
        if target.commit and target.commit not in (
            mr.merge_commit_sha,
            mr.squash_commit_sha,
            mr.sha,
        ):
            raise ForgeError(f"{where}: it did not make commit {target.commit}")
        return target.commit or revision

    def _user(self, user_id: int) -> GitLabUser:
        if user_id not in self._users:
            self._users[user_id] = self._get(f"user {user_id}", f"/users/{user_id}", GitLabUser)
        return self._users[user_id]

    def _account(
        self, people: People, user: GitLabUser, role: str, qualified: Callable[[int], str]
    ) -> None:
        # Bots by account: the user record says it, whatever the name.
        full = self._user(user.id)
        people.add(qualified(full.id), full.username, role, bot=full.bot)

    def _email(
        self, people: People, email: str, name: str, role: str, qualified: Callable[[int], str]
    ) -> None:
        if not email.strip():
            # No address to look up: still an author, unresolved.
            people.add_email(email, name, role)
            return
        key = email.lower()
        if key not in self._emails:
            found = list(
                self._each(f"users with e-mail {email}", "/users", GitLabUser, {"search": email})
            )
            self._emails[key] = found[0] if len(found) == 1 else None
        user = self._emails[key]
        if user is None:
            people.add_email(email, name, role)
        else:
            self._account(people, user, role, qualified)

    def _pushers(
        self, people: People, mr: MergeRequest, base: str, qualified: Callable[[int], str]
    ) -> tuple[bool, str | None]:
        if mr.source_project_id != mr.target_project_id:
            return False, "the source branch is in a fork"
        try:
            events = list(self._each("push events", f"{base}/events", Event, {"action": "pushed"}))
        except Refused as exc:
            if exc.status in (401, 403, 404):
                return False, "the token cannot read the project's events"
            raise
        for event in events:
            data = event.push_data
            if data is not None and data.ref_type == "branch" and data.ref == mr.source_branch:
                self._account(people, self._user(event.author_id), "pusher", qualified)
        return True, None

    def _approvals(
        self,
        mr: MergeRequest,
        where: str,
        mr_path: str,
        base: str,
        settings: ApprovalSettings,
        target: Target,
        qualified: Callable[[int], str],
    ) -> list[dict[str, Any]]:
        try:
            state: Approvals = self._get(f"{where}: approvals", f"{mr_path}/approvals", Approvals)
        except Refused as exc:
            if exc.status in (401, 403) and self.private_token is None:
                raise ForgeError(
                    f"{where}: CI_JOB_TOKEN cannot read merge request approvals (HTTP "
                    f"{exc.status}): set GITLAB_TOKEN to a project access token with read_api"
                ) from None
            raise
        versions: list[Version] = sorted(
            self._each(f"{where}: versions", f"{mr_path}/versions", Version),
            key=lambda v: v.created_at,
        )
        approvals = []
        for approver in state.approved_by:
            user = self._user(approver.user.id)
            approval: dict[str, Any] = {
                "reviewer": {
                    "id": qualified(user.id),
                    "login": user.username,
                    "kind": "bot" if user.bot else "human",
                },
                "reviewedRevision": self._reviewed(approver.approved_at, versions, settings),
                # An older GitLab gives no time: the approval stood at the merge.
                "approvedAt": utc(approver.approved_at or mr.merged_at or dt.datetime.now(dt.UTC)),
                "permission": self._access(base, user.id),
            }
            if target.approver_groups:
                approval["teams"] = [g for g in target.approver_groups if self._member(g, user.id)]
            approvals.append(approval)
        return approvals

    @staticmethod
    def _reviewed(
        approved_at: dt.datetime | None, versions: list[Version], settings: ApprovalSettings
    ) -> str:
        """The revision an approval saw: the head of the newest version
        created before it. GitLab records no revision with an approval."""
        if not versions:
            return "unknown"
        if approved_at is None:
            # Without a time, only a project that drops approvals on every
            # push proves the approval is for the head.
            return versions[-1].head_commit_sha if settings.reset_approvals_on_push else "unknown"
        seen = [v for v in versions if v.created_at <= approved_at]
        return seen[-1].head_commit_sha if seen else "unknown"

    def _access(self, base: str, user_id: int) -> str:
        try:
            member: Member = self._get(
                f"access level of user {user_id}", f"{base}/members/all/{user_id}", Member
            )
        except Refused as exc:
            if exc.status == 404:
                return "none"
            raise
        return _level(member.access_level)

    def _member(self, group: str, user_id: int) -> bool:
        try:
            self._get(
                f"membership of user {user_id} in group {group}",
                f"/groups/{quote(group, safe='')}/members/all/{user_id}",
                Member,
            )
        except Refused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _checks(self, base: str, sha: str) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "result": _STATUSES.get(s.status, "fail")}
            for s in self._each(
                f"statuses of {sha}", f"{base}/repository/commits/{sha}/statuses", Status
            )
        ]
