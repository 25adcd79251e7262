"""The wheel, its installs and the README's CLI steps, as the shipping tests
share them (the fixtures are in tests/ship/conftest.py)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ship.tools import REPO_ROOT, WHEELHOUSE, run

README = REPO_ROOT / "README.md"
# The README's virtualenv route, and the folder it installs guard into.
README_VENV = "guard-venv"


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    log: str


@dataclass(frozen=True)
class Installed:
    venv: Path
    install_log: str

    @property
    def guard(self) -> Path:
        return self.venv / "bin" / "guard"


@dataclass(frozen=True)
class ReadmeCli:
    """The README's CLI steps, run in ``work`` (which holds the wheel under
    the README's name), each with its result, in the README's order; the run
    stops after the first step that fails."""

    root: Path
    work: Path
    steps: list[str]
    wheel_name: str
    results: list[subprocess.CompletedProcess[str]]

    def result_of(self, step: str) -> subprocess.CompletedProcess[str]:
        return self.results[self.steps.index(step)]


def install_steps() -> dict[str, list[str]]:
    """Subsection title -> its ```sh blocks, continuation lines joined."""
    text = README.read_text()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (.+)$", section, flags=re.MULTILINE)
    steps = {}
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        blocks = re.findall(r"```sh\n(.*?)```", body, re.DOTALL)
        steps[title.strip()] = [b.replace("\\\n", " ") for b in blocks]
    return steps


def commands(title: str) -> list[str]:
    lines = []
    for block in install_steps()[title]:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def require_wheelhouse() -> None:
    if not (WHEELHOUSE / ".done").is_file():
        pytest.fail(f"{WHEELHOUSE} is missing: run `make wheelhouse` (make test does)")


def run_steps(
    steps: list[str], env: dict[str, str], work: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Each step in bash, in order, until one fails. The leading install steps
    are the README's alternative routes (pipx, or a virtualenv): each writes
    only its own folder, so they run side by side, and the steps after them
    run once every route has finished."""
    routes = 0
    while routes < len(steps) and " install " in steps[routes]:
        routes += 1
    argv = [["bash", "-euo", "pipefail", "-c", step] for step in steps]
    started = [
        subprocess.Popen(
            a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work
        )
        for a in argv[:routes]
    ]
    results = []
    try:
        for a, process in zip(argv[:routes], started, strict=True):
            stdout, stderr = process.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(a, process.returncode, stdout, stderr))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    if any(r.returncode != 0 for r in results):
        return results[: next(i for i, r in enumerate(results) if r.returncode != 0) + 1]
    for a in argv[routes:]:
        result = run(a, env=env, cwd=work, check=False)
        results.append(result)
        if result.returncode != 0:
            break
    return results
