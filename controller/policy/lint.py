"""Domain lint: documents that load, but whose values switch a guardrail off.

Loading refuses what can never be right (an unknown kind, a namespace glob
that can never match). What remains here is valid but suspicious: an
allow-list that accepts everything, a required check that no attestation in
the policy's own test cases carries (a misspelt name denies every deploy,
and nobody notices until production), a trust that maps no Kubernetes user
(so ``deployer.notAuthor`` can prove nothing and denies every deployer). Each
finding is a ``LintMessage`` with a level: ``error`` fails ``guard policy
lint``, ``warning`` is printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from controller.policy.documents import GuardPolicy, GuardPolicyTest, Review
from controller.policy.identity import GROUP_PREFIX, ID_SYSTEMS, KUBERNETES, id_system, suggestion
from controller.policy.loader import Bundle

Level = Literal["warning", "error"]
# The check names an attestation file carries (unverified: lint only reads
# names). The attest side provides it: ``controller.attest.statement.check_names_in_file``.
CheckNames = Callable[[Path], Collection[str]]

# Groups every authenticated user (or every service account) is in.
EVERYONE_GROUPS = frozenset(
    {"system:authenticated", "system:unauthenticated", "system:serviceaccounts"}
)
_ONLY_WILDCARDS = re.compile(r"[*?/]*")


@dataclass(frozen=True)
class LintMessage:
    level: Level
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


def lint_findings(bundle: Bundle, *, check_names: CheckNames | None = None) -> list[LintMessage]:
    """Every domain finding for a loaded bundle, in a stable order.

    ``check_names`` reads an attestation file's check names; without it the
    requiredChecks cross-check is skipped.
    """
    messages: list[LintMessage] = []
    for policy in bundle.policies:
        where = bundle.sources.get(("GuardPolicy", policy.name), policy.name)
        review = policy.spec.review
        if review is None:
            continue
        messages.extend(
            LintMessage("warning", where, f"policy {policy.name!r}: {text}")
            for text in _review_smells(review)
        )
        if check_names is not None and review.required_checks:
            messages.extend(
                LintMessage("warning", where, f"policy {policy.name!r}: {text}")
                for text in _unattested_checks(policy, bundle, check_names)
            )
    messages.extend(_trust_findings(bundle))
    return messages


# --------------------------------------------------------------------------- allow-lists


def _accepts_everything(pattern: str) -> bool:
    return bool(_ONLY_WILDCARDS.fullmatch(pattern)) and "*" in pattern


def _review_smells(review: Review) -> Iterator[str]:
    for pattern in review.repositories:
        if _accepts_everything(pattern):
            yield (
                f"review.repositories {pattern!r} accepts every repository: an attestation "
                "for any repository, reviewed by anyone, counts; name your repositories"
            )
    refs = [("review.targetRefs", p) for p in review.target_refs]
    if review.provenance is not None:
        # A build from any branch names a commit an author could push alone.
        refs += [("review.provenance.refs", p) for p in review.provenance.refs]
        refs += [
            ("review.provenance.github.workflowRefs", p)
            for p in review.provenance.github.workflow_refs
        ]
    for field, pattern in refs:
        rest = pattern.removeprefix("refs/")
        if pattern == "*" or _accepts_everything(rest):
            yield (
                f"{field} {pattern!r} accepts every ref: a change merged into a branch "
                "an author can push alone counts; name protected branches (refs/heads/main)"
            )
        elif rest.startswith("heads/") and _accepts_everything(rest.removeprefix("heads/")):
            yield (
                f"{field} {pattern!r} accepts every branch, including ones an author "
                "can push alone; name protected branches (refs/heads/main)"
            )
    for pattern in review.exempt_images:
        if _accepts_everything(pattern):
            yield (
                f"review.exemptImages {pattern!r} exempts every image: review is off for this "
                "policy; exempt only injected sidecars by name"
            )
    for group in _groups(review.deployer.allowed):
        if group in EVERYONE_GROUPS:
            yield f"review.deployer.allowed group:{group} lets everyone deploy"
    for group in review.break_glass.groups:
        if group in EVERYONE_GROUPS:
            yield f"review.breakGlass.groups {group} lets everyone break glass"
    people = [
        *(e for e in review.deployer.allowed if not e.startswith(GROUP_PREFIX)),
        *review.break_glass.principals,
    ]
    for entry in people:
        hint = _misspelt_id(entry)
        if hint:
            yield (
                f"{entry!r} is read as a Kubernetes username, but looks like an id with a "
                f"misspelt system: did you mean {hint!r}?"
            )


def _groups(entries: Iterable[str]) -> Iterator[str]:
    return (e.removeprefix(GROUP_PREFIX) for e in entries if e.startswith(GROUP_PREFIX))


def _misspelt_id(entry: str) -> str | None:
    """``githib:1001`` -> ``github:1001``: an allow-list entry that is not an id."""
    system, colon, rest = entry.partition(":")
    if not colon or not rest or system in ID_SYSTEMS or system in ("system", "oidc"):
        return None
    nearest = suggestion(system, ID_SYSTEMS)
    if nearest is None or nearest == KUBERNETES:
        return None
    return f"{nearest}:{rest}"


# --------------------------------------------------------------------------- required checks


def _unattested_checks(policy: GuardPolicy, bundle: Bundle, check_names: CheckNames) -> list[str]:
    carried: set[str] = set()
    files = 0
    for loaded in bundle.tests:
        document = loaded.document
        if not isinstance(document, GuardPolicyTest):
            continue
        base = Path(loaded.source).parent
        for case in document.spec.cases:
            if case.policies and policy.name not in case.policies:
                continue
            for attestation in case.attestations:
                files += 1
                carried.update(check_names(base / attestation))
    if not files:
        return [
            "no GuardPolicyTest case of this policy carries an attestation, so the names in "
            "review.requiredChecks are checked against nothing: add a case with one"
        ]
    shown = ", ".join(sorted(carried)) or "none"
    return [
        f"review.requiredChecks {need.name!r} is carried by no attestation in the policy's "
        f"test cases (they carry: {shown}): a misspelt name denies every deployment"
        for need in policy.spec.review.required_checks  # type: ignore[union-attr]
        if need.name not in carried
    ]


# --------------------------------------------------------------------------- trust


def _trust_findings(bundle: Bundle) -> Iterator[LintMessage]:
    mapped = False
    for trust in bundle.trusts:
        where = bundle.sources.get(("GuardTrust", trust.name), trust.name)
        if any(
            id_system(i) == KUBERNETES
            for principal in trust.spec.principals
            for i in (principal.id, *principal.aliases)
        ):
            mapped = True
            continue
        yield LintMessage(
            "warning",
            where,
            f"trust {trust.name!r} maps no Kubernetes user to a principal: a policy with "
            "review.deployer.notAuthor denies every deployer it cannot map; add "
            "kubernetes:USERNAME to each person's aliases",
        )
    if not bundle.trusts or mapped:
        return
    for policy in bundle.policies:
        review = policy.spec.review
        if review is not None and review.deployer.not_author:
            yield LintMessage(
                "warning",
                bundle.sources.get(("GuardPolicy", policy.name), policy.name),
                f"policy {policy.name!r} requires deployer.notAuthor, but no trust maps a "
                "Kubernetes user: every deployer not named in deployer.allowed is denied",
            )
