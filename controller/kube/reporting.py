"""The operator's background scan: policy reports kept current, by one writer.

Every replica keeps the running workloads (``WorkloadStore``, fed by the
operator's watch events), but only the holder of the report writer's Lease
(``lease.LeaderElector``) scans and writes. A round (``BackgroundScan.round``)
renews the Lease and, when something changed (a workload, a policy, trust,
an attestation, a baseline or an exception: ``invalidate``) or the period
passed (time passes: expiry), scans everything with ``scan.scan`` and writes
the reports that differ from what it wrote last. Writes per round are
capped (``max_writes``), the rest wait for the next round, so the API server
sees at most ``max_writes / interval`` report writes per second however
large the cluster. Reports of namespaces whose workloads are all gone are
deleted. Workloads newly expiring soon get one Warning Event each.

The clock is injected (``now``); the loop (``run``) waits on a wake-up
event with the round interval as its timeout, so tests drive it by waking
it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.attest.verify import SignatureCache
from controller.kube import policyreport
from controller.kube.envelopes import IndexedEnvelope
from controller.kube.inherit import Baselines
from controller.kube.kubeapi import ApiConflict, call
from controller.kube.lease import LeaderElector, LeaseResource
from controller.kube.manifests import Manifest, select
from controller.kube.policyreport import ReportApi
from controller.kube.runtime import GuardRuntime
from controller.kube.scan import WorkloadResult, judge_each, unreadable
from controller.kube.settings import ServeSettings
from controller.kube.shapes import MAX_DEPTH, ShapeError, check_workload, too_deep
from controller.kube.state import PolicySet
from controller.policy.baseline import OWNER_KINDS

logger = logging.getLogger(__name__)

# Workload kinds the scan reads (Pods: only those no controller owns).
SCANNED_KINDS = (*OWNER_KINDS, "Pod")
# What the store keeps of a workload: enough to judge it, nothing else.
_KEPT_METADATA = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences")


@dataclass(frozen=True)
class ScanSettings:
    api: ReportApi = policyreport.OPENREPORTS
    # How often everything is re-scanned even when nothing changed (expiry).
    period: dt.timedelta = dt.timedelta(minutes=10)
    # How often the writer renews its Lease and looks for changes.
    interval: dt.timedelta = dt.timedelta(seconds=5)
    window: dt.timedelta = dt.timedelta(days=14)
    max_writes: int = 50
    max_results: int = policyreport.MAX_RESULTS


@dataclass(frozen=True)
class Inputs:
    """What one scan judges with, read from the operator's indexes."""

    policies: PolicySet
    attestations: Mapping[str, Sequence[IndexedEnvelope]]
    baselines: Baselines


