"""The one error root. The CLI catches ``GuardError``, prints one line and exits 2.

Every error guard raises on purpose derives from ``GuardError``; bad input
(a file, a flag, a document, a key, an envelope, a plan) is an
``InputError``. Anything else that escapes is a bug, and the layer that owns
a fail-closed decision (the engine for a review evaluator, the webhook for a
request) turns it into a denial rather than letting it pass.

Messages quote the input they refuse (an address, a name, a field), and
input can hold line breaks and other control characters. An error is one
line whatever it quotes: a reader (or a log parser) must never see a second
line that the input wrote.
"""

from __future__ import annotations

import re

# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class GuardError(Exception):
    """Every error guard raises deliberately; its message is always one line."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class InputError(GuardError):
    """Bad input (file, flag, document, key, envelope, plan): exit code 2, never a traceback."""
