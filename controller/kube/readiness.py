"""When the webhook may start answering: after everything it judges by is known.

Answering before the policies, trust and attestations have been read would
judge with an empty policy set (allowing what should be denied) or an empty
attestation index (denying what should be allowed). So the server is ready
only once each guard resource kind has been listed from the API and every
listed object has reached the operator's indexes. Until then admissions get
503 and the API server applies the webhook's failurePolicy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

ObjectKey = tuple[str | None, str]  # (namespace, name)


class Readiness:
    """Tracks, per resource kind, what a listing returned and what was indexed."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = tuple(kinds)
        self._listed: dict[str, set[ObjectKey]] = {}
        self._seen: dict[str, set[ObjectKey]] = {kind: set() for kind in self.kinds}
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def observe(self, kind: str, namespace: str | None, name: str) -> None:
        """An index handler saw this object (Kopf runs synchronous handlers,
        and so this, in its worker threads)."""
        self._seen.setdefault(kind, set()).add((namespace, name))
        self._check()

    def listed(self, kind: str, keys: Iterable[ObjectKey]) -> None:
        """A listing of this kind succeeded and returned these objects."""
        self._listed[kind] = set(keys)
        self._check()

    def waiting_for(self) -> list[str]:
        """What readiness still waits for, for logs and the /readyz answer."""
        missing: list[str] = []
        for kind in self.kinds:
            if kind not in self._listed:
                missing.append(f"{kind}: not listed yet")
                continue
            pending = self._listed[kind] - self._seen.get(kind, set())
            if pending:
                missing.append(f"{kind}: {len(pending)} listed object(s) not indexed yet")
        return missing

    async def wait(self) -> None:
        if self._ready:
            return
        await self._get_event().wait()

    def _get_event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            if self._ready:
                self._event.set()
        return self._event

    def _check(self) -> None:
        if self._ready:
            return
        if self.waiting_for():
            return
        self._ready = True
        event, loop = self._event, self._loop
        if event is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # An asyncio.Event is not thread-safe: from a worker thread, set it
        # through its loop, or the waiter may not wake until the next relist.
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)


class WatchLog:
    """The watch events the operator has processed, newest last.

    For diagnostics and for anyone (tests included) who must know that an
    attestation's creation or deletion has reached the indexes, without
    guessing with sleeps. Bounded: only the latest ``size`` are kept.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._events: list[tuple[str, str | None, str, str]] = []
        self._condition = threading.Condition()

    def record(self, kind: str, namespace: str | None, name: str, event_type: str) -> None:
        with self._condition:
            self._events.append((kind, namespace, name, event_type))
            del self._events[: -self.size]
            self._condition.notify_all()

    def wait_for(
        self, kind: str, namespace: str | None, name: str, event_type: str, timeout: float
    ) -> bool:
        """Block (a thread, not the loop) until such an event was processed."""
        wanted = (kind, namespace, name, event_type)
        with self._condition:
            return self._condition.wait_for(lambda: wanted in self._events, timeout)
