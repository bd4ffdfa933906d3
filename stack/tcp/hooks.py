"""Peer hooks: how the probe engine makes the reference stack misbehave on purpose.

A hook sees every segment of a connection (and, at layer level, every segment at all, SYNs to
listeners and strays included) before it is processed (inbound) or put on the wire (outbound).
It may inspect it, rewrite any field or option in place (the checksum is computed afterwards),
or replace it with a list of ``(delay_us, segment)``: an empty list drops it, two entries
duplicate it, a positive delay holds it in the layer's own timed queue (which takes part in
``poll_at``, so virtual time still works). Misbehaviour lives here, in hooks the caller owns,
never as switches inside the state machine (stack-design.md §8.15).

The event log (:class:`SegmentRecord`) is per connection and records what was actually
processed or sent, with the hook's verdict, at the time the stack saw it. On a real wire the
harness uses capture timestamps instead; the log is the stack's own view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from stack.wire.tcp import ACK, FIN, PSH, RST, SYN, OptSack, OptTimestamps, TcpHeader

if TYPE_CHECKING:
    from stack.tcp.socket import TcpSocket

Direction = Literal["in", "out"]


@dataclass(slots=True)
class Segment:
    """One TCP segment with its IP context. ``ecn`` is the IP header's ECN field (0..3)."""

    src: bytes
    dst: bytes
    hdr: TcpHeader
    payload: bytes
    ecn: int = 0

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: payload plus one each for SYN and FIN."""
        f = self.hdr.flags
        return len(self.payload) + (1 if f & SYN else 0) + (1 if f & FIN else 0)


HookResult = Sequence[tuple[int, Segment]] | None
"""None: pass the segment on unchanged (or as rewritten in place); else the segments to pass
on, each after its delay in microseconds (``()`` drops)."""

DROP: tuple[tuple[int, Segment], ...] = ()


class SegmentHook(Protocol):
    def __call__(
        self, now: int, direction: Direction, sock: TcpSocket | None, seg: Segment
    ) -> HookResult: ...


@dataclass(slots=True)
class SegmentRecord:
    """One line of a connection's segment log (times in microseconds, seq/ack raw)."""

    time: int
    direction: Direction
    flags: int
    seq: int
    ack: int
    window: int
    length: int
    sack: tuple[tuple[int, int], ...] = ()
    tsval: int | None = None
    tsecr: int | None = None
    ecn: int = 0
    action: str = "pass"  # pass, drop, delay, dup, inject

    @classmethod
    def of(
        cls, now: int, direction: Direction, seg: Segment, action: str = "pass"
    ) -> SegmentRecord:
        h = seg.hdr
        sack: tuple[tuple[int, int], ...] = ()
        tsval = tsecr = None
        for o in h.options:
            if type(o) is OptSack:
                sack = o.blocks
            elif type(o) is OptTimestamps:
                tsval, tsecr = o.tsval, o.tsecr
        return cls(
            now,
            direction,
            h.flags,
            h.seq,
            h.ack,
            h.window,
            len(seg.payload),
            sack,
            tsval,
            tsecr,
            seg.ecn,
            action,
        )

    def flag_str(self) -> str:
        names = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))
        return "".join(c for bit, c in names if self.flags & bit) or "-"


@dataclass
class Rules:
    """A ready-made hook built from simple rules, for the common probe manoeuvres.

    Each rule is a predicate on (direction, segment) plus an action. The first matching rule
    applies. ``count`` limits how often a rule fires (None: always).
    """

    rules: list[_Rule] = field(default_factory=list)

    def __call__(
        self, now: int, direction: Direction, sock: TcpSocket | None, seg: Segment
    ) -> HookResult:
        for rule in self.rules:
            if rule.direction not in (direction, "both") or not rule.match(seg):
                continue
            if rule.count is not None:
                if rule.count <= 0:
                    continue
                rule.count -= 1
            return rule.action(seg)
        return None

    def add(
        self,
        direction: Direction | Literal["both"],
        match: Callable[[Segment], bool],
        action: Callable[[Segment], HookResult],
        count: int | None = None,
    ) -> _Rule:
        rule = _Rule(direction, match, action, count)
        self.rules.append(rule)
        return rule

    # -- the manoeuvres probes use most
    def drop(
        self, direction: Direction, match: Callable[[Segment], bool], count: int | None = None
    ) -> _Rule:
        return self.add(direction, match, lambda s: DROP, count)

    def delay(
        self,
        direction: Direction,
        match: Callable[[Segment], bool],
        delay_us: int,
        count: int | None = None,
    ) -> _Rule:
        return self.add(direction, match, lambda s: ((delay_us, s),), count)

    def duplicate(
        self, direction: Direction, match: Callable[[Segment], bool], count: int | None = None
    ) -> _Rule:
        return self.add(direction, match, lambda s: ((0, s), (0, _copy(s))), count)

    def withhold_acks(self, count: int | None = None) -> _Rule:
        """Drop our outbound pure ACKs (no data, SYN, FIN or RST)."""
        return self.drop("out", is_pure_ack, count)


@dataclass
class _Rule:
    direction: str
    match: Callable[[Segment], bool]
    action: Callable[[Segment], HookResult]
    count: int | None = None


def is_pure_ack(seg: Segment) -> bool:
    return not seg.payload and seg.hdr.flags & (SYN | FIN | RST) == 0


def has_data(seg: Segment) -> bool:
    return bool(seg.payload)


def _copy(seg: Segment) -> Segment:
    h = seg.hdr
    hdr = TcpHeader(
        h.src_port, h.dst_port, h.seq, h.ack, h.flags, h.window, h.urgent, list(h.options)
    )
    return Segment(seg.src, seg.dst, hdr, seg.payload, seg.ecn)


copy_segment = _copy
