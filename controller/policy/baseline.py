"""GuardBaseline: the workloads that may keep running though nobody reviewed them.

Installing guard on a cluster that already runs workloads must not take
them down: once enforcement denies, the Pods of a workload made before guard
could not be recreated after a drain or a crash. A baseline names those
workloads' owners explicitly, with an owner, a reason and an end date, like
a ``GuardException`` in spirit. It is produced by ``guard kube baseline``,
not written by hand: each entry pins the owner by uid and by a digest of its
pod template's security-relevant fields, so an entry stops applying the
moment the owner is re-created or its template changes, and the whole
baseline stops applying at ``expires``.

An entry never admits a person's change that brings in an image: it only
lets what controllers make from the owner's unchanged template through
(see ``controller.kube.inherit``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, Field, model_validator

from controller.policy.documents import (
    DOCUMENT_KINDS,
    NonEmptyStr,
    _date,
    _Document,
    one_of,
)
from controller.policy.strictmodel import Strict

# The kinds whose template controllers make objects from: the owners an entry
# can name. Pods are never owners (what a person made as a Pod is judged).
OwnerKind = Literal[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
]
OWNER_KINDS: tuple[str, ...] = get_args(OwnerKind)

# The API server caps an object at about 1.5 MiB; an entry is a few hundred
# bytes, so one document holds at most this many (``guard kube baseline``
# splits larger baselines into numbered documents).
MAX_ENTRIES = 2000
_DIGEST = r"sha256:[0-9a-f]{64}"
_DIGEST_RE = re.compile(_DIGEST)
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _matching(pattern: re.Pattern[str], what: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and pattern.fullmatch(value):
            return value
        shown = f"{value[:80]!a}" if isinstance(value, str) else type(value).__name__
        raise ValueError(f"{shown} is not {what}")

    return BeforeValidator(check)


Digest = Annotated[
    str,
    _matching(_DIGEST_RE, "a digest (sha256:<64 hex digits>)"),
    Field(json_schema_extra={"pattern": f"^{_DIGEST}$"}),
]


class BaselineEntry(Strict):
    """One owner that predates enforcement: applies while its uid and its
    template's digest are these."""

    kind: Annotated[OwnerKind, one_of(OWNER_KINDS, "an owner kind")]
    """The owner's kind: a workload whose template controllers make objects from."""
    namespace: Annotated[str, _matching(_NAMESPACE_RE, "a namespace name"), Field(max_length=63)]
    """The owner's namespace."""
    name: Annotated[str, _matching(_NAME_RE, "an object name"), Field(max_length=253)]
    """The owner's name."""
    uid: Annotated[str, _matching(_UID_RE, "an object uid"), Field(max_length=128)]
    """The owner's uid: a re-created owner (another uid) is not on the baseline."""
    images: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=256
    )
    """The template's images as written (pinned or not): what the entry lets run,
    shown in reports and audit lines."""
    template_digest: Digest
    """sha256 of the template's security-relevant fields, images included: a
    changed template is not on the baseline."""
    revisions: list[Digest] = Field(default_factory=list, max_length=64)
    """StatefulSet and DaemonSet: the digests of older revisions' templates that
    Pods still ran from when the baseline was made."""

    @property
    def address(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class GuardBaselineSpec(Strict):
    """Workloads that ran before enforcement and may keep running unchanged
    until `expires`: what controllers make from an entry's unchanged template
    is admitted as inherited. Made by `guard kube baseline`."""

    owner: NonEmptyStr
    """Who answers for the baseline (a team)."""
    reason: NonEmptyStr
    """Why these workloads may keep running unreviewed, for the audit trail."""
    expires: Annotated[dt.date, BeforeValidator(_date)]
    """The last day it applies (`YYYY-MM-DD`): after it, the leftovers must be reviewed."""
    entries: list[BaselineEntry] = Field(min_length=1, max_length=MAX_ENTRIES)
    """The owners that may keep running, each pinned by uid and template digest."""

    @model_validator(mode="after")
    def _unique_owners(self) -> GuardBaselineSpec:
        seen: set[tuple[str, str, str]] = set()
        for entry in self.entries:
            key = (entry.kind, entry.namespace, entry.name)
            if key in seen:
                raise ValueError(f"{entry.address} is listed twice")
            seen.add(key)
        return self

    def expired(self, today: dt.date) -> bool:
        """Past its end date (it applies through the day it names)."""
        return self.expires < today


class GuardBaseline(_Document):
    kind: Literal["GuardBaseline"]
    spec: GuardBaselineSpec


DOCUMENT_KINDS["GuardBaseline"] = GuardBaseline
