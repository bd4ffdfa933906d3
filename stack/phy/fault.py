"""Deterministic fault injection: drop, duplicate, reorder, delay, jitter and corrupt frames.

Wrapping a device in a :class:`FaultInjector` turns a clean link into a lossy one, in either or
both directions, with every decision drawn from the :class:`~stack.rand.Rng` it is given. The
same seed and the same frame sequence therefore give the same drops, the same corrupted bits
and the same delays, so a failure found under faults replays exactly from the seed in the
report. Pass a forked stream (``rng.fork("fault")``) so adding faults does not shift the numbers
the stack itself draws.

Per frame the decisions are drawn in a fixed order -- drop, corrupt, jitter, duplicate, reorder
-- and only for faults that are enabled (probability > 0, jitter > 0).

* **drop**: the frame vanishes.
* **corrupt**: one uniformly chosen bit of a copy of the frame is flipped.
* **delay/jitter**: the frame is held for ``delay_us`` plus a uniform draw in
  ``[-jitter_us, +jitter_us]`` (never negative), measured on the injector's clock. As with
  netem, jitter can reorder frames: they leave in order of their due time.
* **duplicate**: a second copy leaves right after the first.
* **reorder**: the frame is held back and released right after the next frame in the same
  direction. Only one frame is held at a time, and a held frame is released after
  ``reorder_hold_us`` anyway, so a reorder on the last frame of a burst becomes a delay instead
  of a silent drop.

Held frames give the injector its own deadline, exposed as ``poll_at()``; ``recv()`` is its pump
and also transmits delayed outbound frames whose time has come, so the event loop only has to
call ``recv()`` at that deadline (both :func:`~stack.phy.loop.run` and
:func:`~stack.phy.loop.run_virtual` do).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from stack.phy.base import Buffer, Device, DeviceStats, device_poll_at
from stack.rand import Rng
from stack.time import Clock, VirtualClock

__all__ = ["FaultCounters", "FaultInjector"]

FaultDirection = Literal["both", "rx", "tx"]


@dataclass(slots=True)
class FaultCounters:
    """How often each decision was taken, for one direction."""

    frames: int = 0  # frames subject to faults
    dropped: int = 0
    corrupted: int = 0
    delayed: int = 0  # frames held for a positive delay (delay + jitter > 0)
    duplicated: int = 0
    reordered: int = 0
    reorder_timeouts: int = 0  # held frames released by reorder_hold_us, not by a next frame

    def __add__(self, other: FaultCounters) -> FaultCounters:
        return FaultCounters(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )


# A scheduled frame: (due time us, sequence, timestamp offset ns, frame). The sequence breaks
# ties so equal due times leave in scheduling order; ts offset + due * 1000 is the frame's
# timestamp (rx: the capture time shifted by the time it was held).
_Entry = tuple[int, int, int, bytes]


class _Lane:
    def __init__(self) -> None:
        self.queue: list[_Entry] = []
        self.held: _Entry | None = None
        self.held_copies = 1
        self.held_deadline = 0
        self.counters = FaultCounters()

    def deadline(self) -> int | None:
        times = []
        if self.queue:
            times.append(self.queue[0][0])
        if self.held is not None:
            times.append(self.held_deadline)
        return min(times) if times else None


class FaultInjector:
    """A device wrapper that misbehaves on purpose; see the module docstring for the faults."""

    def __init__(
        self,
        inner: Device,
        rng: Rng,
        clock: Clock,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay_us: int = 0,
        jitter_us: int = 0,
        corrupt: float = 0.0,
        direction: FaultDirection = "both",
        reorder_hold_us: int = 100_000,
    ) -> None:
        for name, p in (
            ("drop", drop),
            ("duplicate", duplicate),
            ("reorder", reorder),
            ("corrupt", corrupt),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {p}")
        if delay_us < 0 or jitter_us < 0 or reorder_hold_us < 0:
            raise ValueError("delays must be >= 0")
        if direction not in ("both", "rx", "tx"):
            raise ValueError(f"direction must be 'both', 'rx' or 'tx', got {direction!r}")
        self.inner = inner
        self.rng = rng
        self.clock = clock
        self.drop = drop
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay_us = delay_us
        self.jitter_us = jitter_us
        self.corrupt = corrupt
        self.direction = direction
        self.reorder_hold_us = reorder_hold_us
        self.link_type = inner.link_type
        self.mtu = inner.mtu
        self.stats = DeviceStats()
        self._rx = _Lane()
        self._tx = _Lane()
        self._rx_on = direction in ("both", "rx")
        self._tx_on = direction in ("both", "tx")
        self._ready: deque[tuple[int, bytes]] = deque()
        self._seq = 0
        # inner timestamp (ns) - clock time (us) * 1000: lets us report a timestamp in the
        # inner device's time base for frames that have not (yet) reached it. Virtual clocks
        # drive pipes stamped in virtual time; real clocks drive devices stamped in epoch time.
        self._ts_offset = (
            0 if isinstance(clock, VirtualClock) else time.time_ns() - clock.now() * 1000
        )

    # -- counters ------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, FaultCounters]:
        """Decision counters per direction (``"rx"``, ``"tx"``)."""
        return {"rx": self._rx.counters, "tx": self._tx.counters}

    def total(self) -> FaultCounters:
        return self._rx.counters + self._tx.counters

    # -- device --------------------------------------------------------------------------

    def fileno(self) -> int:
        return self.inner.fileno()

    def poll_at(self) -> int | None:
        """The earliest of held rx/tx frames' deadlines and the inner device's own."""
        times = [t for t in (self._rx.deadline(), self._tx.deadline()) if t is not None]
        if self._ready:
            times.append(self.clock.now())
        inner = device_poll_at(self.inner)
        if inner is not None:
            times.append(inner)
        return min(times) if times else None

    def recv(self) -> tuple[int, bytes] | None:
        self._pump_tx(self.clock.now())
        while True:
            now = self.clock.now()
            for due, _seq, offset, frame in self._due(self._rx, now):
                self._ready.append((offset + due * 1000, frame))
            if self._ready:
                ts, frame = self._ready.popleft()
                self.stats.count_in(frame)
                return ts, frame
            got = self.inner.recv()
            if got is None:
                return None
            ts, frame = got
            self._ts_offset = ts - now * 1000
            if not self._rx_on:
                self.stats.count_in(frame)
                return got
            self._decide(self._rx, now, ts - now * 1000, frame)

    def send(self, frame: Buffer) -> int:
        now = self.clock.now()
        self._pump_tx(now)
        if not self._tx_on:
            ts = self.inner.send(frame)
            self._ts_offset = ts - now * 1000
            self.stats.count_out(frame)
            return ts
        data = bytes(frame)
        self.stats.count_out(data)
        entry = self._decide(self._tx, now, 0, data)
        sent = self._pump_tx(now)
        if entry is None:  # dropped
            return self._ts_offset + now * 1000
        return sent.get(entry[1], self._ts_offset + entry[0] * 1000)

    def close(self) -> None:
        """Close the inner device; frames still held are discarded."""
        self._rx = _Lane()
        self._tx = _Lane()
        self._ready.clear()
        self.inner.close()

    # -- decisions -----------------------------------------------------------------------

    def _decide(self, lane: _Lane, now: int, ts_offset: int, frame: bytes) -> _Entry | None:
        """Apply the faults to one frame and schedule the result; None if it was dropped."""
        rng = self.rng
        c = lane.counters
        c.frames += 1
        if self.drop and rng.random() < self.drop:
            c.dropped += 1
            return None
        if self.corrupt and rng.random() < self.corrupt and frame:
            bit = rng.randrange(0, len(frame) * 8)
            mutated = bytearray(frame)
            mutated[bit >> 3] ^= 0x80 >> (bit & 7)
            frame = bytes(mutated)
            c.corrupted += 1
        delay = self.delay_us
        if self.jitter_us:
            delay = max(0, delay + rng.randrange(-self.jitter_us, self.jitter_us + 1))
        if delay > 0:
            c.delayed += 1
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            c.duplicated += 1
        # rx timestamps move with the delay: ts_offset + due * 1000 = capture + (due - now).
        entry = (now + delay, self._next_seq(), ts_offset, frame)
        if self.reorder and lane.held is None and rng.random() < self.reorder:
            lane.held = entry
            lane.held_copies = copies
            lane.held_deadline = now + self.reorder_hold_us
            c.reordered += 1
            return entry
        self._schedule(lane, entry, copies)
        if lane.held is not None:
            held, lane.held = lane.held, None
            # Released right behind this frame: same due time (or its own if later), later seq.
            due = max(held[0], entry[0])
            self._schedule(lane, (due, self._next_seq(), held[2], held[3]), lane.held_copies)
        return entry

    def _schedule(self, lane: _Lane, entry: _Entry, copies: int) -> None:
        heapq.heappush(lane.queue, entry)
        for _ in range(copies - 1):
            heapq.heappush(lane.queue, (entry[0], self._next_seq(), entry[2], entry[3]))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _due(self, lane: _Lane, now: int) -> list[_Entry]:
        """Pop the lane's frames due at ``now``, releasing a held frame that waited too long."""
        if lane.held is not None and now >= lane.held_deadline:
            held, lane.held = lane.held, None
            lane.counters.reorder_timeouts += 1
            self._schedule(lane, (max(held[0], now), held[1], held[2], held[3]), lane.held_copies)
        out = []
        while lane.queue and lane.queue[0][0] <= now:
            out.append(heapq.heappop(lane.queue))
        return out

    def _pump_tx(self, now: int) -> dict[int, int]:
        """Transmit outbound frames that are due; returns their tx timestamps by sequence."""
        sent: dict[int, int] = {}
        for _due, seq, _offset, frame in self._due(self._tx, now):
            ts = self.inner.send(frame)
            self._ts_offset = ts - now * 1000
            sent[seq] = ts
        return sent
