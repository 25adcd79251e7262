"""The background scan: every running workload judged as admission judges it now.

Reports exist so a team sees what ``deny`` would block before turning it on,
and sees workloads fall out of policy as time passes (attestations expire,
trust and policies change). The scan therefore judges each top-level
workload (and each workload no owner in the input covers; Pods and
ReplicaSets whose controlling owner is present are judged through it) with
the admission decision itself (``decide.judge``), as a CREATE of the object
as it runs today:

- every policy that matches it judges it, the review included, and so do
  the review policies that judge what controllers make from it
  (``upstream_review_policies``), as for a person's request;
- the checks that age (expiry, maxAge) apply, so a report never keeps
  ``pass`` for a workload whose only attestation expired or is gone; the
  deployer rules do not, since no person made a request;
- a workload on an applying ``GuardBaseline`` entry is judged with the
  inheritance admission gives the Pods its controllers make: the findings of
  the policies that match it are waived by the entry (reported as ``skip``
  with the entry), the others still count; an expired entry, a changed
  template or a re-created owner waive nothing;
- exceptions apply as in admission (never to review).

Expiring soon: a workload whose review passes now but would not pass
``window`` later (its only accepted attestation expires, or ages past
maxAge), or whose baseline entry ends within ``window``, gets a ``warn``
result, so the team renews it before Pods start being refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.attest.review import AttestationReview
from controller.attest.verify import SignatureCache
from controller.errors import InputError
from controller.kube.envelopes import IndexedEnvelope
from controller.kube.inherit import BaselineMatch, Baselines, Inheritance
from controller.kube.manifests import Manifest, Selection, judge_manifest, select
from controller.kube.owners import CHAIN, OwnerRecord, owner_record
from controller.kube.result import AdmissionResult, Reason
from controller.kube.state import PolicySet
from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Requester, Result, Subject
from controller.policy.reviewer import ReviewEvaluator, ReviewOutcome

DEFAULT_WINDOW = dt.timedelta(days=14)
# Rules of the expiring-soon results (not rules of any policy).
REVIEW_EXPIRY_RULE = "review-expiring"
BASELINE_EXPIRY_RULE = "baseline-expiring"
# Nobody: rules that read request.userInfo see an empty user, and the
# review runs without deployer rules (``_ScanReview``).
SCAN_REQUESTER = Requester(username="")


@dataclass(frozen=True)
class Expiring:
    """A pass that stops passing within the window, and why."""

    policy: str
    rule: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class WorkloadResult:
    """One workload's scan: the admission answer and what reports show."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str
    result: AdmissionResult
    # Policy name -> its review's outcome (evidence: approvers, envelopes).
    reviews: Mapping[str, ReviewOutcome] = field(default_factory=dict)
    baseline: BaselineMatch | None = None
    expiring: tuple[Expiring, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def findings(self) -> tuple[Finding, ...]:
        decision = self.result.decision
        return decision.findings if decision is not None else ()

    @property
    def subject(self) -> Subject | None:
        return self.result.subject

    def expiry_findings(self) -> list[Finding]:
        """The expiring-soon results as warning findings, for the CLI's formats."""
        return [
            Finding(
                policy=e.policy,
                rule=e.rule,
                severity=e.severity,
                action=Action.warn,
                result=Result.fail,
                target=Target.kubernetes,
                address=self.address,
                message=e.message,
            )
            for e in self.expiring
        ]


@dataclass(frozen=True)
class Scan:
    """Every workload's result, and what was not judged."""

    workloads: tuple[WorkloadResult, ...]
    selection: Selection
    at: dt.datetime

    def notes(self) -> list[str]:
        notes = [f"{a}: judged through its owner {o}" for a, o in self.selection.through_owner]
        notes.extend(f"{n}: not judged (not a workload)" for n in self.selection.not_workloads)
        for workload in self.workloads:
            notes.extend(n for n in workload.notes if n not in notes)
        return notes


class _ScanReview:
    """The review of a running workload: as if it were deployed now by
    nobody in particular (expiry and maxAge apply, deployer rules do not),
    recording each outcome, and whether it would still pass ``later``."""

    def __init__(self, inner: ReviewEvaluator, later: ReviewEvaluator | None) -> None:
        self.inner = inner
        self.later = later
        self.outcomes: dict[str, ReviewOutcome] = {}
        self.expiring: dict[str, tuple[Severity, tuple[str, ...]]] = {}

    def review(self, policy: Any, subject: Subject) -> ReviewOutcome:
        anonymous = dataclasses.replace(subject, requester=None)
        outcome = self.inner.review(policy, anonymous)
        self.outcomes[policy.name] = outcome
        if outcome.result is Result.passed and self.later is not None:
            later = self.later.review(policy, anonymous)
            if later.result is not Result.passed:
                self.expiring[policy.name] = (policy.spec.severity, later.reasons)
        return outcome


def _wrap(moment: dt.datetime, window: dt.timedelta) -> Callable[[ReviewEvaluator], _ScanReview]:
    def wrap(inner: ReviewEvaluator) -> _ScanReview:
        later: ReviewEvaluator | None = None
        if isinstance(inner, AttestationReview) and window > dt.timedelta(0):
            # Same envelopes, trust and signature cache; only the clock moves.
            later = AttestationReview(
                inner.trust, inner.envelopes, now=lambda: moment + window,
                cache=inner.verifier.cache,
            )  # fmt: skip
        return _ScanReview(inner, later)

    return wrap


def _owners_by_uid(items: Iterable[Manifest]) -> dict[str, OwnerRecord]:
    found: dict[str, OwnerRecord] = {}
    for item in items:
        kind = item.obj.get("kind")
        if isinstance(kind, str) and kind != "Pod":
            record = owner_record(kind, item.obj)
            if record is not None:
                found[record.uid] = record
    return found


def baseline_of(
    record: OwnerRecord, owners: Mapping[str, OwnerRecord], baselines: Baselines, today: dt.date
) -> tuple[BaselineMatch | None, OwnerRecord | None]:
    """The entry that waives this owner now, as admission finds it for the
    Pods its controllers make: its own entry, or (a ReplicaSet or Job) its
    own owner's entry when both run the same template."""
    match, _ = baselines.applying(record, today)
    if match is not None:
        return match, None
    parent_ref = record.controller
    if record.kind not in ("ReplicaSet", "Job") or parent_ref is None:
        return None, None
    parent = owners.get(parent_ref.uid)
    if (
        parent is None
        or parent.kind not in CHAIN[record.kind]
        or (parent.kind, parent.name, parent.namespace)
        != (parent_ref.kind, parent_ref.name, record.namespace)
        or parent.shape.digest != record.shape.digest
    ):
        return None, None
    match, _ = baselines.applying(parent, today)
    return (match, parent) if match is not None else (None, None)


def scan(
    items: Sequence[Manifest],
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    baselines: Baselines,
    *,
    now: dt.datetime,
    window: dt.timedelta = DEFAULT_WINDOW,
    cache: SignatureCache | None = None,
) -> Scan:
    """Judge every workload of ``items`` not covered by an owner among them.

    Signature verdicts are kept in ``cache`` (a new one per scan by
    default): thousands of workloads share a few attestations."""
    selection = select(items, policies.engine.enforcement)
    judged = judge_each(items, selection, policies, attestations, baselines, now=now,
                        window=window, cache=cache)  # fmt: skip
    return Scan(tuple(judged), selection, now)


def judge_each(
    items: Sequence[Manifest],
    selection: Selection,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    baselines: Baselines,
    *,
    now: dt.datetime,
    window: dt.timedelta = DEFAULT_WINDOW,
    cache: SignatureCache | None = None,
) -> Iterator[WorkloadResult]:
    """The results one at a time, so the operator can let admission requests
    in between (a scan of a large cluster takes seconds of CPU)."""
    owners = _owners_by_uid(items)
    cache = cache if cache is not None else SignatureCache()
    for item in selection.alone:
        try:
            result = judge_workload(item, policies, attestations, baselines, owners, now=now,
                                    window=window, cache=cache)  # fmt: skip
        except InputError as exc:
            # One unreadable object must not stop the scan, nor vanish from
            # it: it is reported as an error (never a pass).
            result = unreadable(item, str(exc))
        if result is not None:
            yield result


def unreadable(item: Manifest, problem: str) -> WorkloadResult:
    """A workload the scan could not judge, as one error result."""
    obj = item.obj
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    kind, namespace, name = (str(v or "") for v in
                             (obj.get("kind"), metadata.get("namespace"), metadata.get("name")))  # fmt: skip
    finding = Finding(
        policy="guard",
        rule="readable",
        severity=Severity.high,
        action=Action.deny,
        result=Result.error,
        target=Target.kubernetes,
        address=f"{kind} {namespace}/{name}",
        message=f"not judged: {problem[:500]}",
    )
    answer = AdmissionResult(
        uid="", allowed=False, code=400, message=finding.message, reason=Reason.malformed,
        decision=Decision.of([finding], subjects=1),
    )  # fmt: skip
    return WorkloadResult(kind=kind, api_version=str(obj.get("apiVersion") or ""),
                          namespace=namespace, name=name, uid=str(metadata.get("uid") or ""),
                          result=answer)  # fmt: skip


def judge_workload(
    item: Manifest,
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    baselines: Baselines,
    owners: Mapping[str, OwnerRecord],
    *,
    now: dt.datetime,
    window: dt.timedelta = DEFAULT_WINDOW,
    cache: SignatureCache | None = None,
) -> WorkloadResult | None:
    """One workload's scan result (None when it is not a workload guard judges)."""
    obj = item.obj
    kind = str(obj.get("kind"))
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    today = now.date()
    record = owner_record(kind, obj) if kind != "Pod" else None
    match: BaselineMatch | None = None
    inheritance: Inheritance | None = None
    if record is not None and len(baselines):
        match, via = baseline_of(record, owners, baselines, today)
        if match is not None:
            inheritance = Inheritance("owner", record, match, via)
    reviews: list[_ScanReview] = []

    def wrap(inner: ReviewEvaluator) -> ReviewEvaluator:
        recorder = _wrap(now, window)(inner)
        reviews.append(recorder)
        return recorder

    judged = judge_manifest(
        item, policies, attestations, SCAN_REQUESTER, now=now, wrap_review=wrap,
        inheritance=inheritance, cache=cache,
    )  # fmt: skip
    if judged is None:
        return None
    result, notes = judged
    recorder = reviews[0] if reviews else None
    expiring: list[Expiring] = []
    waived = {f.policy for f in result.decision.waived} if result.decision else set()
    if recorder is not None:
        for policy, (severity, reasons) in sorted(recorder.expiring.items()):
            if policy in waived:
                continue
            why = "; ".join(reasons) or "its review would fail"
            message = (
                f"review passes now but not in {_days(window)}: {why}; renew the "
                "attestation before Pods start being refused"
            )
            expiring.append(Expiring(policy, REVIEW_EXPIRY_RULE, severity, message))
    if match is not None and match.expires - today <= _whole_days(window):
        expiring.append(
            Expiring(
                "guard",
                BASELINE_EXPIRY_RULE,
                Severity.medium,
                f"baselined by GuardBaseline {match.baseline} until {match.expires}: get it "
                "reviewed before then, or its Pods are refused once they are recreated",
            )
        )
    return WorkloadResult(
        kind=kind,
        api_version=str(obj.get("apiVersion") or ""),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        result=result,
        reviews=dict(recorder.outcomes) if recorder is not None else {},
        baseline=match,
        expiring=tuple(expiring),
        notes=tuple(notes),
    )


def _whole_days(window: dt.timedelta) -> dt.timedelta:
    return dt.timedelta(days=window.days)


def _days(window: dt.timedelta) -> str:
    if window.days and not window.seconds:
        return f"{window.days} day(s)"
    return f"{window.total_seconds() / 3600:g} hour(s)"
