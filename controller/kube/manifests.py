"""``guard kube check``: manifests through the admission decision, offline.

Every workload in the input (multi-document YAML, ``List`` objects, ``helm
template`` output) is played as a CREATE by ``--user`` and judged by the same
``decide.judge`` the webhook uses, with envelopes from ``--attestation`` files
and from the objects' own annotations. Objects guard does not judge are counted
and skipped, as the webhook's rules would never send them.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.errors import InputError
from controller.kube import decide
from controller.kube.envelopes import IndexedEnvelope, annotation_envelopes, gather, index_entries
from controller.kube.request import WORKLOADS, AdmissionRequest
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from controller.kube.state import PolicySet
from controller.policy.results import Decision, Finding, Requester
from controller.policy.reviewer import ReviewEvaluator
from controller.strict import (
    StrictJSONError,
    YAMLDocumentError,
    load_json_or_yaml,
    read_yaml_documents,
)

_KINDS = {w.kind: w for w in WORKLOADS if w.sub_resource is None}
MAX_INPUT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object from the input, with where it starts."""

    obj: Mapping[str, Any]
    source: str
    line: int


def read_text(path: str) -> tuple[str, str]:
    """The input's text and a name for it (``-`` is stdin)."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8"), path
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def manifests(text: str, source: str) -> list[Manifest]:
    """Every object of a multi-document YAML text, Lists flattened, read by
    the same strict reader as policies (a duplicate key is an input error)."""
    try:
        documents = read_yaml_documents(text, source)
    except YAMLDocumentError as exc:
        raise InputError(str(exc)) from None
    found: list[Manifest] = []
    for document in documents:
        found.extend(_flatten(document.data, document.node, source))
    return found


def _flatten(obj: Any, node: yaml.Node, source: str) -> Iterator[Manifest]:
    line = node.start_mark.line + 1
    if obj is None:
        return
    if not isinstance(obj, Mapping):
        raise InputError(f"{source}:{line}: a manifest must be a mapping (an object)")
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        items_node = next(
            (v for k, v in getattr(node, "value", []) if getattr(k, "value", None) == "items"),
            None,
        )
        for position, item in enumerate(obj["items"]):
            item_node = node
            if isinstance(items_node, yaml.SequenceNode) and position < len(items_node.value):
                item_node = items_node.value[position]
            yield from _flatten(item, item_node, source)
        return
    yield Manifest(obj, source, line)


def read_attestations(files: Sequence[Path]) -> dict[str, list[IndexedEnvelope]]:
    """Envelope files and ReviewAttestation documents, by claimed digest."""
    index: dict[str, list[IndexedEnvelope]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
        for envelope_text, source in _envelopes_in(text, str(path)):
            entries, problem = index_entries(envelope_text, source)
            if problem is not None:
                raise InputError(f"{source}: not a usable attestation: {problem}")
            for digest, entry in entries.items():
                index.setdefault(digest, []).append(entry)
    return index


def _envelopes_in(text: str, source: str) -> Iterator[tuple[str, str]]:
    stripped = text.lstrip()
    if stripped.startswith("{") and '"payloadType"' in text:
        yield text, source
        return
    for position, document in enumerate(text.split("\n---")):
        try:
            data = load_json_or_yaml(document)
        except StrictJSONError as exc:
            raise InputError(f"{source}: {exc}") from None
        if data is None:
            continue
        if not isinstance(data, Mapping) or data.get("kind") != "ReviewAttestation":
            raise InputError(
                f"{source} (document {position + 1}): expected a DSSE envelope or a "
                "ReviewAttestation"
            )
        envelope = (data.get("spec") or {}).get("envelope")
        if not isinstance(envelope, str):
            raise InputError(f"{source} (document {position + 1}): spec.envelope must be text")
        name = (data.get("metadata") or {}).get("name", "")
        yield envelope, f"{source} ReviewAttestation {name}"


def check_manifests(
    items: Sequence[Manifest],
    policies: PolicySet,
    attestations: Mapping[str, Sequence[IndexedEnvelope]],
    requester: Requester,
    *,
    controller_identities: frozenset[str] = frozenset(DEFAULT_CONTROLLER_IDENTITIES),
    now: dt.datetime | None = None,
    wrap_review: Callable[[ReviewEvaluator], ReviewEvaluator] | None = None,
) -> tuple[Decision, int]:
    """Judge every workload; returns the combined decision and how many were skipped.

    Each is built and judged exactly as the webhook does (``decide``), with
    the same controller identities, so a manifest passes here only where the
    cluster would admit it. ``wrap_review`` wraps each workload's review
    evaluator (the CLI records who approved, for its summary).
    """
    findings: list[Finding] = []
    notes: list[str] = []
    judged = 0
    skipped = 0
    moment = now or dt.datetime.now(dt.UTC)
    for position, item in enumerate(items):
        obj = item.obj
        workload = _KINDS.get(str(obj.get("kind")))
        api_version = str(obj.get("apiVersion", ""))
        expected = f"{workload.group}/{workload.version}" if workload and workload.group else "v1"
        if workload is None or api_version != expected:
            skipped += 1
            continue
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
        assert isinstance(metadata, Mapping)
        request = AdmissionRequest(
            api_version="admission.k8s.io/v1",
            uid=f"check-{position + 1}",
            group=workload.group,
            version=workload.version,
            kind=workload.kind,
            resource=workload.resource,
            sub_resource=None,
            name=str(metadata.get("name") or metadata.get("generateName") or "(unnamed)"),
            namespace=str(metadata.get("namespace") or "default"),
            operation="CREATE",
            requester=requester,
            dry_run=True,
            object=obj,
            old_object=None,
        )
        subject = decide.subject_of(
            request,
            controller_identities=controller_identities,
            trust=policies.trust,
            location=item.source,
            line=item.line,
        )
        reviewer: ReviewEvaluator | None = None
        if decide.needs_review(policies, subject):
            digests = [a.digest for a in subject.artifacts if a.digest is not None]
            inline, problems = annotation_envelopes(workload.kind, obj)
            notes.extend(f"{subject.address}: {p}" for p in problems)
            candidates = gather(digests, attestations, inline)
            reviewer = decide.reviewer_for(policies, candidates, now=lambda: moment)
            if wrap_review is not None:
                reviewer = wrap_review(reviewer)
        result = decide.judge(request, policies, reviewer, subject=subject)
        judged += 1
        if result.decision is not None:
            findings.extend(result.decision.findings)
            notes.extend(n for n in result.decision.notes if n not in notes)
    if skipped:
        notes.append(f"{skipped} object(s) skipped: guard judges only workloads")
    return Decision.of(findings, subjects=judged, notes=notes), skipped
