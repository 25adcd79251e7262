"""The hashed lock the image installs is exactly what pyproject.toml asks for:
every runtime dependency is satisfied by its pin, every pin is hashed, every
locked wheel's own requirements are locked too, and nothing else is."""

from __future__ import annotations

import re
import tomllib
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.ship.tools import REPO_ROOT, WHEELHOUSE

LOCK = REPO_ROOT / "packaging" / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# The lock is resolved for the image's Python (Debian bookworm's 3.11) on Linux.
ENVIRONMENT: dict[str, str] = {
    "python_version": "3.11",
    "implementation_version": "3.11.2",
    "platform_release": "",
    "platform_version": "",
    "python_full_version": "3.11.2",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def _entries() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes), from pip-compile's format."""
    text = LOCK.read_text().replace("\\\n", " ")
    entries: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            name = canonicalize_name(match.group(1))
            assert name not in entries, f"{name} is pinned twice"
            entries[name] = (Version(match.group(2)), HASH.findall(line))
    return entries


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _applies(requirement: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    if requirement.marker is None:
        return True
    return any(
        requirement.marker.evaluate({**ENVIRONMENT, "extra": extra}) for extra in extras or {""}
    )


def test_every_pin_is_exact_and_hashed() -> None:
    entries = _entries()
    assert len(entries) >= 10
    unhashed = [name for name, (_, hashes) in entries.items() if not hashes]
    assert unhashed == []


def test_lock_satisfies_every_runtime_dependency() -> None:
    entries = _entries()
    problems = []
    for requirement in _runtime_requirements():
        if not _applies(requirement):
            continue
        name = canonicalize_name(requirement.name)
        if name not in entries:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(entries[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock pins {entries[name][0]}")
    assert problems == [], "run `make lock`: " + "; ".join(problems)


def _wheel_requirements() -> dict[str, list[Requirement]]:
    """Each locked wheel's Requires-Dist, read from the wheelhouse."""
    if not (WHEELHOUSE / ".done").is_file():
        pytest.fail(f"{WHEELHOUSE} is missing: run `make wheelhouse` (make test does)")
    found: dict[str, list[Requirement]] = {}
    for wheel in WHEELHOUSE.glob("*.whl"):
        name, _, _, _ = parse_wheel_filename(wheel.name)
        with zipfile.ZipFile(wheel) as archive:
            (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            message = Parser().parsestr(archive.read(metadata).decode())
        found[str(name)] = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    return found


def test_lock_is_closed_and_holds_nothing_pyproject_does_not_need() -> None:
    entries = _entries()
    requires = _wheel_requirements()
    # The wheelhouse also holds pip (packaging/installer.lock), for pipx.
    assert set(requires) - {"pip"} == set(entries), "the wheelhouse is stale: run `make wheelhouse`"
    needed: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in _runtime_requirements()]
    problems = []
    while todo:
        requirement, extras = todo.pop()
        if not _applies(requirement, extras):
            continue
        name = canonicalize_name(requirement.name)
        if name not in entries:
            problems.append(f"{requirement} is needed but not locked")
            continue
        if not requirement.specifier.contains(entries[name][0], prereleases=True):
            problems.append(f"{requirement} is needed but {name}=={entries[name][0]} is locked")
        if name not in needed or requirement.extras:
            needed.add(name)
            own_extras = frozenset(requirement.extras)
            todo.extend((r, own_extras) for r in requires[name])
    assert problems == []
    assert set(entries) - needed == set(), "locked but not needed: run `make lock`"


def test_lock_names_how_it_was_made() -> None:
    header = LOCK.read_text().split("\n\n", 1)[0]
    assert "--generate-hashes" in header
    assert "pyproject.toml" in header
    assert "Python 3.11" in header
