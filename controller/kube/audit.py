"""One JSON line per admission decision, to stdout and optionally a file.

The line is rendered from the same ``AdmissionResult`` as the response, so
the record says exactly what the API server was told. Dry-run requests are
recorded too, marked ``dryRun``: the record is evidence, not a change to the
cluster.

stdout is what container log collectors ship; the optional file (on a
volume, for a log shipper sidecar) is rotated by size, keeping a fixed
number of old files, so a busy cluster cannot fill the volume.

Anyone who may submit a workload (or only dry-run one) decides how much
guard writes. So what one requester can make it write is bounded twice:
one line is at most ``record.MAX_LINE_BYTES``, and the full record (findings,
artifacts, evidence) is written for ``DETAIL_RATE`` requests a second per
requester, ``DETAIL_BURST`` at once. Past that, a requester's decisions are
recorded by a one-line summary (uid, decision, requester, counts), and the
next full record is preceded by a line counting the summaries written
instead. Every decision keeps its line; no decision waits for a token.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from controller.kube.limits import LeastRecent, TokenBucket
from controller.kube.record import audit_line, audit_record, summary_record
from controller.kube.result import AdmissionResult
from controller.kube.settings import AUDIT_DETAIL_BURST, AUDIT_DETAIL_RATE, ServeSettings

# Defaults sized for the chart's audit emptyDir (256 MiB): 4 files of 50 MiB.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 3
# Full records per requester: this many a second, this many at once.
DETAIL_RATE = AUDIT_DETAIL_RATE
DETAIL_BURST = AUDIT_DETAIL_BURST
# Requesters whose allowance is remembered (the least recent is forgotten).
MAX_REQUESTERS = 4096
# The requester of an answer to a request that could not be read.
UNKNOWN_REQUESTER = "(unknown requester)"


class RotatingFile:
    """Appends lines to ``path``; past ``max_bytes`` it becomes ``path.1``.

    ``path.1`` becomes ``path.2`` and so on up to ``backups``; the oldest is
    dropped. ``max_bytes`` 0 never rotates; ``backups`` 0 truncates instead.
    A single line longer than ``max_bytes`` is still written whole: a record
    is never split.
    """

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups must not be negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")
        self._size = self._file.tell()

    def write_line(self, line: str) -> None:
        data = line + "\n"
        size = len(data.encode("utf-8"))
        if self.max_bytes and self._size and self._size + size > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += size

    def backup_path(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _rotate(self) -> None:
        self._file.close()
        if self.backups:
            for number in range(self.backups - 1, 0, -1):
                older = self.backup_path(number)
                if older.exists():
                    os.replace(older, self.backup_path(number + 1))
            os.replace(self.path, self.backup_path(1))
            self._file = self.path.open("a", encoding="utf-8")
        else:
            self._file = self.path.open("w", encoding="utf-8")
        self._size = 0
        self.rotations += 1

    def close(self) -> None:
        self._file.close()


@dataclass
class _Allowance:
    """One requester's full records: a token bucket, and the summaries
    written instead since the bucket ran dry."""

    bucket: TokenBucket
    suppressed: int = 0
    since: str = ""
    until: str = ""


class AuditLog:
    """Writes decision records to a stream (stdout by default) and a file.

    ``stream`` None writes no stream (tests and benchmarks that only read the
    file); ``path`` None writes no file. Writing is serialized by a lock so
    lines from concurrent answers never interleave. ``clock`` (seconds,
    monotonic) drives the per-requester allowance of full records.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        stream: TextIO | None = sys.stdout,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        detail_rate: float = DETAIL_RATE,
        detail_burst: int = DETAIL_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.stream = stream
        self._lock = threading.Lock()
        self._file = (
            RotatingFile(path, max_bytes=max_bytes, backups=backups) if path is not None else None
        )
        self.lines = 0
        self.suppressed = 0
        self.detail_rate = detail_rate
        self.detail_burst = detail_burst
        self._allowances_lock = threading.Lock()
        self._forgotten: list[dict[str, Any]] = []
        self._allowances: LeastRecent[str, _Allowance] = LeastRecent(
            MAX_REQUESTERS,
            lambda: _Allowance(TokenBucket(rate=detail_rate, burst=detail_burst, clock=clock)),
            on_drop=self._forget,
        )

    @classmethod
    def for_service(cls, settings: ServeSettings) -> AuditLog:
        """The audit log ``guard serve`` writes, as its settings say."""
        return cls(
            settings.audit_file,
            stream=sys.stdout if settings.audit_stdout else None,
            max_bytes=settings.audit_max_bytes,
            backups=settings.audit_backups,
            detail_rate=settings.audit_detail_rate,
            detail_burst=settings.audit_detail_burst,
        )

    def write(self, result: AdmissionResult) -> None:
        """Record one answer: in full while its requester has allowance left,
        else as a one-line summary."""
        who = _requester(result)
        with self._allowances_lock:
            allowance = self._allowances.get(who)
            detailed = allowance.bucket.take()
            counted = None
            if detailed and allowance.suppressed:
                counted = self._suppressed_record(who, allowance)
                allowance.suppressed = 0
            elif not detailed:
                allowance.suppressed += 1
                allowance.since = allowance.since or result.decided_at
                allowance.until = result.decided_at
                self.suppressed += 1
            forgotten, self._forgotten = self._forgotten, []
        for record in forgotten:
            self.write_record(record)
        if counted is not None:
            self.write_record(counted)
        if not detailed:
            self.write_record({**summary_record(result), "detail": "suppressed"})
            return
        try:
            record = audit_record(result)
        except Exception as exc:  # a bug in rendering must not lose the decision
            record = {
                **summary_record(result),
                "message": result.message,
                "recordError": f"the full record could not be rendered: {exc!r}",
            }
        self.write_record(record)

    def _suppressed_record(self, who: str, allowance: _Allowance) -> dict[str, Any]:
        return {
            "time": allowance.until,
            "event": "audit-detail-suppressed",
            "user": who,
            "suppressed": allowance.suppressed,
            "since": allowance.since,
            "message": f"suppressed {allowance.suppressed} records from {who}: one-line "
            f"summaries were written from {allowance.since} to {allowance.until} (full "
            f"records: {self.detail_rate:g} a second, {self.detail_burst} at once, per "
            "requester)",
        }

    def _forget(self, who: str, allowance: _Allowance) -> None:
        # Called with the allowances lock held: written after it is released.
        if allowance.suppressed:
            self._forgotten.append(self._suppressed_record(who, allowance))

    def write_record(self, record: dict[str, Any]) -> None:
        # One record, one bounded line, whatever a request's strings hold.
        line = audit_line(record)
        failure: OSError | None = None
        with self._lock:
            self.lines += 1
            # Each sink is tried even when the other fails: one copy is
            # better than none. The failure is raised afterwards, to be counted.
            if self.stream is not None:
                try:
                    self.stream.write(line + "\n")
                    self.stream.flush()
                except OSError as exc:
                    failure = exc
            if self._file is not None:
                try:
                    self._file.write_line(line)
                except OSError as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure

    @property
    def rotations(self) -> int:
        return self._file.rotations if self._file is not None else 0

    def close(self) -> None:
        """Count what was suppressed and not yet counted, then close the file."""
        with self._allowances_lock:
            pending = [
                self._suppressed_record(who, allowance)
                for who, allowance in self._allowances.items()
                if allowance.suppressed
            ]
            for _, allowance in self._allowances.items():
                allowance.suppressed = 0
        for record in pending:
            try:
                self.write_record(record)
            except OSError:
                break  # closing: nothing is left to count a failure
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _requester(result: AdmissionResult) -> str:
    request = result.request
    if request is None or not request.requester.username:
        return UNKNOWN_REQUESTER
    return request.requester.username
