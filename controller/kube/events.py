"""Kubernetes Events for denials and break-glass, posted without flooding the API.

A denied object never exists, so the Event is about the **GuardPolicy**
that denied it (the denied object is named in ``related``). GuardPolicy is
cluster-scoped: the API server accepts Events about cluster-scoped objects
only in the ``default`` namespace (or ``kube-system``) with
``involvedObject.namespace`` empty, and that is also where
``kubectl describe guardpolicy NAME`` looks for them (it selects on the
involved object's name, kind, uid and empty namespace across namespaces).
So events go to ``default``, with the policy's uid when the policy is a
custom resource. Policies from mounted files have no object to describe;
their events are still listed by
``kubectl get events -n default --field-selector involvedObject.kind=GuardPolicy``.

Rate limits: a token bucket per (policy, reason) and one global bucket, so
a crash-looping Deployment re-created every few seconds, or a flood of bad
requests, costs the API server a bounded number of writes. Suppressed events
are counted and the count is carried by the next event of that key. Posting
happens on a background task from a bounded queue: an admission answer
never waits for the API server, and a slow API server only drops events.
Dry-run requests post nothing: they change nothing, so they leave no trace
but the audit line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.kube.limits import LeastRecent, TokenBucket
from controller.kube.metrics import Metrics
from controller.kube.result import AdmissionResult
from controller.policy.documents import API_GROUP

logger = logging.getLogger(__name__)

EVENTS_NAMESPACE = "default"
COMPONENT = "guard"
MAX_MESSAGE_CHARS = 1024
MAX_KEYS = 1024
POLICY_API_VERSION = f"{API_GROUP}/v1alpha1"

PostEvent = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class EventReason:
    denied = "AdmissionDenied"
    break_glass = "BreakGlass"
    break_glass_refused = "BreakGlassRefused"
    policy_broken = "PolicyBroken"
    baseline_changed = "BaselineChanged"


@dataclass(frozen=True)
class PlannedEvent:
    """An Event guard wants to post, before rate limiting."""

    policy: str
    reason: str
    message: str
    related: Mapping[str, Any] | None = None
    type: str = "Warning"
    action: str = "Admission"
    # The guard document the Event is about (``policy`` is its name).
    kind: str = "GuardPolicy"

    @property
    def key(self) -> tuple[str, str]:
        return (self.policy, self.reason)


def planned_events(result: AdmissionResult) -> list[PlannedEvent]:
    """The Events one answer deserves: denials and break-glass, never dry runs."""
    request = result.request
    if request is None or request.dry_run:
        return []
    who = request.requester.username or "(no user)"
    what = f"{request.operation} {request.kind} " + (
        f"{request.namespace}/{request.name}" if request.namespace else request.name
    )
    related = {
        "apiVersion": f"{request.group}/{request.version}" if request.group else request.version,
        "kind": request.kind,
        "name": request.name,
        **({"namespace": request.namespace} if request.namespace else {}),
    }
    events: list[PlannedEvent] = []
    glass = result.break_glass
    if glass is not None and glass.admitted_by_glass:
        bypassed = ", ".join(f"{b.policy}/{b.rule}" for b in glass.bypassed) or "nothing"
        for policy in glass.honoured_by:
            events.append(
                PlannedEvent(
                    policy,
                    EventReason.break_glass,
                    f"break-glass {glass.outcome} for {what} by {who}: '{glass.reason}'; "
                    f"bypassed: {bypassed} (uid {result.uid})",
                    related,
                    action="BreakGlass",
                )
            )
    if glass is not None and glass.outcome == "refused":
        for policy in glass.refused_by:
            events.append(
                PlannedEvent(
                    policy,
                    EventReason.break_glass_refused,
                    f"break-glass refused for {what} by {who}: {glass.problem} (uid {result.uid})",
                    related,
                    action="Deny",
                )
            )
    if not result.allowed and result.decision is not None:
        first: dict[str, str] = {}
        for finding in result.decision.denials:
            first.setdefault(finding.policy, f"[{finding.policy}/{finding.rule}] {finding.message}")
        for policy, problem in first.items():
            events.append(
                PlannedEvent(
                    policy,
                    EventReason.denied,
                    f"denied {what} by {who}: {problem} (uid {result.uid})",
                    related,
                    action="Deny",
                )
            )
    return events


class EventLimiter:
    """A token bucket per key and one for everything."""

    def __init__(
        self,
        *,
        key_rate: float,
        key_burst: float,
        global_rate: float,
        global_burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._global = TokenBucket(rate=global_rate, burst=global_burst, clock=clock)
        # Keys are policy x reason: bounded in practice; the size is a backstop.
        self._buckets: LeastRecent[tuple[str, str], TokenBucket] = LeastRecent(
            MAX_KEYS, lambda: TokenBucket(rate=key_rate, burst=key_burst, clock=clock)
        )

    def allow(self, key: tuple[str, str]) -> bool:
        return self._buckets.get(key).take() and self._global.take()


class EventRecorder:
    """Rate-limits planned events and posts them from a background task.

    ``idle`` is set whenever nothing is queued or being posted, so that a
    caller on another thread (a test, a demo) can wait for the posts to land
    without guessing with sleeps.
    """

    def __init__(
        self,
        post: PostEvent | None,
        metrics: Metrics,
        limiter: EventLimiter,
        *,
        queue_size: int = 256,
        namespace: str = EVENTS_NAMESPACE,
        instance: str | None = None,
    ) -> None:
        self._post = post
        self._metrics = metrics
        self._limiter = limiter
        self._queue_size = queue_size
        self._queue: asyncio.Queue[tuple[PlannedEvent, Mapping[str, str], int]] | None = None
        self._suppressed: dict[tuple[str, str], int] = {}
        self.namespace = namespace
        self.instance = instance or socket.gethostname()
        self.posted = 0
        self.suppressed = 0
        self.dropped = 0
        self.failed = 0
        self.idle = threading.Event()
        self.idle.set()
        self._pending = 0

    def record(self, result: AdmissionResult, policy_uids: Mapping[str, str]) -> None:
        """Plan, rate-limit and queue the events of one answer (never blocks)."""
        for event in planned_events(result):
            self.submit(event, policy_uids)

    def submit(self, event: PlannedEvent, policy_uids: Mapping[str, str]) -> bool:
        if not self._limiter.allow(event.key):
            self._suppressed[event.key] = self._suppressed.get(event.key, 0) + 1
            self.suppressed += 1
            self._metrics.events.labels(event.reason, "suppressed").inc()
            return False
        queue = self._get_queue()
        if self._post is None or queue.qsize() >= self._queue_size:
            self.dropped += 1
            self._metrics.events.labels(event.reason, "dropped").inc()
            return False
        earlier = self._suppressed.pop(event.key, 0)
        self._pending += 1
        self.idle.clear()
        queue.put_nowait((event, policy_uids, earlier))
        return True

    def _get_queue(self) -> asyncio.Queue[tuple[PlannedEvent, Mapping[str, str], int]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    async def run(self) -> None:
        """Post queued events until cancelled; a failed post is logged, not retried."""
        queue = self._get_queue()
        while True:
            event, uids, earlier = await queue.get()
            try:
                assert self._post is not None
                await self._post(self.namespace, self.body(event, uids.get(event.policy), earlier))
                self.posted += 1
                self._metrics.events.labels(event.reason, "posted").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # events are auxiliary: log, count, go on
                self.failed += 1
                self._metrics.events.labels(event.reason, "failed").inc()
                logger.warning(
                    "Cannot post the %s event of %s: %s", event.reason, event.policy, exc
                )
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self.idle.set()

    def body(self, event: PlannedEvent, uid: str | None, earlier: int = 0) -> dict[str, Any]:
        """A core/v1 Event about a GuardPolicy (see the module docstring)."""
        now = dt.datetime.now(dt.UTC)
        message = event.message
        if earlier:
            message += f" ({earlier} similar event(s) suppressed by guard's rate limit)"
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        involved: dict[str, Any] = {
            "apiVersion": POLICY_API_VERSION,
            "kind": event.kind,
            "name": event.policy,
        }
        if uid:
            involved["uid"] = uid
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{event.policy[:200]}.{secrets.token_hex(8)}",
                "namespace": self.namespace,
            },
            "involvedObject": involved,
            "type": event.type,
            "reason": event.reason,
            "action": event.action,
            "message": message,
            "count": 1 + earlier,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if event.related is not None:
            body["related"] = dict(event.related)
        return body
