"""Who approved, in which attestation: the evidence behind a passing review.

The engine's findings carry only failures, so a passing review would be
silent. The commands wrap the review evaluator they hand the engine in a
:class:`controller.policy.reviewer.RecordingReview` and build the summary's review phrase from the
recorded outcomes: "passed: approved by bob, carol in plan.intoto.json
(require-review)", so a reader of the CI log sees who let the change through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.attest.dsse import sha256_digest
from controller.policy.results import Result
from controller.policy.reviewer import ReviewOutcome


def envelope_names(envelopes: Iterable[tuple[bytes, str]]) -> dict[str, str]:
    """Envelope digest → where the user gave it (a file, a ReviewAttestation).

    The verifier names envelopes by the sha256 of their exact bytes; the
    reader knows them by file name.
    """
    return {sha256_digest(raw): source for raw, source in envelopes}


def _attestations(evidence: Mapping[str, object], names: Mapping[str, str]) -> str:
    accepted = evidence.get("accepted")
    digests = (
        sorted({d for d in accepted.values() if isinstance(d, str)})
        if isinstance(accepted, Mapping)
        else []
    )
    labels = [names.get(d, f"envelope {d.removeprefix('sha256:')[:12]}") for d in digests]
    return f" in {', '.join(labels)}" if labels else ""


def _approvers(evidence: Mapping[str, object]) -> tuple[str, ...]:
    approvers = evidence.get("approvers")
    names: set[str] = set()
    if isinstance(approvers, Mapping):
        for people in approvers.values():
            names.update(p for p in people if isinstance(p, str))
    return tuple(sorted(names))


def approval_phrase(outcome: ReviewOutcome, names: Mapping[str, str]) -> str:
    """ "approved by bob, carol in app.intoto.json" for one passing outcome."""
    evidence = outcome.evidence
    approvers = _approvers(evidence)
    exempted = evidence.get("exempted")
    if not approvers:
        if isinstance(exempted, list) and exempted:
            return f"exempt images only ({', '.join(map(str, exempted))})"
        return "no attestation needed"
    return f"approved by {', '.join(approvers)}{_attestations(evidence, names)}"


def passed_phrase(outcomes: Iterable[tuple[str, ReviewOutcome]], names: Mapping[str, str]) -> str:
    """Each distinct approval once, with the policies it satisfied:
    "approved by carol in plan.intoto.json (require-review)"."""
    policies_by_phrase: dict[str, list[str]] = {}
    for policy, outcome in outcomes:
        if outcome.result is not Result.passed:
            continue
        listed = policies_by_phrase.setdefault(approval_phrase(outcome, names), [])
        if policy not in listed:
            listed.append(policy)
    return ", ".join(
        f"{phrase} ({', '.join(policies)})" for phrase, policies in policies_by_phrase.items()
    )
