"""Terraform side: plan JSON, binary plans and HCL into subjects."""
