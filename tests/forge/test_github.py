"""End to end: a loopback GitHub → ``guard attest review --from github`` →
``guard attest verify`` with a policy; the verdict and its reason asserted.

Each scenario is one way a forge can mislead a hand-written script: the
reader must record the fact, and the verifier must refuse (or accept) for
the stated reason.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.attest import helpers as h
from tests.forge.conftest import IMAGE, Run, Team
from tests.forge.fakegithub import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    RENOVATE,
    WEB_FLOW_USER,
    Commit,
    FakeGitHub,
    Pull,
    Review,
    User,
)

HEAD = "1" * 40
OLD = "2" * 40
MERGE = "3" * 40
SQUASH = "4" * 40


def _sha(n: int) -> str:
    return f"{n:040x}"


def scenario(fake: FakeGitHub, **changes: Any) -> Pull:
    """Alice's change #42, merged into main, approved by carol on the head."""
    pull = Pull(
        number=42,
        author=ALICE,
        head_sha=HEAD,
        commits=[Commit(_sha(0xA1), ALICE), Commit(HEAD, ALICE, WEB_FLOW_USER)],
        reviews=[Review(CAROL, "APPROVED", HEAD, "2026-01-05T11:00:00Z")],
        merge_commit_sha=MERGE,
    )
    for key, value in changes.items():
        setattr(pull, key, value)
    fake.pulls[pull.number] = pull
    fake.commit_pulls.setdefault(pull.merge_commit_sha, []).append(pull.number)
    fake.permissions.update({"carol": "write", "alice": "write", "bob": "write", "erin": "write"})
    fake.activities.append((ALICE, "branch_creation", "refs/heads/feature"))
    fake.activities.append((ALICE, "push", "refs/heads/feature"))
    fake.check_runs.append(("unit-tests", "success"))
    return pull


def attest(
    team: Team, fake: FakeGitHub, *extra: str, target: tuple[str, ...] = ("--pull-request", "42")
) -> Run:
    return team.guard(
        "attest", "review", "--from", "github", "--repository", "acme/shop", *target,
        "--api-url", fake.api_url + fake.prefix, "--key", team.folder / "ci.key",
        "--digest", IMAGE, "-o", team.folder / "review.json", *extra,
    )  # fmt: skip


