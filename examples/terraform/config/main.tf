# A real configuration that plans offline: only Terraform's built-in
# terraform_data resource, count, for_each and a local module. The inputs
# mimic the attributes of cloud resources so the same policies apply.

terraform {
  required_version = ">= 1.7"
}

variable "environments" {
  description = "One network per environment."
  type        = list(string)
  default     = ["staging", "production"]
}

variable "db_version" {
  description = "Changing it replaces the database (see triggers_replace)."
  type        = string
  default     = "15"
}

variable "db_password" {
  description = "Demo value only; real secrets come from a secret store."
  type        = string
  sensitive   = true
  default     = "example-only-not-a-secret"
}

locals {
  owner     = "platform"
  open_cidr = "0.0.0.0/0"
}

resource "terraform_data" "network" {
  for_each = toset(var.environments)

  input = {
    name         = each.key
    ingress_cidr = each.key == "staging" ? local.open_cidr : "10.0.0.0/8"
    ingress_port = 22
    owner        = local.owner
  }
}

resource "terraform_data" "worker" {
  count = 2

  input = {
    index = count.index
    # Known only after apply: the network's id.
    network = terraform_data.network["production"].id
    owner   = local.owner
  }
}

module "database" {
  source = "./modules/database"

  engine_version = var.db_version
  password       = var.db_password
  protected      = true
  owner          = local.owner
}
