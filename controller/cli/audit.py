"""``guard kube audit``: what ``deny`` would block, from a dump or a live cluster."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.cli.options import (
    EXIT_DENIED,
    EXIT_OK,
    Commands,
    Console,
    add_attestation_option,
    add_command,
    add_policies_option,
    add_report_options,
    add_trust_option,
    attestation_files,
    policy_paths,
)
from controller.errors import InputError
from controller.kube import policyreport
from controller.kube.inherit import Baselines
from controller.kube.inventory import DUMP_COMMAND, Inventory, read_dump
from controller.kube.manifests import Manifest, read_attestations
from controller.kube.request import valid_namespace
from controller.kube.scan import Scan, scan
from controller.kube.state import FileInputs, build_policy_set
from controller.policy.baseline import GuardBaseline
from controller.policy.documents import Action, parse_duration
from controller.policy.loader import load_paths
from controller.policy.results import Decision
from controller.report.context import ReportContext, applied_exceptions
from controller.report.output import parse_outputs, write_outputs
from controller.report.registry import FORMAT_NAMES, render
from controller.report.summary import summary_line

# Beside the formats every command has: the policy reports, as YAML to apply
# or to read with the tools that read them.
REPORT_FORMATS = {"openreports": policyreport.OPENREPORTS, "policyreport": policyreport.WGPOLICY}
AUDIT_FORMATS = (*FORMAT_NAMES, *REPORT_FORMATS)
AUDIT_DUMP_COMMAND = DUMP_COMMAND.replace(",controllerrevision", "")


def register_audit(kube: Commands[argparse.ArgumentParser]) -> None:
    audit = add_command(
        kube,
        "audit",
        help="judge every running workload as admission would now (exit 0, 1 or 2)",
        description="Judge every workload of a cluster that no owner covers (Deployments, "
        "StatefulSets, DaemonSets, CronJobs, and the ReplicaSets, Jobs and Pods nothing in "
        "the input owns) with the admission decision, as if each were deployed now: every "
        "policy that matches it, its review included (expiry and maxAge apply; the deployer "
        "rules do not, since nobody deploys), baselines and exceptions as admission applies "
        "them. Reads a dump (-f, made with "
        f"`{AUDIT_DUMP_COMMAND}`) or the cluster of your kubeconfig. Besides the usual "
        "formats, openreports and policyreport write the openreports.io Report (or "
        "wgpolicyk8s.io PolicyReport) documents the operator's background scan writes. "
        "Exit 0 when nothing would be denied, 1 when something would, 2 on bad input.",
        examples=[
            (
                "from a dump made with kubectl, before installing guard",
                "guard kube audit -f cluster.yaml --trust trust.yaml",
            ),
            (
                "one namespace of the current context, as Report YAML",
                "guard kube audit --namespace shop --format openreports",
            ),
            (
                "every namespace, with the GuardBaseline to apply",
                "guard kube audit --context prod --all-namespaces --baseline baseline.yaml",
            ),
        ],
    )
    add_cluster_source_options(audit)
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        metavar="NS",
        help="only this namespace (default: every namespace of a dump; the context's "
        "namespace of a cluster, as kubectl)",
    )
    scope.add_argument(
        "--all-namespaces", action="store_true", help="every namespace of the cluster"
    )
    add_policies_option(audit)
    add_trust_option(audit)
    add_attestation_option(audit)
    audit.add_argument(
        "--baseline",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="GuardBaseline files in force (repeatable)",
    )
    audit.add_argument(
        "--expiring-within",
        default="14d",
        metavar="DURATION",
        help="warn about reviews and baseline entries that stop applying within DURATION "
        "(default: %(default)s; 0s: never)",
    )
    add_report_options(audit, AUDIT_FORMATS)
    audit.set_defaults(handler=kube_audit_command)


def add_cluster_source_options(parser: argparse.ArgumentParser) -> None:
    """``-f DUMP`` or ``--kubeconfig``/``--context``: where a cluster is read from."""
    parser.add_argument(
        "-f",
        "--filename",
        metavar="DUMP",
        help="a dump of the cluster's workloads (YAML or JSON, - for stdin); without it the "
        "cluster of --kubeconfig/--context is read",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the kubeconfig to read the cluster with (default: KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="the kubeconfig context (default: its current one)"
    )


def _window(text: str) -> dt.timedelta:
    if text.strip() in ("0", "0s", "0d"):
        return dt.timedelta(0)
    return _duration("--expiring-within", text)


def _inventory(args: argparse.Namespace) -> Inventory:
    if args.namespace is not None and not valid_namespace(args.namespace):
        raise InputError(f"--namespace {args.namespace[:80]!r}: not a namespace name")
    if args.filename is not None:
        if args.kubeconfig or args.context:
            raise InputError("give -f DUMP or --kubeconfig/--context, not both")
        return read_dump(args.filename)
    # Imported here, not at the top: the Kubernetes client takes seconds to
    # import and only the commands that read a live cluster need it.
    from controller.kube.cluster import context_namespace, read_cluster

    namespace = None
    if not args.all_namespaces:
        namespace = args.namespace or context_namespace(args.kubeconfig, args.context)
    return read_cluster(args.kubeconfig, args.context, pods=True, namespace=namespace)


def _in_namespace(items: Sequence[Manifest], namespace: str | None) -> list[Manifest]:
    if namespace is None:
        return list(items)
    return [
        item
        for item in items
        if isinstance(item.obj.get("metadata"), dict)
        and item.obj["metadata"].get("namespace") == namespace
    ]


def _baselines(paths: Sequence[Path], files: FileInputs) -> Baselines:
    """The --baseline files' GuardBaselines and those among the policies."""
    documents = [
        loaded.document
        for loaded in load_paths(paths)
        if isinstance(loaded.document, GuardBaseline)
    ]
    if paths and not documents:
        raise InputError(f"--baseline {', '.join(map(str, paths))}: no GuardBaseline documents")
    return Baselines([*files.baselines, *documents])


