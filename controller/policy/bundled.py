"""Where the default policy bundle lives."""

from __future__ import annotations

import os
from pathlib import Path

# Where the container image installs the bundle (see the Dockerfile).
INSTALLED_POLICIES = Path("/usr/share/guard/policies")


def bundled_policies_path() -> Path:
    """The default bundle: ``$GUARD_POLICIES_DIR``, the source checkout's
    ``policies/`` folder, or the image's installed copy, in that order."""
    override = os.environ.get("GUARD_POLICIES_DIR")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[2] / "policies"
    if checkout.is_dir():
        return checkout
    return INSTALLED_POLICIES
