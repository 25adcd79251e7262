variable "engine_version" {
  type = string
}

variable "password" {
  type      = string
  sensitive = true
}

variable "protected" {
  type    = bool
  default = false
}

variable "owner" {
  type = string
}

resource "terraform_data" "primary" {
  input = {
    engine              = "postgres"
    engine_version      = var.engine_version
    deletion_protection = var.protected
    storage_encrypted   = true
    password            = var.password
    owner               = var.owner
  }

  # A new engine version replaces the database, as for a real RDS instance.
  triggers_replace = var.engine_version
}
