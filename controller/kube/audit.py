"""One JSON line per admission decision, to stdout and optionally a file.

The line is rendered from the same ``AdmissionResult`` as the response, so
the record says exactly what the API server was told. Dry-run requests are
recorded too, marked ``dryRun``: the record is evidence, not a change to the
cluster.

stdout is what container log collectors ship; the optional file (on a
volume, for a log shipper sidecar) is rotated by size, keeping a fixed
number of old files, so a busy cluster cannot fill the volume.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from controller.kube.record import audit_record
from controller.kube.result import AdmissionResult
from controller.kube.text import json_line_safe

# Defaults sized for the chart's audit emptyDir (256 MiB): 4 files of 50 MiB.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 3


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


class AuditLog:
    """Writes decision records to a stream (stdout by default) and a file.

    ``stream`` None writes no stream (tests and benchmarks that only read the
    file); ``path`` None writes no file. Writing is serialized by a lock so
    lines from concurrent answers never interleave.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        stream: TextIO | None = sys.stdout,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = path
        self.stream = stream
        self._lock = threading.Lock()
        self._file = (
            RotatingFile(path, max_bytes=max_bytes, backups=backups) if path is not None else None
        )
        self.lines = 0

    def write(self, result: AdmissionResult) -> None:
        try:
            record = audit_record(result)
        except Exception as exc:  # a bug in rendering must not lose the decision
            record = {
                "time": result.decided_at,
                "uid": result.uid,
                "decision": result.verdict,
                "allowed": result.allowed,
                "code": result.code,
                "reason": result.reason,
                "message": result.message,
                "recordError": f"the full record could not be rendered: {exc!r}",
            }
        self.write_record(record)

    def write_record(self, record: dict[str, Any]) -> None:
        # One record, one line, whatever a request's strings hold.
        line = json_line_safe(json.dumps(record, sort_keys=True, default=str, ensure_ascii=False))
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
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
