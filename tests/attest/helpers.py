"""Builders for attestation tests: keys, predicates, envelopes, trust, policies.

Every scenario starts from one valid attestation and changes one thing, so a
test shows exactly which check rejects it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.attest import dsse
from controller.attest.keys import PrivateKey, generate
from controller.attest.statement import CHANGE_REVIEW_PREDICATE, STATEMENT_V1, utc
from controller.policy.documents import GuardPolicy, GuardTrustSpec, Target
from controller.policy.results import Artifact, Requester, Subject

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
REPOSITORY = "github.com/acme/shop"
TARGET_REF = "refs/heads/main"
IMAGE = "registry.example/acme/shop"
DIGEST = "sha256:" + hashlib.sha256(b"shop image v1").hexdigest()
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"someone else's image").hexdigest()
HEAD = "4f1c2e9d0a7b"
BUILT = "9e8d7c6b5a41"


@dataclass(frozen=True)
class Keys:
    """The cast: a CI attester, an author's laptop attester key, person keys,
    and a stranger nobody trusts."""

    ci: PrivateKey
    laptop: PrivateKey  # an attester key that belongs to author alice
    alice: PrivateKey  # author
    bob: PrivateKey  # reviewer
    carol: PrivateKey  # reviewer
    stranger: PrivateKey

    @classmethod
    def make(cls) -> Keys:
        return cls(
            ci=generate("ecdsa"),
            laptop=generate("ed25519"),
            alice=generate("ecdsa"),
            bob=generate("ed25519"),
            carol=generate("ecdsa"),
            stranger=generate("ecdsa"),
        )


def person(login: str, identity: str, kind: str = "human") -> dict[str, str]:
    return {"id": identity, "login": login, "kind": kind}


def approval(
    login: str,
    identity: str,
    revision: str = HEAD,
    kind: str = "human",
    approved_at: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "reviewer": person(login, identity, kind),
        "reviewedRevision": revision,
        "approvedAt": utc(approved_at or NOW - dt.timedelta(hours=2)),
    }


def predicate(**overrides: Any) -> dict[str, Any]:
    """A valid change review: alice wrote it, bob approved the head revision."""
    base: dict[str, Any] = {
        "repository": REPOSITORY,
        "revision": {"gitCommit": BUILT, "gitTree": "t1"},
        "targetRef": TARGET_REF,
        "change": {"system": "github", "id": "42", "headRevision": HEAD},
        "authors": [person("alice", "github:1001")],
        "approvals": [approval("bob", "github:1002")],
        "checks": [
            {"name": "unit-tests", "result": "pass"},
            {"name": "coverage", "result": "pass", "value": 85, "threshold": 80},
        ],
        "attester": "ci",
        "attestedAt": utc(NOW - dt.timedelta(hours=1)),
        "expiresAt": utc(NOW + dt.timedelta(days=30)),
    }
    result = copy.deepcopy(base)
    result.update(overrides)
    return result


def statement(
    pred: Mapping[str, Any] | None = None,
    digests: Sequence[str] = (DIGEST,),
    predicate_type: str = CHANGE_REVIEW_PREDICATE,
) -> bytes:
    document = {
        "_type": STATEMENT_V1,
        "subject": [
            {"name": IMAGE, "digest": {"sha256": d.removeprefix("sha256:")}} for d in digests
        ],
        "predicateType": predicate_type,
        "predicate": dict(pred if pred is not None else predicate()),
    }
    return json.dumps(document).encode()


def signed(
    payload: bytes,
    *signers: PrivateKey,
    payload_type: str = dsse.IN_TOTO_PAYLOAD_TYPE,
    keyids: Sequence[str] | None = None,
) -> list[dsse.Signature]:
    message = dsse.pae(payload_type, payload)
    ids = keyids if keyids is not None else [k.keyid for k in signers]
    return [dsse.Signature(sig=k.sign(message), keyid=i) for k, i in zip(signers, ids, strict=True)]


def envelope(
    payload: bytes | None = None,
    signers: Sequence[PrivateKey] = (),
    payload_type: str = dsse.IN_TOTO_PAYLOAD_TYPE,
    signatures: Sequence[dsse.Signature] | None = None,
) -> bytes:
    body = payload if payload is not None else statement()
    sigs = (
        signatures if signatures is not None else signed(body, *signers, payload_type=payload_type)
    )
    return dsse.serialize(payload_type, body, sigs)


def trust_spec(keys: Keys) -> GuardTrustSpec:
    def entry(
        name: str, key: PrivateKey, role: str, principal: str | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "publicKey": key.public.pem(), "role": role}
        if principal:
            data["principal"] = principal
        return data

    return GuardTrustSpec.model_validate(
        {
            "keys": [
                entry("ci", keys.ci, "attester"),
                entry("laptop", keys.laptop, "attester", "github:1001"),
                entry("alice", keys.alice, "person", "github:1001"),
                entry("bob", keys.bob, "person", "github:1002"),
                entry("carol", keys.carol, "person", "github:1003"),
            ],
            "principals": [
                {
                    "id": "github:1001",
                    "aliases": [
                        "gitlab:77",
                        "email:alice@acme.example",
                        "kubernetes:alice@acme.example",
                    ],
                },
                {"id": "github:1002", "aliases": ["email:bob@acme.example", "kubernetes:bob"]},
                {"id": "github:1003", "aliases": ["kubernetes:carol@acme.example"]},
            ],
        }
    )


def review_block(**overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "minApprovals": 1,
        "attesters": ["ci", "laptop"],
        "repositories": [REPOSITORY],
        "targetRefs": [TARGET_REF],
        "maxAge": "7d",
        "requiredChecks": [{"name": "unit-tests"}, {"name": "coverage", "min": 80}],
    }
    block.update(overrides)
    return block


def policy_document(**review: Any) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": "reviewed-changes"},
        "spec": {
            "description": "Every image is reviewed by someone who did not write it.",
            "severity": "critical",
            "action": "deny",
            "match": {"kubernetes": {"kinds": ["Deployment"]}, "terraform": {"types": ["*"]}},
            "review": review_block(**review),
        },
    }


def policy(**review: Any) -> GuardPolicy:
    return GuardPolicy.model_validate(policy_document(**review))


def trust_document(keys: Keys) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardTrust",
        "metadata": {"name": "test"},
        "spec": trust_spec(keys).model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def deployment_subject(
    digest: str | None = DIGEST,
    *,
    username: str = "deployer@acme.example",
    groups: Sequence[str] = ("system:authenticated",),
    introduced: bool = True,
    extra: Sequence[Artifact] = (),
    controller: bool = False,
) -> Subject:
    """A Deployment's subject; ``controller`` marks the requester as a
    Kubernetes controller identity, as the Kubernetes side decides it."""
    reference = f"{IMAGE}@{digest}" if digest else f"{IMAGE}:1.0"
    return Subject(
        target=Target.kubernetes,
        address="Deployment/shop/web",
        kind="Deployment",
        type="Deployment",
        name="web",
        namespace="shop",
        action="create",
        object={"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}},
        requester=Requester(username=username, groups=tuple(groups), controller=controller),
        artifacts=(Artifact(reference=reference, digest=digest, introduced=introduced), *extra),
    )


def plan_subject(digest: str) -> Subject:
    return Subject(
        target=Target.terraform,
        address="plan",
        kind="plan",
        type="plan",
        name="plan",
        namespace=None,
        action="create",
        object=None,
        artifacts=(Artifact(reference="tfplan.bin", digest=digest, kind="plan"),),
    )
