"""``guard serve`` and ``guard kube check``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from controller.cli.options import (
    EXIT_DENIED,
    EXIT_OK,
    add_policies_option,
    non_negative,
    policy_paths,
    require_matching,
)
from controller.kube.audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from controller.kube.manifests import check_manifests, manifests, read_attestations, read_text
from controller.kube.service import GuardService
from controller.kube.settings import (
    DEFAULT_CONTROLLER_IDENTITIES,
    WEBHOOK_PATH,
    ServeSettings,
)
from controller.kube.state import FileInputs, build_policy_set
from controller.operator import create_registry
from controller.policy.documents import Action
from controller.policy.results import Decision, Requester
from controller.report.context import ReportContext, applied_exceptions
from controller.report.output import parse_outputs, write_reports
from controller.report.registry import FORMAT_NAMES

TLS_DIR = Path("/etc/guard/tls")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the admission webhook (the Kopf operator) in a cluster",
        description=f"Run the validating admission webhook. It serves POST {WEBHOOK_PATH} "
        "over HTTPS (every other path is denied), /healthz, /readyz and /metrics on the "
        "metrics port, and is ready once policies, trust and attestations are listed.",
    )
    add_policies_option(serve)
    serve.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="GuardTrust files or folders (repeatable; default none: review fails closed)",
    )
    serve.add_argument(
        "--enforcement",
        choices=[a.value for a in Action],
        default="deny",
        help="cap over every policy's action, for safe roll-outs (default deny)",
    )
    serve.add_argument("--tls-cert", type=Path, default=TLS_DIR / "tls.crt", metavar="FILE")
    serve.add_argument("--tls-key", type=Path, default=TLS_DIR / "tls.key", metavar="FILE")
    serve.add_argument("--webhook-host", default="0.0.0.0")
    serve.add_argument("--webhook-port", type=int, default=8443)
    serve.add_argument("--metrics-port", type=int, default=9090)
    serve.add_argument(
        "--audit-file",
        type=Path,
        metavar="PATH",
        help="also write the audit lines (always on stdout) to this file, rotated by size",
    )
    serve.add_argument(
        "--audit-max-bytes",
        type=non_negative,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"rotate the audit file past N bytes (0: never; default {DEFAULT_MAX_BYTES})",
    )
    serve.add_argument(
        "--audit-backups",
        type=non_negative,
        default=DEFAULT_BACKUPS,
        metavar="N",
        help=f"rotated audit files to keep (default {DEFAULT_BACKUPS})",
    )
    scope = serve.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", default=[], metavar="NS", help="watch only NS (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    serve.add_argument(
        "--controller-identity",
        action="append",
        default=[],
        metavar="USER",
        help="a Kubernetes controller's username (repeatable; default: the kube-system "
        "controllers and system:kube-controller-manager)",
    )
    serve.set_defaults(handler=serve_command)

    kube = commands.add_parser("kube", help="Kubernetes manifests, offline")
    kube_commands = kube.add_subparsers(dest="kube_command", metavar="COMMAND")
    kube_commands.required = True
    check = kube_commands.add_parser(
        "check",
        help="check manifests as the admission webhook would (exit 0, 1 or 2)",
        description="Judge every workload of the manifests (multi-document YAML, Lists, "
        "helm template output) as a CREATE by --user, with the webhook's decision path. "
        "Exit 0 when nothing denies, 1 when a finding denies, 2 on bad input.",
    )
    check.add_argument("-f", "--filename", required=True, metavar="FILE", help="manifests, or -")
    add_policies_option(check)
    check.add_argument("--trust", action="append", type=Path, default=[], metavar="PATH")
    check.add_argument(
        "--attestations", type=Path, metavar="DIR", help="envelopes or ReviewAttestations"
    )
    check.add_argument("--user", default="", metavar="NAME", help="the deployer to play")
    check.add_argument("--group", action="append", default=[], metavar="G")
    check.add_argument("--format", choices=FORMAT_NAMES, default="text")
    check.add_argument("--output", action="append", default=[], metavar="[FORMAT=]FILE")
    check.add_argument(
        "--warn-only", action="store_true", help="report denials as warnings and exit 0"
    )
    check.set_defaults(handler=kube_check_command)


def serve_command(args: argparse.Namespace) -> int:
    settings = ServeSettings(
        policy_paths=policy_paths(args.policies),
        trust_paths=tuple(args.trust),
        enforcement=Action(args.enforcement),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        metrics_port=args.metrics_port,
        audit_file=args.audit_file,
        audit_max_bytes=args.audit_max_bytes,
        audit_backups=args.audit_backups,
        namespaces=tuple(args.namespace),
        controller_identities=tuple(args.controller_identity) or DEFAULT_CONTROLLER_IDENTITIES,
    )
    files = FileInputs.load(settings.policy_paths, settings.trust_paths)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not files.policies:
        logging.getLogger("guard").warning(
            "No policy in %s: only GuardPolicy resources will be enforced",
            ", ".join(str(p) for p in settings.policy_paths),
        )
    if not files.trust_specs:
        logging.getLogger("guard").warning(
            "No --trust given: review requirements fail closed until a GuardTrust exists"
        )
    service = GuardService(settings, files, registry=create_registry())
    asyncio.run(service.run())
    return EXIT_OK


def kube_check_command(args: argparse.Namespace) -> int:
    outputs = parse_outputs(args.format, args.output)
    paths = policy_paths(args.policies)
    files = FileInputs.load(paths, tuple(args.trust))
    require_matching(files.policies, paths, "kubernetes")
    enforcement = Action.warn if args.warn_only else Action.deny
    policies = build_policy_set(files, (), enforcement=enforcement)
    text, source = read_text(args.filename)
    items = manifests(text, source)
    requester = Requester(username=args.user, groups=tuple(args.group))
    decision, _ = check_manifests(
        items,
        policies,
        read_attestations(args.attestations),
        requester,
        controller_identities=frozenset(DEFAULT_CONTROLLER_IDENTITIES),
    )
    context = ReportContext(
        command="guard kube check",
        source=source,
        subjects_label="workloads",
        notes=decision.notes,
        review=_review_summary(decision),
        exceptions=applied_exceptions(decision, files.exceptions),
        warn_only=args.warn_only,
    )
    write_reports(decision, context, outputs)
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _review_summary(decision: Decision) -> str:
    failed = [f for f in decision.findings if f.rule == "review"]
    if not failed:
        return "passed or not required"
    return f"failed for {len({f.address for f in failed})} workload(s)"
