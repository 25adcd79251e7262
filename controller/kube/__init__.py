"""Kubernetes side: workloads and AdmissionReviews into subjects, admission decisions.

- ``request``: AdmissionReview parsing; ``subjects``: workloads into subjects.
- ``decide``: the decision (one engine call, plus upstream review and
  break-glass); ``result``: the one structured answer; ``wording``: denial
  messages and warnings; ``record``: the audit record.
- ``breakglass``, ``envelopes``, ``fallback``: governed break-glass, where
  attestations come from, the bounded API read when the index misses.
- ``state``: the policies and trust in force; ``runtime``: what outlives one
  request; ``webhook``: the HTTPS server; ``service``: the ``guard serve``
  process (it takes the operator's handlers from its caller).
- ``audit``, ``events``, ``metrics``, ``readiness``, ``probes``: evidence and
  operations. ``manifests``: ``guard kube check``'s input, judged like the webhook.
"""
