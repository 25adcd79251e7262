"""Fixtures the shipping tests share, each made once per session: building the
wheel and installing it with its dependencies are the slowest steps of the suite.

``dist`` is ``python -m build`` of the checkout. ``readme_cli`` runs the
README's "The CLI" steps as written (tests/ship/test_install_docs.py checks
each result); the virtualenv its ``python3 -m venv guard-venv && guard-venv/bin/pip
install`` step makes is the installed package that tests/ship/test_package.py
runs, so the wheel is installed into a fresh virtualenv once, not twice.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from controller import __version__
from tests.ship.install import (
    README_VENV,
    Dist,
    Installed,
    ReadmeCli,
    commands,
    require_wheelhouse,
    run_steps,
)
from tests.ship.tools import REPO_ROOT, WHEELHOUSE, clean_env, run


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``python -m build``: the sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    result = run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO_ROOT],
        env=clean_env(),
    )
    (wheel,) = out.glob("guard-*.whl")
    (sdist,) = out.glob("guard-*.tar.gz")
    return Dist(wheel, sdist, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def readme_cli(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> ReadmeCli:
    """The README's "The CLI" steps, in an empty folder holding the wheel under
    the name the README uses, with pip pointed at the locked wheelhouse
    (``make wheelhouse``) instead of an index: no index, no network."""
    require_wheelhouse()
    root = tmp_path_factory.mktemp("readme-cli")
    wheel_name = f"guard-{__version__}-py3-none-any.whl"
    work = root / "work"
    work.mkdir()
    shutil.copy(dist.wheel, work / wheel_name)
    shutil.copy(
        REPO_ROOT / "examples" / "terraform" / "plans" / "aws-failing.json", work / "plan.json"
    )
    # Only these tools on PATH, so `guard` can only be the one pipx installed.
    tools = root / "tools"
    tools.mkdir()
    (tools / "python3").symlink_to(sys.executable)
    (tools / "pipx").symlink_to(Path(sys.executable).parent / "pipx")
    env = clean_env(
        HOME=str(root / "home"),
        PIPX_HOME=str(root / "pipx"),
        PIPX_BIN_DIR=str(root / "bin"),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(WHEELHOUSE),
        PATH=os.pathsep.join([str(root / "bin"), str(tools), "/usr/bin", "/bin"]),
    )
    steps = commands("The CLI")
    return ReadmeCli(root, work, steps, wheel_name, run_steps(steps, env, work))


@pytest.fixture(scope="session")
def installed(readme_cli: ReadmeCli) -> Installed:
    """A fresh virtualenv with the wheel, its dependencies from the locked
    wheelhouse only: the one the README's ``python3 -m venv guard-venv &&
    guard-venv/bin/pip install <wheel>`` step made, with that step's output."""
    (step,) = [s for s in readme_cli.steps if f"{README_VENV}/bin/pip install" in s]
    if step not in readme_cli.steps[: len(readme_cli.results)]:
        pytest.fail(f"the README's CLI steps stopped before {step!r}")
    result = readme_cli.result_of(step)
    if result.returncode != 0:
        pytest.fail(f"{step} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return Installed(readme_cli.work / README_VENV, result.stdout + result.stderr)