def decision_of(result: Scan) -> Decision:
    """Every workload's findings and expiring-soon warnings, as one decision."""
    findings = [f for w in result.workloads for f in (*w.findings, *w.expiry_findings())]
    return Decision.of(findings, subjects=len(result.workloads), notes=result.notes())


def _review_line(result: Scan) -> str:
    reviewed = [w for w in result.workloads if w.reviews]
    if not reviewed:
        return "not required"
    failed = waived = 0
    for workload in reviewed:
        reviews = [f for f in workload.findings if f.rule == "review"]
        if any(f.waiver is None for f in reviews):
            failed += 1
        elif reviews:
            waived += 1
    line = f"passed for {len(reviewed) - failed - waived} of {len(reviewed)} workload(s)"
    line += f", failed for {failed}"
    return line + (f", waived for {waived} (baselined or excepted)" if waived else "")


def kube_audit_command(args: argparse.Namespace) -> int:
    quiet = Console.of(args).quiet
    outputs = parse_outputs(args.format, args.output, AUDIT_FORMATS, quiet=quiet)
    window = _window(args.expiring_within)
    files = FileInputs.load(policy_paths(args.policies), tuple(args.trust))
    policies = build_policy_set(files, (), enforcement=Action.deny)
    attestations = read_attestations(attestation_files(args.attestation))
    baselines = _baselines(args.baseline, files)
    inventory = _inventory(args)
    items = _in_namespace(inventory.objects, args.namespace if args.filename else None)
    now = dt.datetime.now(dt.UTC)
    result = scan(items, policies, attestations, baselines, now=now, window=window)
    decision = decision_of(result)
    context = ReportContext(
        command="guard kube audit",
        source=inventory.source,
        subjects_label="workloads",
        notes=decision.notes,
        review=_review_line(result),
        exceptions=applied_exceptions(decision, files.exceptions),
        nothing_judged=not result.workloads,
        subjects=tuple(w.subject for w in result.workloads if w.subject is not None),
    )
    specs = policyreport.policy_specs(policies.policies)

    def renderer(name: str, colour: bool) -> str:
        api = REPORT_FORMATS.get(name)
        if api is not None:
            reports = policyreport.namespace_reports(result.workloads, specs, now, api)
            return policyreport.render(reports)
        return render(name, decision, dataclasses.replace(context, colour=colour))

    write_outputs(renderer, outputs, summary=summary_line(decision, context), quiet=quiet)
    return EXIT_OK if decision.allowed else EXIT_DENIED


# --------------------------------------------------------------------------- guard serve


def add_report_serve_options(serve: argparse.ArgumentParser) -> None:
    """``guard serve``'s background scan and policy reports."""
    serve.add_argument(
        "--reports",
        choices=sorted(policyreport.APIS),
        default="",
        help="write policy reports of a background scan: openreports.io Reports or "
        "wgpolicyk8s.io PolicyReports (default: none)",
    )
    serve.add_argument(
        "--scan-period",
        default="10m",
        metavar="DURATION",
        help="re-scan everything at least this often, changed or not (default: %(default)s)",
    )
    serve.add_argument(
        "--expiring-within",
        default="14d",
        metavar="DURATION",
        help="warn about reviews and baseline entries that stop applying within DURATION "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="the namespace of the report writer's Lease (default: $POD_NAMESPACE or guard)",
    )
    serve.add_argument(
        "--identity",
        metavar="NAME",
        help="this replica's name in the Lease (default: $POD_NAME or the host name)",
    )


def report_serve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeSettings`` fields of the options above."""
    return {
        "reports": args.reports,
        "scan_period": _duration("--scan-period", args.scan_period).total_seconds(),
        "expiring_within": _window(args.expiring_within).total_seconds(),
        "lease_namespace": args.lease_namespace or os.environ.get("POD_NAMESPACE") or "guard",
        "identity": args.identity or os.environ.get("POD_NAME", ""),
    }


def _duration(flag: str, text: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from None
