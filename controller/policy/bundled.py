"""Where the default policy bundle lives.

Precedence, for every command: ``--policies`` (handled by the caller, which
asks here only when none was given) > ``$GUARD_POLICIES_DIR`` > the bundle
shipped inside the package (``controller/policy/bundle``, package data in the
wheel; in a checkout, a link to the repository's ``policies/`` folder). The
container image uses the package's bundle too: there is no second copy.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from controller.errors import InputError

ENVIRONMENT_VARIABLE = "GUARD_POLICIES_DIR"
HOW_TO_CHOOSE = f"pass --policies PATH or set {ENVIRONMENT_VARIABLE} to a policy folder"


def packaged_policies_path() -> Path:
    """The bundle inside the installed package (a real folder: the wheel is unpacked)."""
    return Path(str(files("controller.policy").joinpath("bundle")))


def bundled_policies_path() -> Path:
    """The default bundle: ``$GUARD_POLICIES_DIR`` or the package's own.

    A default that does not exist is bad input named in one line with the way
    out, rather than a bare "no such file" from the loader further down.
    """
    override = os.environ.get(ENVIRONMENT_VARIABLE)
    if override:
        path = Path(override)
        if not path.exists():
            raise InputError(
                f"{ENVIRONMENT_VARIABLE}={override}: no such file or folder ({HOW_TO_CHOOSE})"
            )
        return path
    path = packaged_policies_path()
    if not path.is_dir():
        raise InputError(
            f"{path}: the default policy bundle is missing from this installation "
            f"(reinstall guard, or {HOW_TO_CHOOSE})"
        )
    return path
