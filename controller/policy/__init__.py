"""Policy documents, loading, CEL compilation and evaluation.

Knows nothing of Kubernetes clients, Kopf or Terraform: those sides build
subjects and hand them to the engine.
"""
