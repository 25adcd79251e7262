"""Errors a user can act on. The CLI prints them in one line and exits 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (file, flag, document): exit code 2, never a traceback."""
