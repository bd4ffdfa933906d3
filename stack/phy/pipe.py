"""An in-memory wire between two devices, for tests and simulations in virtual time.

``PipePair(clock)`` gives two ends; a frame sent on one end becomes receivable on the other
``latency_us`` later *in the clock's time*. Nothing here reads a real clock or an fd, so with a
:class:`~stack.time.VirtualClock` a whole TCP exchange -- timeouts, retransmissions, keepalives --
runs in microseconds of real time and identically on every run.

Since no fd can wake the event loop, each end exposes ``poll_at()``: when its next in-flight
frame becomes receivable. :func:`stack.phy.loop.run_virtual` advances the clock to the earliest
of those and of the interfaces' deadlines.

Timestamps are the clock's microseconds times 1000 (ns in the clock's own epoch, not the Unix
epoch); a frame's capture timestamp is the instant it arrived, not when it was picked up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from stack.phy.base import Buffer, DeviceStats, link_overhead
from stack.time import Clock
from stack.wire.link import LinkType

__all__ = ["PipeEnd", "PipePair"]


class PipeEnd:
    """One end of a :class:`PipePair`; a :class:`~stack.phy.base.Device` with ``poll_at``."""

    def __init__(self, pair: PipePair, name: str) -> None:
        self.name = name
        self.link_type = pair.link_type
        self.mtu = pair.mtu
        self.stats = DeviceStats()
        self.peer: PipeEnd | None = None
        self.closed = False
        self._pair = pair
        self._inbound: deque[tuple[int, bytes]] = deque()  # (arrival time us, frame), in order
        self._max_frame = pair.mtu + link_overhead(pair.link_type)

    def fileno(self) -> int:
        return -1

    def poll_at(self) -> int | None:
        """When the next frame in flight towards this end becomes receivable (us), or None."""
        return self._inbound[0][0] if self._inbound else None

    @property
    def in_flight(self) -> int:
        """Frames sent towards this end and not yet received."""
        return len(self._inbound)

    def recv(self) -> tuple[int, bytes] | None:
        if not self._inbound or self._inbound[0][0] > self._pair.clock.now():
            return None
        arrival, frame = self._inbound.popleft()
        self.stats.count_in(frame)
        return arrival * 1000, frame

    def send(self, frame: Buffer) -> int:
        """Put a copy of ``frame`` on the wire; a giant frame is dropped like a real link would.

        Oversized frames (beyond ``mtu`` plus the link header) and frames sent while either end
        is closed are counted in ``stats.errors`` and dropped, not raised: the loop must survive
        them like it survives a real link dropping frames.
        """
        now = self._pair.clock.now()
        peer = self.peer
        if self.closed or peer is None or peer.closed or len(frame) > self._max_frame:
            self.stats.errors += 1
            return now * 1000
        data = bytes(frame)
        # Constant latency keeps the queue sorted, so delivery is FIFO.
        peer._inbound.append((now + self._pair.latency_us, data))
        self.stats.count_out(data)
        return now * 1000

    def close(self) -> None:
        self.closed = True
        self._inbound.clear()

    def __repr__(self) -> str:
        return f"PipeEnd({self.name!r}, in_flight={len(self._inbound)})"


class PipePair:
    """Two connected in-memory devices ``a`` and ``b`` (also unpackable: ``a, b = PipePair()``)."""

    def __init__(
        self,
        clock: Clock,
        latency_us: int = 0,
        mtu: int = 1500,
        link_type: LinkType = LinkType.ETHERNET,
    ) -> None:
        if latency_us < 0:
            raise ValueError("latency must be >= 0")
        self.clock = clock
        self.latency_us = latency_us
        self.mtu = mtu
        self.link_type = link_type
        self.a = PipeEnd(self, "a")
        self.b = PipeEnd(self, "b")
        self.a.peer = self.b
        self.b.peer = self.a

    def __iter__(self) -> Iterator[PipeEnd]:
        return iter((self.a, self.b))

    def poll_at(self) -> int | None:
        """The earliest arrival on either end."""
        times = [t for t in (self.a.poll_at(), self.b.poll_at()) if t is not None]
        return min(times) if times else None
