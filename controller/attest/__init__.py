"""DSSE / in-toto review attestations: keys, signing, verification, separation of duties.

Imports nothing from Kubernetes, Kopf or Terraform code.
"""
