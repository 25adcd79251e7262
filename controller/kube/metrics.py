"""Prometheus metrics of the webhook, on their own registry and port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.kube.decide import AdmissionResult


class Metrics:
    """The counters the admission path updates; scraped from ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "guard_admission_requests",
            "Admission requests answered, by verdict, reason and kind.",
            ["verdict", "reason", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "guard_admission_duration_seconds",
            "Time to answer an admission request.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
            registry=self.registry,
        )
        self.ready = Gauge(
            "guard_ready",
            "1 once policies, trust and attestations have been listed.",
            registry=self.registry,
        )
        self.policy_problems = Gauge(
            "guard_policy_problems",
            "Guard custom resources that are broken (see their status).",
            registry=self.registry,
        )
        self.fallback_reads = Counter(
            "guard_attestation_fallback_reads",
            "Bounded API reads made because the attestation index missed.",
            ["outcome"],
            registry=self.registry,
        )

    def observe(self, result: AdmissionResult, seconds: float) -> None:
        kind = result.request.kind if result.request is not None else ""
        self.requests.labels(result.verdict, result.reason, kind).inc()
        self.latency.observe(seconds)
