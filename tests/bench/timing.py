"""Throughput measurement shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(action: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second over about ``seconds`` of wall time, after one warm-up call."""
    action()
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        action()
        calls += 1
    return calls / elapsed