class ReportStore:
    """Reads and writes reports (``kubeapi.call`` in the operator)."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Mapping[str, Any] | None]],
        api: ReportApi,
    ) -> None:
        self._call = call
        self.api = api

    def _path(self, namespace: str, name: str | None = None) -> str:
        root = f"/apis/{self.api.api_version}/namespaces/{namespace}/{self.api.plural}"
        return f"{root}/{name}" if name else root

    async def existing(self) -> dict[tuple[str, str], str]:
        """(namespace, name) -> digest of every report guard wrote earlier."""
        data = await self._call(
            "get",
            f"/apis/{self.api.api_version}/{self.api.plural}"
            "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dguard",
        )
        found: dict[tuple[str, str], str] = {}
        for item in (data or {}).get("items") or ():
            metadata = item.get("metadata") or {}
            labels = metadata.get("labels") or {}
            name = str(metadata.get("name"))
            # Only guard's own: never touch another tool's reports.
            if labels.get("app.kubernetes.io/managed-by") == "guard" and name.startswith("guard-"):
                found[(str(metadata.get("namespace")), name)] = ""
        return found

    async def write(self, report: Mapping[str, Any], exists: bool) -> None:
        metadata = report["metadata"]
        if exists:
            # A merge patch replaces the results list whole.
            answer = await self._call(
                "patch", self._path(metadata["namespace"], metadata["name"]), report,
                content_type="application/merge-patch+json",
            )  # fmt: skip
            if answer is not None:
                return
        try:
            await self._call("post", self._path(metadata["namespace"]), report)
        except ApiConflict:  # written by an earlier writer: replace its content
            await self._call(
                "patch", self._path(metadata["namespace"], metadata["name"]), report,
                content_type="application/merge-patch+json",
            )  # fmt: skip

    async def delete(self, namespace: str, name: str) -> None:
        await self._call("delete", self._path(namespace, name))


def _digest(report: Mapping[str, Any]) -> str:
    # Timestamps change every scan; a report is rewritten only when what it says changed.
    results = [{k: v for k, v in r.items() if k != "timestamp"} for r in report["results"]]
    text = json.dumps([report["metadata"]["name"], results], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class WorkloadStore:
    """The running workloads, by uid, reduced to what judging them reads."""

    def __init__(self) -> None:
        self._objects: dict[str, Manifest] = {}
        # Objects guard cannot read (nested too deep, fields of the wrong
        # shape), with why: reported as errors, never judged, never dropped.
        self._broken: dict[str, tuple[Manifest, str]] = {}
        self.changes = 0

    def __len__(self) -> int:
        return len(self._objects)

    def observe(self, kind: str, body: Mapping[str, Any], event: str | None) -> bool:
        """Take in one watch event; True when the store changed."""
        body = dict(body)  # Kopf hands a mapping view; judging reads plain objects
        metadata = body.get("metadata")
        if not isinstance(metadata, Mapping):
            return False
        uid = metadata.get("uid")
        if not isinstance(uid, str) or not uid:
            return False
        if event == "DELETED" or (kind == "Pod" and _controlled(metadata)):
            removed = self._objects.pop(uid, None) is not None
            removed = self._broken.pop(uid, None) is not None or removed
            self.changes += removed
            return removed
        problem = _unreadable(kind, body)
        if problem:
            self._objects.pop(uid, None)
            self._broken[uid] = (
                Manifest(dict(body), f"{kind} {metadata.get('namespace')}", 0),
                problem,
            )
            self.changes += 1
            return True
        self._broken.pop(uid, None)
        kept = {
            "apiVersion": body.get("apiVersion"),
            "kind": kind,
            "metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata},
            "spec": body.get("spec"),
        }
        if self._objects.get(uid) is not None and self._objects[uid].obj == kept:
            return False
        self._objects[uid] = Manifest(kept, f"{kind} {metadata.get('namespace')}", 0)
        self.changes += 1
        return True

    def items(self) -> list[Manifest]:
        return list(self._objects.values())

    def broken(self) -> list[tuple[Manifest, str]]:
        return list(self._broken.values())


def _unreadable(kind: str, body: Mapping[str, Any]) -> str:
    """Why guard cannot judge this object, or "" (the admission path's checks)."""
    if too_deep(body):
        return f"nested more than {MAX_DEPTH} levels deep"
    try:
        check_workload(kind, body, "")
    except ShapeError as exc:
        return str(exc)
    return ""


def _controlled(metadata: Mapping[str, Any]) -> bool:
    references = metadata.get("ownerReferences")
    return any(
        isinstance(r, Mapping) and r.get("controller") is True
        for r in (references if isinstance(references, list) else ())
    )


class BackgroundScan:
    """Keeps the policy reports current while this replica holds the Lease."""

    def __init__(
        self,
        settings: ScanSettings,
        reports: ReportStore,
        elector: LeaderElector,
        *,
        now: Callable[[], dt.datetime],
        post_event: Callable[[str, Mapping[str, Any]], Awaitable[None]] | None = None,
        identity: str = "guard",
    ) -> None:
        self.settings = settings
        self.reports = reports
        self.elector = elector
        self.now = now
        self.post_event = post_event
        self.identity = identity
        self.workloads = WorkloadStore()
        # Signature verdicts across scans (the cache is bounded).
        self._signatures = SignatureCache()
        self._dirty = True
        self._last_scan: dt.datetime | None = None
        self._written: dict[tuple[str, str], str] | None = None
        self._pending: list[dict[str, Any]] = []
        self._deletes: list[tuple[str, str]] = []
        self._announced: set[tuple[str, str, str]] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._posting: set[asyncio.Future[None]] = set()
        self.rounds = 0
        # Notified after every round, for callers on other threads (tests,
        # demos) that wait for the reports to settle without sleeping.
        self.round_done = threading.Condition()
        self.scans = 0
        self.writes = 0
        self.last: tuple[WorkloadResult, ...] = ()

    # ------------------------------------------------------------------ inputs

    def observe(self, kind: str, body: Mapping[str, Any], event: str | None) -> None:
        if self.workloads.observe(kind, body, event):
            self.invalidate()

    def invalidate(self) -> None:
        """Something a verdict depends on changed: scan at the next round."""
        self._dirty = True
        self.wake()

    def wake(self) -> None:
        """Start the next round now (safe from any thread)."""
        if self._wake is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------------ rounds

    async def round(self, inputs: Callable[[], Inputs | None]) -> None:
        """Renew the Lease; scan when due; write what differs, up to the cap.

        ``inputs`` is read only when the scan starts, after the awaits before
        it, so a change that arrives meanwhile is never lost: it is either
        in the inputs or marks the next scan."""
        self.rounds += 1
        if not await self.elector.hold():
            # A follower forgets what it wrote: the leader may have changed it.
            self._written = None
            self._pending = []
            self._deletes = []
            return
        if self._written is None:
            self._written = await self.reports.existing()
            self._dirty = True
        now = self.now()
        due = self._last_scan is None or now - self._last_scan >= self.settings.period
        if (self._dirty or due) and not self._pending:
            self._dirty = False
            current = inputs()
            if current is None:
                self._dirty = True  # not ready yet: scan as soon as it is
            else:
                self._last_scan = now
                await self._plan(current, now)
        await self._flush()

    async def _plan(self, inputs: Inputs, now: dt.datetime) -> None:
        assert self._written is not None
        items = self.workloads.items()
        selection = select(items, inputs.policies.engine.enforcement)
        found: list[WorkloadResult] = []
        judged = judge_each(items, selection, inputs.policies, inputs.attestations,
                            inputs.baselines, now=now, window=self.settings.window,
                            cache=self._signatures)  # fmt: skip
        found.extend(unreadable(item, problem) for item, problem in self.workloads.broken())
        for result in judged:
            found.append(result)
            # The scan shares the event loop with the webhook: after each
            # workload (a few milliseconds), let waiting admissions be answered.
            await asyncio.sleep(0)
        self.scans += 1
        self.last = tuple(found)
        specs = policyreport.policy_specs(inputs.policies.policies)
        wanted = policyreport.namespace_reports(
            found, specs, now, self.settings.api, max_results=self.settings.max_results
        )
        names = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in wanted}
        self._pending = [
            r
            for r in wanted
            if self._written.get((r["metadata"]["namespace"], r["metadata"]["name"])) != _digest(r)
        ]
        self._deletes = sorted(set(self._written) - names)
        self._announce(found)

    async def _flush(self) -> None:
        assert self._written is not None
        budget = self.settings.max_writes
        while self._deletes and budget > 0:
            namespace, name = self._deletes.pop(0)
            budget -= 1
            try:
                await self.reports.delete(namespace, name)
            except Exception as exc:  # retried at the next scan
                logger.warning("cannot delete report %s/%s: %s", namespace, name, exc)
                self._dirty = True
                continue
            self._written.pop((namespace, name), None)
            self.writes += 1
        while self._pending and budget > 0:
            report = self._pending.pop(0)
            key = (report["metadata"]["namespace"], report["metadata"]["name"])
            budget -= 1
            try:
                await self.reports.write(report, key in self._written)
            except Exception as exc:  # retried at the next scan
                logger.warning("cannot write report %s/%s: %s", *key, exc)
                self._dirty = True
                continue
            self._written[key] = _digest(report)
            self.writes += 1

    def _announce(self, workloads: Iterable[WorkloadResult]) -> None:
        """One Warning Event per workload and expiring rule, while it lasts."""
        if self.post_event is None:
            return
        current: set[tuple[str, str, str]] = set()
        for workload in workloads:
            for expiring in workload.expiring:
                key = (workload.uid, expiring.policy, expiring.rule)
                current.add(key)
                if key not in self._announced:
                    self._spawn(self.post_event(workload.namespace, _event(workload, expiring.message,
                                                                          self.now(), self.identity)))  # fmt: skip
        self._announced = current

    def _spawn(self, posting: Awaitable[None]) -> None:
        async def post() -> None:
            try:
                await posting
            except Exception as exc:  # events are auxiliary
                logger.warning("cannot post an expiring-soon event: %s", exc)

        # Kept until done: the loop holds tasks only weakly.
        task = asyncio.ensure_future(post())
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    # ------------------------------------------------------------------ loop

    def wait_until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Block (another thread) until ``check()`` holds after a round."""
        deadline = time.monotonic() + timeout
        with self.round_done:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.round_done.wait(remaining):
                    return check()
        return True

    async def run(self, inputs: Callable[[], Inputs | None]) -> None:
        """Rounds until cancelled; releases the Lease on the way out."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                try:
                    await self.round(inputs)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the writer die: log, retry next round
                    logger.exception("background scan round failed")
                with self.round_done:
                    self.round_done.notify_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.interval.total_seconds()
                    )
        finally:
            await asyncio.shield(self.elector.release())


