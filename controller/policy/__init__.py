"""Policy documents, loading, CEL compilation and evaluation.

Knows nothing of Kubernetes clients, Kopf, Terraform or attestations: the
sides build subjects and hand them to the engine, and the review of a
``review`` block is whatever implements ``reviewer.ReviewEvaluator``.

- ``documents``: the pydantic models; ``loader``: files into documents;
  ``crds``: the CustomResourceDefinitions generated from the models.
- ``results``: subjects, requesters, findings, waivers, decisions.
- ``engine``: compile once, evaluate many; ``_readpaths``: what a rule reads;
  ``variables``: the CEL variables contract (pod specs included);
  ``matching``: which policies and exceptions apply; ``unknowns``: the
  probes for values known after apply; ``celenv``: the CEL environment.
- ``reviewer``: the review protocol the engine calls.
- ``testing``: GuardPolicyTest cases; ``bundled``: where the default bundle lives.
"""
