"""Prometheus metrics of the webhook, on their own registry and port.

Names follow Prometheus conventions (``_total`` counters, ``_seconds``
histograms) and labels stay bounded: decisions, kinds, reasons and policy
names are closed or operator-controlled sets; users, namespaces and images
never become labels (those belong in the audit log).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.kube.result import AdmissionResult, Reason

LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)


class Metrics:
    """The counters the admission path updates; scraped from ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "guard_admission_requests",
            "Admission requests answered, by decision (allow, warn, deny) and kind.",
            ["decision", "kind"],
            registry=self.registry,
        )
        self.unjudged = Counter(
            "guard_admission_unjudged",
            "Requests answered without judging the object (malformed, not ready...), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.findings = Counter(
            "guard_policy_findings",
            "Policy results that are not a pass, by policy, action and result.",
            ["policy", "action", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "guard_admission_duration_seconds",
            "Time from receiving an AdmissionReview to answering it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.break_glass = Counter(
            "guard_break_glass",
            "Break-glass requests, by policy and outcome (honoured, inherited, refused).",
            ["policy", "outcome"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "guard_attestation_verifications",
            "Image digests checked against their candidate attestations, by result.",
            ["result"],
            registry=self.registry,
        )
        self.signature_cache = Counter(
            "guard_attestation_signature_cache",
            "Signature-cache lookups (envelope x trusted key), by outcome (hit, miss).",
            ["outcome"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "guard_ready",
            "1 once policies, trust and attestations have been listed.",
            registry=self.registry,
        )
        self.policy_load_errors = Gauge(
            "guard_policy_load_errors",
            "Guard custom resources that are broken now (see their status).",
            registry=self.registry,
        )
        self.fallback_reads = Counter(
            "guard_attestation_fallback_reads",
            "Bounded API reads made because the attestation index missed.",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "guard_events",
            "Kubernetes Events, by reason and outcome (posted, suppressed, dropped, failed).",
            ["reason", "outcome"],
            registry=self.registry,
        )
        self.inherited = Counter(
            "guard_inherited_admissions",
            "Requests admitted through a GuardBaseline entry, by kind and scope (owner: "
            "a controller's object inherits from its owner; unchanged: a person's update "
            "keeps the baselined template; mirror: a static pod's mirror).",
            ["kind", "scope"],
            registry=self.registry,
        )
        self.baseline_entries = Gauge(
            "guard_baseline_entries",
            "GuardBaseline entries in force (files and custom resources).",
            registry=self.registry,
        )
        self.owner_reads = Counter(
            "guard_owner_reads",
            "Bounded API reads of a workload owner the index did not hold, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.audit_errors = Counter(
            "guard_audit_write_errors",
            "Audit lines that could not be written to one of their sinks.",
            registry=self.registry,
        )
        for decision in ("allow", "warn", "deny"):
            self.requests.labels(decision, "")  # so dashboards see the series at 0
        self.signature_cache.labels("hit")
        self.signature_cache.labels("miss")

    def observe_signature_lookup(self, hit: bool) -> None:
        """The signature cache's observer: one lookup, a hit or a miss."""
        self.signature_cache.labels("hit" if hit else "miss").inc()

    def observe_verdict(self, accepted: bool) -> None:
        """The review evaluator's observer: one artifact verdict."""
        self.verifications.labels("accepted" if accepted else "rejected").inc()

    def observe(self, result: AdmissionResult, seconds: float) -> None:
        kind = result.request.kind if result.request is not None else ""
        self.requests.labels(result.verdict, kind).inc()
        if result.reason != Reason.judged:
            self.unjudged.labels(result.reason.value).inc()
        if result.decision is not None:
            for finding in result.decision.findings:
                action = "waived" if finding.waiver is not None else finding.action.value
                self.findings.labels(finding.policy, action, finding.result.value).inc()
        glass = result.break_glass
        if glass is not None:
            for policy in glass.honoured_by:
                self.break_glass.labels(policy, glass.outcome.value).inc()
            for policy in glass.refused_by:
                self.break_glass.labels(policy, "refused").inc()
            if not glass.honoured_by and not glass.refused_by:
                self.break_glass.labels("", glass.outcome.value).inc()
        inherited = result.evidence.get("inherited") if result.evidence else None
        if isinstance(inherited, dict) and result.allowed:
            self.inherited.labels(kind, str(inherited.get("scope", ""))).inc()
        self.latency.observe(seconds)
