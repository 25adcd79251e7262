"""A loopback GitLab: the REST API v4 endpoints ``guard attest review --from
gitlab`` reads, answering from a scenario.

The bodies carry the fields GitLab documents for each endpoint (GitLab REST
API docs, docs.gitlab.com/api: merge_requests.md "Get single MR", "List MR
commits", "Get MR diff versions"; merge_request_approvals.md "Get the
approval state of merge requests" and "Get project-level MR approval
configuration"; events.md "List a project's visible events"; members.md
"Get a member of a group or project, including inherited and invited
members"; users.md "Get a single user"; commits.md "List merge requests
associated with a commit" and "List the statuses of a commit"), with their
documented pagination headers (``X-Total``, ``X-Next-Page``, ``X-Page``,
``X-Per-Page``) and the ``Retry-After`` of a 429.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from werkzeug import Request, Response

from tests.forge.fakegithub import Failure

PROJECT = "acme/shop"
NOT_FOUND = {"message": "404 Not found"}


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    bot: bool = False


ALICE = User(11, "alice", "alice@acme.example")
BOB = User(12, "bob", "bob@acme.example")
CAROL = User(13, "carol", "carol@acme.example")
DAVE = User(14, "dave", "dave@acme.example")
BOT = User(15, "project_42_bot_abc", "bot@noreply.gitlab.example", bot=True)


@dataclass
class Commit:
    sha: str
    author: User
    committer: User | None = None
    message: str = "change"


@dataclass
class MergeRequest:
    iid: int
    author: User
    sha: str
    commits: list[Commit]
    # (user, approved_at)
    approvals: list[tuple[User, str | None]] = field(default_factory=list)
    # (head sha, created_at), oldest first
    versions: list[tuple[str, str]] = field(default_factory=list)
    state: str = "merged"
    merge_commit_sha: str | None = "a" * 40
    squash_commit_sha: str | None = None
    target_branch: str = "main"
    source_branch: str = "feature"
    source_project_id: int = 77
    # X-Total of the commits list (None: the real count).
    announced_commits: int | None = None


def _user(user: User, host: str) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.username.title(),
        "state": "active",
        "locked": False,
        "avatar_url": f"https://{host}/uploads/{user.id}.png",
        "web_url": f"https://{host}/{user.username}",
    }


@dataclass
class FakeGitLab:
    web_host: str = "gitlab.com"
    project_id: int = 77
    namespace_id: int = 700
    mrs: dict[int, MergeRequest] = field(default_factory=dict)
    commit_mrs: dict[str, list[int]] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    # (user, ref) pushes
    pushes: list[tuple[User, str]] = field(default_factory=list)
    access: dict[int, int] = field(default_factory=dict)
    groups: dict[str, set[int]] = field(default_factory=dict)
    reset_approvals_on_push: bool = True
    disable_committers_approval: bool = True
    statuses: list[tuple[str, str]] = field(default_factory=list)
    job_token_reads_approvals: bool = False
    failures: list[Failure] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    api_url: str = ""

    def fail(
        self, path: str, status: int, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        self.failures.append(Failure(re.compile(path), status, headers or {}, times))

    def handle(self, request: Request) -> Response:
        raw_path = request.environ.get("RAW_URI", request.full_path).split("?")[0]
        path = request.path
        self.seen.append(raw_path)
        for failure in self.failures:
            if failure.times > 0 and failure.path.search(path):
                failure.times -= 1
                return self._json({"message": "failure"}, failure.status, failure.headers)
        job = request.headers.get("JOB-TOKEN")
        private = request.headers.get("PRIVATE-TOKEN")
        if private != "gl-token" and job != "job-token":
            return self._json({"message": "401 Unauthorized"}, 401)
        if not path.startswith("/api/v4/"):
            return self._json(NOT_FOUND, 404)
        route = unquote(path[len("/api/v4") :])
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.full_path).query).items()}
        if (
            job
            and route.endswith("/approvals")
            and "/merge_requests/" in route
            and not self.job_token_reads_approvals
        ):
            return self._json({"message": "403 Forbidden"}, 403)
        for pattern, method in self._routes():
            match = re.fullmatch(pattern, route)
            if match:
                return method(query, *match.groups())  # type: ignore[no-any-return]
        return self._json(NOT_FOUND, 404)

    def _routes(self) -> list[tuple[str, Any]]:
        project = f"/projects/{PROJECT}"
        mr = project + r"/merge_requests/(\d+)"
        return [
            (project, self._project),
            (mr, self._mr),
            (mr + "/commits", self._commits),
            (mr + "/approvals", self._approvals),
            (mr + "/versions", self._versions),
            (project + "/approvals", self._settings),
            (project + "/events", self._events),
            (project + r"/members/all/(\d+)", self._member),
            (project + r"/repository/commits/([0-9a-f]+)/merge_requests", self._commit_mrs),
            (project + r"/repository/commits/([0-9a-f]+)/statuses", self._statuses),
            (r"/groups/(.+)/members/all/(\d+)", self._group_member),
            (r"/users/(\d+)", self._get_user),
            (r"/users", self._search_users),
        ]

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status, headers or {}, content_type="application/json")

    def _list(self, items: list[Any], query: dict[str, str], total: int | None = None) -> Response:
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "20"))
        chunk = items[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(items)
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(page + 1) if more else "",
            "X-Total": str(len(items) if total is None else total),
            "X-Total-Pages": str(max(1, -(-len(items) // per_page))),
        }
        return self._json(chunk, 200, headers)

    def _project(self, query: dict[str, str]) -> Response:
        return self._json(
            {
                "id": self.project_id,
                "name": "shop",
                "path": "shop",
                "path_with_namespace": PROJECT,
                "default_branch": "main",
                "web_url": f"https://{self.web_host}/{PROJECT}",
                "namespace": {
                    "id": self.namespace_id,
                    "name": "acme",
                    "path": "acme",
                    "kind": "group",
                    "full_path": "acme",
                },
                "visibility": "private",
            }
        )

    def _mr_body(self, mr: MergeRequest) -> dict[str, Any]:
        return {
            "id": 9000 + mr.iid,
            "iid": mr.iid,
            "project_id": self.project_id,
            "title": "change",
            "state": mr.state,
            "created_at": "2026-01-04T08:00:00.000Z",
            "merged_at": "2026-01-05T12:00:00.000Z" if mr.state == "merged" else None,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "source_project_id": mr.source_project_id,
            "target_project_id": self.project_id,
            "author": _user(mr.author, self.web_host),
            "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha if mr.state == "merged" else None,
            "squash_commit_sha": mr.squash_commit_sha,
            "squash": mr.squash_commit_sha is not None,
            "web_url": f"https://{self.web_host}/{PROJECT}/-/merge_requests/{mr.iid}",
        }

    def _mr(self, query: dict[str, str], iid: str) -> Response:
        mr = self.mrs.get(int(iid))
        return self._json(self._mr_body(mr)) if mr else self._json(NOT_FOUND, 404)

    def _commits(self, query: dict[str, str], iid: str) -> Response:
        mr = self.mrs[int(iid)]
        items = [
            {
                "id": c.sha,
                "short_id": c.sha[:8],
                "title": c.message.splitlines()[0],
                "message": c.message,
                "author_name": c.author.username.title(),
                "author_email": c.author.email,
                "authored_date": "2026-01-04T09:00:00.000Z",
                "committer_name": (c.committer or c.author).username.title(),
                "committer_email": (c.committer or c.author).email,
                "committed_date": "2026-01-04T09:00:00.000Z",
                "created_at": "2026-01-04T09:00:00.000Z",
                "parent_ids": [],
                "web_url": f"https://{self.web_host}/{PROJECT}/-/commit/{c.sha}",
            }
            for c in mr.commits
        ]
        return self._list(items, query, mr.announced_commits)

    def _approvals(self, query: dict[str, str], iid: str) -> Response:
        mr = self.mrs[int(iid)]
        return self._json(
            {
                "id": 9000 + mr.iid,
                "iid": mr.iid,
                "project_id": self.project_id,
                "state": mr.state,
                "approved": bool(mr.approvals),
                "approved_by": [
                    {"user": _user(user, self.web_host), **({"approved_at": at} if at else {})}
                    for user, at in mr.approvals
                ],
            }
        )

    def _versions(self, query: dict[str, str], iid: str) -> Response:
        mr = self.mrs[int(iid)]
        items = [
            {
                "id": 500 + index,
                "head_commit_sha": head,
                "base_commit_sha": "b" * 40,
                "start_commit_sha": "b" * 40,
                "created_at": at,
                "merge_request_id": 9000 + mr.iid,
                "state": "collected",
                "real_size": "1",
            }
            for index, (head, at) in enumerate(mr.versions)
        ][::-1]  # newest first, as GitLab lists them
        return self._list(items, query)

    def _settings(self, query: dict[str, str]) -> Response:
        return self._json(
            {
                "approvals_before_merge": 1,
                "reset_approvals_on_push": self.reset_approvals_on_push,
                "selective_code_owner_removals": False,
                "disable_overriding_approvers_per_merge_request": True,
                "merge_requests_author_approval": False,
                "merge_requests_disable_committers_approval": self.disable_committers_approval,
                "require_password_to_approve": False,
            }
        )

    def _events(self, query: dict[str, str]) -> Response:
        items = [
            {
                "id": 3000 + index,
                "project_id": self.project_id,
                "action_name": "pushed to",
                "target_id": None,
                "target_type": None,
                "author_id": user.id,
                "author": _user(user, self.web_host),
                "author_username": user.username,
                "created_at": "2026-01-04T09:00:00.000Z",
                "push_data": {
                    "commit_count": 1,
                    "action": "pushed",
                    "ref_type": "branch",
                    "commit_from": "b" * 40,
                    "commit_to": "c" * 40,
                    "ref": ref,
                    "commit_title": "change",
                    "ref_count": None,
                },
            }
            for index, (user, ref) in enumerate(self.pushes)
        ]
        return self._list(items, query)

    def _member(self, query: dict[str, str], user_id: str) -> Response:
        level = self.access.get(int(user_id))
        if level is None:
            return self._json(NOT_FOUND, 404)
        user = self.users[int(user_id)]
        return self._json({**_user(user, self.web_host), "access_level": level, "expires_at": None})

    def _group_member(self, query: dict[str, str], group: str, user_id: str) -> Response:
        if int(user_id) not in self.groups.get(group, set()):
            return self._json(NOT_FOUND, 404)
        user = self.users[int(user_id)]
        return self._json({**_user(user, self.web_host), "access_level": 30, "expires_at": None})

    def _commit_mrs(self, query: dict[str, str], sha: str) -> Response:
        return self._list([self._mr_body(self.mrs[i]) for i in self.commit_mrs.get(sha, [])], query)

    def _statuses(self, query: dict[str, str], sha: str) -> Response:
        items = [
            {"id": 100 + i, "sha": sha, "ref": "main", "status": status, "name": name,
             "target_url": None, "description": None, "created_at": "2026-01-05T10:00:00.000Z",
             "started_at": None, "finished_at": None, "allow_failure": False, "coverage": None,
             "author": _user(ALICE, self.web_host)}
            for i, (name, status) in enumerate(self.statuses)
        ]  # fmt: skip
        return self._list(items, query)

    def _get_user(self, query: dict[str, str], user_id: str) -> Response:
        user = self.users.get(int(user_id))
        if user is None:
            return self._json(NOT_FOUND, 404)
        return self._json(
            {**_user(user, self.web_host), "bot": user.bot, "public_email": user.email}
        )

    def _search_users(self, query: dict[str, str]) -> Response:
        wanted = query.get("search", "").lower()
        found = [_user(u, self.web_host) for u in self.users.values() if u.email.lower() == wanted]
        return self._list(found, query)