def _event(
    workload: WorkloadResult, message: str, now: dt.datetime, instance: str
) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{workload.name[:200]}.{secrets.token_hex(8)}",
            "namespace": workload.namespace,
        },
        "involvedObject": {
            "apiVersion": workload.api_version,
            "kind": workload.kind,
            "name": workload.name,
            "namespace": workload.namespace,
            "uid": workload.uid,
        },
        "type": "Warning",
        "reason": "GuardExpiringSoon",
        "action": "Scan",
        "message": message[:1024],
        "count": 1,
        "source": {"component": "guard"},
        "reportingComponent": "guard",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def background_scan(
    settings: ServeSettings,
    kopf_settings: Any,
    runtime: GuardRuntime,
    post_event: Callable[[str, Mapping[str, Any]], Awaitable[None]],
) -> BackgroundScan | None:
    """The operator's scan, or None when ``guard serve`` writes no reports."""
    if not settings.reports:
        return None

    async def request(method: str, path: str, payload: Any = None, **options: Any) -> Any:
        return await call(kopf_settings, method, path, payload, **options)

    api = policyreport.APIS[settings.reports]
    identity = settings.identity or socket.gethostname()
    elector = LeaderElector(
        LeaseResource(request, settings.lease_namespace, settings.lease_name),
        name=settings.lease_name,
        namespace=settings.lease_namespace,
        identity=identity,
        duration=dt.timedelta(seconds=settings.lease_duration),
        now=lambda: runtime.now(),
    )
    scan_settings = ScanSettings(
        api=api,
        period=dt.timedelta(seconds=settings.scan_period),
        interval=dt.timedelta(seconds=settings.report_interval),
        window=dt.timedelta(seconds=settings.expiring_within),
        max_writes=settings.report_max_writes,
    )
    return BackgroundScan(
        scan_settings,
        ReportStore(request, api),
        elector,
        now=lambda: runtime.now(),
        post_event=post_event,
        identity=identity,
    )
