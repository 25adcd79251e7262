"""The running webhook's state: what the Kopf handlers call into.

``GuardRuntime`` is shared by every handler (through Kopf's memo). It owns
the compiled policies, the signature cache, the fallback reader, readiness,
the audit log and the metrics. ``admit`` is the whole admission path for one
request: gather candidate envelopes (index, annotation, fallback read),
build the verifier, and call the one decision function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from controller.attest.review import AttestationReview
from controller.attest.statement import normalize_digest
from controller.attest.verify import Circumstances, Requirements, SignatureCache, Verifier
from controller.kube import decide
from controller.kube.audit import AuditLog
from controller.kube.envelopes import (
    IndexedEnvelope,
    annotation_envelopes,
    gather,
    index_entries,
    merge,
)
from controller.kube.events import (
    EventLimiter,
    EventReason,
    EventRecorder,
    PlannedEvent,
    PostEvent,
)
from controller.kube.fallback import FallbackReader
from controller.kube.metrics import Metrics
from controller.kube.readiness import Readiness, WatchLog
from controller.kube.request import AdmissionRequest
from controller.kube.result import AdmissionResult, Reason, refuse
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs, PolicyCache, PolicySet, ResourceEntry
from controller.policy.reviewer import RecordingReview

logger = logging.getLogger(__name__)

# Kind of each guard custom resource and its plural in the API.
PLURALS: dict[str, str] = {
    "GuardPolicy": "guardpolicies",
    "GuardTrust": "guardtrusts",
    "GuardException": "guardexceptions",
    "ReviewAttestation": "reviewattestations",
}
NAMESPACED = {"ReviewAttestation"}

Lister = Callable[[str, str | None], Awaitable[list[Mapping[str, Any]]]]
Clock = Callable[[], dt.datetime]
# Judges one request with the operator's live indexes (``controller.operator``).
Judge = Callable[[AdmissionRequest], Awaitable[AdmissionResult]]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class GuardRuntime:
    """Everything admission needs that outlives one request."""

    def __init__(
        self,
        settings: ServeSettings,
        files: FileInputs,
        *,
        lister: Lister | None = None,
        poster: PostEvent | None = None,
        audit: AuditLog | None = None,
        now: Clock = _utcnow,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.policies = PolicyCache(files, settings.enforcement)
        # Built now so that even the answers given before readiness can name
        # the file policies and trust in force in their audit lines.
        self.policies.get(())
        self.signatures = SignatureCache(on_lookup=self.metrics.observe_signature_lookup)
        self.readiness = Readiness(PLURALS)
        # Set (once) when readiness is reached, for threads outside the loop.
        self.ready_flag = threading.Event()
        self.watch_log = WatchLog()
        self.audit = audit if audit is not None else AuditLog.for_service(settings)
        self.events = EventRecorder(
            poster,
            self.metrics,
            EventLimiter(
                key_rate=settings.event_rate,
                key_burst=settings.event_burst,
                global_rate=settings.event_global_rate,
                global_burst=settings.event_global_burst,
            ),
        )
        self.now = now
        self.identities = frozenset(settings.controller_identities)
        # Set by the operator's start-up handler, which holds the indexes;
        # until then there is nothing to judge with and the server answers 503.
        self.judge: Judge | None = None
        self._lister = lister
        self.fallback = FallbackReader(
            self._list_attestations,
            timeout=settings.fallback_timeout,
            rate=settings.fallback_rate,
            burst=settings.fallback_burst,
        )

    # ----------------------------------------------------------- admission

    async def admit(
        self,
        request: AdmissionRequest,
        *,
        attestations: Mapping[str, Iterable[IndexedEnvelope]],
        resources: Iterable[ResourceEntry],
    ) -> AdmissionResult:
        """Judge one request that passed the webhook's checks (it is one guard
        judges: ``decide.unsupported_reason`` was asked there)."""
        policies = self.policy_set(resources)
        subject = decide.subject_of(
            request, controller_identities=self.identities, trust=policies.trust
        )
        notes: list[str] = []
        evidence: dict[str, Any] = {}
        reviewer = None
        if decide.needs_review(policies, subject):
            digests = [a.digest for a in subject.artifacts if a.digest is not None]
            inline, problems = annotation_envelopes(request.kind, request.object)
            notes.extend(problems)
            candidates = gather(digests, attestations, inline, namespace=request.namespace)
            missing = candidates.missing(digests)
            if missing:
                found = await self.fallback.read(request.namespace, missing)
                self.metrics.fallback_reads.labels("found" if found.found else "none").inc()
                candidates = merge(candidates, found.found, found.note)
            notes.extend(candidates.notes)
            evidence["candidates"] = {d: list(s) for d, s in candidates.sources.items()}
            reviewer = RecordingReview(self.reviewer(policies, candidates))
        result = decide.judge(
            request, policies, reviewer, subject=subject, notes=notes, evidence=evidence
        )
        if reviewer is not None:
            # The result holds this dict: the record written later sees it.
            evidence["review"] = reviewer.by_policy()
        return result

    def policy_set(self, resources: Iterable[ResourceEntry]) -> PolicySet:
        """The compiled policies for these resources (rebuilt only on change)."""
        policies = self.policies.get(resources)
        self.metrics.policy_load_errors.set(len(policies.problems))
        return policies

    def reviewer(self, policies: PolicySet, candidates: Any) -> AttestationReview:
        return decide.reviewer_for(
            policies,
            candidates,
            now=self.now,
            cache=self.signatures,
            on_verdict=self.metrics.observe_verdict,
        )

    def attestation_status(
        self, envelope: Any, resources: Iterable[ResourceEntry]
    ) -> dict[str, Any]:
        """A ReviewAttestation's informational status (for ``kubectl get``):
        whether a trusted attester signed it, and what it claims. Admission
        never reads it; it re-verifies every time."""
        entries, problem = index_entries(envelope if isinstance(envelope, str) else "", "status")
        if problem is not None or not entries:
            return {"verified": False, "subjects": [], "reason": problem or "empty"}
        verifier = Verifier(self.policy_set(resources).trust, self.signatures)
        subjects = sorted(entries)
        text = next(iter(entries.values())).text
        verdict = verifier.verify(
            normalize_digest(subjects[0]),
            [text],
            Requirements.baseline(),
            Circumstances(now=self.now()),
        )
        reason = "signed by a trusted attester" if verdict.ok else "; ".join(verdict.reasons)
        return {"verified": verdict.ok, "subjects": subjects, "reason": reason}

    def report_broken(self, entry: ResourceEntry) -> None:
        """A Warning Event on a GuardPolicy that is broken, saying why and
        whether it still judges (rate-limited like every guard Event).
        Called on the event loop (the status handlers are async)."""
        if entry.kind != "GuardPolicy" or entry.error is None:
            return
        enforced = "judges as an error until fixed" if entry.enforced_as_error else "not enforced"
        event = PlannedEvent(
            entry.name,
            EventReason.policy_broken,
            f"GuardPolicy {entry.name} is broken and {enforced}: {entry.error}",
            action="Validate",
        )
        self.events.submit(event, {entry.name: entry.uid} if entry.uid else {})

    def finish(self, result: AdmissionResult, started: float) -> None:
        """Record one answer (every answer, including refusals): metrics, the
        audit line, and the Events it deserves."""
        current = self.policies.current
        if current is not None and not result.policy_digest:
            result = dataclasses.replace(
                result, policy_digest=current.policy_digest, trust_digest=current.trust_digest
            )
        # The audit line first: nothing after it may keep a decision unrecorded.
        try:
            self.audit.write(result)
        except Exception as exc:  # the answer stands; the failure is loud and counted
            self.metrics.audit_errors.inc()
            logger.error("Cannot write the audit record of %s: %r", result.uid, exc)
        elapsed = time.perf_counter() - started
        try:
            self.metrics.observe(result, elapsed)
            self.events.record(result, current.policy_uids if current is not None else {})
        except Exception:  # metrics and events are auxiliary; the answer stands
            logger.exception("Cannot record the metrics or events of %s", result.uid)

    # ----------------------------------------------------------- readiness

    async def become_ready(self, *, relist_after: float = 5.0) -> None:
        """List every guard kind until all listed objects are indexed."""
        while not self.readiness.ready:
            for kind, plural in PLURALS.items():
                try:
                    keys = await self._list_keys(kind, plural)
                except Exception as exc:  # retried below; readiness waits
                    logger.warning("Listing %s failed, readiness waits: %s", plural, exc)
                    continue
                self.readiness.listed(kind, keys)
            if self.readiness.ready:
                break
            try:
                await asyncio.wait_for(self.readiness.wait(), timeout=relist_after)
            except TimeoutError:
                logger.info("Not ready yet: %s", "; ".join(self.readiness.waiting_for()))
        self.metrics.ready.set(1)
        self.ready_flag.set()
        logger.info("Policies, trust and attestations are listed: ready for admissions.")

    async def _list_keys(self, kind: str, plural: str) -> list[tuple[str | None, str]]:
        if self._lister is None:
            raise RuntimeError("no API lister configured")
        namespaces: Iterable[str | None] = (None,)
        if kind in NAMESPACED and self.settings.namespaces:
            namespaces = self.settings.namespaces
        keys: list[tuple[str | None, str]] = []
        for namespace in namespaces:
            for item in await self._lister(plural, namespace):
                metadata = item.get("metadata") or {}
                ns = metadata.get("namespace") if kind in NAMESPACED else None
                keys.append((ns, str(metadata.get("name", ""))))
        return keys

    async def _list_attestations(self, namespace: str | None) -> list[Mapping[str, Any]]:
        if self._lister is None:
            raise RuntimeError("no API lister configured")
        return await self._lister(PLURALS["ReviewAttestation"], namespace)


def not_ready_result(
    request: AdmissionRequest | None, uid: str, waiting: list[str]
) -> AdmissionResult:
    detail = "; ".join(waiting) or "starting"
    return refuse(
        uid,
        Reason.not_ready,
        f"guard is not ready yet (policies, trust and attestations are still loading: {detail})",
        code=503,
        request=request,
    )
