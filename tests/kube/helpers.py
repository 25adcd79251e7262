"""Builders for the Kubernetes-side tests: workloads, AdmissionReviews as
kube-apiserver sends them, signed review envelopes, policies and trust.

Every scenario starts from one valid, attested workload and changes one
thing, so a test shows exactly which check answers.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.attest import dsse
from controller.attest.keys import PrivateKey, generate
from controller.attest.statement import CHANGE_REVIEW_PREDICATE, STATEMENT_V1, utc
from controller.kube.owners import template_digest

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
REPOSITORY = "github.com/acme/web"
TARGET_REF = "refs/heads/main"
IMAGE = "registry.example/acme/web"
HEAD = "4f1c2e9d0a7b"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


WEB_DIGEST = digest_of("web v1")
WEB_V2_DIGEST = digest_of("web v2")
SIDECAR_DIGEST = digest_of("sidecar")
WEB = f"{IMAGE}@{WEB_DIGEST}"
WEB_V2 = f"{IMAGE}@{WEB_V2_DIGEST}"
UNATTESTED = f"{IMAGE}@{digest_of('nobody reviewed this')}"

CONTROLLER_USER = "system:serviceaccount:kube-system:replicaset-controller"
DEPLOYER = "carol@example.com"


# --------------------------------------------------------------------------- keys & envelopes


@dataclass(frozen=True)
class Cast:
    """The CI attester key and a key nobody trusts."""

    ci: PrivateKey
    stranger: PrivateKey

    @classmethod
    def make(cls) -> Cast:
        return cls(ci=generate("ecdsa"), stranger=generate("ecdsa"))

    def trust_document(self) -> dict[str, Any]:
        return {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardTrust",
            "metadata": {"name": "ci"},
            "spec": {
                "keys": [{"name": "ci", "publicKey": self.ci.public.pem(), "role": "attester"}],
                "principals": [],
            },
        }


def predicate(**overrides: Any) -> dict[str, Any]:
    """A valid change review: alice wrote it, bob approved the head revision."""
    base: dict[str, Any] = {
        "repository": REPOSITORY,
        "revision": {"gitCommit": "9e8d7c6b5a41"},
        "targetRef": TARGET_REF,
        "change": {"system": "github", "id": "42", "headRevision": HEAD},
        "authors": [{"id": "github:1001", "login": "alice", "kind": "human"}],
        "approvals": [
            {
                "reviewer": {"id": "github:1002", "login": "bob", "kind": "human"},
                "reviewedRevision": HEAD,
                "approvedAt": utc(NOW - dt.timedelta(hours=2)),
            }
        ],
        "checks": [],
        "attester": "ci",
        "attestedAt": utc(NOW - dt.timedelta(hours=1)),
        "expiresAt": utc(NOW + dt.timedelta(days=30)),
    }
    base.update(copy.deepcopy(overrides))
    return base


def envelope(key: PrivateKey, digests: Sequence[str] = (WEB_DIGEST,), **overrides: Any) -> str:
    """A DSSE envelope's text over a change-review statement, signed by ``key``."""
    statement = {
        "_type": STATEMENT_V1,
        "subject": [
            {"name": IMAGE, "digest": {"sha256": d.removeprefix("sha256:")}} for d in digests
        ],
        "predicateType": CHANGE_REVIEW_PREDICATE,
        "predicate": predicate(**overrides),
    }
    payload = json.dumps(statement).encode()
    signature = dsse.Signature(key.sign(dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, payload)), key.keyid)
    return dsse.build(dsse.IN_TOTO_PAYLOAD_TYPE, payload, [signature]).to_json().decode()


def expired_envelope(key: PrivateKey, digests: Sequence[str] = (WEB_DIGEST,)) -> str:
    return envelope(
        key,
        digests,
        attestedAt=utc(NOW - dt.timedelta(days=40)),
        expiresAt=utc(NOW - dt.timedelta(days=10)),
        approvals=[
            {
                "reviewer": {"id": "github:1002", "login": "bob", "kind": "human"},
                "reviewedRevision": HEAD,
                "approvedAt": utc(NOW - dt.timedelta(days=41)),
            }
        ],
    )


def attestation_resource(name: str, namespace: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "ReviewAttestation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"envelope": text},
    }


# --------------------------------------------------------------------------- policies


REVIEW_POLICY: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "require-review"},
    "spec": {
        "description": "Every image in prod namespaces was reviewed by someone else.",
        "severity": "critical",
        "action": "deny",
        "match": {"kubernetes": {"namespaces": {"include": ["prod*"]}}},
        "review": {
            "attesters": ["ci"],
            "repositories": [REPOSITORY],
            "targetRefs": [TARGET_REF],
            "maxAge": "30d",
            "exemptImages": ["registry.example/mesh/proxy*"],
        },
    },
}

NO_PRIVILEGED: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "no-privileged"},
    "spec": {
        "severity": "high",
        "action": "deny",
        "match": {"kubernetes": {}},
        "rules": [
            {
                "name": "not-privileged",
                "target": "kubernetes",
                "expression": "containers.all(c, !has(c.securityContext) || "
                "!has(c.securityContext.privileged) || c.securityContext.privileged == false)",
                "message": "a container is privileged",
                "fix": "remove securityContext.privileged",
            }
        ],
    },
}

WARN_LATEST: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "team-label"},
    "spec": {
        "severity": "low",
        "action": "warn",
        "match": {"kubernetes": {}},
        "rules": [
            {
                "name": "has-team",
                "target": "kubernetes",
                "expression": "has(object.metadata.labels) && 'team' in object.metadata.labels",
                "message": "the workload has no team label",
                "fix": "add metadata.labels.team",
            }
        ],
    },
}

