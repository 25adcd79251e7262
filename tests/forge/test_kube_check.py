"""End to end into the cluster's decision path: a loopback GitHub →
``guard attest review --from github`` → ``guard kube check`` with a policy
that has ``review.forge`` rules, as the webhook would judge the Deployment."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.attest import helpers as h
from tests.forge.conftest import Team
from tests.forge.fakegithub import BOB, FakeGitHub, Review
from tests.forge.test_github import HEAD, attested, scenario


def _deployment(folder: Path) -> Path:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": {
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "shop", "image": f"{h.IMAGE}@{h.DIGEST}"}]},
            },
        },
    }
    return h.write_yaml(folder / "shop.yaml", deployment)


def _check(team: Team, envelope: Path, **review: object) -> tuple[int, str]:
    policies = team.folder / "policies"
    policies.mkdir(exist_ok=True)
    document = h.policy_document(attesters=["ci"], requiredChecks=[], **review)
    (policies / "review.yaml").write_text(yaml.safe_dump(document))
    run = team.guard(
        "kube", "check", "-f", _deployment(team.folder), "--policies", policies,
        "--trust", team.folder / "trust.yaml", "--attestation", envelope,
    )  # fmt: skip
    return run.code, run.out


def test_kube_check_admits_a_change_github_shows_reviewed(team: Team, github: FakeGitHub) -> None:
    scenario(
        github,
    )
    github.last_push_rule = True
    code, out = _check(team, attested(team, github), forge={"requireLastPushApproval": True})
    assert code == 0, out
    assert "approved by carol" in out


def test_kube_check_denies_a_change_approved_by_someone_who_pushed_to_it(
    team: Team, github: FakeGitHub
) -> None:
    scenario(github, reviews=[Review(BOB, "APPROVED", HEAD, "2026-01-05T11:00:00Z")])
    github.activities.append((BOB, "push", "refs/heads/feature"))
    code, out = _check(team, attested(team, github), forge={"reviewerPermission": "write"})
    assert code == 1, out
    assert "bob approved their own change" in out
