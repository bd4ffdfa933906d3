"""The TCP data path in virtual time, packetdrill style: retransmission timer, delayed ACK,
Nagle, silly window syndrome, zero-window probes, keep-alive, reassembly, stop-and-wait.

Each test is a script: ``inject`` is packetdrill's ``<`` (the peer sends), ``expect`` its ``>``
(the stack must send this, at this time, in milliseconds). Sequence numbers are relative to each
side's ISN. Expected values come from the RFCs and from the profile table
(``shared/reference/tcp-behaviour.md`` §6, ``stack/tcp/profile.py``), worked out by hand in the
comments, never from a run of the code.

Unless a test says otherwise the peer offers MSS 500 and no other option, and its handshake ACK
comes 100 ms after our SYN-ACK, so every connection starts with one RTT sample R = 100 ms:
SRTT = 100 ms, RTTVAR = 50 ms, RTO = SRTT + 4 * RTTVAR = 300 ms before the profile's floor,
cap and tick (RFC 6298 2.2).
"""

from __future__ import annotations

from typing import Any

import pytest

from stack.tcp.socket import State, TcpSocket
from stack.time import MS, SECOND
from stack.wire.tcp import OptMss
from tests.tcpscript import Script

PROFILES = ["full", "linux-like", "lwip-default", "riot-gnrc", "uip"]


def start(
    profile: str = "full", mss: int = 500, rtt_ms: float = 100, **overrides: Any
) -> tuple[Script, TcpSocket]:
    s = Script(profile, **overrides)
    sock = s.establish(rtt_ms=rtt_ms, opts=[OptMss(mss)])
    return s, sock


