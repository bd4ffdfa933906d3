"""Pluggable congestion control for the TCP sender: an event interface and two controllers.

The shape follows smoltcp's post-#1154 ``Controller`` (``on_ack``, ``on_dup_ack``, ``on_loss``,
``on_rto``, ``window``), split further so NewReno's fast recovery (RFC 6582) can be expressed:
the sender detects the events (duplicate-ACK counting, partial versus full ACKs, RTO expiry,
idle periods, all with sequence-space arithmetic) and tells the controller; the controller only
keeps ``cwnd``/``ssthresh`` and decides how many bytes may be in flight. All quantities are
bytes; ``now`` is integer microseconds and is only passed through (no controller here reads a
clock, and NewReno does not even need the time -- the argument is there for delay-based or
Cubic-style controllers).

How a sender drives a controller ``cc``:

* new data ACKed outside recovery: ``cc.on_ack(now, acked, flight_size, rtt_us)``;
* every duplicate ACK: ``cc.on_dup_ack(now, flight_size)``; on the 1st and 2nd the sender may
  send new data while ``flight_size <= cc.window() + cc.limited_transmit_allowance(n)``
  (RFC 3042); on the 3rd, when the ACK covers more than ``cc.recover`` (RFC 6582 3.2 step 1),
  ``cc.enter_recovery(now, flight_size, snd_nxt)`` *after* ``on_dup_ack`` and retransmit the
  first unacknowledged segment;
* an ACK of new data during recovery: ``cc.on_partial_ack`` if it does not cover
  ``cc.recover`` (then retransmit the next hole), else ``cc.on_full_ack``;
* retransmission timeout: ``cc.on_rto(now, flight_size, snd_nxt)``;
* before sending after an idle period: ``cc.on_idle_restart(now, idle_us, rto_us)``.

"FlightSize" is RFC 5681's: bytes sent but not yet cumulatively acknowledged, as the sender
computes it at the event. ``make_congestion_control`` maps a profile's name to a controller.
"""

from __future__ import annotations

from typing import Any, Protocol

# "Infinite" ssthresh (RFC 5681 3.1: "arbitrarily high", e.g. the largest advertised window)
# and the unlimited window of NoCongestionControl. 2**31 - 1 exceeds the largest window TCP can
# advertise (65535 << 14, about 2**30), so min(cwnd, rwnd) is always the peer's window, and it
# still fits a signed 32-bit field should a value be logged or exported in one.
INFINITE = 2**31 - 1


def initial_window(smss: int) -> int:
    """RFC 5681 3.1 (from RFC 3390): IW = min(4*SMSS, max(2*SMSS, 4380)) bytes.

    536 -> 2144 (4 segments), 1095..1460 -> 4380 (3 or fewer segments), above 2190 -> 2*SMSS.
    """
    return min(4 * smss, max(2 * smss, 4380))


class CongestionControl(Protocol):
    """What the TCP sender calls; every size is in bytes, ``now`` in microseconds.

    Invariants an implementation keeps: ``cwnd >= smss`` at all times, and after any loss event
    (``enter_recovery``, ``on_rto``) ``ssthresh >= 2 * smss`` (RFC 5681 eq. 4).
    """

    cwnd: int
    ssthresh: int
    recover: int  # RFC 6582 "recover": snd_nxt when recovery (or an RTO) last began
    smss: int

    @property
    def in_recovery(self) -> bool:
        """True between ``enter_recovery`` and ``on_full_ack`` (or ``on_rto``)."""
        ...

    def on_ack(self, now: int, acked: int, flight_size: int, rtt_us: int | None) -> None:
        """``acked`` bytes of new data were cumulatively acknowledged, outside recovery."""
        ...

    def on_dup_ack(self, now: int, flight_size: int) -> None:
        """A duplicate ACK arrived (call before ``enter_recovery`` on the third)."""
        ...

    def enter_recovery(self, now: int, flight_size: int, snd_nxt: int) -> None:
        """Third duplicate ACK: fast retransmit and enter fast recovery (RFC 5681 3.2 step 2)."""
        ...

    def on_partial_ack(self, now: int, acked: int, flight_size: int) -> None:
        """An ACK of new data during recovery that does not cover ``recover`` (RFC 6582)."""
        ...

    def on_full_ack(self, now: int, flight_size: int) -> None:
        """An ACK covering ``recover``: leave fast recovery (RFC 6582 3.2 step 3)."""
        ...

    def on_rto(self, now: int, flight_size: int, snd_nxt: int | None = None) -> None:
        """The retransmission timer expired (RFC 5681 3.1 eq. 4, RFC 6582 3.2 step 6)."""
        ...

    def on_idle_restart(self, now: int, idle_us: int, rto_us: int) -> None:
        """About to send after ``idle_us`` without sending (RFC 5681 4.1)."""
        ...

    def on_ece(self, now: int, flight_size: int) -> None:
        """An ECN-Echo arrived: react as to a loss, without retransmitting (RFC 3168 6.1.2)."""
        ...

    def set_mss(self, smss: int) -> None:
        """The sender's maximum segment size changed (MSS option, PMTU)."""
        ...

    def window(self) -> int:
        """The congestion window the sender may fill: it sends while flight < min(this, rwnd)."""
        ...

    def limited_transmit_allowance(self, dup_acks: int) -> int:
        """Bytes beyond ``window()`` allowed on the 1st/2nd duplicate ACK (RFC 3042)."""
        ...


