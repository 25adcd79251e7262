"""``guard serve``, ``guard kube check`` and ``guard kube baseline``.

Over 400 lines because it is the kube group's whole command line: three
commands with their options, examples and help, kept together so that their
flags stay one scheme (``-f`` the input, ``-o`` the output).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from controller.cli.audit import (
    add_cluster_source_options,
    add_report_serve_options,
    register_audit,
    report_serve_settings,
)
from controller.cli.catalog import help_for
from controller.cli.evidence import envelope_names, passed_phrase
from controller.cli.options import (
    EXIT_DENIED,
    EXIT_OK,
    Commands,
    Console,
    add_attestation_option,
    add_command,
    add_group,
    add_policies_option,
    add_report_options,
    add_trust_option,
    add_warn_only_option,
    attestation_files,
    non_negative,
    policy_paths,
    require_matching,
)
from controller.errors import InputError
from controller.kube.audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from controller.kube.inventory import (
    DUMP_COMMAND,
    Inventory,
    baseline_documents,
    baseline_report,
    denied_owners,
    read_dump,
    render_documents,
)
from controller.kube.manifests import (
    DEFAULT_NAMESPACE,
    check_manifests,
    manifests,
    read_attestations,
    read_text,
)
from controller.kube.settings import (
    DEFAULT_CONTROLLER_IDENTITIES,
    WEBHOOK_PATH,
    ServeSettings,
)
from controller.kube.state import FileInputs, build_policy_set
from controller.policy.baseline import OWNER_KINDS, GuardBaseline
from controller.policy.documents import Action, _date
from controller.policy.loader import load_paths
from controller.policy.results import Decision, Requester
from controller.policy.reviewer import RecordingReview, ReviewOutcome
from controller.report.context import ReportContext, applied_exceptions
from controller.report.output import parse_outputs, write_reports
from controller.report.registry import FORMAT_NAMES

TLS_DIR = Path("/etc/guard/tls")


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    serve = add_command(
        commands,
        "serve",
        help=help_for("serve"),
        description=f"Run the validating admission webhook. It serves POST {WEBHOOK_PATH} "
        "over HTTPS (every other path is denied), /healthz, /readyz and /metrics on the "
        "metrics port, and is ready once policies, trust and attestations are listed. "
        "The Helm chart (charts/guard) runs it; run it by hand only to debug.",
        examples=[
            (
                "what the chart runs, in warn mode for a roll-out",
                "guard serve --trust /etc/guard/trust --enforcement warn",
            ),
            (
                "local certificates, one namespace",
                "guard serve --tls-cert tls.crt --tls-key tls.key --namespace shop",
            ),
        ],
        quiet=False,
    )
    add_policies_option(serve)
    add_trust_option(serve)
    serve.add_argument(
        "--enforcement",
        choices=[a.value for a in Action],
        default="deny",
        help="cap over every policy's action, for safe roll-outs",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=TLS_DIR / "tls.crt",
        metavar="FILE",
        help="the webhook's certificate (PEM; reloaded when the file changes)",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=TLS_DIR / "tls.key",
        metavar="FILE",
        help="the webhook certificate's private key (PEM)",
    )
    serve.add_argument(
        "--webhook-host", default="0.0.0.0", metavar="HOST", help="address the webhook listens on"
    )
    serve.add_argument(
        "--webhook-port", type=int, default=8443, metavar="PORT", help="HTTPS port of the webhook"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        metavar="PORT",
        help="HTTP port of /metrics, /healthz and /readyz",
    )
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
        help="rotate the audit file past N bytes (0: never)",
    )
    serve.add_argument(
        "--audit-backups",
        type=non_negative,
        default=DEFAULT_BACKUPS,
        metavar="N",
        help="rotated audit files to keep",
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
    add_report_serve_options(serve)
    serve.set_defaults(handler=serve_command)

    kube = add_group(
        commands,
        "kube",
        help=help_for("kube"),
        description="Judge Kubernetes manifests offline, exactly as the admission webhook would.",
        examples=[("check rendered manifests in CI", "guard kube check -f manifests.yaml")],
        dest="kube_command",
    )
    check = add_command(
        kube,
        "check",
        help="check manifests as the admission webhook would (exit 0, 1 or 2)",
        description="Judge every workload of the manifests (multi-document YAML, Lists, "
        "helm template output) as a CREATE by --user, with the webhook's decision path. "
        "Exit 0 when nothing denies, 1 when a finding denies, 2 on bad input.",
        examples=[
            (
                "a chart's manifests, attestations from a folder, as the CI deployer",
                "guard kube check -f manifests.yaml --trust trust.yaml "
                "--attestation attestations/ --user ci-deployer",
            ),
            (
                "from stdin, with a SARIF file for code scanning",
                "guard kube check -f - --trust trust.yaml --attestation app.intoto.json "
                "-o sarif=guard.sarif",
            ),
        ],
    )
    check.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="the manifests, or - for stdin"
    )
    add_policies_option(check)
    add_trust_option(check)
    add_attestation_option(check)
    check.add_argument(
        "--user",
        default="",
        metavar="NAME",
        help="the deployer to play, as Kubernetes names them (default: nobody, which the "
        "deployer rules refuse)",
    )
    check.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        metavar="NS",
        help="the namespace of objects that name none, as kubectl's (default: %(default)s)",
    )
    check.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group of the deployer (repeatable)",
    )
    add_report_options(check, FORMAT_NAMES)
    add_warn_only_option(check)
    check.set_defaults(handler=kube_check_command)
    _register_baseline(kube)
    register_audit(kube)


def _register_baseline(kube: Commands[argparse.ArgumentParser]) -> None:
    baseline = add_command(
        kube,
        "baseline",
        help="write a GuardBaseline of the workloads that would be denied today",
        description="Judge every workload owner of a cluster (Deployments, StatefulSets, "
        "DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs) as the "
        "Kubernetes controllers' requests for it would be judged, and write a GuardBaseline "
        "entry for each one that would be denied: once it is applied, what controllers "
        "make from those owners' unchanged templates keeps running after enforcement "
        "denies, until --expires. Reads a dump (-f, made with "
        f"`{DUMP_COMMAND}`) or the cluster of your kubeconfig. With --report, lists what "
        "became of every entry of existing baselines instead; -o/--output here names the "
        "file the documents are written to. Exit 0, or 2 on bad input.",
        examples=[
            (
                "from a dump, to apply with kubectl",
                "guard kube baseline -f cluster.yaml --owner platform-team "
                '--reason "workloads from before guard" --expires 2027-03-31 '
                "--output baseline.yaml",
            ),
            (
                "from the cluster of a kubeconfig context",
                "guard kube baseline --context prod --owner platform-team "
                '--reason "workloads from before guard" --expires 2027-03-31',
            ),
            (
                "what became of the baselined workloads",
                "guard kube baseline --context prod --report baseline.yaml",
            ),
        ],
    )
    add_cluster_source_options(baseline)
    add_policies_option(baseline)
    add_trust_option(baseline)
    add_attestation_option(baseline)
    baseline.add_argument(
        "--name",
        default="pre-enforcement",
        metavar="NAME",
        help="the GuardBaseline's name (NAME-2, NAME-3... when it needs several documents)",
    )
    baseline.add_argument("--owner", metavar="WHO", help="who answers for the baseline")
    baseline.add_argument("--reason", metavar="TEXT", help="why these workloads may keep running")
    baseline.add_argument(
        "--expires",
        metavar="YYYY-MM-DD",
        help="the last day the baseline applies (required: a baseline always ends)",
    )
    baseline.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the documents to FILE instead of stdout",
    )
    baseline.add_argument(
        "--report",
        action="append",
        default=[],
        type=Path,
        metavar="BASELINE",
        help="list what became of every entry of these GuardBaseline files (repeatable)",
    )
    baseline.set_defaults(handler=kube_baseline_command)


def kube_baseline_command(args: argparse.Namespace) -> int:
    console = Console.of(args)
    if args.filename is not None and (args.kubeconfig or args.context):
        raise InputError("give -f DUMP or --kubeconfig/--context, not both")
    inventory = read_dump(args.filename) if args.filename is not None else _read_cluster(args)
    if args.report:
        return _baseline_report(args, inventory, console)
    missing = [f"--{o}" for o in ("owner", "reason", "expires") if not getattr(args, o)]
    if missing:
        raise InputError(f"{', '.join(missing)} required: a baseline names who, why and until when")
    try:
        expires = _date(args.expires)
    except ValueError as exc:
        raise InputError(f"--expires: {exc}") from None
    today = dt.datetime.now(dt.UTC).date()
    if expires < today:
        raise InputError(f"--expires {expires} is in the past")
    paths = policy_paths(args.policies)
    files = FileInputs.load(paths, tuple(args.trust))
    policies = build_policy_set(files, (), enforcement=Action.deny)
    attestations = read_attestations(attestation_files(args.attestation))
    denied, notes = denied_owners(inventory, policies, attestations)
    documents = baseline_documents(
        denied, inventory, name=args.name, owner=args.owner, reason=args.reason, expires=expires
    )
    text = render_documents(documents)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    elif documents:
        sys.stdout.write(text)
    for note in notes:
        console.info(note)
    owners = len(inventory.of_kind(*OWNER_KINDS))
    console.info(
        f"{len(denied)} of {owners} workload owner(s) in {inventory.source} would be denied "
        f"today: {len(documents)} GuardBaseline document(s)"
        + (f" written to {args.output}" if args.output is not None and documents else "")
    )
    return EXIT_OK


def _read_cluster(args: argparse.Namespace) -> Inventory:
    # Imported here, not at the top: the Kubernetes client takes seconds to
    # import and only the commands that read a live cluster need it.
    from controller.kube.cluster import read_cluster

    return read_cluster(args.kubeconfig, args.context)


def _baseline_report(args: argparse.Namespace, inventory: Inventory, console: Console) -> int:
    documents = [
        loaded.document
        for loaded in load_paths(args.report)
        if isinstance(loaded.document, GuardBaseline)
    ]
    if not documents:
        raise InputError(f"{', '.join(map(str, args.report))}: no GuardBaseline documents")
    states = baseline_report(documents, inventory, dt.datetime.now(dt.UTC).date())
    for state in states:
        detail = f" ({state.detail})" if state.detail else ""
        console.out(f"{state.state:<10} {state.address}  [GuardBaseline {state.baseline}]{detail}")
    counts: dict[str, int] = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    console.out(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no entries")
    return EXIT_OK


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
        **report_serve_settings(args),
    )
    # Imported here, not at the top: Kopf (and the Kubernetes client it loads
    # when installed) takes seconds to import, and only guard serve needs it;
    # every other command starts without it. The import contract still sees
    # these imports (tests/test_layout.py lists the one exception).
    from controller.kube.service import GuardService, freeze_start_up_objects, preflight
    from controller.operator import create_registry

    files = FileInputs.load(settings.policy_paths, settings.trust_paths)
    preflight(settings)
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
    service = GuardService(
        settings, files, registry=create_registry(reports=bool(settings.reports))
    )
    freeze_start_up_objects()
    asyncio.run(service.run())
    return EXIT_OK


def kube_check_command(args: argparse.Namespace) -> int:
    quiet = Console.of(args).quiet
    outputs = parse_outputs(args.format, args.output, quiet=quiet)
    paths = policy_paths(args.policies)
    files = FileInputs.load(paths, tuple(args.trust))
    require_matching(files.policies, paths, "kubernetes")
    enforcement = Action.warn if args.warn_only else Action.deny
    policies = build_policy_set(files, (), enforcement=enforcement)
    attestations = read_attestations(attestation_files(args.attestation))
    text, source = read_text(args.filename)
    items = manifests(text, source)
    requester = Requester(username=args.user, groups=tuple(args.group))
    outcomes: dict[tuple[str, str], ReviewOutcome] = {}
    decision, _ = check_manifests(
        items,
        policies,
        attestations,
        requester,
        namespace=args.namespace,
        controller_identities=frozenset(DEFAULT_CONTROLLER_IDENTITIES),
        wrap_review=lambda inner: RecordingReview(inner, outcomes),
    )
    names = envelope_names(
        (entry.text, entry.source) for entries in attestations.values() for entry in entries
    )
    context = ReportContext(
        command="guard kube check",
        source=source,
        subjects_label="workloads",
        notes=decision.notes,
        review=review_summary(decision, outcomes, names),
        exceptions=applied_exceptions(decision, files.exceptions),
        warn_only=args.warn_only,
        nothing_judged=decision.subjects == 0,
    )
    write_reports(decision, context, outputs, quiet=quiet)
    return EXIT_OK if decision.allowed else EXIT_DENIED


def review_summary(
    decision: Decision,
    outcomes: Mapping[tuple[str, str], ReviewOutcome],
    names: Mapping[str, str],
) -> str:
    """Not required, passed (who approved, in which attestation), or for how many
    workloads it failed."""
    reviewed = {address for address, _ in outcomes}
    failed = {f.address for f in decision.findings if f.rule == "review"}
    if not reviewed and not failed:
        return "not required"
    passed = passed_phrase(
        ((policy, o) for (address, policy), o in outcomes.items() if address not in failed),
        names,
    )
    total = len(reviewed | failed)
    if not failed:
        return f"passed for {_workloads(total)}: {passed}"
    summary = f"failed for {len(failed)} of {_workloads(total)}"
    return f"{summary}, passed for the others: {passed}" if passed else summary


def _workloads(count: int) -> str:
    return f"{count} workload" if count == 1 else f"{count} workloads"
