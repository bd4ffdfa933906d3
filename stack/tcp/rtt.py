"""Retransmission timeout per RFC 6298, with Karn's algorithm, made configurable.

Everything a stack's RTO behaviour depends on is a field of :class:`RtoConfig`, because the
probes must reproduce constrained stacks as well as the RFC: the initial RTO (RFC 6298 says 1 s;
lwIP starts at 3 s, uIP at 1.5 s), the minimum (RFC 1 s, Linux 200 ms, and a µs-RTT HIL wire may
want less, see smoltcp #1190), the maximum (60 s), the clock granularity G, and the timer tick:
lwIP and uIP count the RTO in 500 ms slow-timer ticks, so their timeouts are quantised up to
whole ticks. Times are integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.tcp import seq
from stack.time import MS, SECOND


@dataclass(slots=True)
class RtoConfig:
    initial_us: int = 1 * SECOND  # RFC 6298 2.1
    min_us: int = 1 * SECOND  # RFC 6298 2.4
    max_us: int = 60 * SECOND  # RFC 6298 2.5 ("at least 60 s")
    granularity_us: int = 1 * MS  # G in RFC 6298 2.3
    k: int = 4
    alpha_shift: int = 3  # alpha = 1/8
    beta_shift: int = 2  # beta = 1/4
    tick_us: int = 0  # 0: continuous; else the RTO is rounded up to whole ticks
    max_backoff: int = 16  # doublings before the RTO stops growing (it is capped by max_us too)
    reset_after_backoffs: int | None = None  # forget SRTT after this many RTOs (RFC 6298 5.7)


class RttEstimator:
    """SRTT/RTTVAR/RTO state of one connection."""

    __slots__ = ("_base", "backoffs", "config", "rttvar", "samples", "srtt")

    def __init__(self, config: RtoConfig | None = None) -> None:
        self.config = config or RtoConfig()
        self.srtt: int | None = None
        self.rttvar: int = 0
        self.backoffs = 0
        self.samples = 0
        self._base = self.config.initial_us

    def sample(self, rtt_us: int) -> None:
        """A valid measurement (Karn: never from a retransmitted segment). RFC 6298 2.2/2.3."""
        cfg = self.config
        rtt_us = max(rtt_us, 0)
        if self.srtt is None:
            self.srtt = rtt_us
            self.rttvar = rtt_us // 2
        else:
            delta = abs(self.srtt - rtt_us)
            self.rttvar += (delta - self.rttvar) >> cfg.beta_shift
            self.srtt += (rtt_us - self.srtt) >> cfg.alpha_shift
        self._base = self.srtt + max(cfg.granularity_us, cfg.k * self.rttvar)
        self.samples += 1
        # Karn, part two: a new sample from an unretransmitted segment ends the back-off.
        self.backoffs = 0

    def on_timeout(self) -> None:
        """RFC 6298 5.5: back the timer off (doubling), up to the maximum."""
        self.backoffs = min(self.backoffs + 1, self.config.max_backoff)
        limit = self.config.reset_after_backoffs
        if limit is not None and self.backoffs >= limit and self.srtt is not None:
            # RFC 6298 5.7's spirit: after repeated timeouts the old estimate is stale
            self.srtt = None
            self.rttvar = 0

    @property
    def rto_us(self) -> int:
        cfg = self.config
        rto = max(cfg.min_us, min(self._base, cfg.max_us))
        if cfg.tick_us:
            # whole ticks before the back-off, which doubles the timer actually used (RFC 6298
            # 5.5; lwIP and uIP shift a tick count): 390 ms -> 500 ms, 1 s, 2 s, not 1 s, 1.5 s
            rto = -(-rto // cfg.tick_us) * cfg.tick_us
        rto = min(rto << self.backoffs, cfg.max_us)
        if cfg.tick_us:
            rto = -(-rto // cfg.tick_us) * cfg.tick_us
        return rto


class KarnSampler:
    """Times one segment at a time and discards the sample if anything was retransmitted.

    Without timestamps a sender can only time a segment sent once (Karn and Partridge, RFC 6298
    3): :meth:`on_retransmit` voids the measurement in flight.
    """

    __slots__ = ("_end", "_sent_at")

    def __init__(self) -> None:
        self._end: int | None = None
        self._sent_at = 0

    @property
    def timing(self) -> bool:
        return self._end is not None

    def on_send(self, now: int, seq_end: int) -> None:
        """New data ending at ``seq_end`` left now; start timing if nothing is being timed."""
        if self._end is None:
            self._end = seq_end
            self._sent_at = now

    def on_retransmit(self) -> None:
        self._end = None

    def on_ack(self, now: int, ack: int) -> int | None:
        """The RTT sample this cumulative ACK yields, if it covers the timed segment."""
        if self._end is not None and seq.ge(ack, self._end):
            self._end = None
            return now - self._sent_at
        return None
