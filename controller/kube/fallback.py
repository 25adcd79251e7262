"""The one bounded API read admission makes when the index misses.

An attestation applied together with its Deployment can reach the API server
a moment before the operator's watch stream delivers it: without a second
look, a correct deploy would be denied. So when no candidate envelope is
known for an image, admission lists the namespace's ReviewAttestations once.
The read is bounded in time (the API server's webhook timeout keeps
running) and rate-limited (a flood of unattested deploys must not become a
flood of list calls against the API server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.kube.envelopes import IndexedEnvelope, index_entries
from controller.kube.limits import TokenBucket

logger = logging.getLogger(__name__)

ListFn = Callable[[str | None], Awaitable[list[Mapping[str, Any]]]]


@dataclass(frozen=True)
class FallbackResult:
    found: Mapping[str, tuple[IndexedEnvelope, ...]]
    note: str


class FallbackReader:
    """Lists ReviewAttestations of a namespace, at most ``rate`` times a second."""

    def __init__(
        self,
        list_attestations: ListFn,
        *,
        timeout: float = 2.0,
        rate: float = 5.0,
        burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list = list_attestations
        self._timeout = timeout
        self._bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
        self.reads = 0
        self.skipped = 0

    async def read(self, namespace: str | None, digests: list[str]) -> FallbackResult:
        if not self._bucket.take():
            self.skipped += 1
            return FallbackResult({}, "fallback API read skipped: rate limit reached")
        self.reads += 1
        where = f"namespace {namespace}" if namespace else "the cluster"
        try:
            items = await asyncio.wait_for(self._list(namespace), timeout=self._timeout)
        except TimeoutError:
            return FallbackResult(
                {}, f"fallback API read of {where} timed out after {self._timeout:g}s"
            )
        except Exception as exc:  # any API failure only means "no extra evidence"
            logger.warning("Fallback read of ReviewAttestations in %s failed: %s", where, exc)
            return FallbackResult({}, f"fallback API read of {where} failed: {exc}")
        wanted = set(digests)
        found: dict[str, list[IndexedEnvelope]] = {}
        for item in items:
            metadata = item.get("metadata") or {}
            spec = item.get("spec") or {}
            envelope = spec.get("envelope") if isinstance(spec, Mapping) else None
            if not isinstance(envelope, str):
                continue
            found_in = metadata.get("namespace")
            source = f"ReviewAttestation {found_in or ''}/{metadata.get('name', '')}"
            entries, _ = index_entries(
                envelope, source, found_in if isinstance(found_in, str) else None
            )
            for digest, entry in entries.items():
                if digest in wanted:
                    found.setdefault(digest, []).append(entry)
        count = sum(len(v) for v in found.values())
        return FallbackResult(
            {d: tuple(v) for d, v in found.items()},
            f"fallback API read of {where} found {count} candidate envelope(s)",
        )