AUDIT_HOST_NETWORK: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "host-network"},
    "spec": {
        "severity": "medium",
        "action": "audit",
        "match": {"kubernetes": {}},
        "rules": [
            {
                "name": "no-host-network",
                "target": "kubernetes",
                "expression": "!has(podSpec.hostNetwork) || podSpec.hostNetwork == false",
                "message": "the pod uses the host network",
            }
        ],
    },
}

TEST_POLICIES = (REVIEW_POLICY, NO_PRIVILEGED, WARN_LATEST, AUDIT_HOST_NETWORK)

# Break-glass: on-call principal dana (github:1009, alias dana@example.com)
# and the sre-oncall group may bypass review in the glass* namespaces and in
# prod-both, where require-review (which allows no break-glass) applies too.
ONCALL_PRINCIPAL = "github:1009"
ONCALL_ALIAS = "dana@example.com"
ONCALL_GROUP = "sre-oncall"
GLASS_POLICY: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "glass-review"},
    "spec": {
        "severity": "critical",
        "action": "deny",
        "match": {"kubernetes": {"namespaces": {"include": ["glass*", "prod-both"]}}},
        "review": {
            "attesters": ["ci"],
            "repositories": [REPOSITORY],
            "targetRefs": [TARGET_REF],
            "breakGlass": {"principals": [ONCALL_PRINCIPAL], "groups": [ONCALL_GROUP]},
        },
    },
}
GLASS_POLICIES = (*TEST_POLICIES, GLASS_POLICY)


def oncall_trust(cast: Cast) -> dict[str, Any]:
    """The test trust plus the on-call principal and its alias."""
    document = cast.trust_document()
    document["spec"]["principals"] = [
        {"id": ONCALL_PRINCIPAL, "aliases": [f"kubernetes:{ONCALL_ALIAS}"]}
    ]
    return document


def break_glass(reason: str) -> dict[str, str]:
    return {"guard.dev/break-glass": reason}


def write_documents(path: Path, documents: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False))
    return path


# --------------------------------------------------------------------------- workloads


def pod_spec(*images: str, privileged: bool = False, host_network: bool = False) -> dict[str, Any]:
    containers = []
    for position, image in enumerate(images):
        container: dict[str, Any] = {"name": f"c{position}", "image": image}
        if privileged and position == 0:
            container["securityContext"] = {"privileged": True}
        containers.append(container)
    spec: dict[str, Any] = {"containers": containers}
    if host_network:
        spec["hostNetwork"] = True
    return spec


def workload(
    kind: str,
    name: str,
    namespace: str,
    *images: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    privileged: bool = False,
    host_network: bool = False,
) -> dict[str, Any]:
    """A workload of any kind with the same pod spec, as ``kubectl apply`` sends it."""
    labels = dict(labels if labels is not None else {"team": "web"})
    spec = pod_spec(*images, privileged=privileged, host_network=host_network)
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    api_version = {
        "Pod": "v1",
        "ReplicationController": "v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1",
    }.get(kind, "apps/v1")
    body: dict[str, Any]
    if kind == "Pod":
        body = {"spec": spec}
    elif kind == "CronJob":
        body = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}
    elif kind == "Job":
        body = {"spec": {"template": template}}
    elif kind == "ReplicationController":
        body = {"spec": {"replicas": 1, "selector": {"app": name}, "template": template}}
    else:
        body = {
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": template,
            }
        }
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "ReplicationController": ("", "v1", "replicationcontrollers"),
    "Pod": ("", "v1", "pods"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}


def admission_review(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    user: str = DEPLOYER,
    groups: Sequence[str] = ("system:authenticated", "developers"),
    dry_run: bool = False,
    sub_resource: str | None = None,
    kind: str | None = None,
    resource: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` AdmissionReview as kube-apiserver builds it."""
    source = obj if obj is not None else old
    assert source is not None
    kind = kind or str(source["kind"])
    group, version, plural = resource or RESOURCES[kind]
    metadata = source.get("metadata", {})
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace"),
        "operation": operation,
        "userInfo": {"username": user, "uid": f"uid-{user}", "groups": list(groups)},
        "object": copy.deepcopy(dict(obj)) if obj is not None else None,
        "oldObject": copy.deepcopy(dict(old)) if old is not None else None,
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
                operation, "DeleteOptions"
            ),
            "fieldManager": "kubectl-client-side-apply",
        },
    }
    if sub_resource:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


# --------------------------------------------------------------------------- baselines


def owned(
    obj: Mapping[str, Any], owner: Mapping[str, Any] | None, uid: str | None = None
) -> dict[str, Any]:
    """``obj`` with a uid (a fresh one by default), controlled by ``owner``
    (None: no owner), as the API server stores a controller-made object."""
    made = copy.deepcopy(dict(obj))
    made["metadata"]["uid"] = uid or str(uuid.uuid4())
    if owner is not None:
        made["metadata"]["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return made


def baseline_document(
    name: str, owners: Sequence[Mapping[str, Any]], *, expires: str = "2099-01-01"
) -> dict[str, Any]:
    """A GuardBaseline naming ``owners`` as they are now."""
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardBaseline",
        "metadata": {"name": name},
        "spec": {
            "owner": "platform-team",
            "reason": "ran before guard",
            "expires": expires,
            "entries": [
                {
                    "kind": o["kind"],
                    "namespace": o["metadata"]["namespace"],
                    "name": o["metadata"]["name"],
                    "uid": o["metadata"]["uid"],
                    "templateDigest": template_digest(str(o["kind"]), o),
                }
                for o in owners
            ],
        },
    }