def ceil_to(t: float, tick: float) -> float:
    """The first multiple of ``tick`` at or after ``t`` (all in ms)."""
    return -(-t // tick) * tick


def fires(start: float, d: float, tick: float, extra: int = 0) -> float:
    """When a timer of ``d`` ms started at ``start`` fires on a stack that counts time in
    ``tick`` ms ticks: the first tick by which ``d`` has passed in whole ticks, i.e. the tick in
    (start + d - tick, start + d], plus ``extra`` ticks. lwIP's slow timer decrements a counter
    per tick like this (tcp_slowtmr); uIP tests ``timer-- == 0`` and so fires one tick later
    (uip6.c, uip_periodic)."""
    if not tick:
        return start + d
    return ceil_to(start + max(d - tick, 0) + 0.001, tick) + extra * tick


# ---------------------------------------------------------------------------------------------
# RFC 6298: the retransmission timer


# The RTO of each retransmission (ms) after a first RTT sample of 100 ms, until the profile gives
# up. Worked out from RFC 6298 5.5 (double on expiry), the profile's floor and cap and, for lwIP
# and uIP, their RTO counted in 500 ms ticks (lwIP's slow timer, uIP's periodic timer).
RTO_SEQUENCES: dict[str, list[int]] = {
    # RTO = max(1 s floor, 300 ms) = 1 s; doubling to the 60 s cap; R2 = 15 retransmissions,
    # the 16th expiry gives up (Linux's tcp_retries2 semantics).
    "full": [1000, 2000, 4000, 8000, 16000, 32000] + [60000] * 10,
    # 200 ms floor does not bite: 300 ms, doubling to the 120 s cap; 15 retransmissions.
    "linux-like": [300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800] + [120000] * 7,
    # 300 ms rounded up to one 500 ms tick, then that tick count shifted, at most 7 times
    # (x128, tcp_backoff[]); TCP_MAXRTX 12: 12 retransmissions, the 13th expiry gives up.
    "lwip-default": [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000] + [64000] * 5,
    # 1 s floor, doubling; RIOT has no retry limit but a 120 s user timeout (below).
    "riot-gnrc": [1000, 2000, 4000, 8000, 16000, 32000],  # the next would be at 123.1 s
    # one 500 ms tick << min(n, 4); UIP_MAXRTX 8: 8 retransmissions, the 9th expiry gives up.
    "uip": [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000],
}
RTO_TICK_MS = {"full": 0, "linux-like": 0, "lwip-default": 500, "riot-gnrc": 0, "uip": 500}
EXTRA_TICKS = {"uip": 1}


@pytest.mark.parametrize("profile", PROFILES)
def test_data_rto_backs_off_to_the_cap_then_gives_up(profile: str) -> None:
    s, sock = start(profile)
    sock.send(b"x" * 300)
    s.expect(100, "P.", seq=1, ack=1, length=300)
    tick = RTO_TICK_MS[profile]
    t = 100.0
    gives_up_at: float
    if profile == "riot-gnrc":
        # RIOT: CONFIG_GNRC_TCP_CONNECTION_TIMEOUT_DURATION_MS = 120 s after the data was sent
        seq_rto = RTO_SEQUENCES[profile]
        gives_up_at = 100 + 120_000
    else:
        *seq_rto, last = RTO_SEQUENCES[profile]
        gives_up_at = -1  # after the last interval
    for rto in seq_rto:
        t = fires(t, rto, tick, EXTRA_TICKS.get(profile, 0))
        out = s.expect(t, "P.", seq=1, ack=1, length=300)
        if tick:
            assert out.t_ms % tick == 0  # fired on the stack's timer tick
    if gives_up_at < 0:
        gives_up_at = fires(t, last, tick, EXTRA_TICKS.get(profile, 0))
    # giving up: RST from SND.NXT, connection closed with a timeout error (RFC 9293 3.8.3)
    s.expect(gives_up_at, "R", seq=301)
    assert sock.state is State.CLOSED and sock.error == "timeout"
    assert sock.stats["retransmits"] == len(seq_rto)
    s.expect_nothing(gives_up_at + 600_000)


# First retransmission after a 10 ms handshake RTT: RTO = 10 + 4 * 5 = 30 ms before the floor.
RTO_FLOOR_MS = {
    "full": 1000,  # RFC 6298 2.4: at least 1 s
    "linux-like": 200,  # TCP_RTO_MIN
    "lwip-default": 500,  # no floor, but one 500 ms tick is the least it counts (so at 500)
    "riot-gnrc": 1000,  # CONFIG_GNRC_TCP_RTO_LOWER_BOUND_MS
    "uip": 500,  # one 500 ms tick: the next tick (500) plus uIP's extra one, at 1000
}


@pytest.mark.parametrize("profile", PROFILES)
def test_rto_floor(profile: str) -> None:
    s, sock = start(profile, rtt_ms=10)
    s.run_until(20)
    sock.send(b"x" * 100)
    s.expect(20, "P.", seq=1, length=100)
    due = fires(20, RTO_FLOOR_MS[profile], RTO_TICK_MS[profile], EXTRA_TICKS.get(profile, 0))
    s.expect(due, "P.", seq=1, length=100)


# SYN retransmissions of an active open: the initial RTO (no sample yet) and its back-off.
# (SYN times, give-up time) in ms.
SYN_SCHEDULE: dict[str, tuple[list[int], int]] = {
    # RFC 6298 2.1: 1 s, doubling; 6 SYN retries: the 7th expiry at 127 s gives up (Linux)
    "full": ([0, 1000, 3000, 7000, 15000, 31000, 63000], 127_000),
    "linux-like": ([0, 1000, 3000, 7000, 15000, 31000, 63000], 127_000),
    # lwIP: 3 s, no back-off in SYN-SENT, TCP_SYNMAXRTX 6: gives up after 7 * 3 s = 21 s
    "lwip-default": ([0, 3000, 6000, 9000, 12000, 15000, 18000], 21_000),
    # RIOT: 1 s doubling up to 60 s until the 120 s connection timeout
    "riot-gnrc": ([0, 1000, 3000, 7000, 15000, 31000, 63000], 120_000),
    # uIP: UIP_RTO 3 ticks, << min(n, 4) up to 48 ticks, each + 1 tick (timer-- == 0),
    # UIP_MAXSYNRTX 5: intervals 2, 3.5, 6.5, 12.5, 24.5 s, give up 24.5 s after the last
    "uip": ([0, 2000, 5500, 12000, 24500, 49000], 73_500),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_syn_initial_rto_and_backoff(profile: str) -> None:
    s = Script(profile)
    sock = s.connect(0)
    times, give_up = SYN_SCHEDULE[profile]
    syn = "SEW" if s.config.ecn else "S"
    for t in times:
        s.expect(t, syn, seq=0)
    s.expect_nothing(give_up - 1)
    s.run_until(give_up)
    assert sock.state is State.CLOSED and sock.error == "timeout"
    s.expect_nothing(give_up + 600_000)  # nothing more, and no RST (never synchronised)


def test_rto_timer_restarts_on_each_new_ack() -> None:
    """RFC 6298 5.3: an ACK of new data restarts the timer for the rest; 5.2: all acked stops it."""
    s, sock = start("full")
    sock.send(b"x" * 1000)
    s.expect(100, ".", seq=1, length=500)
    s.expect(100, "P.", seq=501, length=500)
    s.inject(600, ".", seq=1, ack=501)  # RTT 500 ms: RTO stays at the 1 s floor
    s.expect_nothing(1599)  # not at 1100, 1 s after the first send
    s.expect(1600, "P.", seq=501, length=500)
    s.inject(1700, ".", seq=1, ack=1001)
    s.expect_nothing(100_000)  # 5.2: timer off once everything is acknowledged


def test_karn_no_sample_from_a_retransmitted_segment() -> None:
    """Karn (RFC 6298 3 and 5): the ACK of a retransmitted segment gives no RTT sample and the
    backed-off RTO stays; the next segment sent once is timed and its sample ends the back-off.

    linux-like (200 ms floor, no timestamps) so the samples move the RTO: 300 ms at first.
    """
    s, sock = start("linux-like")
    sock.send(b"a" * 100)
    s.expect(100, "P.", seq=1, length=100)
    s.expect(400, "P.", seq=1, length=100)  # RTO 300 ms; backed off to 600 ms
    # Acked 800 ms after the first transmission: were it sampled, SRTT = 100 + 700/8 = 187.5,
    # RTTVAR = 50 + (700 - 50)/4 = 212.5, RTO = 1037.5 ms.
    s.inject(900, ".", seq=1, ack=101)
    sock.send(b"b" * 100)
    s.expect(900, "P.", seq=101, length=100)
    s.expect(1500, "P.", seq=101, length=100)  # backed-off RTO kept: 600 ms; now 1200 ms
    s.inject(1550, ".", seq=1, ack=201)  # a retransmission again: still no sample
    sock.send(b"c" * 100)
    s.expect(1550, "P.", seq=201, length=100)
    # sent once, acked after 50 ms: a valid sample. RTTVAR = 3/4 * 50 + 1/4 * |100 - 50| = 50,
    # SRTT = 7/8 * 100 + 1/8 * 50 = 93.75, RTO = 93.75 + 200 = 293.75 ms, back-off cleared.
    s.inject(1600, ".", seq=1, ack=301)
    assert sock.rtt.srtt == 93_750 and sock.rtt.rttvar == 50 * MS
    sock.send(b"d" * 100)
    s.expect(1600, "P.", seq=301, length=100)
    s.expect(1893.75, "P.", seq=301, length=100)


def test_rto_cap_applies_to_the_estimate() -> None:
    """RFC 6298 2.5: a maximum may be placed on the RTO; it caps a large estimate too, not only
    the back-off. Cap lowered to 2 s; a 900 ms handshake RTT gives 900 + 4 * 450 = 2.7 s."""
    s, sock = start("full", rtt_ms=900, **{"rto.max_us": 2 * SECOND})
    sock.send(b"x" * 10)
    s.expect(900, "P.", seq=1)
    s.expect(2900, "P.", seq=1)
    s.expect(4900, "P.", seq=1)  # and back-off cannot pass it either


# ---------------------------------------------------------------------------------------------
# Delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2, RFC 1122 4.2.3.2)

# When a lone small segment received at 300 ms is acknowledged.
DELACK_AT_MS = {
    "full": 340,  # delayed_ack_us 40 ms (Linux TCP_DELACK_MIN)
    "linux-like": 340,
    "lwip-default": 500,  # the next 250 ms fast-timer tick: at most 250 ms (tcp_fasttmr)
    "riot-gnrc": 300,  # no delayed ACK
    "uip": 300,
}
ADV_MSS = {"full": 1460, "linux-like": 1460, "lwip-default": 536, "riot-gnrc": 1220, "uip": 1220}


@pytest.mark.parametrize("profile", PROFILES)
def test_delayed_ack_timeout(profile: str) -> None:
    s, sock = start(profile)
    s.inject(300, "P.", seq=1, ack=1, data=b"d" * 100)
    s.expect(DELACK_AT_MS[profile], ".", seq=1, ack=101)
    assert sock.recv() == b"d" * 100


@pytest.mark.parametrize("profile", ["full", "linux-like", "lwip-default"])
def test_ack_every_second_full_sized_segment(profile: str) -> None:
    """RFC 9293 SHLD-19 / RFC 5681 4.2: an ACK for at least every second full-sized segment."""
    s, _sock = start(profile)
    mss = ADV_MSS[profile]
    s.inject(300, ".", seq=1, ack=1, data=b"a" * mss)
    s.inject(300, ".", seq=1 + mss, ack=1, data=b"b" * mss)
    s.expect(300, ".", ack=1 + 2 * mss)
    s.inject(310, "P.", seq=1 + 2 * mss, ack=1, data=b"c" * 10)  # the next one waits again
    s.expect_nothing(DELACK_AT_MS[profile] - 1)
    s.expect(DELACK_AT_MS[profile] if profile == "lwip-default" else 350, ".", ack=11 + 2 * mss)


@pytest.mark.parametrize("profile", ["riot-gnrc", "uip"])
def test_no_delayed_ack_every_segment_acked_at_once(profile: str) -> None:
    s, sock = start(profile)
    for i, t in enumerate((300, 400, 500)):
        s.inject(t, "P.", seq=1 + 100 * i, ack=1, data=b"x" * 100)
        s.expect(t, ".", ack=101 + 100 * i)
        sock.recv()


@pytest.mark.parametrize("profile", ["full", "linux-like", "lwip-default"])
def test_out_of_order_and_hole_filling_segments_are_acked_at_once(profile: str) -> None:
    """RFC 5681 4.2: a segment above a hole gets an immediate duplicate ACK; one that fills
    the hole an immediate ACK, whatever the delayed-ACK timer says."""
    s, sock = start(profile)
    s.inject(300, ".", seq=101, ack=1, data=b"b" * 100)
    s.expect(300, ".", ack=1)
    s.inject(310, ".", seq=1, ack=1, data=b"a" * 100)
    s.expect(310, ".", ack=201)
    assert sock.recv() == b"a" * 100 + b"b" * 100


@pytest.mark.parametrize("profile", ["riot-gnrc", "uip"])
def test_out_of_order_data_dropped_without_a_queue(profile: str) -> None:
    """RIOT (gnrc_tcp_fsm.c:779) and uIP (uip6.c:1885) keep no out-of-order data: the segment
    above the hole is acknowledged with a duplicate ACK and discarded."""
    s, sock = start(profile)
    s.inject(300, ".", seq=501, ack=1, data=b"b" * 500)
    s.expect(300, ".", ack=1)
    s.inject(310, ".", seq=1, ack=1, data=b"a" * 500)
    s.expect(310, ".", ack=501)  # not 1001: the second half was thrown away
    assert sock.recv() == b"a" * 500
    assert sock.stats["ooo_dropped"] == 500
    s.inject(320, ".", seq=501, ack=1, data=b"b" * 500)  # the peer's retransmission
    s.expect(320, ".", ack=1001)
    assert sock.recv() == b"b" * 500


# ---------------------------------------------------------------------------------------------
# Nagle (RFC 896, RFC 9293 3.7.4)


@pytest.mark.parametrize("profile", ["full", "lwip-default"])
def test_nagle_coalesces_small_writes_while_data_is_unacked(profile: str) -> None:
    s, sock = start(profile)
    sock.send(b"a" * 100)
    s.expect(100, "P.", seq=1, length=100)  # nothing in flight: goes at once
    s.run_until(110)
    sock.send(b"b" * 100)
    s.run_until(120)
    sock.send(b"c" * 100)
    s.expect_nothing(199)  # one small segment in flight: the rest waits for its ACK
    s.inject(200, ".", seq=1, ack=101)
    s.expect(200, "P.", seq=101, data=b"b" * 100 + b"c" * 100)
    s.run_until(210)
    sock.send(b"d" * 600)  # a full-sized segment is never held back
    s.expect(210, ".", seq=301, data=b"d" * 500)
    s.expect_nothing(299)
    s.inject(300, ".", seq=1, ack=801)
    s.expect(300, "P.", seq=801, data=b"d" * 100)


def test_nagle_off_sends_each_write() -> None:
    s, sock = start("full")
    sock.nagle = False
    for i, t in enumerate((100, 110, 120)):
        s.run_until(t)
        sock.send(b"x" * 100)
        s.expect(t, "P.", seq=1 + 100 * i, length=100)


# ---------------------------------------------------------------------------------------------
# Silly window syndrome avoidance (RFC 9293 3.8.6.2)


def test_sender_sws_avoidance_and_override_timer() -> None:
    """3.8.6.2.1: send when a full segment fits, when all queued data fits, when the usable
    window is at least half the largest window the peer offered, or when the override timer
    (sws_override_us, 200 ms) runs out; otherwise wait."""
    s = Script("full")
    sock = s.establish(rtt_ms=100, opts=[OptMss(1000)], win=1500)  # max window 1500
    sock.send(b"x" * 5000)
    s.expect(100, ".", seq=1, length=1000)
    s.expect_nothing(199)  # usable 500 < 1500 / 2: not sent
    s.inject(200, ".", seq=1, ack=1001, win=1500)
    s.expect(200, ".", seq=1001, length=1000)
    s.expect_nothing(299)  # again 500 usable while data is in flight: wait for the ACK
    s.inject(300, ".", seq=1, ack=2001, win=500)  # 500 usable, nothing in flight
    s.expect_nothing(499)
    s.expect(500, ".", seq=2001, length=500)  # the override timer, 200 ms
    s.inject(600, ".", seq=1, ack=2501, win=800)  # 800 >= 1500 / 2: sent at once
    s.expect(600, ".", seq=2501, length=800)
    s.inject(700, ".", seq=1, ack=3301, win=1500)
    s.expect(700, ".", seq=3301, length=1000)
    s.expect_nothing(799)  # 500 usable, 700 queued
    s.inject(800, ".", seq=1, ack=4301, win=700)
    s.expect(800, "P.", seq=4301, length=700)  # all that is queued fits: sent (case b)


# Receiver SWS: the window may reopen only by min(RCV.BUFF / 2, MSS) or more (3.8.6.2.2).
# (profile, receive buffer, MSS) -> the threshold min(buf / 2, mss)
RX_SWS = {
    "full": (4000, 1460),  # rcv_buf lowered to 4000: threshold 1460
    "lwip-default": (2144, 536),  # TCP_WND 4 * 536: threshold 536
    "uip": (1220, 1220),  # one-MSS window: threshold 610
}


@pytest.mark.parametrize("profile", list(RX_SWS))
def test_receiver_sws_avoidance(profile: str) -> None:
    buf, mss = RX_SWS[profile]
    threshold = min(buf // 2, mss)
    s = Script(profile, rcv_buf=buf)
    sock = s.establish(rtt_ms=100, opts=[OptMss(mss)])
    # the peer fills the window in MSS-sized segments; the application reads nothing
    off = 0
    while off < buf:
        n = min(mss, buf - off)
        s.inject(200, ".", seq=1 + off, ack=1, data=b"z" * n)
        off += n
    acks = [o for o in s.drain() if o.flags == "."]
    s.run_until(1000)
    acks += s.drain()
    assert acks[-1].ack == 1 + buf and acks[-1].win == 0
    # reading less than the threshold must not reopen the window ...
    sock.recv(threshold - 1)
    s.expect_nothing(1100)
    # ... reading up to it does, at once, with the whole free space
    sock.recv(1)
    s.expect(1100, ".", ack=1 + buf, win=threshold)


# ---------------------------------------------------------------------------------------------
# Zero-window probing (RFC 9293 3.8.6.1, MUST-36/37)

# Probe intervals: the RTO (1 s after the 100 ms sample: the floor), doubling up to 60 s
# (zwp_max_us; RIOT CONFIG_GNRC_TCP_PROBE_UPPER_BOUND_MS).
ZWP_INTERVALS = [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]


@pytest.mark.parametrize("profile", ["full", "riot-gnrc"])
def test_zero_window_probes_back_off_and_keep_the_connection(profile: str) -> None:
    s, sock = start(profile)
    sock.send(b"a" * 500)
    s.expect(100, "P.", seq=1, length=500)
    s.inject(200, ".", seq=1, ack=501, win=0)  # all acknowledged, window closed
    s.run_until(300)
    sock.send(b"b" * 300)
    s.expect_nothing(300 + ZWP_INTERVALS[0] - 1)
    t = 300
    for interval in ZWP_INTERVALS:
        t += interval
        # one octet of new data beyond the window, answered by the peer without taking it
        s.expect(t, ".", seq=501, data=b"b")
        s.inject(t + 50, ".", seq=1, ack=501, win=0)
    assert sock.state is State.ESTABLISHED and sock.error is None  # MUST-37: probes answered
    assert sock.stats["zwp"] == len(ZWP_INTERVALS)
    assert sock.stats["fast_retransmits"] == 0  # probe answers are not duplicate ACKs
    # the window reopens: everything not yet acknowledged goes, the probed octet included
    t += 1000
    s.inject(t, ".", seq=1, ack=501, win=1000)
    s.expect(t, "P.", seq=501, data=b"b" * 300)
    s.inject(t + 100, ".", seq=1, ack=801, win=1000)
    s.expect_nothing(t + 100_000)


def test_window_reopening_with_the_probe_octet_taken() -> None:
    """The peer may keep the probe octet when it reopens the window: the rest follows it."""
    s, sock = start("full")
    sock.send(b"a" * 500)
    s.expect(100, "P.", seq=1, length=500)
    s.inject(200, ".", seq=1, ack=501, win=0)
    s.run_until(300)
    sock.send(b"b" * 300)
    s.expect(1300, ".", seq=501, data=b"b")
    s.inject(1350, ".", seq=1, ack=502, win=1000)
    s.expect(1350, "P.", seq=502, data=b"b" * 299)


# ---------------------------------------------------------------------------------------------
# Keep-alive (RFC 9293 3.8.4, RFC 1122 4.2.3.6)


@pytest.mark.parametrize("profile", PROFILES)
def test_keepalive_is_off_by_default(profile: str) -> None:
    """MUST-25: keep-alive defaults to off. Three idle hours: not a single segment."""
    s, sock = start(profile)
    assert not sock.keepalive
    s.expect_nothing(3 * 3600 * 1000)
    assert sock.state is State.ESTABLISHED


def test_keepalive_probes_then_abort_after_count_unanswered() -> None:
    """Idle 7200 s, then a probe every 75 s; 9 unanswered probes: the connection is dropped
    when the 10th would be due (7200 + 9 * 75 = 7875 s after the last segment received)."""
    s, sock = start("full")
    sock.set_keepalive(True)
    last_rx = 100  # the handshake ACK
    # RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, no data, so the peer must answer with an ACK
    s.expect_nothing(last_rx + 7_200_000 - 1)
    for i in range(9):
        s.expect(last_rx + 7_200_000 + 75_000 * i, ".", seq=0, ack=1, length=0)
    s.expect(last_rx + 7_875_000, "R", seq=1)
    assert sock.state is State.CLOSED and sock.error == "timeout"
    assert sock.stats["keepalives"] == 9


def test_keepalive_answered_keeps_the_connection_and_restarts_the_idle_time() -> None:
    s, sock = start("full", keepalive_idle_us=60 * SECOND, keepalive_interval_us=10 * SECOND)
    sock.set_keepalive(True)
    s.expect(60_100, ".", seq=0, ack=1, length=0)
    s.expect(70_100, ".", seq=0, ack=1, length=0)  # unanswered: 10 s later
    s.inject(70_200, ".", seq=1, ack=1)  # answered
    s.expect_nothing(130_199)  # idle again for 60 s from the answer
    s.expect(130_200, ".", seq=0, ack=1, length=0)
    s.inject(130_300, ".", seq=1, ack=1)
    # data also counts as activity
    s.inject(150_000, "P.", seq=1, ack=1, data=b"hi")
    s.expect(150_040, ".", ack=3)
    s.expect(210_000, ".", seq=0, ack=3, length=0)
    assert sock.state is State.ESTABLISHED and sock.stats["keepalives"] == 4


# ---------------------------------------------------------------------------------------------
# Out-of-order reassembly (RFC 9293 3.10.7.4)


def test_reassembly_delivers_in_order() -> None:
    s, sock = start("full")
    got: list[bytes] = []
    sock.on_readable = lambda so: got.append(so.recv())
    s.inject(300, ".", seq=301, ack=1, data=b"d" * 100)  # 301..400
    s.expect(300, ".", ack=1)
    s.inject(301, ".", seq=101, ack=1, data=b"b" * 100)  # 101..200
    s.expect(301, ".", ack=1)
    s.inject(302, ".", seq=151, ack=1, data=b"B" * 100)  # overlaps the held 101..200
    s.expect(302, ".", ack=1)
    assert got == []  # nothing above a hole is handed to the application
    s.inject(303, ".", seq=1, ack=1, data=b"a" * 100)  # fills the first hole
    s.expect(303, ".", ack=251)
    s.inject(304, "P.", seq=201, ack=1, data=b"c" * 100)  # and the last
    s.expect(304, ".", ack=401)
    # first-received data wins in the overlap (151..200 stays "b")
    assert b"".join(got) == b"a" * 100 + b"b" * 100 + b"B" * 50 + b"c" * 50 + b"d" * 100


# Largest number of blocks held above a hole: ooo_max_holes (lwIP: 10 pbufs, TCP_OOSEQ_MAX_PBUFS
# in spirit).
@pytest.mark.parametrize(("profile", "holes"), [("full", 32), ("lwip-default", 10)])
def test_reassembly_holds_a_bounded_number_of_blocks(profile: str, holes: int) -> None:
    s, sock = start(profile)
    # holes + 1 separate 50-byte blocks at 100 * i + 50; each leaves a hole below it
    for i in range(holes + 1):
        s.inject(300, ".", seq=1 + 100 * i + 50, ack=1, data=bytes([i]) * 50)
        s.expect(300, ".", ack=1)
    assert sock.stats["ooo_dropped"] == 50  # the last one: a block beyond the bound
    # fill every hole: data up to the dropped block arrives, then the peer must resend it
    for i in range(holes + 1):
        s.inject(400, ".", seq=1 + 100 * i, ack=1, data=bytes([i]) * 50)
    s.run_until(600)  # the last fill leaves no hole: its ACK may be delayed
    acks = s.drain()
    assert acks[-1].ack == 1 + 100 * holes + 50
    s.inject(700, ".", seq=1 + 100 * holes + 50, ack=1, data=bytes([holes]) * 50)
    s.run_until(1000)
    assert s.drain()[-1].ack == 1 + 100 * (holes + 1)
    assert sock.recv() == b"".join(bytes([i]) * 100 for i in range(holes + 1))


# ---------------------------------------------------------------------------------------------
# Stop-and-wait: one segment in flight (RIOT gnrc_tcp_fsm.c:323, uIP)


@pytest.mark.parametrize("profile", ["riot-gnrc", "uip"])
def test_stop_and_wait(profile: str) -> None:
    s = Script(profile)
    sock = s.establish(rtt_ms=100, opts=[OptMss(1220)], win=65535)
    data = bytes(range(256)) * 20  # 5120 bytes
    sent = 0

    def write(so: TcpSocket) -> None:
        nonlocal sent
        sent += so.send(data[sent:])

    write(sock)
    assert sent == 1220  # the send buffer is one MSS
    sock.on_writable = write
    t = 100.0
    pos = 0
    while pos < len(data):
        n = min(1220, len(data) - pos)
        s.expect(t, None, seq=1 + pos, data=data[pos : pos + n])
        s.expect_nothing(t + 9)  # a 64 KiB window, yet nothing more in flight
        t += 10
        pos += n
        s.inject(t, ".", seq=1, ack=1 + pos)
    s.expect_nothing(t + 10_000)


def test_riot_rto_between_one_and_sixty_seconds() -> None:
    """RIOT: CONFIG_GNRC_TCP_RTO_LOWER_BOUND_MS 1 s, _UPPER_BOUND_MS 60 s, doubling in between
    (gnrc_tcp_pkt.c:435). The user timeout is lifted to see the cap."""
    s, sock = start("riot-gnrc", user_timeout_us=None)
    sock.send(b"x" * 10)
    s.expect(100, None, seq=1, length=10)
    t = 100
    for rto in (1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000):
        t += rto
        s.expect(t, None, seq=1, length=10)
