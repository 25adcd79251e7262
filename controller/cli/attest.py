"""``guard attest review|sign|verify``.

Exit codes: 0 verified, 1 rejected, 2 bad input (a malformed envelope, key,
trust or policy file is bad input, reported in one line). The trust is
never defaulted: without ``--trust`` nothing verifies, and the example keys
are never picked up implicitly.

Its size is the flags, help and examples of three commands that share their
key, envelope and output handling; the attestation logic itself lives in
``controller.attest``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from controller.attest import dsse
from controller.attest.chain import ChainVerifier
from controller.attest.checks import Deployer
from controller.attest.files import is_resource, read_envelope, resource_text
from controller.attest.keys import PrivateKey, load_private_key
from controller.attest.review import EnvelopeList
from controller.attest.statement import (
    ChangeReview,
    StatementError,
    build_statement,
    new_review,
    normalize_digest,
    normalize_revision,
    parse_statement,
    utc,
)
from controller.attest.trust import load_trust
from controller.attest.verify import Circumstances, Requirements, Verifier
from controller.cli.catalog import help_for
from controller.cli.evidence import envelope_names
from controller.cli.forge import FORGE_ANSWERS, add_forge_options, forge_predicate
from controller.cli.options import (
    ATTESTATION_SUFFIXES,
    EXIT_DENIED,
    EXIT_OK,
    Commands,
    Console,
    add_command,
    add_group,
    add_report_options,
    add_trust_option,
    attestation_files,
)
from controller.errors import InputError
from controller.policy.documents import parse_duration
from controller.policy.loader import load_bundle
from controller.report.output import parse_outputs, write_outputs
from controller.strict import StrictJSONError, load_json_or_yaml

PASSWORD_ENV = "GUARD_KEY_PASSWORD"
DEFAULT_EXPIRY = "30d"
VERIFY_FORMATS = ("text", "json")
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    sub = add_group(
        commands,
        "attest",
        help=help_for("attest"),
        description="Make a signed change-review attestation (CI, after the merge), add a "
        "reviewer's signature to it, and verify it as admission and tf-plan do.",
        examples=[
            (
                "verify the demo attestation",
                "guard attest verify examples/attestations/app-reviewed.json "
                f"--trust examples/keys/demo-trust.yaml --digest {_EXAMPLE_DIGEST}",
            )
        ],
        dest="attest_command",
    )
    _register_review(sub)
    _register_sign(sub)
    _register_verify(sub)


_EXAMPLE_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _register_review(sub: Commands[argparse.ArgumentParser]) -> None:
    review = add_command(
        sub,
        "review",
        help="build and sign a change-review attestation",
        description="Build an in-toto statement with the change-review predicate read from "
        "the forge (--from github|gitlab), from flags or from --input, sign it with the "
        "attester key and write the DSSE envelope. Unlike the report commands, -o/--output "
        "here names the envelope file. CI runs this after the merge; a developer never holds "
        "the attester key.",
        examples=[
            (
                "CI attests an image after the merge of change 42",
                "guard attest review --key ci-attester.key --repository github.com/acme/shop "
                "--target-ref refs/heads/main --revision 9f2c4e1 --change-id 42 "
                "--author alice=github:1001 --approval carol=github:1003 "
                f"--digest ghcr.io/acme/shop@{_EXAMPLE_DIGEST} -o shop.intoto.json",
            ),
            (
                "CI on GitHub: the review of the merged change behind the pushed commit, "
                "read from GitHub (GITHUB_TOKEN)",
                "guard attest review --from github --repository acme/shop --commit $GITHUB_SHA "
                f"--key ci-attester.key --digest ghcr.io/acme/shop@{_EXAMPLE_DIGEST} "
                "-o shop.intoto.json",
            ),
            (
                "a Terraform plan file, the predicate from a file",
                "guard attest review --key ci-attester.key --input predicate.yaml "
                "--subject-file plan.bin -o plan.intoto.json",
            ),
        ],
    )
    review.add_argument("--key", required=True, metavar="FILE", help="the attester's private key")
    review.add_argument(
        "--password-env",
        metavar="VAR",
        help=f"read the key's password from $VAR (default: ${PASSWORD_ENV}, else a prompt "
        "on a terminal)",
    )
    review.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="where to write the envelope (- for standard output)",
    )
    review.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="[NAME@]sha256:HEX",
        help="a subject: an image digest (repeatable)",
    )
    review.add_argument(
        "--subject-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a subject: the sha256 of a file, e.g. a binary Terraform plan (repeatable)",
    )
    review.add_argument(
        "--subject-commit",
        action="append",
        default=[],
        metavar="SHA",
        help="a subject: a source commit (40 or 64 hex), for images whose build provenance "
        "names it (repeatable)",
    )
    review.add_argument(
        "--input", metavar="FILE", help="the whole predicate as JSON or YAML, instead of flags"
    )
    group = review.add_argument_group("predicate (instead of --input)")
    group.add_argument("--repository", metavar="REPO", help="e.g. github.com/acme/shop")
    group.add_argument("--revision", metavar="COMMIT", help="the built git commit")
    group.add_argument("--tree", metavar="TREE", help="the built git tree")
    group.add_argument(
        "--target-ref", metavar="REF", help="the branch merged into, e.g. refs/heads/main"
    )
    group.add_argument(
        "--change-system", metavar="SYSTEM", help="the code review system (default: github)"
    )
    group.add_argument("--change-id", metavar="ID", help="the change (pull request) id")
    group.add_argument("--change-uri", metavar="URI", help="the change's web address")
    group.add_argument(
        "--head-revision",
        metavar="COMMIT",
        help="the last revision reviewed (default: --revision)",
    )
    group.add_argument(
        "--author",
        action="append",
        default=[],
        metavar="LOGIN=ID",
        help="an author of the change (repeatable; ID is immutable, e.g. github:1001)",
    )
    group.add_argument(
        "--bot-author",
        action="append",
        default=[],
        metavar="LOGIN=ID",
        help="an author that is a bot (repeatable)",
    )
    group.add_argument(
        "--approval",
        action="append",
        default=[],
        metavar="LOGIN=ID",
        help="a reviewer who approved the head revision (repeatable)",
    )
    group.add_argument(
        "--bot-approval",
        action="append",
        default=[],
        metavar="LOGIN=ID",
        help="an approval by a bot (repeatable; counts only where a policy allows bots)",
    )
    group.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME=pass|fail|skip[:VALUE[/THRESHOLD]]",
        help="a CI check and its result (repeatable), e.g. coverage=pass:87/80",
    )
    add_forge_options(review)
    review.add_argument(
        "--resource",
        metavar="NAME",
        help="write a ReviewAttestation document named NAME (for kubectl apply) instead of JSON",
    )
    review.add_argument(
        "--attester", metavar="NAME", help="attester name (default: the key file's name)"
    )
    review.add_argument(
        "--expires-in",
        default=None,
        metavar="DURATION",
        help=f"how long the attestation is valid, e.g. 7d or 12h (default: {DEFAULT_EXPIRY})",
    )
    review.set_defaults(handler=_review)


def _register_sign(sub: Commands[argparse.ArgumentParser]) -> None:
    sign = add_command(
        sub,
        "sign",
        help="add a signature to an envelope (a reviewer co-signing with a person key)",
        description="Add a signature to an existing envelope: a reviewer co-signs with their "
        "person key, which counts as their approval (never if they are an author). Unlike the "
        "report commands, -o/--output here names the envelope file.",
        examples=[
            ("bob co-signs in place", "guard attest sign app.intoto.json --key bob.key"),
            (
                "write the co-signed envelope elsewhere",
                "guard attest sign app.intoto.json --key bob.key -o app.cosigned.json",
            ),
        ],
    )
    sign.add_argument("envelope", metavar="ENVELOPE", help="the envelope (or ReviewAttestation)")
    sign.add_argument("--key", required=True, metavar="FILE", help="the signer's private key")
    sign.add_argument(
        "--password-env",
        metavar="VAR",
        help=f"read the key's password from $VAR (default: ${PASSWORD_ENV}, else a prompt "
        "on a terminal)",
    )
    sign.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the signed envelope (default: rewrite ENVELOPE)",
    )
    sign.set_defaults(handler=_sign)


def _register_verify(sub: Commands[argparse.ArgumentParser]) -> None:
    verify = add_command(
        sub,
        "verify",
        help="verify envelopes for a digest; print the verdict and every reason",
        description="Verify review attestations for one artifact as admission and tf-plan "
        "do, and print the verdict with every reason. Exit 0 verified, 1 rejected, 2 bad "
        "input.",
        examples=[
            (
                "against a policy's review block",
                "guard attest verify examples/attestations/app-reviewed.json "
                "--trust examples/keys/demo-trust.yaml --policy policies/review.yaml "
                f"--digest {_EXAMPLE_DIGEST}",
            ),
            (
                "a folder of attestations for a plan file, as JSON",
                "guard attest verify attestations/ --trust trust.yaml --subject-file plan.bin "
                "--format json",
            ),
        ],
    )
    verify.add_argument(
        "envelopes",
        nargs="+",
        type=Path,
        metavar="ENVELOPE",
        help="envelope or ReviewAttestation files, or folders of them",
    )
    add_trust_option(verify, required=True)
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("--digest", metavar="sha256:HEX", help="the artifact's digest")
    target.add_argument(
        "--subject-file", metavar="FILE", help="the artifact: a file, by its sha256"
    )
    target.add_argument(
        "--subject-commit", metavar="SHA", help="a source commit: verify the reviews of it"
    )
    verify.add_argument(
        "--policy",
        metavar="FILE",
        help="check this policy's review block (default: any trusted attester, one "
        "independent approval)",
    )
    verify.add_argument(
        "--policy-name",
        metavar="NAME",
        help="which policy of --policy, when it has several review blocks",
    )
    verify.add_argument(
        "--deployer", metavar="USER", help="who deploys, to apply the deployer rules"
    )
    verify.add_argument(
        "--deployer-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group of --deployer (repeatable)",
    )
    add_report_options(verify, VERIFY_FORMATS, what="verdict")
    verify.set_defaults(handler=_verify)


# --------------------------------------------------------------------------- helpers


def _password_source(var: str | None) -> Any:
    """A callable asked only when a key turns out to be encrypted."""

    def ask() -> bytes | None:
        if var:
            value = os.environ.get(var)
            if not value:
                raise InputError(f"--password-env {var}: the variable is not set")
            return value.encode()
        value = os.environ.get(PASSWORD_ENV)
        if value:
            return value.encode()
        if sys.stdin.isatty():
            return getpass.getpass("key password: ").encode()
        return None

    return ask


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None


def _load_key(path: str, password_env: str | None) -> PrivateKey:
    return load_private_key(_read(path, "key"), path, _password_source(password_env))


def _file_digest(path: str) -> str:
    return dsse.sha256_digest(_read(path, "subject file"))


def _digest_arg(value: str) -> tuple[str, str]:
    """``[NAME@]sha256:HEX`` → (name, digest)."""
    name, _, digest = value.rpartition("@")
    try:
        return name, normalize_digest(digest)
    except StatementError as exc:
        raise InputError(f"--digest: {exc}") from None


def _commit_arg(value: str) -> str:
    """``--subject-commit SHA`` → ``gitCommit:sha``."""
    try:
        return normalize_revision(value)
    except StatementError as exc:
        raise InputError(f"--subject-commit: {exc}") from None


def _write(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.write(data.decode("utf-8") + "\n")
        return
    try:
        Path(path).write_bytes(data + b"\n")
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror}") from None


def _resource_name(path: str) -> str:
    documents = load_json_or_yaml(_read(path, "envelope").decode("utf-8"))
    name = (documents.get("metadata") or {}).get("name") if isinstance(documents, dict) else None
    if not isinstance(name, str) or not name:
        raise InputError(f"{path}: the ReviewAttestation has no metadata.name")
    return name


def _parse(raw: bytes, path: str) -> dsse.Envelope:
    try:
        return dsse.parse(raw)
    except dsse.EnvelopeError as exc:
        raise InputError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- review


def _people(values: list[str], kind: str, flag: str) -> list[dict[str, str]]:
    people = []
    for value in values:
        login, sep, identity = value.partition("=")
        if not sep or not login or not identity:
            raise InputError(f"{flag} {value!r}: use LOGIN=ID, e.g. alice=github:1001")
        people.append({"id": identity, "login": login, "kind": kind})
    return people


def _checks(values: list[str]) -> list[dict[str, Any]]:
    checks = []
    for value in values:
        name, sep, rest = value.partition("=")
        result, _, numbers = rest.partition(":")
        if not sep or not name or result not in ("pass", "fail", "skip"):
            raise InputError(f"--check {value!r}: use NAME=pass|fail|skip[:VALUE[/THRESHOLD]]")
        check: dict[str, Any] = {"name": name, "result": result}
        if numbers:
            measured, _, threshold = numbers.partition("/")
            try:
                check["value"] = float(measured)
                if threshold:
                    check["threshold"] = float(threshold)
            except ValueError:
                raise InputError(
                    f"--check {value!r}: VALUE and THRESHOLD must be numbers"
                ) from None
        checks.append(check)
    return checks


# The predicate's flags: the ones a forge answers, and those that also
# shape a read from the forge.
_PREDICATE_FLAGS = ("repository", "target_ref", *FORGE_ANSWERS, "check")


def _predicate_from_flags(args: argparse.Namespace, now: dt.datetime) -> dict[str, Any]:
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("repository", "revision", "target_ref", "change_id")
        if not getattr(args, name)
    ]
    if not (args.author or args.bot_author):
        missing.append("--author")
    if missing:
        raise InputError(f"attest review needs {', '.join(missing)} (or --input FILE)")
    head = args.head_revision or args.revision
    approvals = [
        {"reviewer": person, "reviewedRevision": head, "approvedAt": utc(now)}
        for person in _people(args.approval, "human", "--approval")
        + _people(args.bot_approval, "bot", "--bot-approval")
    ]
    revision = {"gitCommit": args.revision}
    if args.tree:
        revision["gitTree"] = args.tree
    change = {"system": args.change_system or "github", "id": args.change_id, "headRevision": head}
    if args.change_uri:
        change["uri"] = args.change_uri
    return {
        "repository": args.repository,
        "revision": revision,
        "targetRef": args.target_ref,
        "change": change,
        "authors": _people(args.author, "human", "--author")
        + _people(args.bot_author, "bot", "--bot-author"),
        "approvals": approvals,
        "checks": _checks(args.check),
    }


def _predicate(args: argparse.Namespace, now: dt.datetime) -> ChangeReview:
    if args.forge:
        data = forge_predicate(args, now, _checks(args.check))
    elif args.input:
        used = [f"--{n.replace('_', '-')}" for n in _PREDICATE_FLAGS if getattr(args, n)]
        if used:
            raise InputError(f"--input gives the whole predicate; drop {', '.join(used)}")
        try:
            data = load_json_or_yaml(_read(args.input, "predicate").decode("utf-8"))
        except (StrictJSONError, UnicodeDecodeError) as exc:
            raise InputError(f"{args.input}: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{args.input}: the predicate must be a mapping")
    else:
        data = _predicate_from_flags(args, now)
    try:
        expires_in = parse_duration(args.expires_in or DEFAULT_EXPIRY)
    except ValueError as exc:
        raise InputError(f"--expires-in: {exc}") from None
    data.setdefault("attester", args.attester or Path(args.key).stem)
    data.setdefault("attestedAt", utc(now))
    data.setdefault("expiresAt", utc(now + expires_in))
    # Refuses what could never count as written: an author approving, a
    # short ref, an id without its system, an expiry before the attestation.
    return new_review(data, args.input or (f"--from {args.forge}" if args.forge else "flags"))


def _review(args: argparse.Namespace) -> int:
    if args.resource and not _RESOURCE_NAME.match(args.resource):
        raise InputError(f"--resource {args.resource!r}: use lower-case letters, digits, '-', '.'")
    subjects = [_digest_arg(d) for d in args.digest]
    subjects += [(Path(f).name, _file_digest(f)) for f in args.subject_file]
    subjects += [("", _commit_arg(c)) for c in args.subject_commit]
    if not subjects:
        raise InputError(
            "attest review needs --digest sha256:HEX, --subject-file FILE or --subject-commit SHA"
        )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    predicate = _predicate(args, now)
    key = _load_key(args.key, args.password_env)
    payload = build_statement(subjects, predicate)
    message = dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, payload)
    signature = dsse.Signature(sig=key.sign(message), keyid=key.keyid)
    envelope = dsse.build(dsse.IN_TOTO_PAYLOAD_TYPE, payload, [signature])
    text = envelope.to_json()
    _write(args.output, resource_text(args.resource, text) if args.resource else text)
    if args.output != "-":
        Console.of(args).info(f"wrote {args.output} ({envelope.digest})")
    return 0


# --------------------------------------------------------------------------- sign


def _sign(args: argparse.Namespace) -> int:
    envelope = _parse(read_envelope(args.envelope), args.envelope)
    key = _load_key(args.key, args.password_env)
    message = envelope.pae()
    if any(key.public.verify(s.sig, message) for s in envelope.signatures):
        raise InputError(f"{args.envelope}: already signed by this key ({key.keyid[:16]})")
    if len(envelope.signatures) >= dsse.MAX_SIGNATURES:
        raise InputError(f"{args.envelope}: already has {dsse.MAX_SIGNATURES} signatures")
    try:
        statement = parse_statement(envelope.payload)
        review = statement.change_review()
        summary = (
            f"change {review.change.id} of {review.repository} into {review.target_ref} at "
            f"head revision {review.change.head_revision}"
        )
    except StatementError as exc:
        summary = f"a payload that is not a change review ({exc})"
    signature = dsse.Signature(sig=key.sign(message), keyid=key.keyid)
    signed = dsse.build(envelope.payload_type, envelope.payload, [*envelope.signatures, signature])
    output = args.output or args.envelope
    text = signed.to_json()
    if is_resource(args.envelope):
        text = resource_text(_resource_name(args.envelope), text)
    _write(output, text)
    Console.of(args).info(f"signed {summary}; wrote {output}")
    return 0


# --------------------------------------------------------------------------- verify


def _requirements(args: argparse.Namespace) -> tuple[Requirements, str]:
    if not args.policy:
        if args.policy_name:
            raise InputError("--policy-name needs --policy FILE")
        return Requirements.baseline(), (
            "no --policy: any trusted attester, one independent approval; repository, "
            "targetRef and required checks not checked"
        )
    bundle = load_bundle(args.policy)
    reviewed = [p for p in bundle.policies if p.spec.review is not None]
    if args.policy_name:
        reviewed = [p for p in reviewed if p.name == args.policy_name]
        if not reviewed:
            raise InputError(f"{args.policy}: no policy {args.policy_name!r} with a review block")
    if not reviewed:
        raise InputError(f"{args.policy}: no GuardPolicy with a review block")
    if len(reviewed) > 1:
        names = ", ".join(p.name for p in reviewed)
        raise InputError(
            f"{args.policy}: several policies have a review block ({names}): "
            "choose one with --policy-name"
        )
    policy = reviewed[0]
    assert policy.spec.review is not None
    return Requirements.from_review(policy.spec.review), f"policy {policy.name!r}"


def _verify(args: argparse.Namespace) -> int:
    console = Console.of(args)
    outputs = parse_outputs(args.format, args.output, VERIFY_FORMATS, quiet=console.quiet)
    trust = load_trust(args.trust)
    requirements, scope = _requirements(args)
    if args.subject_commit:
        digest = _commit_arg(args.subject_commit)
    else:
        digest = _digest_arg(args.digest)[1] if args.digest else _file_digest(args.subject_file)
    paths = attestation_files(args.envelopes, flag=None)
    if not paths:
        raise InputError(
            f"{', '.join(map(str, args.envelopes))}: no envelope files "
            f"({', '.join(ATTESTATION_SUFFIXES)})"
        )
    envelopes = [read_envelope(path) for path in paths]
    if len(envelopes) == 1:
        _parse(envelopes[0], str(paths[0]))  # a single malformed envelope is bad input
    deployer = Deployer(args.deployer, tuple(args.deployer_group)) if args.deployer else None
    circumstances = Circumstances(now=dt.datetime.now(dt.UTC), deployer=deployer)
    if requirements.provenance is not None and not args.subject_commit:
        # The chain: the artifact's build provenance, then the review of its commit.
        source = EnvelopeList(envelopes)
        verdict = ChainVerifier(Verifier(trust)).verify(
            digest, source.for_digest, requirements, circumstances
        )
    else:
        verdict = Verifier(trust).verify(digest, envelopes, requirements, circumstances)
    names = envelope_names(zip(envelopes, map(str, paths), strict=True))
    accepted = names.get(verdict.accepted, verdict.accepted) if verdict.accepted else None

    def render(name: str, colour: bool) -> str:
        if name == "json":
            document = {
                "verified": verdict.ok,
                "digest": digest,
                "scope": scope,
                "envelope": accepted,
                "approvers": list(verdict.approvers),
                "reasons": list(verdict.reasons),
            }
            if verdict.chain:
                document["chain"] = {k: names.get(v, v) for k, v in verdict.chain}
            return json.dumps(document, indent=2) + "\n"
        if verdict.ok:
            approvers = ", ".join(verdict.approvers) or "nobody"
            # The chain: which provenance named which commit.
            links = dict(verdict.chain)
            built = (
                f"  built from {links['commit']} (provenance {names.get(p, p)})\n"
                if (p := links.get("provenance"))
                else ""
            )
            if "sourceSummary" in links:
                used = (
                    f"  source verification summary {accepted} (the source platform's settings "
                    "stand in for named approvals)\n"
                )
            else:
                used = f"  envelope {accepted}, approved by {approvers}\n"
            return f"verified: {digest} ({scope})\n{built}{used}"
        return f"rejected: {digest} ({scope})\n" + "".join(
            f"  - {reason}\n" for reason in verdict.reasons
        )

    summary = f"{'verified' if verdict.ok else 'rejected'}: {digest}"
    write_outputs(render, outputs, summary=summary, quiet=console.quiet)
    return EXIT_OK if verdict.ok else EXIT_DENIED
