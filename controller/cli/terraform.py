"""``guard tf-plan`` and ``guard tf-config``: Terraform against the same policies."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from controller.attest.files import read_envelope
from controller.cli.catalog import help_for
from controller.cli.evidence import envelope_names, passed_phrase
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
    add_warn_only_option,
    attestation_files,
    policy_paths,
    require_matching,
)
from controller.errors import InputError
from controller.policy import parallel
from controller.policy.documents import Action, GuardException, GuardPolicy
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle, load_path
from controller.policy.results import Decision, Finding, Result
from controller.policy.reviewer import RecordingReview
from controller.report.context import ReportContext, applied_exceptions
from controller.report.output import parse_outputs, write_reports
from controller.report.redact import redacted
from controller.report.registry import FORMAT_NAMES
from controller.strict import collector_paused
from controller.terraform.inputs import plan_input
from controller.terraform.lines import address_lines
from controller.terraform.review import JSON_ONLY_REASON, PlanReview, attestation_verifier
from controller.terraform.sensitive import SENSITIVE_MASK

if TYPE_CHECKING:
    from controller.terraform.config import ConfigIndex


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    plan = add_command(
        commands,
        "tf-plan",
        help=help_for("tf-plan"),
        description="Check every resource change of a Terraform plan, and the plan's "
        "review attestation, against the policies. PLAN is a binary plan file (guard runs "
        "`terraform show -json` on it), the output of `terraform show -json`, or - for JSON "
        "on stdin. Exit 0 when nothing denies, 1 when a finding denies, 2 on bad input.",
        examples=[
            (
                "a binary plan and its review attestation, with reports for code scanning",
                "guard tf-plan plan.bin --trust trust.yaml --attestation plan.intoto.json "
                "-o sarif=guard.sarif -o junit=guard.xml",
            ),
            ("JSON on stdin, a JSON report on standard output", "guard tf-plan - --format json"),
            (
                "roll out: report denials as warnings and exit 0",
                "guard tf-plan plan.json --warn-only --policies policies/",
            ),
        ],
    )
    plan.add_argument("plan", metavar="PLAN", help="binary plan, plan JSON, or - for stdin")
    _common(plan)
    plan.add_argument(
        "--unknown-action",
        choices=("warn", "deny"),
        default="warn",
        help="what a result that depends on values known only after apply does",
    )
    add_attestation_option(plan)
    add_trust_option(plan)
    plan.add_argument(
        "--accept-json-review",
        action="store_true",
        help="accept a review of the plan JSON when no binary plan is given",
    )
    plan.add_argument(
        "--config-dir",
        type=Path,
        metavar="DIR",
        help="the Terraform configuration, so reports point at .tf files and lines",
    )
    plan.add_argument(
        "--terraform-dir",
        type=Path,
        metavar="DIR",
        help="where to run `terraform show` for a binary plan (default: current directory)",
    )
    plan.set_defaults(handler=tf_plan_command)

    config = add_command(
        commands,
        "tf-config",
        help=help_for("tf-config"),
        description="Read the .tf files of DIR (local modules followed), resolve variable "
        "defaults, literal locals and module inputs, and check the resources against the "
        "policies. What cannot be known without a plan is reported as unknown, never as a "
        "failure. The review requirement is checked on the plan (guard tf-plan).",
        examples=[
            ("check a configuration before planning", "guard tf-config infra/"),
            (
                "SARIF for code scanning, nothing else printed",
                "guard tf-config infra/ -o sarif=guard.sarif --quiet",
            ),
        ],
    )
    config.add_argument("directory", type=Path, metavar="DIR", help="the Terraform configuration")
    _common(config)
    config.set_defaults(handler=tf_config_command)


def _common(parser: argparse.ArgumentParser) -> None:
    add_policies_option(parser)
    parser.add_argument(
        "--exceptions",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="GuardException documents (repeatable; they never waive a review)",
    )
    add_report_options(parser, FORMAT_NAMES)
    add_warn_only_option(parser)


@dataclass(frozen=True)
class Policies:
    policies: tuple[GuardPolicy, ...]
    exceptions: tuple[GuardException, ...]


def load_policies(given: Sequence[Path], exception_paths: Sequence[Path]) -> Policies:
    """The policy bundle (default: the bundled one) and every exception document."""
    paths = policy_paths(given)
    # The policies' test cases are for ``guard policy test``, not for judging.
    bundle = load_bundle(*paths, tests=False)
    exceptions = list(bundle.exceptions)
    for path in exception_paths:
        for loaded in load_path(path):
            if not isinstance(loaded.document, GuardException):
                raise InputError(
                    f"{loaded.source}: --exceptions expects GuardException documents, "
                    f"found {loaded.document.kind}"
                )
            exceptions.append(loaded.document)
    require_matching(bundle.policies, paths, "terraform")
    return Policies(tuple(bundle.policies), tuple(exceptions))


def _hcl_config() -> ModuleType:
    """``controller.terraform.config``, imported when first needed.

    It loads python-hcl2 and its parser (lark), a tenth of a second that
    only ``tf-config`` and ``tf-plan --config-dir`` need: every other
    command would pay it at start-up for nothing.
    """
    import controller.terraform.config

    return controller.terraform.config


def tf_plan_command(args: argparse.Namespace) -> int:
    quiet = Console.of(args).quiet
    outputs = parse_outputs(args.format, args.output, quiet=quiet)
    policies = load_policies(args.policies, args.exceptions)
    attestations = attestation_files(args.attestation)
    # The plan's values live until the command ends. While they are built
    # the collector would walk them again and again for no garbage, and
    # afterwards they are left out of its walks (``gc.freeze``).
    with collector_paused():
        plan = plan_input(args.plan, args.terraform_dir)
    gc.freeze()
    index = _hcl_config().ConfigIndex.of(args.config_dir) if args.config_dir else None
    now = dt.datetime.now(dt.UTC)
    verifier = attestation_verifier(args.trust, attestations, now)
    engine = Engine(
        policies=policies.policies,
        exceptions=policies.exceptions,
        enforcement=Action.warn if args.warn_only else Action.deny,
        unknown_action=Action(args.unknown_action),
    )
    notes: list[str] = list(plan.notes)
    if plan.json_only and _review_required(engine):
        notes.append(
            f"{JSON_ONLY_REASON}; "
            + (
                "the review was accepted over the JSON because --accept-json-review was given"
                if args.accept_json_review
                else "a review requirement passes only with --accept-json-review"
            )
        )
    review = RecordingReview(PlanReview(verifier, plan.json_only, args.accept_json_review))
    # A large plan is judged in several forked processes (same findings).
    decision = parallel.decide(engine, plan.subjects, review=review, notes=notes)
    decision = _with_lines(decision, plan.text, plan.source, index)
    # Rules judged the real values; nothing written shows a sensitive one.
    decision = redacted(decision, plan.sensitive, marker=SENSITIVE_MASK)
    plan_address = plan.plan_subject.address if plan.plan_subject is not None else plan.source
    context = ReportContext(
        command="guard tf-plan",
        source=plan.source,
        subject_count=plan.resource_count,
        notes=decision.notes,
        review=review_summary(decision, engine, plan_address, review, attestations),
        unknown_values=plan.unknown_values,
        exceptions=applied_exceptions(decision, policies.exceptions),
        warn_only=args.warn_only,
        subjects=plan.resources,
    )
    write_reports(decision, context, outputs, quiet=quiet)
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _with_lines(
    decision: Decision, text: bytes, source: str, index: ConfigIndex | None
) -> Decision:
    """Findings with their source line: the .tf block when known, else the plan's line."""
    wanted = {f.address for f in decision.findings if f.address != source}
    lines = address_lines(text, wanted)
    located: list[Finding] = []
    for finding in decision.findings:
        where = index.locate(finding.address) if index is not None else None
        if where is not None:
            finding = replace(finding, location=where[0], line=where[1])
        elif finding.address in lines:
            finding = replace(finding, location=source, line=lines[finding.address])
        located.append(finding)
    return Decision(findings=tuple(located), subjects=decision.subjects, notes=decision.notes)


