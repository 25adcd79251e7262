"""DSSE / in-toto review attestations: keys, signing, verification, separation of duties.

May read policy documents and results (``controller.policy.documents``,
``.results``, the review protocol); imports nothing from Kubernetes, Kopf,
Terraform or the CLI. One job per module:

- ``dsse``: envelopes (strict parsing, PAE, limits); ``files``: envelope files
  and the ReviewAttestation form.
- ``statement``: in-toto Statement v1/v0.1 and the change-review predicate.
- ``keys``: ECDSA P-256, Ed25519, RSA; PEM, PKCS#8 and cosign key files.
- ``trust``: GuardTrust -> trusted keys and the identity map.
- ``checks``: the review requirement as small composable checks.
- ``verify``: one digest against one requirement; the signature cache.
- ``review``: ``AttestationReview``, the evaluator the policy engine calls.
"""
