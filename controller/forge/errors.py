"""The one error the forge readers raise."""

from __future__ import annotations

from controller.errors import InputError


class ForgeError(InputError):
    """The forge could not give a complete, trustworthy account of the
    change: a missing token or scope, a rate limit past the bounded wait, a
    change that is not merged, a list cut short. Exit 2, one line."""


class Refused(ForgeError):
    """The forge refused one request (401, 403, 404...); some readers can
    carry on without the fact and record that it is missing."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
