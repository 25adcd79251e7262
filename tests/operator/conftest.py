"""Fixtures: one emulated API server and one running guard shared by a module.

``guard`` is the running operator (a ``RunningGuard``): ``guard.post(review)``
plays the API server, ``guard.api`` is the emulated API
(``guard.api.create/delete`` for custom resources), and
``guard.api.requests`` lists every ``(method, path?query)`` the operator sent
to it, for RBAC least-privilege checks. ``start_guard`` starts another
operator with different settings (stopped at the end of the test).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube.helpers import TEST_POLICIES, Cast, write_documents
from tests.operator.harness import EmulatedApi, RunningGuard, Tls, make_tls, serve_settings


@pytest.fixture(scope="session", autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    """Every operator and emulator thread must be stopped by its flag."""
    yield
    names = {"guard-operator", "kmock"}
    alive = [t.name for t in threading.enumerate() if t.name in names and t.is_alive()]
    assert alive == [], f"threads still running after the tests: {alive}"


@pytest.fixture(scope="session")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture(scope="session")
def guard_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def guard_files(tmp_path_factory: pytest.TempPathFactory, cast: Cast) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("guard-files")
    policies = write_documents(directory / "policies.yaml", TEST_POLICIES)
    trust = write_documents(directory / "trust.yaml", [cast.trust_document()])
    return policies, trust


@pytest.fixture(scope="module")
def emulated_api() -> Iterator[EmulatedApi]:
    api = EmulatedApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def guard(
    emulated_api: EmulatedApi,
    guard_tls: Tls,
    guard_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGuard]:
    policies, trust = guard_files
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    running = RunningGuard(
        emulated_api, guard_tls, serve_settings(policies, trust, guard_tls, audit)
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture()
def start_guard(
    emulated_api: EmulatedApi,
    guard_tls: Tls,
    guard_files: tuple[Path, Path],
    tmp_path: Path,
) -> Iterator[Callable[..., RunningGuard]]:
    started: list[RunningGuard] = []

    def start(*, wait_ready: bool = True, **overrides: Any) -> RunningGuard:
        policies, trust = guard_files
        settings = serve_settings(policies, trust, guard_tls, tmp_path / "audit.jsonl", **overrides)
        running = RunningGuard(emulated_api, guard_tls, settings)
        started.append(running)
        return running.start(wait_ready=wait_ready)

    yield start
    for running in started:
        running.stop()
