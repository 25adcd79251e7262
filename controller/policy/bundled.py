"""Where the default policy bundle lives."""

from __future__ import annotations

from pathlib import Path


def bundled_policies_path() -> Path:
    """The repository's ``policies/`` folder (the CLI's and the chart's default)."""
    return Path(__file__).resolve().parents[2] / "policies"
