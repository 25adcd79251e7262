"""DSSE / in-toto review attestations: keys, signing, verification, separation of duties.

Imports nothing from Kubernetes, Kopf or Terraform code. One job per module:

- ``dsse``: envelopes (strict parsing, PAE, limits); ``strictjson``: JSON/YAML
  without duplicate keys; ``files``: envelope files and ReviewAttestation form.
- ``statement``: in-toto Statement v1/v0.1 and the change-review predicate.
- ``keys``: ECDSA P-256, Ed25519, RSA; PEM, PKCS#8 and cosign key files.
- ``trust``: GuardTrust → trusted keys and the identity map.
- ``checks``: the review requirement as small composable checks.
- ``verify``: one digest against one requirement; the signature cache.
- ``enforce``: ``AttestationReview``, the evaluator the policy engine calls.
- ``commands``: ``guard keygen`` and ``guard attest review|sign|verify``.
"""
