"""Terraform side: plan JSON, binary plans and HCL into subjects.

``inputs`` gives both kinds of input one shape (``TerraformInput``):
``planfile`` and ``normalize`` read plans, ``config`` and ``hcl`` read ``.tf``
files, ``review`` checks the plan file's review attestation, ``lines``
locates findings in the plan JSON.
"""
