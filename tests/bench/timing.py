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


def cpu_per_call(action: Callable[[], object], seconds: float = 0.2) -> float:
    """CPU seconds per call (this process's CPU time, which outside load
    changes far less than wall time) over about ``seconds`` of CPU."""
    action()
    calls = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        action()
        calls += 1
    return elapsed / max(calls, 1)


def alternating(actions: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """CPU per call of each action, measured in alternating rounds (the order
    rotates), so outside load lands on every action alike."""
    names = list(actions)
    found: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            found[name].append(cpu_per_call(actions[name]))
    return found
