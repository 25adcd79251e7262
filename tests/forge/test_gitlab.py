"""End to end: a loopback GitLab → ``guard attest review --from gitlab`` →
``guard attest verify`` with a policy; the verdict and its reason asserted.

GitLab approvals carry no revision: the reader binds each to the merge
request version it followed, and records the project's settings that
reset approvals on push and keep committers from approving.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.forge.conftest import IMAGE, Run, Team
from tests.forge.fakegitlab import ALICE, BOB, BOT, CAROL, DAVE, Commit, FakeGitLab, MergeRequest

HEAD = "1" * 40
OLD = "2" * 40
MERGE = "3" * 40
SQUASH = "4" * 40
EARLY = "2026-01-04T09:00:00.000Z"
PUSHED = "2026-01-05T09:00:00.000Z"
AFTER = "2026-01-05T11:00:00.000Z"


def scenario(fake: FakeGitLab, **changes: Any) -> MergeRequest:
    """Alice's merge request !5 into main; carol approved after the last push."""
    mr = MergeRequest(
        iid=5,
        author=ALICE,
        sha=HEAD,
        commits=[Commit(OLD, ALICE), Commit(HEAD, ALICE)],
        approvals=[(CAROL, AFTER)],
        versions=[(OLD, EARLY), (HEAD, PUSHED)],
        merge_commit_sha=MERGE,
    )
    for key, value in changes.items():
        setattr(mr, key, value)
    fake.mrs[mr.iid] = mr
    fake.commit_mrs.setdefault(mr.merge_commit_sha or mr.sha, []).append(mr.iid)
    for user in (ALICE, BOB, CAROL, DAVE, BOT):
        fake.users[user.id] = user
    fake.access.update({ALICE.id: 30, BOB.id: 30, CAROL.id: 30, BOT.id: 30})
    fake.pushes.append((ALICE, "feature"))
    fake.statuses.append(("unit-tests", "success"))
    return mr


def attest(
    team: Team, fake: FakeGitLab, *extra: str, target: tuple[str, ...] = ("--merge-request", "5")
) -> Run:
    return team.guard(
        "attest", "review", "--from", "gitlab", "--project", "acme/shop", *target,
        "--api-url", fake.api_url, "--key", team.folder / "ci.key",
        "--digest", IMAGE, "-o", team.folder / "review.json", *extra,
    )  # fmt: skip


