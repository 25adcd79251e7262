"""Chains from image to review, signed with the tests' own keys.

The build provenance is a real GitHub artifact attestation's predicate
(``data/provenance``, sigstore-js's release build), so the chain's source is
``github.com/sigstore/sigstore-js`` (repository id 495574555) on
``refs/heads/main``. Every scenario starts from the accepted chain (image →
provenance → commit → review) and breaks one link; each has its own image
digest and commit, so scenarios never cover each other.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.attest import dsse
from controller.attest.keys import PrivateKey, generate
from controller.attest.statement import CHANGE_REVIEW_PREDICATE, STATEMENT_V1, utc

FIXTURE = Path(__file__).parent / "data" / "provenance" / "sigstore-js-2.2.0.provenance.json"
REPOSITORY = "github.com/sigstore/sigstore-js"
REPOSITORY_ID = "495574555"
REF = "refs/heads/main"
IMAGE = "ghcr.io/sigstore/sigstore-js"
VSA = "https://slsa.dev/verification_summary/v1"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class ChainKeys:
    """The pinned builder, the CI attester, the source verifier, a builder
    the trust lists but no policy pins, and a key nobody trusts."""

    builder: PrivateKey
    attester: PrivateKey
    verifier: PrivateKey
    other_builder: PrivateKey
    stranger: PrivateKey

    @classmethod
    def make(cls) -> ChainKeys:
        return cls(*(generate("ecdsa") for _ in range(5)))

    def trust_document(self) -> dict[str, Any]:
        def key(name: str, private: PrivateKey, role: str) -> dict[str, str]:
            return {"name": name, "publicKey": private.public.pem(), "role": role}

        return {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardTrust",
            "metadata": {"name": "chain"},
            "spec": {
                "keys": [
                    key("github-builder", self.builder, "builder"),
                    key("ci", self.attester, "attester"),
                    key("source-verifier", self.verifier, "verifier"),
                    key("other-builder", self.other_builder, "builder"),
                ]
            },
        }


def chain_policy(namespaces: tuple[str, ...] = ("chain*",)) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": "built-from-reviewed-commits"},
        "spec": {
            "severity": "critical",
            "action": "deny",
            "match": {"kubernetes": {"namespaces": {"include": list(namespaces)}}},
            "review": {
                "attesters": ["ci"],
                "repositories": [REPOSITORY],
                "targetRefs": [REF],
                "maxAge": "30d",
                "provenance": {
                    "builders": ["github-builder"],
                    "repositories": [{"name": REPOSITORY, "id": REPOSITORY_ID}],
                    "refs": [REF],
                    "github": {"workflows": [".github/workflows/release.yml"]},
                },
                "acceptSourceVSA": {"verifiers": ["source-verifier"]},
            },
        },
    }


def hex_of(text: str, length: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sign(key: PrivateKey, statement: Mapping[str, Any]) -> str:
    payload = json.dumps(statement).encode()
    signature = dsse.Signature(key.sign(dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, payload)), key.keyid)
    return dsse.build(dsse.IN_TOTO_PAYLOAD_TYPE, payload, [signature]).to_json().decode()


def provenance(
    digest: str, commit: str, change: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """The real provenance, for this image digest, built from this commit."""
    statement: dict[str, Any] = json.loads(FIXTURE.read_text())
    statement["subject"] = [{"name": IMAGE, "digest": {"sha256": digest.removeprefix("sha256:")}}]
    dependency = statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]
    dependency["digest"]["gitCommit"] = commit
    if change is not None:
        change(statement["predicate"])
    return statement


def review(commit: str, **overrides: Any) -> dict[str, Any]:
    """A review of the merged commit: alice wrote it, bob approved its head."""
    head = hex_of("head of " + commit, 40)
    predicate: dict[str, Any] = {
        "repository": REPOSITORY,
        "revision": {"gitCommit": commit},
        "targetRef": REF,
        "change": {"system": "github", "id": "1042", "headRevision": head},
        "authors": [{"id": "github:1001", "login": "alice", "kind": "human"}],
        "approvals": [
            {
                "reviewer": {"id": "github:1002", "login": "bob", "kind": "human"},
                "reviewedRevision": head,
                "approvedAt": utc(NOW - dt.timedelta(hours=2)),
            }
        ],
        "attester": "ci",
        "attestedAt": utc(NOW - dt.timedelta(hours=1)),
        "expiresAt": utc(NOW + dt.timedelta(days=30)),
    }
    subject = overrides.pop("subject", commit)
    predicate.update(copy.deepcopy(overrides))
    return {
        "_type": STATEMENT_V1,
        "subject": [{"digest": {"gitCommit": subject}}],
        "predicateType": CHANGE_REVIEW_PREDICATE,
        "predicate": predicate,
    }


def summary(commit: str, **overrides: Any) -> dict[str, Any]:
    """A source verification summary as a source platform publishes it."""
    predicate: dict[str, Any] = {
        "verifier": {"id": "https://source.example/verifier"},
        "timeVerified": utc(NOW - dt.timedelta(hours=1)),
        "resourceUri": f"git+https://{REPOSITORY}",
        "policy": {"uri": "https://source.example/policy"},
        "verificationResult": "PASSED",
        "verifiedLevels": ["SLSA_SOURCE_LEVEL_4"],
        "annotations": {"source_refs": [REF]},
    }
    predicate.update(overrides)
    return {
        "_type": STATEMENT_V1,
        "subject": [{"digest": {"gitCommit": commit}}],
        "predicateType": VSA,
        "predicate": predicate,
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(predicate: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = predicate
        for part in parents:
            node = node[part]
        node[last] = value

    return change


@dataclass(frozen=True)
class Scenario:
    name: str
    reason: str  # what the denial must say; "" for an accepted chain

    @property
    def digest(self) -> str:
        return "sha256:" + hex_of("image of " + self.name)

    @property
    def commit(self) -> str:
        return hex_of("commit of " + self.name, 40)

    @property
    def short(self) -> str:
        return self.commit[:12]

    def envelopes(self, keys: ChainKeys) -> list[str]:
        return BUILD[self.name](self, keys)


def _good(s: Scenario, k: ChainKeys) -> list[str]:
    return [sign(k.builder, provenance(s.digest, s.commit)), sign(k.attester, review(s.commit))]


def _built(change: Callable[[dict[str, Any]], None]) -> Callable[[Scenario, ChainKeys], list[str]]:
    def build(s: Scenario, k: ChainKeys) -> list[str]:
        return [
            sign(k.builder, provenance(s.digest, s.commit, change)),
            sign(k.attester, review(s.commit)),
        ]

    return build


def _dev_branch(predicate: dict[str, Any]) -> None:
    predicate["buildDefinition"]["resolvedDependencies"][0]["uri"] = (
        "git+https://github.com/sigstore/sigstore-js@refs/heads/dev"
    )
    predicate["buildDefinition"]["externalParameters"]["workflow"]["ref"] = "refs/heads/dev"


def _two_sources(predicate: dict[str, Any]) -> None:
    dependencies = predicate["buildDefinition"]["resolvedDependencies"]
    dependencies.append(
        {
            "uri": "git+https://github.com/sigstore/sigstore-js@refs/heads/dev",
            "digest": {"gitCommit": hex_of("another commit", 40)},
        }
    )


def _summary_by(signer: str, **overrides: Any) -> Callable[[Scenario, ChainKeys], list[str]]:
    def build(s: Scenario, k: ChainKeys) -> list[str]:
        return [
            sign(k.builder, provenance(s.digest, s.commit)),
            sign(getattr(k, signer), summary(s.commit, **overrides)),
        ]

    return build


BUILD: dict[str, Callable[[Scenario, ChainKeys], list[str]]] = {
    "accepted": _good,
    "accepted-by-summary": _summary_by("verifier"),
    "unlisted-ref": _built(_dev_branch),
    **{
        f"event-{event}": _built(
            _set("buildDefinition.internalParameters.github.event_name", event)
        )
        for event in ("pull_request", "pull_request_target", "workflow_run", "issue_comment")
    },
    "unpinned-builder": lambda s, k: [
        sign(k.other_builder, provenance(s.digest, s.commit)),
        sign(k.attester, review(s.commit)),
    ],
    "attester-signed-provenance": lambda s, k: [
        sign(k.attester, provenance(s.digest, s.commit)),
        sign(k.attester, review(s.commit)),
    ],
    "fork-repository-id": _built(
        _set("buildDefinition.internalParameters.github.repository_id", "999999999")
    ),
    "two-git-sources": _built(_two_sources),
    "no-review": lambda s, k: [sign(k.builder, provenance(s.digest, s.commit))],
    "review-of-another-commit": lambda s, k: [
        sign(k.builder, provenance(s.digest, s.commit)),
        sign(k.attester, review(hex_of("another commit", 40))),
    ],
    "review-revision-differs": lambda s, k: [
        sign(k.builder, provenance(s.digest, s.commit)),
        sign(k.attester, review(s.commit, revision={"gitCommit": hex_of("head", 40)})),
    ],
    "summary-failed": _summary_by("verifier", verificationResult="FAILED"),
    "summary-lower-level": _summary_by("verifier", verifiedLevels=["SLSA_SOURCE_LEVEL_3"]),
    "summary-wrong-repository": _summary_by(
        "verifier", resourceUri="git+https://github.com/someone/fork"
    ),
    "summary-untrusted-verifier": _summary_by("stranger"),
    "summary-signed-by-builder": _summary_by("builder"),
    "summary-too-old": _summary_by("verifier", timeVerified=utc(NOW - dt.timedelta(days=45))),
}


def scenarios() -> list[Scenario]:
    """Every broken link with the reason its denial must give."""
    events = {
        f"event-{e}": f"was built by a {e} run"
        for e in ("pull_request", "pull_request_target", "workflow_run", "issue_comment")
    }
    reasons = {
        "unlisted-ref": "built from ref refs/heads/dev, not one the policy lists",
        **events,
        "unpinned-builder": "is not signed by a builder the policy pins",
        "attester-signed-provenance": "signed by 'ci' (attester)",
        "fork-repository-id": "built from repository id 999999999",
        "two-git-sources": "names 2 git sources",
        "no-review": "has no accepted review",
        "review-of-another-commit": "has no accepted review",
        "review-revision-differs": "the review's revision.gitCommit is",
        "summary-failed": "has verificationResult 'FAILED', not PASSED",
        "summary-lower-level": "verified SLSA_SOURCE_LEVEL_3, not SLSA_SOURCE_LEVEL_4",
        "summary-wrong-repository": "is about git+https://github.com/someone/fork",
        "summary-untrusted-verifier": "no trusted key verifies this signature",
        "summary-signed-by-builder": "is not signed by a verifier the policy lists",
        "summary-too-old": "is too old",
    }
    return [Scenario(name, reason) for name, reason in reasons.items()]


ACCEPTED = (Scenario("accepted", ""), Scenario("accepted-by-summary", ""))
