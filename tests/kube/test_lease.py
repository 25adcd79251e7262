"""The report writer's Lease: one holder, take-over after expiry, atomic races."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.kube.kubeapi import ApiConflict
from controller.kube.lease import LeaderElector, micro_time, state_of

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
DURATION = dt.timedelta(seconds=15)


class FakeLeases:
    """One Lease with resourceVersion checks, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get(self) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if self.lease is not None:
            raise ApiConflict("exists")
        return self._store(body)

    async def replace(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiConflict("changed")
        return self._store(body)

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(dict(body))
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> dt.datetime:
        return self.at


def elector(api: FakeLeases, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(api, name="writer", namespace="guard", identity=identity,
                         duration=DURATION, now=clock)  # fmt: skip


def test_one_holder_until_it_stops_renewing() -> None:
    api, clock_a, clock_b = FakeLeases(), Clock(), Clock()
    a, b = elector(api, "a", clock_a), elector(api, "b", clock_b)

    async def scenario() -> list[tuple[bool, bool]]:
        seen = [(await a.hold(), await b.hold())]
        # a renews within the duration: b stays a follower.
        clock_a.at = clock_b.at = T0 + dt.timedelta(seconds=10)
        seen.append((await a.hold(), await b.hold()))
        # a stops renewing (its Pod died): after the duration, b takes over.
        clock_b.at = T0 + dt.timedelta(seconds=10) + DURATION + dt.timedelta(seconds=1)
        seen.append((False, await b.hold()))
        # a comes back: it sees b's fresh renewal and follows.
        clock_a.at = clock_b.at
        seen.append((await a.hold(), await b.hold()))
        return seen

    assert asyncio.run(scenario()) == [(True, False), (True, False), (False, True), (False, True)]
    assert api.lease is not None
    state = state_of(api.lease)
    assert state.holder == "b" and state.transitions == 1


def test_two_replicas_racing_for_an_expired_lease_make_one_holder() -> None:
    api, clock = FakeLeases(), Clock()

    async def scenario() -> tuple[bool, bool]:
        assert await elector(api, "a", clock).hold()
        clock.at = T0 + DURATION * 3
        # b and c both read the expired Lease before either writes.
        read = await api.get()

        async def stale() -> Mapping[str, Any] | None:
            return copy.deepcopy(read)

        api.get = stale  # type: ignore[method-assign]
        return await elector(api, "b", clock).hold(), await elector(api, "c", clock).hold()

    assert asyncio.run(scenario()) == (True, False)
    assert api.lease is not None and state_of(api.lease).holder == "b"


def test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)

    async def scenario() -> bool:
        assert await a.hold()
        assert not await b.hold()
        await a.release()
        return await b.hold()

    assert asyncio.run(scenario())


def test_an_unreachable_api_means_not_leading() -> None:
    class Broken(FakeLeases):
        async def get(self) -> Mapping[str, Any] | None:
            raise OSError("connection refused")

    assert not asyncio.run(elector(Broken(), "a", Clock()).hold())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
SPEC_KEYS = st.sampled_from(["holderIdentity", "renewTime", "acquireTime",
                             "leaseDurationSeconds", "leaseTransitions"])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(spec=st.dictionaries(SPEC_KEYS, JSON | st.datetimes().map(str)), metadata=JSON)
def test_any_lease_body_gives_an_answer_and_a_foreign_fresh_holder_is_never_displaced(
    spec: dict[str, Any], metadata: Any
) -> None:
    """Whatever another writer (or a broken client) left in the Lease, a round
    answers leading or not, never raises; and a Lease another identity renewed
    just now, for a positive duration, is never taken over."""
    api = FakeLeases()
    api.lease = {"metadata": {"resourceVersion": "7"}, "spec": spec}
    if isinstance(metadata, dict):
        api.lease["metadata"].update({k: v for k, v in metadata.items() if k != "resourceVersion"})
    clock = Clock()
    leading = asyncio.run(elector(api, "a", clock).hold())
    assert isinstance(leading, bool)
    fresh = FakeLeases()
    fresh.lease = {
        "metadata": {"resourceVersion": "1"},
        "spec": {"holderIdentity": "b", "renewTime": micro_time(T0), "leaseDurationSeconds": 15},
    }
    assert not asyncio.run(elector(fresh, "a", clock).hold())
