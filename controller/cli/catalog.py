"""Every top-level ``guard`` command: its name, its one-line help and the
module that registers it.

The top-level parser lists every command from here without importing the
command modules: they pull in what their commands run (the pydantic models,
the CEL library, the forge and Kubernetes clients), and a command should load
only its own. The modules take their one-line help from here too, so it is
written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # the controller.cli module whose ``register`` adds it
    help: str


# In the order ``guard --help`` lists them. A module that registers two
# commands adds both at once, so its commands stand next to each other.
COMMANDS: tuple[Command, ...] = (
    Command("policy", "controller.cli.policy", "lint and test policy documents"),
    Command(
        "keygen",
        "controller.cli.keygen",
        "make a signing key pair (NAME.key, mode 0600, and NAME.pub)",
    ),
    Command("attest", "controller.cli.attest", "create, co-sign and verify review attestations"),
    Command(
        "tf-plan",
        "controller.cli.terraform",
        "check a Terraform plan against the policies (exit 0, 1 or 2)",
    ),
    Command(
        "tf-config",
        "controller.cli.terraform",
        "check Terraform .tf files before a plan exists (exit 0, 1 or 2)",
    ),
    Command(
        "serve",
        "controller.cli.kube",
        "run the admission webhook (the Kopf operator) in a cluster",
    ),
    Command("kube", "controller.cli.kube", "Kubernetes manifests, offline"),
)

_BY_NAME = {command.name: command for command in COMMANDS}


def help_for(name: str) -> str:
    """The one-line help ``guard --help`` shows for the command ``name``."""
    return _BY_NAME[name].help


def requested(argv: Sequence[str]) -> Command | None:
    """The command ``argv`` names: its first word that is not an option (the
    top level's only options, ``-h`` and ``--version``, take no value), or
    None when there is none or it names no command."""
    for word in argv:
        if not word.startswith("-"):
            return _BY_NAME.get(word)
    return None
