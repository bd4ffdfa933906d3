"""Time in the stack: integer microseconds, passed in, never read.

The core (wire, iface, sockets) takes ``now`` as an argument on every entry point and reports
its next deadline from ``poll_at()``; it never calls a clock. Only the driver -- the event loop
in ``stack.phy.loop`` or a test -- owns a :class:`Clock`. :class:`VirtualClock` makes every timer
testable deterministically in virtual time; :class:`MonotonicClock` is the real one.
"""

from __future__ import annotations

import time
from typing import Protocol

US = 1
MS = 1_000
SECOND = 1_000_000


class Clock(Protocol):
    def now(self) -> int:
        """Microseconds since an arbitrary epoch, never going backwards."""
        ...


class MonotonicClock:
    """The host's monotonic clock, in microseconds."""

    def now(self) -> int:
        return time.monotonic_ns() // 1000


class VirtualClock:
    """A clock that only moves when told to: tests and simulations advance it explicitly."""

    def __init__(self, start: int = 0) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, delta: int) -> int:
        if delta < 0:
            raise ValueError("virtual time never goes backwards")
        self._now += delta
        return self._now

    def advance_to(self, when: int) -> int:
        if when > self._now:
            self._now = when
        return self._now
