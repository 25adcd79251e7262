"""Bounded waiting on a forge: rate limits and server errors.

A CI job must neither hammer a forge that says "wait" nor hang on one:
a rate limit is waited out when the forge says for how long (``Retry-After``
or the reset time) and the wait fits the budget; a 5xx or a dropped
connection is retried a few times with growing pauses. Past that, the run
fails with one line. ``sleep`` is a module attribute so that tests record
the waits instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from controller.forge.errors import ForgeError

T = TypeVar("T")

sleep: Callable[[float], None] = time.sleep

# The longest a run waits in all for one forge, and for one rate limit.
MAX_TOTAL_WAIT = 120.0
SERVER_RETRIES = 3
SERVER_PAUSE = 2.0


class RetryLater(ForgeError):
    """Raised by a call that may succeed if tried again after ``seconds``."""

    def __init__(self, seconds: float, why: str, *, rate_limited: bool) -> None:
        super().__init__(why)
        self.seconds = seconds
        self.why = why
        self.rate_limited = rate_limited


@dataclass
class Budget:
    """What is left to wait for one forge during one run."""

    total: float = MAX_TOTAL_WAIT
    server_retries: int = SERVER_RETRIES
    waited: float = 0.0

    def call(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried within the budget while it raises ``RetryLater``."""
        failures = 0
        while True:
            try:
                return attempt()
            except RetryLater as later:
                if later.rate_limited:
                    wait = max(later.seconds, 0.0)
                    if self.waited + wait > self.total:
                        raise ForgeError(
                            f"{what}: {later.why}; the forge asks to wait {wait:.0f} s, more "
                            f"than guard waits ({self.total:.0f} s in all): re-run later or use "
                            "a token with a higher rate limit"
                        ) from None
                else:
                    failures += 1
                    if failures > self.server_retries:
                        raise ForgeError(
                            f"{what}: {later.why} ({failures} attempts): the forge is failing; "
                            "re-run later"
                        ) from None
                    wait = later.seconds if later.seconds > 0 else SERVER_PAUSE * failures
                    wait = min(wait, max(self.total - self.waited, 0.0))
                sleep(wait)
                self.waited += wait
