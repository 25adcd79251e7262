"""One JSON line per admission decision, to the log and optionally a file.

The line is rendered from the same ``AdmissionResult`` as the response, so
the record says exactly what the API server was told. Dry-run requests are
recorded too, marked ``dryRun``: the record is evidence, not a change to the
cluster.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TextIO

from controller.kube.decide import AdmissionResult

logger = logging.getLogger("guard.audit")


class AuditLog:
    """Appends decision records; ``path`` None means the log stream only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, result: AdmissionResult) -> None:
        line = json.dumps(result.record(), sort_keys=True, default=str)
        logger.info("%s", line)
        if self._file is not None:
            with self._lock:
                self._file.write(line + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
