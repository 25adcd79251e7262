# A resource that a later change stops managing with a `removed` block
# (lifecycle { destroy = false }): the plan shows it as "forget".
resource "terraform_data" "legacy" {
  input = {
    owner = "platform"
  }
}
