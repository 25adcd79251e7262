"""Rate limits shared by the parts that must not be flooded: the fallback
API read, Kubernetes Events and the audit trail's detail.

Clocks are injected (``time.monotonic`` by default), so tests step time
instead of sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self.burst
        self._stamp = self.clock()

    def take(self) -> bool:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LeastRecent(Generic[K, V]):
    """A map of at most ``size`` entries made on first use; past that the
    least recently used one is dropped (``on_drop`` sees it go).

    Keys come from requests (a user name, a policy and reason): the bound
    keeps a flood of distinct keys from growing memory without end.
    """

    def __init__(
        self,
        size: int,
        make: Callable[[], V],
        on_drop: Callable[[K, V], None] | None = None,
    ) -> None:
        self._size = size
        self._make = make
        self._on_drop = on_drop
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._make()
            self._entries[key] = entry
            while len(self._entries) > self._size:
                dropped, value = self._entries.popitem(last=False)
                if self._on_drop is not None:
                    self._on_drop(dropped, value)
        self._entries.move_to_end(key)
        return entry

    def items(self) -> list[tuple[K, V]]:
        return list(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)