def predicate(team: Team) -> dict[str, Any]:
    envelope = json.loads((team.folder / "review.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    return statement["predicate"]  # type: ignore[no-any-return]


def attested(team: Team, fake: FakeGitHub, *extra: str) -> Path:
    run = attest(team, fake, *extra)
    assert run.code == 0, run.err
    return team.folder / "review.json"


def rejected(run: Run, reason: str) -> None:
    assert run.code == 1, run.out + run.err
    assert "rejected" in run.out
    assert reason in run.out, run.out


# --------------------------------------------------------------------------- the good case


def test_a_reviewed_change_is_read_from_github_and_verifies(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    envelope = attested(team, github, "--check", "coverage=pass:91/80")
    read = predicate(team)
    assert read["repository"] == "github.com/acme/shop"
    assert read["revision"] == {"gitCommit": MERGE, "gitTree": "c" * 40}
    assert read["targetRef"] == "refs/heads/main"
    assert read["change"] == {
        "system": "github",
        "id": "42",
        "uri": "https://github.com/acme/shop/pull/42",
        "headRevision": HEAD,
    }
    # web-flow committed on the web: it is never an author.
    assert [(a["id"], a["roles"]) for a in read["authors"]] == [
        ("github:1001", ["author", "commit-author", "committer", "pusher"])
    ]
    assert read["approvals"] == [
        {
            "reviewer": {"id": "github:1003", "login": "carol", "kind": "human"},
            "reviewedRevision": HEAD,
            "approvedAt": "2026-01-05T11:00:00Z",
            "permission": "write",
        }
    ]
    assert read["checks"] == [
        {"name": "unit-tests", "result": "pass"},
        {"name": "coverage", "result": "pass", "value": 91.0, "threshold": 80.0},
    ]
    source = read["source"]
    assert source["system"] == "github"
    assert source["apiUrl"] == github.api_url
    assert source["repositoryId"] == "github:4242"
    assert source["ownerId"] == "github:9000"
    assert source["changeUrl"] == "https://github.com/acme/shop/pull/42"
    assert source["commitCount"] == 2
    assert source["pushers"] == "read"
    assert source["lastPushApprovalRequired"] is False
    # The API version every Enterprise Server serves, and whose pull requests
    # still carry merge_commit_sha.
    assert github.versions == {"2022-11-28"}
    run = team.verify(envelope, team.policy(requiredChecks=[{"name": "coverage", "min": 80}]))
    assert run.code == 0, run.out
    assert "approved by carol" in run.out


# --------------------------------------------------------------------------- approvals

STAMP = "2026-01-05T11:00:00Z"
LONE_APPROVALS = [
    pytest.param(
        DAVE, HEAD, "read",
        "dave has read permission on the repository, less than write: their approval does not count",
        {"permission": "read"}, id="reviewer-without-write-permission",
    ),
    pytest.param(
        DAVE, HEAD, None, "dave has none permission", {"permission": "none"},
        id="outsider-without-any-permission",
    ),
    pytest.param(
        CAROL, OLD, "write",
        f"carol approved revision {OLD}, not the head revision {HEAD} (stale approval)",
        {"reviewedRevision": OLD}, id="approval-before-the-last-push",
    ),
    # GitHub nulls commit_id once a force-push removed the reviewed commit.
    pytest.param(
        CAROL, None, "write", f"carol approved revision unknown, not the head revision {HEAD}",
        {"reviewedRevision": "unknown"}, id="reviewed-commit-gone-after-a-force-push",
    ),
    pytest.param(
        ALICE, HEAD, "write", "alice approved their own change", {"reviewedRevision": HEAD},
        id="the-author",
    ),
    pytest.param(
        RENOVATE, HEAD, "write", "renovate[bot] is a bot: bot approvals do not count",
        {"reviewer": {"id": "github:2740337", "login": "renovate[bot]", "kind": "bot"}},
        id="a-bot-by-account-type",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("reviewer", "commit", "permission", "reason", "recorded"), LONE_APPROVALS)
def test_a_lone_approval_that_does_not_count(
    team: Team,
    github: FakeGitHub,
    reviewer: User,
    commit: str | None,
    permission: str | None,
    reason: str,
    recorded: dict[str, Any],
) -> None:
    scenario(github, reviews=[Review(reviewer, "APPROVED", commit, STAMP)])
    github.permissions.pop(reviewer.login, None)
    if permission is not None:
        github.permissions[reviewer.login] = permission
    rejected(team.verify(attested(team, github)), reason)
    (approval,) = predicate(team)["approvals"]
    assert approval | recorded == approval


def test_a_policy_can_ask_more_than_write_of_reviewers(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    policy = team.policy(forge={"reviewerPermission": "maintain"})
    rejected(
        team.verify(attested(team, github), policy),
        "carol has write permission on the repository, less than maintain",
    )
    github.permissions["carol"] = "maintain"
    assert team.verify(attested(team, github), policy).code == 0


def test_someone_who_pushed_to_the_change_and_then_approved_is_an_author(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github, reviews=[Review(BOB, "APPROVED", HEAD, "2026-01-05T11:00:00Z")])
    github.activities.append((BOB, "push", "refs/heads/feature"))
    rejected(team.verify(attested(team, github)), "bob approved their own change")
    bob = next(a for a in predicate(team)["authors"] if a["login"] == "bob")
    assert bob == {"id": "github:1002", "login": "bob", "kind": "human", "roles": ["pusher"]}


def test_a_force_push_by_someone_else_makes_them_an_author_too(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github, reviews=[Review(BOB, "APPROVED", HEAD, "2026-01-05T11:00:00Z")])
    github.activities.append((BOB, "force_push", "refs/heads/feature"))
    rejected(team.verify(attested(team, github)), "bob approved their own change")


def test_pushes_to_other_branches_do_not_make_authors(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    github.activities.append((CAROL, "push", "refs/heads/other"))
    assert team.verify(attested(team, github)).code == 0


# Carol's reviews, oldest first: (state, commit reviewed, minute past 10:00).
REVIEW_SEQUENCES = [
    pytest.param(
        [("APPROVED", HEAD, 0), ("DISMISSED", HEAD, 30)], "0 of 1 approvals", [],
        id="dismissed-approval",
    ),
    pytest.param(
        [("APPROVED", HEAD, 0), ("COMMENTED", HEAD, 10), ("CHANGES_REQUESTED", HEAD, 30)],
        "0 of 1 approvals", [], id="changes-requested-after-approval",
    ),
    pytest.param(
        [("APPROVED", HEAD, 0), ("COMMENTED", HEAD, 10)], None, [HEAD],
        id="a-comment-keeps-the-approval",
    ),
    pytest.param(
        [("APPROVED", OLD, 0), ("APPROVED", HEAD, 50)], None, [HEAD],
        id="re-approval-after-a-push",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("reviews", "reason", "revisions"), REVIEW_SEQUENCES)
def test_only_each_reviewers_latest_verdict_counts(
    team: Team,
    github: FakeGitHub,
    reviews: list[tuple[str, str, int]],
    reason: str | None,
    revisions: list[str],
) -> None:
    scenario(
        github,
        reviews=[
            Review(CAROL, state, commit, f"2026-01-05T10:{minute:02d}:00Z")
            for state, commit, minute in reviews
        ],
    )
    run = team.verify(attested(team, github))
    if reason is None:
        assert run.code == 0, run.out
    else:
        rejected(run, reason)
    assert [a["reviewedRevision"] for a in predicate(team)["approvals"]] == revisions


def test_a_co_author_named_in_a_trailer_cannot_approve(team: Team, github: FakeGitHub) -> None:
    trailer = "fix\n\nCo-authored-by: Erin <1005+erin@users.noreply.github.com>\n"
    scenario(
        github,
        commits=[Commit(HEAD, ALICE, message=trailer)],
        reviews=[Review(ERIN, "APPROVED", HEAD, "2026-01-05T11:00:00Z")],
    )
    rejected(team.verify(attested(team, github)), "erin approved their own change")


def test_a_co_author_known_only_by_email_is_unresolved_and_matched_through_the_identity_map(
    team: Team, github: FakeGitHub
) -> None:
    trailer = "fix\n\nCo-authored-by: Erin E <erin@example.com>\n"
    scenario(
        github,
        commits=[Commit(HEAD, ALICE, message=trailer)],
        reviews=[Review(ERIN, "APPROVED", HEAD, "2026-01-05T11:00:00Z")],
    )
    envelope = attested(team, github)
    erin = next(a for a in predicate(team)["authors"] if a["id"] == "email:erin@example.com")
    assert erin == {
        "id": "email:erin@example.com",
        "login": "Erin-E",
        "kind": "human",
        "roles": ["co-author"],
        "unresolved": True,
    }
    # Unmapped, the e-mail is nobody the verifier knows...
    assert team.verify(envelope).code == 0
    # ...a policy can refuse what cannot be linked to an account...
    rejected(
        team.verify(envelope, team.policy("strict.yaml", forge={"denyUnresolvedAuthors": True})),
        "authors the forge could not link to an account: Erin-E (email:erin@example.com)",
    )
    # ...and the identity map makes the e-mail erin's.
    team.trust([{"id": "github:1005", "aliases": ["email:erin@example.com"]}])
    rejected(team.verify(envelope), "is an alias of author Erin-E (email:erin@example.com)")


def test_a_commit_author_with_no_account_is_recorded_unresolved(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github, commits=[Commit(HEAD, None, author_email="ghost@example.org")])
    attested(team, github)
    ghost = next(a for a in predicate(team)["authors"] if a["id"].startswith("email:"))
    assert ghost["id"] == "email:ghost@example.org" and ghost["unresolved"] is True


def test_approvers_can_be_limited_to_a_team(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    policy = team.policy(forge={"approverTeams": ["acme/release"]})
    rejected(
        team.verify(attested(team, github, "--approver-team", "acme/release"), policy),
        "carol is in none of the approver teams (acme/release)",
    )
    github.teams["acme/release"] = {"carol"}
    assert team.verify(attested(team, github, "--approver-team", "acme/release"), policy).code == 0
    assert predicate(team)["approvals"][0]["teams"] == ["acme/release"]
    assert predicate(team)["source"]["approverTeams"] == ["acme/release"]


# --------------------------------------------------------------------------- commits and pushers


def test_more_than_250_commits_are_all_read(team: Team, github: FakeGitHub) -> None:
    commits = [Commit(_sha(0x1000 + n), ALICE) for n in range(299)] + [Commit(HEAD, ERIN)]
    scenario(
        github, commits=commits, reviews=[Review(ERIN, "APPROVED", HEAD, "2026-01-05T11:00:00Z")]
    )
    # The 300th commit is erin's: a reader that stopped at 250 would count her approval.
    rejected(team.verify(attested(team, github)), "erin approved their own change")
    pages = [p for p in github.seen if "/compare/" in p]
    assert len(pages) == 3
    assert predicate(team)["source"]["commitCount"] == 300


def test_a_commit_list_cut_short_is_refused(team: Team, github: FakeGitHub) -> None:
    scenario(github, commit_count=301)
    run = attest(team, github)
    assert run.code == 2
    assert "read 2 commits (the comparison counts 2), but the pull request has 301" in run.err
    assert not (team.folder / "review.json").exists()


def test_pushers_of_a_fork_change_cannot_be_read_and_need_the_last_push_rule(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github, fork=True)
    envelope = attested(team, github)
    assert predicate(team)["source"]["pushers"] == "unreadable"
    rejected(
        team.verify(envelope),
        "who pushed to the change could not be read (the head branch is in a fork)",
    )
    github.last_push_rule = True
    envelope = attested(team, github)
    assert predicate(team)["source"]["lastPushApprovalRequired"] is True
    assert team.verify(envelope).code == 0


def test_a_token_that_cannot_read_activity_is_recorded(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    github.activity_status = 403
    envelope = attested(team, github)
    assert (
        predicate(team)["source"]["pushersNote"]
        == "the token cannot read the repository's activity"
    )
    rejected(team.verify(envelope), "who pushed to the change could not be read")


def test_a_policy_can_require_the_last_push_rule(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    policy = team.policy(forge={"requireLastPushApproval": True})
    rejected(
        team.verify(attested(team, github), policy),
        "the target branch does not require approval of the most recent push",
    )
    github.last_push_rule = True
    assert team.verify(attested(team, github), policy).code == 0


def test_activity_is_read_page_by_page(team: Team, github: FakeGitHub) -> None:
    scenario(github, reviews=[Review(BOB, "APPROVED", HEAD, "2026-01-05T11:00:00Z")])
    github.activities.extend([(ALICE, "push", "refs/heads/feature")] * 150)
    github.activities.append((BOB, "push", "refs/heads/feature"))
    rejected(team.verify(attested(team, github)), "bob approved their own change")
    assert len([p for p in github.seen if "/activity" in p]) == 2


# --------------------------------------------------------------------------- which change


def test_a_squash_merge_is_found_from_its_commit(team: Team, github: FakeGitHub) -> None:
    scenario(github, merge_commit_sha=SQUASH)
    # The endpoint also lists an open change and a fork's change that contain the commit.
    github.pulls[7] = Pull(
        7,
        BOB,
        "5" * 40,
        [Commit("5" * 40, BOB)],
        merged=False,
        state="open",
        merge_commit_sha=SQUASH,
    )
    github.pulls[8] = Pull(
        8, BOB, "6" * 40, [Commit("6" * 40, BOB)], merge_commit_sha=SQUASH, base_repo_id=5151
    )
    github.commit_pulls[SQUASH] = [7, 42, 8]
    run = attest(team, github, target=("--commit", SQUASH))
    assert run.code == 0, run.err
    read = predicate(team)
    assert read["revision"]["gitCommit"] == SQUASH and read["change"]["id"] == "42"
    assert read["change"]["headRevision"] == HEAD
    assert team.verify(team.folder / "review.json").code == 0


def test_a_merge_commit_is_found_from_its_commit(team: Team, github: FakeGitHub) -> None:
    scenario(github)
    run = attest(team, github, "--target-ref", "refs/heads/main", target=("--commit", MERGE))
    assert run.code == 0, run.err
    assert predicate(team)["revision"]["gitCommit"] == MERGE
    assert team.verify(team.folder / "review.json").code == 0


def test_a_commit_that_belongs_to_no_merged_change_is_refused(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github)
    run = attest(team, github, target=("--commit", "9" * 40))
    assert run.code == 2
    assert f"commit {'9' * 40}: 0 merged pull requests into refs/heads/main" in run.err


def test_a_change_merged_into_another_branch_is_refused(team: Team, github: FakeGitHub) -> None:
    scenario(github, base_ref="release")
    run = attest(team, github, "--target-ref", "refs/heads/main")
    assert run.code == 2
    assert "was merged into refs/heads/release, not refs/heads/main" in run.err


def test_an_unmerged_change_is_refused(team: Team, github: FakeGitHub) -> None:
    scenario(github, merged=False, state="open")
    run = attest(team, github)
    assert run.code == 2
    assert (
        "pull request acme/shop#42 is not merged (open): only a merged change can be attested"
        in run.err
    )


# --------------------------------------------------------------------------- instances and ids


def test_github_enterprise_server_ids_are_qualified_by_host(team: Team, github: FakeGitHub) -> None:
    github.web_host, github.prefix = "ghe.example.com", "/api/v3"
    scenario(github)
    envelope = attested(team, github)
    read = predicate(team)
    assert read["repository"] == "ghe.example.com/acme/shop"
    assert read["authors"][0]["id"] == "ghe.example.com:1001"
    assert read["approvals"][0]["reviewer"]["id"] == "ghe.example.com:1003"
    assert read["source"]["repositoryId"] == "ghe.example.com:4242"
    assert all(p.startswith("/api/v3/") for p in github.seen)
    policy = team.policy(repositories=["ghe.example.com/acme/shop"])
    assert team.verify(envelope, policy).code == 0
    # github.com's user 1003 is someone else.
    team.trust([{"id": "github:1003", "aliases": ["email:carol@example.com"]}])
    assert team.verify(envelope, policy).code == 0


def test_a_noreply_address_resolves_to_its_account(team: Team, github: FakeGitHub) -> None:
    scenario(
        github, commits=[Commit(HEAD, None, author_email="1005+erin@users.noreply.github.com")]
    )
    attested(team, github)
    ids = [a["id"] for a in predicate(team)["authors"]]
    assert "github:1005" in ids and not any(i.startswith("email:") for i in ids)


def test_a_repository_id_pin_refuses_a_re_created_repository(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github)
    envelope = attested(team, github)
    assert team.verify(envelope, team.policy(forge={"repositoryIds": ["github:4242"]})).code == 0
    rejected(
        team.verify(envelope, team.policy(forge={"repositoryIds": ["github:17"]})),
        "repository id github:4242 is not one the policy pins (github:17)",
    )


def test_a_policy_with_forge_rules_refuses_reviews_typed_as_flags(team: Team) -> None:
    run = team.guard(
        "attest", "review", "--key", team.folder / "ci.key", "--repository", h.REPOSITORY,
        "--target-ref", h.TARGET_REF, "--revision", MERGE, "--change-id", "42",
        "--author", "alice=github:1001", "--approval", "carol=github:1003",
        "--digest", IMAGE, "-o", team.folder / "flags.json",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert team.verify(team.folder / "flags.json").code == 0
    rejected(
        team.verify(team.folder / "flags.json", team.policy(forge={})),
        "the review was not read from a forge",
    )


# --------------------------------------------------------------------------- a forge that fails


def test_a_rate_limit_is_waited_out_then_the_read_succeeds(
    team: Team, github: FakeGitHub, waits: list[float]
) -> None:
    scenario(github)
    github.fail(r"/pulls/42$", 429, {"Retry-After": "7"})
    github.fail(r"/reviews$", 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"})
    assert team.verify(attested(team, github)).code == 0
    assert waits[0] == 7.0
    assert len(waits) == 2


def test_a_rate_limit_longer_than_guard_waits_is_refused(
    team: Team, github: FakeGitHub, waits: list[float]
) -> None:
    scenario(github)
    github.fail(r"/pulls/42$", 429, {"Retry-After": "3600"})
    run = attest(team, github)
    assert run.code == 2
    assert "rate limited by GitHub; the forge asks to wait 3600 s, more than guard waits" in run.err
    assert waits == []


def test_server_errors_are_retried_a_few_times(
    team: Team, github: FakeGitHub, waits: list[float]
) -> None:
    scenario(github)
    github.fail(r"/compare/", 502, times=2)
    assert team.verify(attested(team, github)).code == 0
    assert waits == [2.0, 4.0]


def test_a_forge_that_keeps_failing_is_refused(
    team: Team, github: FakeGitHub, waits: list[float]
) -> None:
    scenario(github)
    github.fail(r"/compare/", 503, times=10)
    run = attest(team, github)
    assert run.code == 2
    assert "GitHub answered HTTP 503 (4 attempts): the forge is failing" in run.err
    assert len(waits) == 3
    assert not (team.folder / "review.json").exists()


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "GitHub refused the token (HTTP 401): set GITHUB_TOKEN to a valid token"),
        (403, "the token lacks the permission to read this (HTTP 403)"),
    ],
)
def test_a_refused_token_is_one_line(
    team: Team, github: FakeGitHub, status: int, message: str
) -> None:
    scenario(github)
    github.fail(r"/pulls/42$", status)
    run = attest(team, github)
    assert run.code == 2
    assert message in run.err
    assert len(run.err.strip().splitlines()) == 1


def test_a_missing_token_is_one_line(
    team: Team, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    run = attest(team, github)
    assert run.code == 2
    assert "--from github: no token: set GITHUB_TOKEN" in run.err
    assert github.seen == []


def test_flags_the_forge_answers_are_refused_with_from(team: Team, github: FakeGitHub) -> None:
    run = attest(team, github, "--approval", "carol=github:1003")
    assert run.code == 2
    assert "--from github reads the change from the forge; drop --approval" in run.err
