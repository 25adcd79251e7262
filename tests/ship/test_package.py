"""guard as users install it: the wheel and sdist built here, installed into a
fresh virtualenv from the locked wheels (offline), with the default policy
bundle inside the package, and no deprecation warnings on the way.

``dist`` and ``installed`` are tests/ship/conftest.py's, made once a session:
the virtualenv is the one the README's CLI steps install the wheel into."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from controller import __version__
from controller.cli import main
from controller.policy import bundled
from tests.ship.install import Dist, Installed
from tests.ship.tools import REPO_ROOT, clean_env, run

POLICIES = REPO_ROOT / "policies"
EXAMPLES = REPO_ROOT / "examples"
BUNDLE_IN_PACKAGE = "controller/policy/bundle/"


def _policy_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in POLICIES.glob("*.yaml")}


def test_wheel_carries_the_default_bundle_byte_for_byte(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        shipped = {
            name.removeprefix(BUNDLE_IN_PACKAGE): wheel.read(name)
            for name in wheel.namelist()
            if name.startswith(BUNDLE_IN_PACKAGE)
        }
    assert shipped == _policy_files()


def test_sdist_carries_the_bundle_as_files(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        members = {
            m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/policy/bundle/" in m.name
        }
    names = {name.removeprefix(BUNDLE_IN_PACKAGE) for name in members if name.endswith(".yaml")}
    assert names == set(_policy_files())
    # Real files: a link would dangle once the sdist is unpacked elsewhere.
    assert all(m.isfile() for name, m in members.items() if name.endswith(".yaml"))


def test_build_and_install_print_no_deprecation_warning(dist: Dist, installed: Installed) -> None:
    for log in (dist.log, installed.install_log):
        assert "deprecat" not in log.lower(), log
        assert "warning" not in log.lower(), log


def test_installed_version_matches_the_package(installed: Installed) -> None:
    result = run([installed.guard, "--version"], env=clean_env())
    assert result.stdout.strip() == f"guard {__version__}"


def test_installed_cli_judges_a_plan_with_the_bundle_in_the_package(
    installed: Installed, tmp_path: Path
) -> None:
    # Run from an empty folder, far from the checkout: only the package's bundle can answer.
    result = run(
        [installed.guard, "tf-plan", EXAMPLES / "terraform" / "plans" / "aws-failing.json"],
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "no-public-s3" in result.stdout
    where = run(
        [
            installed.venv / "bin" / "python",
            "-c",
            "from controller.policy.bundled import bundled_policies_path as p; print(p())",
        ],
        env=clean_env(),
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)


def test_installed_cli_checks_manifests(installed: Installed, tmp_path: Path) -> None:
    result = run(
        [installed.guard, "kube", "check", "-f", EXAMPLES / "manifests" / "web.yaml"],
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "require-review" in result.stdout


def test_installed_cli_signs_and_verifies(installed: Installed, tmp_path: Path) -> None:
    env = clean_env()
    run([installed.guard, "keygen", "release", "--dir", tmp_path], env=env, cwd=tmp_path)
    subject = tmp_path / "artifact.bin"
    subject.write_bytes(b"release artifact\n")
    envelope = tmp_path / "artifact.intoto.json"
    run(
        [
            installed.guard, "attest", "review", "--key", tmp_path / "release.key",
            "--subject-file", subject, "--repository", "github.com/guard-dev/guard",
            "--target-ref", "refs/heads/main", "--revision", "0" * 40,
            "--change-system", "github", "--change-id", "7",
            "--author", "alice=github:1001", "--approval", "bob=github:1002",
            "--output", envelope,
        ],
        env=env,
    )  # fmt: skip
    trust = tmp_path / "trust.yaml"
    public_key = (tmp_path / "release.pub").read_text()
    trust.write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: t}\nspec:\n"
        "  keys:\n    - name: release\n      role: attester\n      publicKey: |\n"
        + "".join(f"        {line}\n" for line in public_key.splitlines())
    )
    verified = run(
        [
            installed.guard,
            "attest",
            "verify",
            envelope,
            "--trust",
            trust,
            "--subject-file",
            subject,
        ],
        env=env,
    )
    assert "verified" in verified.stdout.lower()


# ------------------------------------------------------------ the default's precedence


def _write_one_policy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(POLICIES / "no-public-s3.yaml", folder / "only.yaml")
    return folder


def test_environment_variable_overrides_the_package_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chosen = _write_one_policy(tmp_path / "mine")
    monkeypatch.setenv(bundled.ENVIRONMENT_VARIABLE, str(chosen))
    assert bundled.bundled_policies_path() == chosen
    monkeypatch.delenv(bundled.ENVIRONMENT_VARIABLE)
    assert bundled.bundled_policies_path() == bundled.packaged_policies_path()
    assert {p.name for p in bundled.packaged_policies_path().glob("*.yaml")} == set(_policy_files())


def test_policies_flag_beats_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(bundled.ENVIRONMENT_VARIABLE, str(tmp_path / "does-not-exist"))
    chosen = _write_one_policy(tmp_path / "flag")
    plan = EXAMPLES / "terraform" / "plans" / "aws-failing.json"
    code = main(["tf-plan", str(plan), "--policies", str(chosen), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 1
    assert "no-public-s3" in out
    assert "protect-stateful-resources" not in out  # only the flag's folder was read


def test_missing_environment_folder_is_one_line_naming_the_way_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(bundled.ENVIRONMENT_VARIABLE, str(missing))
    plan = EXAMPLES / "terraform" / "plans" / "aws-failing.json"
    assert main(["tf-plan", str(plan)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"GUARD_POLICIES_DIR={missing}" in err
    assert "--policies" in err
