"""Receive-side reassembly and the sender's SACK scoreboard, in stream offsets.

Both work in *stream offsets*: unbounded Python ints counting data bytes from the start of the
stream (byte ``i`` of the stream has sequence number ``ISN + 1 + i``). Converting at the edge of
the socket once keeps every comparison here a plain integer comparison, free of the 2**32
wrap-around that sequence numbers carry, and keeps wrap bugs out of the interval logic.
"""

from __future__ import annotations

import bisect


class Reassembly:
    """Out-of-order data above ``rcv_nxt``, as sorted, disjoint, non-adjacent blocks.

    ``max_blocks`` bounds the number of holes the receiver tracks (lwIP's ``TCP_OOSEQ_MAX_PBUFS``
    idea, RFC 9293 3.10.7.4 leaves the policy open): a segment that would create one more block
    than allowed is dropped, so memory and work stay bounded whatever a peer sends. The order in
    which blocks were last touched is kept for the SACK option, which reports the most recently
    changed block first (RFC 2018 4).
    """

    __slots__ = ("_data", "_starts", "bytes", "max_blocks", "recent")

    def __init__(self, max_blocks: int = 32) -> None:
        self._starts: list[int] = []
        self._data: list[bytearray] = []
        self.bytes = 0
        self.max_blocks = max_blocks
        self.recent: list[int] = []  # block start offsets, most recently changed first

    def __len__(self) -> int:
        return len(self._starts)

    def blocks(self) -> list[tuple[int, int]]:
        return [(s, s + len(d)) for s, d in zip(self._starts, self._data, strict=True)]

    def insert(self, start: int, data: bytes | memoryview) -> tuple[int, tuple[int, int] | None]:
        """Store ``data`` at stream offset ``start``.

        Returns ``(new_bytes, duplicate)``: how many bytes were not held before (0 if the
        segment was dropped or entirely duplicate) and, for D-SACK (RFC 2883), the first range
        of the segment that was already held.
        """
        end = start + len(data)
        if end <= start:
            return 0, None
        starts, blocks = self._starts, self._data
        # blocks that overlap or touch [start, end)
        lo = bisect.bisect_left(starts, start)
        if lo > 0 and starts[lo - 1] + len(blocks[lo - 1]) >= start:
            lo -= 1
        hi = lo
        while hi < len(starts) and starts[hi] <= end:
            hi += 1
        if hi == lo and len(starts) >= self.max_blocks:
            return 0, None  # would add a hole beyond the bound
        dup: tuple[int, int] | None = None
        held = 0
        for i in range(lo, hi):
            s, e = starts[i], starts[i] + len(blocks[i])
            ov_s, ov_e = max(s, start), min(e, end)
            if ov_e > ov_s:
                held += ov_e - ov_s
                if dup is None:
                    dup = (ov_s, ov_e)
        new_start = min(start, starts[lo]) if hi > lo else start
        new_end = max(end, starts[hi - 1] + len(blocks[hi - 1])) if hi > lo else end
        merged = bytearray(new_end - new_start)
        # later writes win nothing: existing data is kept where it overlaps (first policy)
        merged[start - new_start : end - new_start] = data
        for i in range(lo, hi):
            s = starts[i]
            merged[s - new_start : s - new_start + len(blocks[i])] = blocks[i]
        old_bytes = sum(len(blocks[i]) for i in range(lo, hi))
        for i in range(lo, hi):
            if starts[i] in self.recent:
                self.recent.remove(starts[i])
        starts[lo:hi] = [new_start]
        blocks[lo:hi] = [merged]
        self.bytes += len(merged) - old_bytes
        self.recent.insert(0, new_start)
        return (end - start) - held, dup

    def pop_ready(self, rcv_nxt: int) -> tuple[int, list[bytes | bytearray]]:
        """Remove blocks that now start at or below ``rcv_nxt``; return the new ``rcv_nxt`` and
        the bytes to append to the in-order buffer."""
        out: list[bytes | bytearray] = []
        starts, blocks = self._starts, self._data
        while starts and starts[0] <= rcv_nxt:
            s = starts.pop(0)
            d = blocks.pop(0)
            self.bytes -= len(d)
            if s in self.recent:
                self.recent.remove(s)
            e = s + len(d)
            if e > rcv_nxt:
                out.append(d[rcv_nxt - s :])
                rcv_nxt = e
        return rcv_nxt, out

    def contains(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies entirely inside one held block."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._starts[i] + len(self._data[i]) >= end

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` blocks, the most recently changed first (RFC 2018 4)."""
        by_start = {s: s + len(d) for s, d in zip(self._starts, self._data, strict=True)}
        return [(s, by_start[s]) for s in self.recent[:limit] if s in by_start]

    def clear(self) -> None:
        self._starts.clear()
        self._data.clear()
        self.recent.clear()
        self.bytes = 0


class Scoreboard:
    """The sender's record of SACKed ranges above the cumulative ACK (RFC 6675 2).

    Ranges are disjoint and sorted; ``retransmitted`` tracks HighRxt, the highest offset
    retransmitted during the current recovery.
    """

    __slots__ = ("ranges", "sacked_bytes")

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.sacked_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.ranges)

    @property
    def high_sacked(self) -> int | None:
        return self.ranges[-1][1] if self.ranges else None

    def add(self, start: int, end: int) -> int:
        """Record a SACKed range; returns the number of newly SACKed bytes."""
        if end <= start:
            return 0
        ranges = self.ranges
        i = 0
        while i < len(ranges) and ranges[i][1] < start:
            i += 1
        j = i
        new_s, new_e = start, end
        covered = 0
        while j < len(ranges) and ranges[j][0] <= end:
            s, e = ranges[j]
            covered += max(0, min(e, end) - max(s, start))
            new_s, new_e = min(new_s, s), max(new_e, e)
            j += 1
        before = sum(e - s for s, e in ranges[i:j])
        ranges[i:j] = [[new_s, new_e]]
        added = (new_e - new_s) - before
        self.sacked_bytes += added
        return added

    def ack(self, una: int) -> None:
        """Forget everything below the new cumulative ACK."""
        ranges = self.ranges
        while ranges and ranges[0][1] <= una:
            s, e = ranges.pop(0)
            self.sacked_bytes -= e - s
        if ranges and ranges[0][0] < una:
            self.sacked_bytes -= una - ranges[0][0]
            ranges[0][0] = una

    def is_sacked(self, off: int) -> bool:
        for s, e in self.ranges:
            if s <= off < e:
                return True
            if s > off:
                return False
        return False

    def sacked_above(self, off: int) -> int:
        n = 0
        for s, e in self.ranges:
            if e > off:
                n += e - max(s, off)
        return n

    def holes(self, una: int) -> list[tuple[int, int]]:
        """Unsacked ranges between ``una`` and the highest SACKed byte."""
        out: list[tuple[int, int]] = []
        pos = una
        for s, e in self.ranges:
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        return out

    def clear(self) -> None:
        self.ranges.clear()
        self.sacked_bytes = 0
