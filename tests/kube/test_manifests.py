"""Manifests offline: judged exactly as the webhook judges the same request.

``guard kube check`` and the webhook build the subject with the same
``decide.subject_of`` and the same controller identities, so the same input
gets the same decision: a manifest played as a controller's request skips
only the checks that age, and inherits break-glass, on both sides.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError
from controller.kube import decide
from controller.kube.envelopes import IndexedEnvelope, gather, index_entries
from controller.kube.manifests import Manifest, check_manifests, manifests
from controller.kube.request import parse_review
from controller.kube.settings import DEFAULT_CONTROLLER_IDENTITIES
from controller.kube.state import FileInputs, PolicySet, build_policy_set
from controller.policy.documents import Action
from controller.policy.results import Requester
from tests.kube.helpers import (
    CONTROLLER_USER,
    DEPLOYER,
    GLASS_POLICIES,
    ONCALL_PRINCIPAL,
    UNATTESTED,
    WEB,
    Cast,
    admission_review,
    break_glass,
    envelope,
    expired_envelope,
    oncall_trust,
    workload,
    write_documents,
)

IDENTITIES = frozenset(DEFAULT_CONTROLLER_IDENTITIES)
Verdict = tuple[bool, set[tuple[str, str, bool]]]


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture()
def policies(tmp_path: Path, cast: Cast) -> PolicySet:
    files = FileInputs.load(
        [write_documents(tmp_path / "p.yaml", GLASS_POLICIES)],
        [write_documents(tmp_path / "t.yaml", [oncall_trust(cast)])],
    )
    return build_policy_set(files, (), enforcement=Action.deny)


def _index(texts: list[str]) -> dict[str, list[IndexedEnvelope]]:
    index: dict[str, list[IndexedEnvelope]] = {}
    for position, text in enumerate(texts):
        entries, problem = index_entries(text, f"file {position}")
        assert problem is None
        for digest, entry in entries.items():
            index.setdefault(digest, []).append(entry)
    return index


def _verdict(allowed: bool, findings: Any) -> Verdict:
    return allowed, {(f.policy, f.rule, f.waiver is not None) for f in findings}


def _webhook(policies: PolicySet, obj: dict[str, Any], user: str, texts: list[str]) -> Verdict:
    request = parse_review(admission_review(obj, user=user, groups=[], dry_run=True))
    subject = decide.subject_of(request, controller_identities=IDENTITIES, trust=policies.trust)
    digests = [a.digest for a in subject.artifacts if a.digest is not None]
    candidates = gather(digests, _index(texts), [], namespace=request.namespace)
    reviewer = decide.reviewer_for(policies, candidates, now=lambda: dt.datetime.now(dt.UTC))
    result = decide.judge(request, policies, reviewer, subject=subject)
    assert result.decision is not None
    return _verdict(result.allowed, result.decision.findings)


def _check(policies: PolicySet, obj: dict[str, Any], user: str, texts: list[str]) -> Verdict:
    decision, skipped = check_manifests(
        [Manifest(obj, "m.yaml", 1)],
        policies,
        _index(texts),
        Requester(username=user),
        controller_identities=IDENTITIES,
    )
    assert skipped == 0
    return _verdict(decision.allowed, decision.findings)


def _scenarios(cast: Cast) -> list[tuple[str, dict[str, Any], str, list[str], bool]]:
    unattested_digest = UNATTESTED.split("@", 1)[1]
    glass = break_glass("pager 4711")
    return [
        ("reviewed, by a person", workload("Deployment", "web", "prod", WEB), DEPLOYER,
         [envelope(cast.ci)], True),
        ("expired, by a person", workload("Deployment", "web", "prod", WEB), DEPLOYER,
         [expired_envelope(cast.ci)], False),
        ("expired, by a controller", workload("ReplicaSet", "web", "prod", WEB), CONTROLLER_USER,
         [expired_envelope(cast.ci)], True),
        ("break-glass inherited by a controller",
         workload("ReplicaSet", "web", "glass", UNATTESTED, annotations=glass),
         CONTROLLER_USER, [], True),
        ("break-glass by someone not listed",
         workload("Deployment", "web", "glass", UNATTESTED, annotations=glass),
         DEPLOYER, [envelope(cast.ci, [unattested_digest])], False),
        ("break-glass by the on-call principal",
         workload("Deployment", "web", "glass", UNATTESTED, annotations=glass),
         ONCALL_PRINCIPAL, [], True),
    ]  # fmt: skip


def test_kube_check_decides_like_the_webhook(policies: PolicySet, cast: Cast) -> None:
    for name, obj, user, texts, allowed in _scenarios(cast):
        webhook = _webhook(policies, obj, user, texts)
        offline = _check(policies, obj, user, texts)
        assert webhook == offline, name
        assert webhook[0] is allowed, (name, webhook)


def test_manifests_are_read_strictly() -> None:
    with pytest.raises(InputError, match=r"m\.yaml \(document 1\):3: duplicate key 'kind'"):
        manifests("apiVersion: v1\nkind: Pod\nkind: Service\n", "m.yaml")
    with pytest.raises(InputError, match=r"m\.yaml:2: not valid YAML"):
        manifests("a: 1\n b: [\n", "m.yaml")