def _review_required(engine: Engine) -> list[str]:
    """The policies whose review block applies to the plan."""
    return [
        c.policy.name
        for c in engine.compiled
        if c.policy.spec.review is not None and c.policy.spec.match.terraform is not None
    ]


def review_summary(
    decision: Decision,
    engine: Engine,
    plan_address: str,
    recorder: RecordingReview,
    attestations: Sequence[Path],
) -> str:
    """One phrase for the summary line: not required, passed (who approved, in
    which attestation), or why not."""
    required = _review_required(engine)
    if not required:
        return "not required"
    failed = [f for f in decision.findings if f.rule == "review" and f.address == plan_address]
    if not failed:
        names = envelope_names((read_envelope(p), str(p)) for p in attestations)
        outcomes = [(p, o) for (a, p), o in recorder.outcomes.items() if a == plan_address]
        return f"passed: {passed_phrase(outcomes, names)}" if outcomes else "passed"
    first = failed[0]
    word = "unknown" if first.result is Result.unknown else "failed"
    if first.result is Result.error:
        word = "error"
    reason = first.reasons[0] if first.reasons else first.message
    return f"{word}: {reason}"


def tf_config_command(args: argparse.Namespace) -> int:
    quiet = Console.of(args).quiet
    outputs = parse_outputs(args.format, args.output, quiet=quiet)
    policies = load_policies(args.policies, args.exceptions)
    config = _hcl_config().config_input(args.directory)
    engine = Engine(
        policies=policies.policies,
        exceptions=policies.exceptions,
        enforcement=Action.warn if args.warn_only else Action.deny,
        # Without a plan, what cannot be known is reported, never a failure.
        unknown_action=Action.warn,
    )
    decision = engine.decide(config.subjects, notes=config.notes)
    decision = config.settle(decision, Action.warn)
    context = ReportContext(
        command="guard tf-config",
        source=config.source,
        notes=decision.notes,
        review="checked on the plan (guard tf-plan)",
        unknown_values=config.unknown_values,
        exceptions=applied_exceptions(decision, policies.exceptions),
        warn_only=args.warn_only,
        subjects=config.resources,
    )
    write_reports(decision, context, outputs, quiet=quiet)
    return EXIT_OK if decision.allowed else EXIT_DENIED
