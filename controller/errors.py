"""The one error root. The CLI catches ``GuardError``, prints one line and exits 2.

Every error guard raises on purpose derives from ``GuardError``; bad input
(a file, a flag, a document, a key, an envelope, a plan) is an
``InputError``. Anything else that escapes is a bug, and the layer that owns
a fail-closed decision (the engine for a review evaluator, the webhook for a
request) turns it into a denial rather than letting it pass.
"""

from __future__ import annotations


class GuardError(Exception):
    """Every error guard raises deliberately."""


class InputError(GuardError):
    """Bad input (file, flag, document, key, envelope, plan): exit code 2, never a traceback."""
