"""Named value sets the chart is rendered with, and a throwaway CA for the
existing-Secret mode. Each covers one documented way to install guard."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KUBE_VERSIONS = ("1.28.0", "1.31.0", "1.32.0", "1.33.0")


@functools.lru_cache(maxsize=1)
def throwaway_ca_pem() -> str:
    """A CA certificate made for the test run (no key material in the repository)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@functools.lru_cache(maxsize=1)
def throwaway_public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def scenarios() -> dict[str, dict[str, Any]]:
    return {
        "defaults": {},
        "cert-manager": {"certificates": {"mode": "certManager"}},
        "cert-manager-issuer": {
            "certificates": {
                "mode": "certManager",
                "certManager": {
                    "namespace": "certs",
                    "issuerRef": {
                        "name": "corp-ca",
                        "kind": "ClusterIssuer",
                        "group": "cert-manager.io",
                    },
                },
            }
        },
        "existing-secret": {
            "certificates": {
                "mode": "secret",
                "secret": {"name": "guard-serving", "caBundle": throwaway_ca_pem()},
            }
        },
        "warn": {"enforcement": "warn"},
        "reports": {"enforcement": "audit", "reports": {"enabled": True, "installCRDs": True}},
        "reports-wgpolicy": {"reports": {"enabled": True, "installCRDs": True, "api": "wgpolicy"}},
        "audit": {"enforcement": "audit"},
        "ignore-users": {"webhook": {"failurePolicy": "Ignore"}},
        "replicas-1": {"replicaCount": 1},
        "replicas-3": {"replicaCount": 3, "priorityClassName": "system-cluster-critical"},
        "exclusions": {
            "webhook": {
                "excludedNamespaces": ["legacy", "sandbox", "kube-system"],
                "optOutLabel": "example.com/no-guard",
                "timeoutSeconds": 3,
            }
        },
        "no-controller-identities": {"webhook": {"controllerIdentities": []}},
        "everything": {
            "image": {"tag": "1.2.3", "digest": "sha256:" + "ab" * 32},
            "imagePullSecrets": ["registry-credentials"],
            "trust": {
                "keys": [
                    {
                        "name": "ci-attester",
                        "publicKey": throwaway_public_key_pem(),
                        "role": "attester",
                    },
                    {
                        "name": "alice",
                        "publicKey": throwaway_public_key_pem(),
                        "role": "person",
                        "principal": "github:1001",
                    },
                ],
                "principals": [{"id": "github:1001", "aliases": ["kubernetes:alice"]}],
                "existingSecret": "more-trust",
            },
            "policies": {
                "extra": {
                    "team-labels.yaml": (
                        "apiVersion: guard.dev/v1alpha1\nkind: GuardException\n"
                        "metadata: {name: legacy-app}\nspec:\n  policy: require-owner\n"
                        "  target: legacy/app\n  reason: migration\n  owner: platform\n"
                        "  expires: 2030-01-01\n"
                    )
                }
            },
            "auditLog": {"enabled": True},
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
            "serviceAccount": {
                "name": "guard-operator",
                "annotations": {"example.com/role": "guard"},
            },
            "podLabels": {"team": "platform"},
            "podAnnotations": {"example.com/scrape": "true"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/arch",
                                        "operator": "In",
                                        "values": ["amd64"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "fullnameOverride": "policy-guard",
        },
    }
