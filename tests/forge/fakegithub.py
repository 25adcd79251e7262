"""A loopback GitHub: the REST endpoints ``guard attest review --from github``
reads, answering from a scenario, with bodies shaped as GitHub documents
them (see ``shapes``) and validated against the client's models before they
are served. Served by pytest-httpserver on 127.0.0.1.

Failures are queued per path pattern (``fail``): a 429 with Retry-After, a
403 rate limit with the reset header, a 502, a 401, played before the
normal answer.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from githubkit_schemas.v2022_11_28 import models as m
from werkzeug import Request, Response

from tests.forge.shapes import checked, example, merge

WEB_FLOW = 19864447
# What GET /repos/{o}/{r}/rules/branches/{b} returns: a list of any rule type.
_RULE_TYPES = [getattr(m, n) for n in dir(m) if re.fullmatch(r"RepositoryRuleDetailedOneof\d+", n)]
BRANCH_RULES = list[functools.reduce(operator.or_, _RULE_TYPES)]  # type: ignore[index]
BODY = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


@dataclass(frozen=True)
class User:
    id: int
    login: str
    type: str = "User"


ALICE = User(1001, "alice")
BOB = User(1002, "bob")
CAROL = User(1003, "carol")
DAVE = User(1004, "dave")
ERIN = User(1005, "erin")
RENOVATE = User(2740337, "renovate[bot]", "Bot")
WEB_FLOW_USER = User(WEB_FLOW, "web-flow")


@dataclass
class Commit:
    sha: str
    author: User | None
    committer: User | None = None
    author_email: str = ""
    message: str = "change"


@dataclass
class Review:
    user: User
    state: str
    commit_id: str | None
    submitted_at: str


@dataclass
class Pull:
    number: int
    author: User
    head_sha: str
    commits: list[Commit]
    reviews: list[Review] = field(default_factory=list)
    merged: bool = True
    merge_commit_sha: str = "a" * 40
    base_ref: str = "main"
    head_ref: str = "feature"
    base_sha: str = "b" * 40
    fork: bool = False
    state: str = "closed"
    base_repo_id: int | None = None
    # What the pull request says its commit count is (None: len(commits)).
    commit_count: int | None = None


@dataclass
class Failure:
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    times: int = 1


def _user(user: User, host: str) -> dict[str, Any]:
    return merge(
        example(m.SimpleUser),
        {
            "id": user.id,
            "login": user.login,
            "type": user.type,
            "html_url": f"https://{host}/{user.login}",
        },
    )


@dataclass
class FakeGitHub:
    """One repository (acme/shop unless named otherwise) and the pull requests of a scenario."""

    web_host: str = "github.com"
    prefix: str = ""
    repo_id: int = 4242
    owner: User = field(default_factory=lambda: User(9000, "acme", "Organization"))
    name: str = "shop"
    pulls: dict[int, Pull] = field(default_factory=dict)
    # commit sha -> pull request numbers listed with it (commits/{sha}/pulls).
    commit_pulls: dict[str, list[int]] = field(default_factory=dict)
    # (actor, activity_type, ref)
    activities: list[tuple[User | None, str, str]] = field(default_factory=list)
    activity_status: int = 200
    permissions: dict[str, str] = field(default_factory=dict)
    last_push_rule: bool = False
    teams: dict[str, set[str]] = field(default_factory=dict)
    check_runs: list[tuple[str, str | None]] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    tree: str = "c" * 40
    failures: list[Failure] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=lambda: {"gh-token"})
    api_url: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    def fail(
        self, path: str, status: int, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        self.failures.append(Failure(re.compile(path), status, headers or {}, times))

    # ------------------------------------------------------------------ bodies

    def _repository(self, full: bool) -> dict[str, Any]:
        model = m.FullRepository if full else m.Repository
        return merge(
            example(model),
            {
                "id": self.repo_id,
                "name": self.name,
                "full_name": self.full_name,
                "owner": _user(self.owner, self.web_host),
                "html_url": f"https://{self.web_host}/{self.full_name}",
                "default_branch": "main",
            },
        )

    def _pull(self, pull: Pull, model: type[Any]) -> dict[str, Any]:
        repo = self._repository(False)
        if pull.base_repo_id is not None:
            repo = {**repo, "id": pull.base_repo_id}
        head_repo = (
            merge(repo, {"id": 5151, "full_name": f"mallory/{self.name}"}) if pull.fork else repo
        )
        body = merge(
            example(model),
            {
                "number": pull.number,
                "state": pull.state,
                "html_url": f"https://{self.web_host}/{self.full_name}/pull/{pull.number}",
                "user": _user(pull.author, self.web_host),
                "merged_at": "2026-01-05T12:00:00Z" if pull.merged else None,
                "merge_commit_sha": pull.merge_commit_sha,
                "head": {"sha": pull.head_sha, "ref": pull.head_ref, "repo": head_repo},
                "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": repo},
            },
        )
        if model is m.PullRequest:
            body["commits"] = len(pull.commits) if pull.commit_count is None else pull.commit_count
            body["merged"] = pull.merged
        return body

    def _commit(self, commit: Commit) -> dict[str, Any]:
        def git_user(user: User | None, email: str) -> dict[str, Any]:
            address = email or (
                f"{user.id}+{user.login}@users.noreply.{self.web_host}" if user else "x@example.com"
            )
            return {
                "name": user.login if user else "someone",
                "email": address,
                "date": "2026-01-04T09:00:00Z",
            }

        committer = commit.committer or commit.author
        return merge(
            example(m.Commit),
            {
                "sha": commit.sha,
                "commit": {
                    "message": commit.message,
                    "author": git_user(commit.author, commit.author_email),
                    "committer": git_user(committer, commit.author_email),
                },
                "author": _user(commit.author, self.web_host) if commit.author else None,
                "committer": _user(committer, self.web_host) if committer else None,
            },
        )

    # ------------------------------------------------------------------ routing

    def handle(self, request: Request) -> Response:
        path = request.path
        self.seen.append(request.full_path)
        self.versions.add(request.headers.get("X-GitHub-Api-Version", ""))
        for failure in self.failures:
            if failure.times > 0 and failure.path.search(path):
                failure.times -= 1
                message = {
                    "message": "failure",
                    "documentation_url": "https://docs.github.com/rest",
                }
                return Response(
                    json.dumps(message),
                    failure.status,
                    failure.headers,
                    content_type="application/json",
                )
        if (
            request.headers.get("Authorization", "").removeprefix("Bearer ").removeprefix("token ")
            not in self.tokens
        ):
            return self._json(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                401,
            )
        if not path.startswith(self.prefix + "/"):
            return self._json(BODY, 404)
        route = path[len(self.prefix) :]
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.full_path).query).items()}
        for pattern, method in self._routes():
            match = re.fullmatch(pattern, route)
            if match:
                return method(query, *match.groups())
        return self._json(BODY, 404)

    def _routes(self) -> list[tuple[str, Any]]:
        repo = "/repos/" + re.escape(self.full_name)
        return [
            (repo, self._get_repo),
            (repo + r"/commits/([0-9a-f]+)/pulls", self._commit_pulls),
            (repo + r"/pulls/(\d+)", self._get_pull),
            (repo + r"/pulls/(\d+)/reviews", self._reviews),
            (repo + r"/git/commits/([0-9a-f]+)", self._git_commit),
            (repo + r"/compare/([0-9a-f]+)\.\.\.([0-9a-f]+)", self._compare),
            (repo + r"/activity", self._activity),
            (repo + r"/rules/branches/([^/]+)", self._rules),
            (repo + r"/collaborators/([^/]+)/permission", self._permission),
            (r"/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)", self._membership),
            (repo + r"/commits/([0-9a-f]+)/check-runs", self._check_runs),
            (repo + r"/commits/([0-9a-f]+)/status", self._status),
        ]

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status, headers or {}, content_type="application/json")

    @staticmethod
    def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "30"))
        return items[(page - 1) * per_page : page * per_page]

    def _get_repo(self, query: dict[str, str]) -> Response:
        return self._json(checked(m.FullRepository, self._repository(True)))

    def _commit_pulls(self, query: dict[str, str], sha: str) -> Response:
        listed = [
            self._pull(self.pulls[n], m.PullRequestSimple) for n in self.commit_pulls.get(sha, [])
        ]
        return self._json(checked(list[m.PullRequestSimple], self._page(listed, query)))

    def _get_pull(self, query: dict[str, str], number: str) -> Response:
        pull = self.pulls.get(int(number))
        if pull is None:
            return self._json(BODY, 404)
        return self._json(checked(m.PullRequest, self._pull(pull, m.PullRequest)))

    def _reviews(self, query: dict[str, str], number: str) -> Response:
        pull = self.pulls[int(number)]
        bodies = [
            merge(
                example(m.PullRequestReview),
                {
                    "id": index + 1,
                    "user": _user(review.user, self.web_host),
                    "state": review.state,
                    "commit_id": review.commit_id,
                    "submitted_at": review.submitted_at,
                    "html_url": f"https://{self.web_host}/{self.full_name}/pull/{number}#review-{index}",
                },
            )
            for index, review in enumerate(pull.reviews)
        ]
        return self._json(checked(list[m.PullRequestReview], self._page(bodies, query)))

    def _git_commit(self, query: dict[str, str], sha: str) -> Response:
        body = merge(example(m.GitCommit), {"sha": sha, "tree": {"sha": self.tree}})
        return self._json(checked(m.GitCommit, body))

    def _compare(self, query: dict[str, str], base: str, head: str) -> Response:
        pull = next(p for p in self.pulls.values() if p.head_sha == head)
        commits = [self._commit(c) for c in pull.commits]
        body = merge(
            example(m.CommitComparison),
            {
                "status": "ahead",
                "total_commits": len(commits),
                "ahead_by": len(commits),
                "commits": self._page(commits, query),
            },
        )
        return self._json(checked(m.CommitComparison, body))

    def _activity(self, query: dict[str, str]) -> Response:
        if self.activity_status != 200:
            return self._json(BODY, self.activity_status)
        ref = query.get("ref")
        items = [
            merge(
                example(m.Activity),
                {
                    "id": index + 1,
                    "ref": item_ref,
                    "activity_type": kind,
                    "actor": _user(actor, self.web_host) if actor else None,
                    "timestamp": "2026-01-04T09:00:00Z",
                },
            )
            for index, (actor, kind, item_ref) in enumerate(self.activities)
            if ref is None or item_ref == ref
        ]
        # Cursor pagination, as the activity endpoint does: a Link header
        # with rel="next" carries the cursor of the next page.
        start = int(query.get("after", "0") or "0")
        per_page = int(query.get("per_page", "30"))
        page = items[start : start + per_page]
        headers = {}
        if start + per_page < len(items):
            headers["Link"] = (
                f"<http://{self.web_host}{self.prefix}/repos/{self.full_name}/activity?after={start + per_page}"
                f'&per_page={per_page}>; rel="next"'
            )
        return self._json(checked(list[m.Activity], page), 200, headers)

    def _rules(self, query: dict[str, str], branch: str) -> Response:
        rules: list[dict[str, Any]] = [
            {
                "type": "deletion",
                "ruleset_source_type": "Repository",
                "ruleset_source": self.full_name,
                "ruleset_id": 1,
            }
        ]
        if self.last_push_rule:
            rules.append(
                {
                    "type": "pull_request",
                    "ruleset_source_type": "Repository",
                    "ruleset_source": self.full_name,
                    "ruleset_id": 1,
                    "parameters": {
                        "dismiss_stale_reviews_on_push": True,
                        "require_code_owner_review": False,
                        "require_last_push_approval": True,
                        "required_approving_review_count": 1,
                        "required_review_thread_resolution": False,
                    },
                }
            )
        return self._json(checked(BRANCH_RULES, rules))

    def _permission(self, query: dict[str, str], login: str) -> Response:
        role = self.permissions.get(login)
        if role is None:
            return self._json(BODY, 404)
        permission = {"maintain": "write", "triage": "read"}.get(role, role)
        body = merge(
            example(m.RepositoryCollaboratorPermission),
            {"permission": permission, "role_name": role, "user": None},
        )
        return self._json(checked(m.RepositoryCollaboratorPermission, body))

    def _membership(self, query: dict[str, str], org: str, slug: str, login: str) -> Response:
        if login not in self.teams.get(f"{org}/{slug}", set()):
            return self._json(BODY, 404)
        body = merge(example(m.TeamMembership), {"state": "active", "role": "member"})
        return self._json(checked(m.TeamMembership, body))

    def _check_runs(self, query: dict[str, str], sha: str) -> Response:
        runs = [
            merge(
                example(m.CheckRun),
                {
                    "id": index + 1,
                    "name": name,
                    "head_sha": sha,
                    "status": "completed" if conclusion else "in_progress",
                    "conclusion": conclusion,
                },
            )
            for index, (name, conclusion) in enumerate(self.check_runs)
        ]
        page = self._page(runs, query)
        body = {"total_count": len(runs), "check_runs": page}
        return self._json(checked(m.ReposOwnerRepoCommitsRefCheckRunsGetResponse200, body))

    def _status(self, query: dict[str, str], sha: str) -> Response:
        statuses = [
            merge(example(m.SimpleCommitStatus), {"id": i + 1, "context": name, "state": state})
            for i, (name, state) in enumerate(self.statuses)
        ]
        body = merge(
            example(m.CombinedCommitStatus),
            {"sha": sha, "state": "success", "statuses": statuses, "total_count": len(statuses)},
        )
        return self._json(checked(m.CombinedCommitStatus, body))