def predicate(team: Team) -> dict[str, Any]:
    envelope = json.loads((team.folder / "review.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))["predicate"]  # type: ignore[no-any-return]


def verified(team: Team, fake: FakeGitLab, **review: Any) -> Run:
    run = attest(team, fake)
    assert run.code == 0, run.err
    review.setdefault("repositories", ["gitlab.com/acme/shop"])
    return team.verify(team.folder / "review.json", team.policy(**review))


def rejected(run: Run, reason: str) -> None:
    assert run.code == 1, run.out + run.err
    assert reason in run.out, run.out


def test_a_reviewed_merge_request_is_read_from_gitlab_and_verifies(
    team: Team, gitlab: FakeGitLab
) -> None:
    scenario(gitlab)
    run = verified(team, gitlab, forge={"requireResetOnPush": True})
    assert run.code == 0, run.out
    assert "approved by carol" in run.out
    read = predicate(team)
    assert read["repository"] == "gitlab.com/acme/shop"
    assert read["revision"] == {"gitCommit": MERGE}
    assert read["change"] == {
        "system": "gitlab",
        "id": "5",
        "uri": "https://gitlab.com/acme/shop/-/merge_requests/5",
        "headRevision": HEAD,
    }
    assert read["authors"] == [
        {
            "id": "gitlab:11",
            "login": "alice",
            "kind": "human",
            "roles": ["author", "commit-author", "committer", "pusher"],
        }
    ]
    assert read["approvals"] == [
        {
            "reviewer": {"id": "gitlab:13", "login": "carol", "kind": "human"},
            "reviewedRevision": HEAD,
            "approvedAt": "2026-01-05T11:00:00Z",
            "permission": "write",
        }
    ]
    source = read["source"]
    assert source["repositoryId"] == "gitlab:77" and source["ownerId"] == "gitlab:700"
    assert source["resetApprovalsOnPush"] is True
    assert source["committersMayNotApprove"] is True
    assert source["pushers"] == "read"
    assert read["checks"] == [{"name": "unit-tests", "result": "pass"}]


def test_an_approval_before_the_newest_version_is_stale_without_reset_on_push(
    team: Team, gitlab: FakeGitLab
) -> None:
    scenario(gitlab, approvals=[(CAROL, "2026-01-04T10:00:00.000Z")])
    gitlab.reset_approvals_on_push = False
    run = verified(team, gitlab)
    rejected(run, f"carol approved revision {OLD}, not the head revision {HEAD} (stale approval)")
    assert predicate(team)["source"]["resetApprovalsOnPush"] is False


def test_a_policy_can_require_reset_on_push(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab)
    gitlab.reset_approvals_on_push = False
    rejected(
        verified(team, gitlab, forge={"requireResetOnPush": True}),
        "the project does not reset approvals when commits are pushed (review.forge.requireResetOnPush)",
    )


def test_someone_who_pushed_to_the_branch_cannot_approve(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, approvals=[(BOB, AFTER)])
    gitlab.pushes.append((BOB, "feature"))
    rejected(verified(team, gitlab), "bob approved their own change")


def test_a_committer_found_by_email_cannot_approve(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, commits=[Commit(HEAD, ALICE, committer=BOB)], approvals=[(BOB, AFTER)])
    rejected(verified(team, gitlab), "bob approved their own change")


def test_a_reporter_cannot_approve(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, approvals=[(DAVE, AFTER)])
    gitlab.access[DAVE.id] = 20
    rejected(verified(team, gitlab), "dave has read permission on the repository, less than write")


def test_a_bot_account_cannot_approve(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, approvals=[(BOT, AFTER)])
    rejected(verified(team, gitlab), "project_42_bot_abc is a bot: bot approvals do not count")


def test_approvers_can_be_limited_to_a_group(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab)
    rejected(
        team.verify(
            _attested(team, gitlab, "--approver-team", "acme/release"),
            team.policy(
                repositories=["gitlab.com/acme/shop"], forge={"approverTeams": ["acme/release"]}
            ),
        ),
        "carol is in none of the approver teams (acme/release)",
    )
    gitlab.groups["acme/release"] = {CAROL.id}
    run = team.verify(
        _attested(team, gitlab, "--approver-team", "acme/release"),
        team.policy(
            repositories=["gitlab.com/acme/shop"], forge={"approverTeams": ["acme/release"]}
        ),
    )
    assert run.code == 0, run.out


def _attested(team: Team, gitlab: FakeGitLab, *extra: str) -> Any:
    run = attest(team, gitlab, *extra)
    assert run.code == 0, run.err
    return team.folder / "review.json"


def test_self_managed_gitlab_ids_are_qualified_by_host(team: Team, gitlab: FakeGitLab) -> None:
    gitlab.web_host = "gitlab.acme.example"
    scenario(gitlab)
    run = verified(team, gitlab, repositories=["gitlab.acme.example/acme/shop"])
    assert run.code == 0, run.out
    read = predicate(team)
    assert read["authors"][0]["id"] == "gitlab.acme.example:11"
    assert read["source"]["repositoryId"] == "gitlab.acme.example:77"


def test_a_squash_commit_is_found_from_its_commit(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, merge_commit_sha=None, squash_commit_sha=SQUASH)
    gitlab.commit_mrs[SQUASH] = [5]
    run = attest(team, gitlab, target=("--commit", SQUASH))
    assert run.code == 0, run.err
    assert predicate(team)["revision"]["gitCommit"] == SQUASH


def test_a_merge_commit_is_found_from_its_commit(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab)
    gitlab.mrs[6] = MergeRequest(
        6, BOB, "5" * 40, [Commit("5" * 40, BOB)], state="opened", merge_commit_sha=None
    )
    gitlab.commit_mrs[MERGE] = [6, 5]
    run = attest(team, gitlab, target=("--commit", MERGE))
    assert run.code == 0, run.err
    assert predicate(team)["change"]["id"] == "5"


def test_an_unmerged_merge_request_is_refused(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, state="opened")
    run = attest(team, gitlab)
    assert run.code == 2
    assert "merge request acme/shop!5 is not merged (opened)" in run.err


def test_a_commit_list_cut_short_is_refused(team: Team, gitlab: FakeGitLab) -> None:
    scenario(gitlab, announced_commits=300)
    run = attest(team, gitlab)
    assert run.code == 2
    assert "read 2 commits but GitLab announced 300: refusing a partial list of authors" in run.err


def test_the_job_token_cannot_read_approvals_and_says_so(
    team: Team, gitlab: FakeGitLab, monkeypatch: Any
) -> None:
    scenario(gitlab)
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token")
    run = attest(team, gitlab)
    assert run.code == 2
    assert (
        "CI_JOB_TOKEN cannot read merge request approvals (HTTP 403): set GITLAB_TOKEN" in run.err
    )
    assert len(run.err.strip().splitlines()) == 1


def test_a_rate_limit_then_a_server_error_then_success(
    team: Team, gitlab: FakeGitLab, waits: list[float]
) -> None:
    scenario(gitlab)
    gitlab.fail(r"/merge_requests/5$", 429, {"Retry-After": "5"})
    gitlab.fail(r"/approvals$", 502)
    assert verified(team, gitlab).code == 0
    assert waits == [5.0, 2.0]


def test_a_bad_token_is_one_line(team: Team, gitlab: FakeGitLab, monkeypatch: Any) -> None:
    scenario(gitlab)
    monkeypatch.setenv("GITLAB_TOKEN", "wrong")
    run = attest(team, gitlab)
    assert run.code == 2
    assert "GitLab refused the token (HTTP 401): set GITLAB_TOKEN to a valid token" in run.err


def test_an_approval_without_a_time_counts_only_where_pushes_reset_approvals(
    team: Team, gitlab: FakeGitLab
) -> None:
    scenario(gitlab, approvals=[(CAROL, None)])
    assert verified(team, gitlab).code == 0
    assert predicate(team)["approvals"][0]["reviewedRevision"] == HEAD
    gitlab.reset_approvals_on_push = False
    rejected(
        verified(team, gitlab), f"carol approved revision unknown, not the head revision {HEAD}"
    )
