"""The running webhook's state: what the Kopf handlers call into.

``GuardRuntime`` is shared by every handler (through Kopf's memo). It owns
the compiled policies, the signature cache, the fallback reader, readiness,
the audit log and the metrics. ``admit`` is the whole admission path for one
request: gather candidate envelopes (index, annotation, fallback read),
build the verifier, and call the one decision function.

Its size is the admission path's state in one place: policies, signatures,
the owner reads and baselines inheritance needs, readiness, and what every
answer leaves behind (audit line, metrics, Events); split up, a request's
path would cross several objects that each hold a part of its state.
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

from controller.attest.chain import chain_link_status
from controller.attest.review import AttestationReview
from controller.attest.statement import normalize_subject
from controller.attest.verify import Circumstances, Requirements, SignatureCache, Verifier
from controller.kube import decide, inherit
from controller.kube.audit import AuditLog
from controller.kube.envelopes import (
    Candidates,
    IndexedEnvelope,
    annotation_envelopes,
    built_from,
    combine,
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
from controller.kube.inherit import Baselines
from controller.kube.limits import TokenBucket
from controller.kube.metrics import Metrics
from controller.kube.owners import (
    OWNER_APIS,
    Key,
    OwnerIndex,
    OwnerRecord,
    OwnerSource,
    owner_record,
)
from controller.kube.readiness import Readiness, WatchLog
from controller.kube.request import AdmissionRequest
from controller.kube.result import AdmissionResult, Reason, refuse
from controller.kube.settings import ServeSettings
from controller.kube.state import (
    FileInputs,
    PolicyCache,
    PolicySet,
    ResourceEntry,
    entry_from_body,
)
from controller.kube.subjects import address_of
from controller.policy.baseline import GuardBaseline
from controller.policy.reviewer import RecordingReview

logger = logging.getLogger(__name__)

# Kind of each guard custom resource and its plural in the API.
PLURALS: dict[str, str] = {
    "GuardPolicy": "guardpolicies",
    "GuardTrust": "guardtrusts",
    "GuardException": "guardexceptions",
    "ReviewAttestation": "reviewattestations",
    "GuardBaseline": "guardbaselines",
}
NAMESPACED = {"ReviewAttestation"}

Lister = Callable[[str, str | None], Awaitable[list[Mapping[str, Any]]]]
# One object by name: (apiVersion, plural, namespace, name) -> the object or None.
NamedReader = Callable[[str, str, str, str], Awaitable[Mapping[str, Any] | None]]
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
        reader: NamedReader | None = None,
        poster: PostEvent | None = None,
        audit: AuditLog | None = None,
        now: Clock = _utcnow,
    ) -> None:
        self.settings = settings
        self.files = files
        self.metrics = Metrics()
        # Exceptions expire by the runtime's clock, read at each use.
        self.policies = PolicyCache(files, settings.enforcement, lambda: self.now().date())
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
        self._reader = reader
        # Workload owners and ControllerRevisions, fed by the operator's watches.
        self.owner_index = OwnerIndex()
        # Owner reads on an index miss share the attestation fallback's limits.
        self._owner_reads = TokenBucket(rate=settings.fallback_rate, burst=settings.fallback_burst)
        self._baselines: tuple[tuple[tuple[str, str], ...], Baselines] | None = None

    # ----------------------------------------------------------- admission

    async def admit(
        self,
        request: AdmissionRequest,
        *,
        attestations: Mapping[str, Iterable[IndexedEnvelope]],
        resources: Iterable[ResourceEntry],
        owners: Mapping[Key, OwnerRecord] | None = None,
        revisions: Mapping[Key, OwnerRecord] | None = None,
        baselines: Iterable[ResourceEntry] = (),
    ) -> AdmissionResult:
        """Judge one request that passed the webhook's checks (it is one guard
        judges: ``decide.unsupported_reason`` was asked there)."""
        policies = self.policy_set(resources)
        node = inherit.mirror_pod(request)
        if node is not None:
            return decide.mirror_admitted(request, node, policies)
        subject = decide.subject_of(
            request, controller_identities=self.identities, trust=policies.trust
        )
        notes: list[str] = []
        evidence: dict[str, Any] = {}
        source = OwnerSource(
            self.owner_index.owners if owners is None else owners,
            self.owner_index.revisions if revisions is None else revisions,
            self._read_owner,
        )
        resolution = await inherit.resolve(
            request, subject, source, self.baselines(baselines), self.now().date()
        )
        if source.reads:
            evidence["ownerReads"] = list(source.reads)
        if resolution.reason:
            notes.append(resolution.reason)
        inheritance = resolution.inheritance
        if inheritance is not None:
            evidence["inherited"] = inheritance.record()
        reviewer = None
        if decide.needs_review(policies, subject):
            digests = [a.digest for a in subject.artifacts if a.digest is not None]
            if inheritance is not None and inheritance.scope == "owner":
                # What is inherited needs no evidence: only images the owner's
                # template lacks are reviewed, so a drain that recreates many
                # Pods makes no fallback reads for the images they inherit.
                judged = set(inheritance.injected)
                digests = [
                    a.digest
                    for a in subject.artifacts
                    if a.digest is not None and a.reference in judged
                ]
            inline, problems = annotation_envelopes(request.kind, request.object)
            notes.extend(problems)
            candidates = await self._gather(digests, attestations, inline, request.namespace, None)
            # Build provenance names the commit whose review covers the image:
            # gather those too (a miss may cost a second bounded read).
            commits = built_from(candidates)
            if commits:
                candidates = await self._gather(
                    commits, attestations, inline, request.namespace, candidates
                )
            notes.extend(candidates.notes)
            evidence["candidates"] = {d: list(s) for d, s in candidates.sources.items()}
            reviewer = RecordingReview(self.reviewer(policies, candidates))
        result = decide.judge(
            request,
            policies,
            reviewer,
            subject=subject,
            notes=notes,
            evidence=evidence,
            inheritance=inheritance,
        )
        if reviewer is not None:
            # The result holds this dict: the record written later sees it.
            evidence["review"] = reviewer.by_policy()
        return result

    async def _gather(
        self,
        keys: list[str],
        attestations: Mapping[str, Iterable[IndexedEnvelope]],
        inline: list[bytes],
        namespace: str | None,
        before: Candidates | None,
    ) -> Candidates:
        """Candidates for these keys from the index and the annotation, and
        from one bounded API read when the index misses."""
        candidates = gather(keys, attestations, inline, namespace=namespace)
        if before is not None:
            candidates = combine(before, candidates)
        missing = candidates.missing(keys)
        if missing:
            found = await self.fallback.read(namespace, missing)
            self.metrics.fallback_reads.labels("found" if found.found else "none").inc()
            candidates = merge(candidates, found.found, found.note)
        return candidates

    def policy_set(self, resources: Iterable[ResourceEntry]) -> PolicySet:
        """The compiled policies for these resources (rebuilt only on change)."""
        policies = self.policies.get(resources)
        self.metrics.policy_load_errors.set(len(policies.problems))
        return policies

    def baselines(self, entries: Iterable[ResourceEntry]) -> Baselines:
        """The baselines in force: the mounted files' and the valid custom
        resources' (rebuilt only when one changes)."""
        valid = sorted(
            (e for e in entries if isinstance(e.document, GuardBaseline)),
            key=lambda e: (e.name, e.fingerprint),
        )
        key = tuple((e.name, e.fingerprint) for e in valid)
        cached = self._baselines
        if cached is not None and cached[0] == key:
            return cached[1]
        documents = [*self.files.baselines]
        documents.extend(e.document for e in valid if isinstance(e.document, GuardBaseline))
        built = Baselines(documents)
        self._baselines = (key, built)
        self.metrics.baseline_entries.set(len(built))
        return built

    async def _read_owner(self, kind: str, namespace: str, name: str) -> OwnerRecord | None:
        """The bounded read of one owner the index does not hold (yet):
        rate-limited and time-bounded like the attestation fallback."""
        api = OWNER_APIS[kind]
        if self._reader is None or not self._owner_reads.take():
            self.metrics.owner_reads.labels("skipped").inc()
            return None
        try:
            body = await asyncio.wait_for(
                self._reader(api.api_version, api.plural, namespace, name),
                timeout=self.settings.fallback_timeout,
            )
        except Exception as exc:  # a failed read only means "judged in full"
            logger.warning("Reading %s failed: %s", address_of(kind, namespace, name), exc)
            self.metrics.owner_reads.labels("failed").inc()
            return None
        self.metrics.owner_reads.labels("found" if body else "none").inc()
        return owner_record(kind, body) if body else None

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
        link = chain_link_status(verifier, text)
        if link is not None:
            return {"verified": link[0], "subjects": subjects, "reason": link[1]}
        verdict = verifier.verify(
            normalize_subject(subjects[0]),
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

    def baseline_changed(self, body: Mapping[str, Any], type: str | None) -> None:
        """A GuardBaseline was created, changed or deleted: an audit line and
        an Event, naming who wrote it as the object records it (its field
        managers: the API server's audit log has the authenticated user).
        Called for every watch event; the initial listing is not a change."""
        if type not in ("ADDED", "MODIFIED", "DELETED"):
            return
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        entry = entry_from_body("GuardBaseline", body)
        managers = sorted(
            {
                str(m.get("manager"))
                for m in metadata.get("managedFields") or ()
                if isinstance(m, Mapping) and m.get("manager")
            }
        )
        action = {"ADDED": "created", "MODIFIED": "changed", "DELETED": "deleted"}[type]
        spec = body.get("spec") if isinstance(body.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        entries = spec.get("entries")
        count = len(entries) if isinstance(entries, list) else 0
        who = ", ".join(managers) or "unknown"
        message = (
            f"GuardBaseline {name} {action} by {who}: {count} entr{'y' if count == 1 else 'ies'}, "
            f"owner {spec.get('owner')!s:.80}, expires {spec.get('expires')!s:.20}"
        )
        if entry.error:
            message += f"; it is invalid and not used: {entry.error}"
        record = {
            "time": self.now().isoformat(timespec="milliseconds"),
            "event": "baseline",
            "action": action,
            "baseline": name,
            "uid": str(metadata.get("uid", "")),
            "managers": managers,
            "entries": count,
            "owner": spec.get("owner"),
            "reason": spec.get("reason"),
            "expires": str(spec.get("expires")),
            "valid": entry.error is None,
        }
        try:
            self.audit.write_record(record)
        except Exception as exc:
            self.metrics.audit_errors.inc()
            logger.error("Cannot write the audit record of GuardBaseline %s: %r", name, exc)
        event = PlannedEvent(
            name,
            EventReason.baseline_changed,
            message,
            type="Normal" if entry.error is None else "Warning",
            action="Baseline",
            kind="GuardBaseline",
        )
        uid = str(metadata.get("uid") or "")
        self.events.submit(event, {name: uid} if uid else {})

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