def _check_smss(smss: int) -> int:
    if smss <= 0:
        raise ValueError(f"SMSS must be positive, got {smss}")
    return smss


class NewReno:
    """RFC 5681 slow start / congestion avoidance with RFC 6582 NewReno fast recovery.

    Choices, each tied to the text it implements:

    * Initial window: RFC 5681 3.1 unless ``initial_window`` (bytes) is given; the effective IW
      is never below one SMSS (a smaller value would stall the sender).
    * Slow start while ``cwnd < ssthresh`` (RFC 5681 allows either algorithm at equality; like
      Linux we switch to congestion avoidance there). Growth uses Appropriate Byte Counting
      (RFC 3465 2.2): ``cwnd += min(acked, L*SMSS)`` with ``L = abc_l`` (RFC 3465 allows 2;
      ``abc_l=1`` is the conservative setting). Slow start does not overshoot ``ssthresh``:
      the increase is capped there and the rest of the ACK's bytes count toward congestion
      avoidance (as Linux's ``tcp_slow_start``), so the switch happens exactly at ``ssthresh``.
    * Congestion avoidance counts bytes (RFC 3465 2.1): acknowledged bytes accumulate in
      ``bytes_acked``; each time it reaches ``cwnd`` it drops by ``cwnd`` and cwnd grows by one
      SMSS. That is exactly +1 SMSS per window of acknowledged data, whatever the ACK sizes,
      whereas RFC 5681 eq. 3 (``SMSS*SMSS/cwnd`` per ACK, in integers) grows too slowly with
      delayed ACKs and rounds to zero once cwnd exceeds SMSS**2 bytes. ``bytes_acked`` is reset
      whenever cwnd is reduced.
    * ``ssthresh`` starts at :data:`INFINITE`. On a loss it becomes
      ``max(FlightSize // 2, 2*SMSS)`` (RFC 5681 eq. 4); an RTO that fires again before any new
      data is acknowledged (a retransmission being timed out again) keeps ssthresh, as
      RFC 5681 3.1 asks ("has not yet been resent by way of the retransmission timer"),
      since FlightSize no longer reflects the network then.
    * During recovery cwnd is inflated by SMSS per further duplicate ACK (RFC 5681 3.2 step 4)
      and deflated on partial ACKs (RFC 6582 3.2 step 3), never below one SMSS.
    """

    __slots__ = (
        "_in_recovery",
        "_iw_given",
        "_rto_pending",
        "_started",
        "abc_l",
        "bytes_acked",
        "cwnd",
        "iw",
        "limited_transmit",
        "recover",
        "smss",
        "ssthresh",
    )

    def __init__(
        self,
        smss: int,
        initial_window: int | None = None,
        limited_transmit: bool = True,
        abc_l: int = 2,
    ) -> None:
        self.smss = _check_smss(smss)
        if initial_window is not None and initial_window <= 0:
            raise ValueError(f"initial_window must be positive, got {initial_window}")
        if abc_l < 1:
            raise ValueError(f"abc_l must be >= 1, got {abc_l}")
        self._iw_given = initial_window
        self.iw = self._compute_iw()
        self.cwnd = self.iw
        self.ssthresh = INFINITE
        self.recover = 0
        self.abc_l = abc_l
        self.limited_transmit = limited_transmit
        self.bytes_acked = 0  # RFC 3465 congestion-avoidance byte counter
        self._in_recovery = False
        self._rto_pending = False  # an RTO fired and no new data has been acknowledged since
        self._started = False  # any event seen; until then set_mss re-derives cwnd from IW

    def __repr__(self) -> str:
        return (
            f"NewReno(smss={self.smss}, cwnd={self.cwnd}, ssthresh={self.ssthresh}, "
            f"in_recovery={self._in_recovery}, recover={self.recover})"
        )

    def _compute_iw(self) -> int:
        iw = initial_window(self.smss) if self._iw_given is None else self._iw_given
        return max(iw, self.smss)

    @property
    def in_recovery(self) -> bool:
        return self._in_recovery

    def window(self) -> int:
        return self.cwnd

    def on_ack(self, now: int, acked: int, flight_size: int, rtt_us: int | None) -> None:
        """New data acknowledged outside recovery: slow start (ABC) or congestion avoidance."""
        self._started = True
        self._rto_pending = False
        if acked <= 0:
            return
        if self.cwnd < self.ssthresh:
            # RFC 3465 2.2: count bytes, at most L*SMSS per ACK (limits bursts from stretch ACKs).
            increase = min(acked, self.abc_l * self.smss)
            new_cwnd = min(self.cwnd + increase, self.ssthresh)
            used = new_cwnd - self.cwnd
            self.cwnd = new_cwnd
            if self.cwnd < self.ssthresh or used >= acked:
                return
            acked -= used  # reached ssthresh: the rest counts toward congestion avoidance
        # RFC 3465 2.1: +1 SMSS per cwnd bytes acknowledged.
        self.bytes_acked += acked
        while self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += self.smss

    def on_dup_ack(self, now: int, flight_size: int) -> None:
        """RFC 5681 3.2 step 4: in recovery each further duplicate ACK inflates cwnd by SMSS.

        It signals that a segment has left the network. Outside recovery nothing changes here:
        the 1st and 2nd duplicates are handled by :meth:`limited_transmit_allowance`.
        """
        self._started = True
        if self._in_recovery:
            self.cwnd += self.smss

    def enter_recovery(self, now: int, flight_size: int, snd_nxt: int) -> None:
        """RFC 5681 3.2 step 2 and RFC 6582 3.2 step 2: halve, then inflate by the 3 dup ACKs."""
        self._started = True
        self.ssthresh = max(flight_size // 2, 2 * self.smss)
        self.cwnd = self.ssthresh + 3 * self.smss
        self.bytes_acked = 0
        self.recover = snd_nxt
        self._in_recovery = True

    def on_partial_ack(self, now: int, acked: int, flight_size: int) -> None:
        """RFC 6582 3.2 step 3 (partial ACK): deflate by ``acked``, add back SMSS if acked >= SMSS.

        Deflating removes the inflation for the data that has now left the network; adding one
        SMSS back lets a new segment go out along with the retransmission of the next hole,
        which the caller sends. Recovery continues. cwnd is floored at one SMSS.
        """
        self._started = True
        self._rto_pending = False
        acked = max(acked, 0)
        cwnd = self.cwnd - acked
        if acked >= self.smss:
            cwnd += self.smss
        self.cwnd = max(cwnd, self.smss)

    def on_full_ack(self, now: int, flight_size: int) -> None:
        """RFC 6582 3.2 step 3 (full ACK, option 1): cwnd = min(ssthresh, max(FlightSize, SMSS)
        + SMSS), which avoids a burst when little data remains in flight; leave recovery."""
        self._started = True
        self._rto_pending = False
        self.cwnd = max(min(self.ssthresh, max(flight_size, self.smss) + self.smss), self.smss)
        self.bytes_acked = 0
        self._in_recovery = False

    def on_rto(self, now: int, flight_size: int, snd_nxt: int | None = None) -> None:
        """RFC 5681 3.1: ssthresh = max(FlightSize/2, 2*SMSS) (eq. 4), cwnd = LW = 1 SMSS.

        A repeated timeout before any new ACK keeps ssthresh (see the class docstring). RFC 6582
        3.2 step 6: leave fast recovery and record ``recover = snd_nxt`` (when given), so
        duplicate ACKs for the go-back-N retransmissions do not start a false fast retransmit.
        """
        self._started = True
        if not self._rto_pending:
            self.ssthresh = max(flight_size // 2, 2 * self.smss)
        self.cwnd = self.smss
        self.bytes_acked = 0
        self._in_recovery = False
        self._rto_pending = True
        if snd_nxt is not None:
            self.recover = snd_nxt

    def on_idle_restart(self, now: int, idle_us: int, rto_us: int) -> None:
        """RFC 5681 4.1: after more than one RTO idle, cwnd = min(RW, cwnd), RW = min(IW, cwnd).

        The ACK clock is gone, so a full cwnd would go out as one line-rate burst; restart from
        at most the initial window. ssthresh is kept.
        """
        if idle_us > rto_us:
            self.cwnd = max(min(self.iw, self.cwnd), self.smss)
            self.bytes_acked = 0

    def on_ece(self, now: int, flight_size: int) -> None:
        """RFC 3168 6.1.2: halve like a loss (ssthresh = max(FlightSize/2, 2*SMSS), cwnd =
        ssthresh) but leave nothing to retransmit; the sender calls this once per window."""
        self._started = True
        self.ssthresh = max(flight_size // 2, 2 * self.smss)
        self.cwnd = self.ssthresh
        self.bytes_acked = 0

    def set_mss(self, smss: int) -> None:
        """Adopt a new SMSS (MSS option, PMTU change).

        Before any event, cwnd is re-derived from the IW for the new SMSS (the usual case: the
        controller is built before the SYN exchange settles the MSS). Afterwards cwnd is kept
        in bytes but floored at one SMSS, and a finite ssthresh at 2*SMSS, so the invariants
        hold for the new size.
        """
        self.smss = _check_smss(smss)
        self.iw = self._compute_iw()
        if not self._started:
            self.cwnd = self.iw
        self.cwnd = max(self.cwnd, self.smss)
        if self.ssthresh != INFINITE:
            self.ssthresh = max(self.ssthresh, 2 * self.smss)

    def limited_transmit_allowance(self, dup_acks: int) -> int:
        """RFC 3042: one new segment per 1st and 2nd duplicate ACK, so FlightSize may reach
        cwnd + 2*SMSS; keeps the ACK clock going so small windows can still reach 3 dup ACKs.
        0 outside those two ACKs (recovery inflates cwnd instead) and when disabled."""
        if not self.limited_transmit or self._in_recovery or not 1 <= dup_acks <= 2:
            return 0
        return dup_acks * self.smss


class NoCongestionControl:
    """No congestion control: only the peer's receive window limits the sender.

    A deliberate test mode (smoltcp's default ``NoControl``): it isolates flow control and
    retransmission from congestion response, and models stacks without congestion control
    (uIP). ``window()`` is :data:`INFINITE`. The hooks change nothing but still track recovery
    state (``in_recovery``, ``recover``) so the sender's NewReno hole-retransmission logic works
    the same with either controller, and ``cwnd``/``ssthresh`` read as infinite.
    """

    __slots__ = ("_in_recovery", "cwnd", "recover", "smss", "ssthresh")

    def __init__(self, smss: int) -> None:
        self.smss = _check_smss(smss)
        self.cwnd = INFINITE
        self.ssthresh = INFINITE
        self.recover = 0
        self._in_recovery = False

    def __repr__(self) -> str:
        return f"NoCongestionControl(smss={self.smss})"

    @property
    def in_recovery(self) -> bool:
        return self._in_recovery

    def window(self) -> int:
        return INFINITE

    def on_ack(self, now: int, acked: int, flight_size: int, rtt_us: int | None) -> None:
        pass

    def on_dup_ack(self, now: int, flight_size: int) -> None:
        pass

    def enter_recovery(self, now: int, flight_size: int, snd_nxt: int) -> None:
        self.recover = snd_nxt
        self._in_recovery = True

    def on_partial_ack(self, now: int, acked: int, flight_size: int) -> None:
        pass

    def on_full_ack(self, now: int, flight_size: int) -> None:
        self._in_recovery = False

    def on_rto(self, now: int, flight_size: int, snd_nxt: int | None = None) -> None:
        self._in_recovery = False
        if snd_nxt is not None:
            self.recover = snd_nxt

    def on_idle_restart(self, now: int, idle_us: int, rto_us: int) -> None:
        pass

    def on_ece(self, now: int, flight_size: int) -> None:
        pass

    def set_mss(self, smss: int) -> None:
        self.smss = _check_smss(smss)

    def limited_transmit_allowance(self, dup_acks: int) -> int:
        return 0  # the window is already unlimited


_ALGORITHMS: dict[str, type[NewReno] | type[NoCongestionControl]] = {
    "newreno": NewReno,
    "reno": NewReno,  # alias: plain Reno is not offered; NewReno is its RFC 6582 successor
    "none": NoCongestionControl,
}


def make_congestion_control(name: str, smss: int, **kw: Any) -> CongestionControl:
    """Build the controller a profile names: "newreno" (alias "reno") or "none".

    ``kw`` goes to NewReno's constructor (``initial_window``, ``limited_transmit``, ``abc_l``).
    "none" ignores them, so a profile can pass the same settings whatever it names.
    """
    cls = _ALGORITHMS.get(name.strip().lower())
    if cls is None:
        choices = ", ".join(sorted(_ALGORITHMS))
        raise ValueError(f"unknown congestion control {name!r}; choose one of: {choices}")
    if cls is NoCongestionControl:
        return NoCongestionControl(smss)
    return cls(smss, **kw)
