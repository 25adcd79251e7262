"""Policies, exceptions and trust in force: mounted files plus custom resources.

The files (a ConfigMap or Secret mounted into the pod) are read once at
start-up and must be valid: a bad file stops the server with a clear error.
Custom resources come and go while the server runs; a bad one is reported
(its status, the log, and a note on every decision it could have judged)
and never silently switches enforcement off: a policy whose rules fail to
compile still denies what it matches, with the compile error as the reason.
Compilation happens once per change of the inputs, never per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.attest.trust import Trust
from controller.errors import InputError
from controller.policy.baseline import GuardBaseline
from controller.policy.documents import (
    Action,
    GuardException,
    GuardPolicy,
    GuardTrust,
    GuardTrustSpec,
)
from controller.policy.engine import Engine, PolicyError, compile_policy
from controller.policy.invalid import InvalidPolicy, invalid_policy
from controller.policy.loader import Bundle, iter_files, load_bundle
from controller.policy.problems import validation_problems

logger = logging.getLogger(__name__)

GUARD_KINDS = ("GuardPolicy", "GuardTrust", "GuardException")
_MODELS: dict[
    str, type[GuardPolicy] | type[GuardTrust] | type[GuardException] | type[GuardBaseline]
] = {
    "GuardPolicy": GuardPolicy,
    "GuardTrust": GuardTrust,
    "GuardException": GuardException,
    # Indexed on its own (``guard_baselines``): it never reaches the policy set.
    "GuardBaseline": GuardBaseline,
}


@dataclass(frozen=True)
class ResourceEntry:
    """One guard custom resource as the operator's index holds it.

    ``fingerprint`` changes exactly when the document changes, so the
    compiled state is rebuilt on edits and not on status updates.
    """

    kind: str
    name: str
    fingerprint: str
    document: GuardPolicy | GuardTrust | GuardException | GuardBaseline | None
    error: str | None = None
    # The object's uid, so Events about it show in ``kubectl describe``.
    uid: str = ""
    # A GuardPolicy that did not validate: its stand-in judges as an error.
    invalid: InvalidPolicy | None = None

    @property
    def enforced_as_error(self) -> bool:
        """Whether this broken resource still judges (as an error) or not at all."""
        return self.error is not None and (
            self.invalid is not None or isinstance(self.document, GuardPolicy)
        )

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def entry_from_body(kind: str, body: Mapping[str, Any]) -> ResourceEntry:
    """Validate a custom resource's body into a document, or record why not."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = str(metadata.get("name") or "")
    uid = str(metadata.get("uid") or "")
    spec = body.get("spec")
    # The uid is part of the fingerprint: a deleted and recreated resource is new.
    canonical = json.dumps({"name": name, "uid": uid, "spec": spec}, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    raw = {
        "apiVersion": body.get("apiVersion"),
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        document = _MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        problem = validation_problems(_MODELS[kind], exc)
        return _invalid_entry(kind, name, fingerprint, problem, uid, body)
    except Exception as exc:  # a validator that breaks must not drop the resource
        problem = f"cannot be validated: {exc or type(exc).__name__}"
        return _invalid_entry(kind, name, fingerprint, problem, uid, body)
    if isinstance(document, GuardPolicy):
        try:
            compile_policy(document)
        except PolicyError as exc:
            return ResourceEntry(kind, name, fingerprint, document, str(exc), uid)
    return ResourceEntry(kind, name, fingerprint, document, None, uid)


def _invalid_entry(
    kind: str, name: str, fingerprint: str, problem: str, uid: str, body: Mapping[str, Any]
) -> ResourceEntry:
    """A resource that did not validate; a GuardPolicy keeps judging, as an error."""
    invalid = invalid_policy(body, problem) if kind == "GuardPolicy" else None
    return ResourceEntry(kind, name, fingerprint, None, problem, uid, invalid)


@dataclass(frozen=True)
class FileInputs:
    """What the mounted files hold; read once, at start-up."""

    policies: tuple[GuardPolicy, ...] = ()
    exceptions: tuple[GuardException, ...] = ()
    trust_specs: tuple[tuple[GuardTrustSpec, str], ...] = ()
    baselines: tuple[GuardBaseline, ...] = ()

    @classmethod
    def load(cls, policy_paths: Sequence[Path], trust_paths: Sequence[Path]) -> FileInputs:
        bundle = load_bundle(*policy_paths) if policy_paths else Bundle.of([])
        if bundle.trusts:
            raise InputError(
                f"{policy_paths[0]}: GuardTrust documents belong in --trust files, not --policies"
            )
        specs: list[tuple[GuardTrustSpec, str]] = []
        for path in trust_paths:
            trust_bundle = load_bundle(path)
            others = len(trust_bundle.policies) + len(trust_bundle.exceptions)
            # An empty folder is the chart's default (a Secret with no keys):
            # review then fails closed until a GuardTrust exists. A file, or
            # a folder with anything else in it, must hold trust.
            empty_folder = Path(path).is_dir() and not iter_files(Path(path))
            if others or (not trust_bundle.trusts and not empty_folder):
                raise InputError(f"{path}: expected only GuardTrust documents")
            for trust in trust_bundle.trusts:
                specs.append((trust.spec, f"{path} GuardTrust {trust.name}"))
        # Refuse conflicting trust files now, not on the first request.
        Trust.from_specs(specs)
        return cls(bundle.policies, bundle.exceptions, tuple(specs), bundle.baselines)


@dataclass(frozen=True)
class PolicySet:
    """Everything one admission is judged by, compiled and ready.

    ``problems`` maps a broken custom resource's label to why it is broken,
    for statuses and logs. ``unenforced`` says, for every decision's notes,
    which resources could not be used at all (a policy that fails only to
    compile is still enforced, as an error, so it is not listed there).
    """

    engine: Engine
    trust: Trust
    policies: tuple[GuardPolicy, ...]
    problems: Mapping[str, str] = field(default_factory=dict)
    unenforced: tuple[str, ...] = ()
    # sha256 of the policies and exceptions in force, and of the trust in
    # force, for the audit record: an auditor can tell which rules judged.
    policy_digest: str = ""
    trust_digest: str = ""
    # GuardPolicy name -> uid, for the policies that are custom resources.
    policy_uids: Mapping[str, str] = field(default_factory=dict)
    # ``decide.made_from`` by subject shape. It lives as long as this set:
    # other policies or another trust make another PolicySet.
    made_from_memo: dict[tuple[Any, ...], tuple[GuardPolicy, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def broken_policies(self) -> tuple[PolicyError, ...]:
        return self.engine.broken


def build_policy_set(
    files: FileInputs,
    entries: Iterable[ResourceEntry],
    *,
    enforcement: Action,
    today: Callable[[], dt.date] | None = None,
) -> PolicySet:
    """The policy set in force; ``today`` is the clock exceptions expire by
    (default: the wall clock)."""
    policies = list(files.policies)
    exceptions = list(files.exceptions)
    trust_specs = list(files.trust_specs)
    problems: dict[str, str] = {}
    unenforced: list[str] = []
    uids: dict[str, str] = {}
    invalid: list[InvalidPolicy] = []
    trust = Trust.from_specs(trust_specs)
    for entry in sorted(entries, key=lambda e: (e.kind, e.name)):
        document = entry.document
        if entry.invalid is not None:
            problems[entry.label] = entry.error or "invalid"
            invalid.append(entry.invalid)
            if entry.uid:
                uids[entry.invalid.name] = entry.uid
            continue
        if document is None:
            problems[entry.label] = entry.error or "invalid"
            unenforced.append(f"{entry.label} is invalid and not enforced: {entry.error}")
            continue
        if isinstance(document, GuardPolicy):
            policies.append(document)
            if entry.uid:
                uids[document.name] = entry.uid
            if entry.error:
                problems[entry.label] = entry.error
        elif isinstance(document, GuardException):
            exceptions.append(document)
        elif isinstance(document, GuardBaseline):
            continue  # judged by ``kube.inherit``, not by the engine
        else:
            candidate = [*trust_specs, (document.spec, entry.label)]
            try:
                trust = Trust.from_specs(candidate)
            except InputError as exc:
                problems[entry.label] = f"not used: {exc}"
                unenforced.append(f"{entry.label} is not used: {exc}")
                continue
            trust_specs = candidate
    engine = Engine(
        policies=policies,
        exceptions=exceptions,
        enforcement=enforcement,
        skip_broken=True,
        invalid=invalid,
        clock=today,
    )
    return PolicySet(
        engine=engine,
        trust=trust,
        policies=tuple(policies),
        problems=problems,
        unenforced=tuple(unenforced),
        policy_digest=documents_digest([*policies, *exceptions]),
        trust_digest=documents_digest([spec for spec, _source in trust_specs]),
        policy_uids=uids,
    )


def documents_digest(documents: Sequence[BaseModel]) -> str:
    """``sha256:<hex>`` of documents in a canonical form (order-independent).

    Computed from the validated models, so two bundles that differ only in
    comments, key order or file layout have the same digest, and any change
    that could alter a verdict changes it.
    """
    canonical = sorted(
        json.dumps(d.model_dump(mode="json", by_alias=True), sort_keys=True) for d in documents
    )
    text = json.dumps(canonical, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class PolicyCache:
    """Rebuilds the PolicySet only when an input changed (by fingerprint).

    Called from the event loop (admission) and from Kopf's worker threads
    (the status handlers, which are synchronous). The inputs' key and the set
    built from them are kept as one pair, replaced in one assignment, and a
    caller always gets the set built from its own entries: a build finishing
    on another thread can neither be handed to this caller nor leave the
    cache holding one caller's set under another's key.
    """

    def __init__(
        self,
        files: FileInputs,
        enforcement: Action,
        today: Callable[[], dt.date] | None = None,
    ) -> None:
        self._files = files
        self._enforcement = enforcement
        self._today = today
        self._state: tuple[tuple[tuple[str, str, str], ...], PolicySet] | None = None
        self._lock = threading.Lock()
        self.builds = 0

    @property
    def current(self) -> PolicySet | None:
        """The policy set built last (None before the first request)."""
        state = self._state
        return state[1] if state is not None else None

    def get(self, entries: Iterable[ResourceEntry]) -> PolicySet:
        ordered = sorted(entries, key=lambda e: (e.kind, e.name, e.fingerprint))
        key = tuple((e.kind, e.name, e.fingerprint) for e in ordered)
        state = self._state
        if state is not None and state[0] == key:
            return state[1]
        policies = build_policy_set(
            self._files, ordered, enforcement=self._enforcement, today=self._today
        )
        self._state = (key, policies)
        with self._lock:
            self.builds += 1
        for label, problem in sorted(policies.problems.items()):
            logger.error("%s is broken: %s", label, problem)
        return policies
