"""The settings of ``guard serve``: the contract the Helm chart builds to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.policy.documents import Action

# The identities the Kubernetes controllers act as when they create Pods,
# ReplicaSets and Jobs on a person's behalf. Their requests get every review
# check except the ageing ones (expiry, maxAge) and the deployer rules; what
# they make from a baselined owner inherits from it (``kube.inherit``).
DEFAULT_CONTROLLER_IDENTITIES: tuple[str, ...] = (
    *(
        f"system:serviceaccount:kube-system:{name}-controller"
        for name in (
            "replicaset",
            "deployment",
            "statefulset",
            "daemon-set",
            "job",
            "cronjob",
            "replication",
        )
    ),
    "system:kube-controller-manager",
)

# The one path the webhook serves. Both webhooks of the chart's configuration
# (user requests and controller identities) post here; every other path is
# denied.
WEBHOOK_PATH = "/validate"

# The API server caps request bodies at 3 MiB and objects at about 1.5 MiB
# (etcd); an UPDATE review carries the old and the new object plus the
# request around them. 8 MiB holds the largest legitimate review with room
# to spare, and anything larger is refused with a clear 413, not a crash.
MAX_REVIEW_BYTES = 8 * 1024 * 1024

# Full audit records per requester: this many a second, this many at once
# (past that, one-line summaries: see ``kube.audit``).
AUDIT_DETAIL_RATE = 5.0
AUDIT_DETAIL_BURST = 50


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``guard serve`` is told on its command line."""

    policy_paths: tuple[Path, ...]
    trust_paths: tuple[Path, ...] = ()
    enforcement: Action = Action.deny
    tls_cert: Path | None = None
    tls_key: Path | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8443
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9090
    audit_file: Path | None = None
    # The audit file rotates past this size, keeping this many old files
    # (defaults fit the chart's 256 MiB audit volume).
    audit_max_bytes: int = 50 * 1024 * 1024
    audit_backups: int = 3
    # Audit lines also go to stdout (what container log collectors ship).
    audit_stdout: bool = True
    audit_detail_rate: float = AUDIT_DETAIL_RATE
    audit_detail_burst: int = AUDIT_DETAIL_BURST
    namespaces: tuple[str, ...] = ()
    controller_identities: tuple[str, ...] = DEFAULT_CONTROLLER_IDENTITIES
    max_review_bytes: int = MAX_REVIEW_BYTES
    # How often the TLS files are re-read to pick up a renewed certificate.
    tls_check_interval: float = 60.0
    # The bounded fallback read when the attestation index misses.
    fallback_timeout: float = 2.0
    fallback_rate: float = 5.0
    fallback_burst: float = 10.0
    # Kubernetes Events: a bucket per (policy, reason) and a global one, so
    # a crash loop or a flood of bad requests cannot flood the API server.
    event_rate: float = 0.1
    event_burst: float = 5.0
    event_global_rate: float = 1.0
    event_global_burst: float = 30.0
    # Background scan and policy reports (``kube.reporting``): off unless a
    # report API is named ("openreports" or "wgpolicy").
    reports: str = ""
    scan_period: float = 600.0
    report_interval: float = 5.0
    expiring_within: float = 14 * 86400.0
    report_max_writes: int = 50
    # The report writer's Lease: in guard's own namespace, held by this Pod.
    lease_name: str = "guard-report-writer"
    lease_namespace: str = "guard"
    lease_duration: float = 15.0
    identity: str = ""

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
