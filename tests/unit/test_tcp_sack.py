"""Congestion control and loss recovery, packetdrill style: slow start, congestion avoidance,
restart after idle, NewReno fast retransmit/recovery with limited transmit, SACK blocks and
D-SACK as a receiver, RFC 6675 recovery as a sender.

The peer offers MSS 1000 (no timestamps unless a test says so), so segment ``k`` (from 1) starts
at relative sequence ``1 + 1000 * (k - 1)``; its handshake ACK comes after 100 ms (RTO 1 s in the
full profile). Expected windows are worked out from RFC 5681 / 6582 / 6675 / 3042 in the comments.
"""

from __future__ import annotations

from typing import Any

import pytest

from stack.tcp.socket import TcpSocket
from stack.wire.tcp import OptMss, OptSackPermitted, OptTimestamps, TcpOption
from tests.tcpscript import Out, Script

MSS = 1000


def start(
    profile: str = "full", sack: bool = False, ts: bool = False, **overrides: Any
) -> tuple[Script, TcpSocket]:
    s = Script(profile, **overrides)
    opts: list[TcpOption] = [OptMss(MSS)]
    if sack:
        opts.append(OptSackPermitted())
    if ts:
        opts.append(OptTimestamps(1, 0))
    return s, s.establish(rtt_ms=100, opts=opts)


def seg(k: int) -> int:
    """Relative sequence number of data segment ``k`` (1-based)."""
    return 1 + MSS * (k - 1)


def flight(s: Script, t: float) -> list[Out]:
    s.run_until(t)
    return [o for o in s.drain() if o.data]


def ack_each(s: Script, t: float, outs: list[Out]) -> list[Out]:
    """The peer acknowledges every segment of ``outs`` separately at ``t``; returns what the
    stack sent in response."""
    new: list[Out] = []
    for o in outs:
        s.inject(t, ".", seq=1, ack=o.seq + len(o.data))
        new += [x for x in s.drain() if x.data]
    return new


# ---------------------------------------------------------------------------------------------
# Slow start and congestion avoidance (RFC 5681 3.1)


@pytest.mark.parametrize(
    ("profile", "rounds"),
    [
        # IW = min(4 * SMSS, max(2 * SMSS, 4380)) = 4000 bytes: 4 segments; then +1 SMSS per ACK
        ("full", [4, 8, 16, 32]),
        # Linux TCP_INIT_CWND 10 * 1460 = 14600 bytes: 14 segments of 1000 (the 600 left over
        # would be a silly window), then doubling
        ("linux-like", [14, 28, 56]),
    ],
)
def test_slow_start_doubles_each_round_trip(profile: str, rounds: list[int]) -> None:
    s, sock = start(profile)
    sock.send(b"x" * 200_000)
    outs = flight(s, 100)
    t = 100
    for n in rounds:
        assert len(outs) == n
        t += 100
        outs = ack_each(s, t, outs)


def test_lwip_default_send_buffer_keeps_two_segments_in_flight() -> None:
    """TCP_SND_BUF = 2 * TCP_MSS: whatever cwnd allows, lwIP has at most 1072 bytes unacked."""
    s = Script("lwip-default")
    sock = s.establish(rtt_ms=100, opts=[OptMss(536)])
    assert sock.send(b"x" * 5000) == 1072
    outs = flight(s, 100)
    assert [(o.seq, len(o.data)) for o in outs] == [(1, 536), (537, 536)]


def test_congestion_avoidance_after_a_timeout_grows_one_segment_per_round_trip() -> None:
    """RTO: ssthresh = max(FlightSize / 2, 2 * SMSS) = 2000, cwnd = 1 SMSS (RFC 5681 eq. 4).
    Slow start to ssthresh, then congestion avoidance: one more segment per round trip."""
    s, sock = start()
    sock.send(b"x" * 100_000)
    assert len(flight(s, 100)) == 4  # all lost
    s.expect(1100, ".", seq=seg(1))  # the RTO: one segment
    assert (sock.cc.cwnd, sock.cc.ssthresh) == (1000, 2000)
    outs = ack_each(s, 1200, [s.sent[-1]])
    t = 1200
    for n in (2, 3, 4, 5, 6):
        assert len(outs) == n, f"round at {t} ms"
        t += 100
        outs = ack_each(s, t, outs)


def test_restart_after_idle() -> None:
    """RFC 5681 4.1: after more than an RTO without sending data, cwnd restarts from at most
    the initial window. Pure ACKs sent meanwhile are not data and do not count."""
    s, sock = start()
    sock.send(b"x" * 12_000)
    outs = flight(s, 100)
    outs = ack_each(s, 200, outs)  # 4 -> 8 in flight, all of the data
    ack_each(s, 300, outs)
    assert sock.cc.cwnd == 16_000 and sock.unacked == 0
    # idle 500 ms (< RTO 1 s): the whole cwnd may go at once
    s.run_until(800)
    sock.send(b"y" * 20_000)
    outs = flight(s, 800)
    assert len(outs) == 16
    outs = ack_each(s, 900, outs)
    ack_each(s, 1000, outs)
    cwnd = sock.cc.cwnd
    assert cwnd > 16_000
    # idle 3 s, during which the peer sends data and we only ACK it, 460 ms before we send
    s.inject(3500, "P.", seq=1, ack=1 + 32_000, data=b"p" * 10)
    s.expect(3540, ".", ack=11)
    s.run_until(4000)
    sock.send(b"z" * 20_000)
    assert len(flight(s, 4000)) == 4  # restarted from IW = 4 segments
    assert sock.cc.ssthresh > 16_000  # ssthresh is kept


def test_no_congestion_control_fills_the_peer_window() -> None:
    s, sock = start(congestion_control="none")
    sock.send(b"x" * 100_000)
    outs = flight(s, 100)
    assert len(outs) == 65  # 65535 // 1000: only the peer's window limits the sender
    assert outs[-1].seq == seg(65)


# ---------------------------------------------------------------------------------------------
# NewReno without SACK: fast retransmit (RFC 5681 3.2), limited transmit (RFC 3042),
# partial and full ACKs (RFC 6582)


def test_newreno_fast_retransmit_limited_transmit_partial_and_full_ack() -> None:
    s, sock = start(initial_window=10 * MSS)
    sock.send(b"x" * 40_000)
    outs = flight(s, 100)
    assert [o.seq for o in outs] == [seg(k) for k in range(1, 11)]
    # segments 1 and 5 are lost; 2, 3, 4 arrive: three duplicate ACKs
    s.inject(200, ".", seq=1, ack=1)
    s.expect(200, ".", seq=seg(11))  # RFC 3042: a new segment on the 1st ...
    s.inject(201, ".", seq=1, ack=1)
    s.expect(201, ".", seq=seg(12))  # ... and on the 2nd duplicate ACK
    s.inject(202, ".", seq=1, ack=1)
    s.expect(202, ".", seq=seg(1))  # the 3rd: fast retransmit of the first segment
    # FlightSize was 12 segments: ssthresh = 6000, cwnd = ssthresh + 3 * SMSS = 9000
    assert (sock.cc.ssthresh, sock.cc.cwnd) == (6000, 9000)
    # segments 6..9 arrive: each further duplicate inflates cwnd by one SMSS; at 13000 >
    # FlightSize 12000 a new segment may go (RFC 5681 3.2 steps 4 and 5)
    for i, t in enumerate((210, 211, 212)):
        s.inject(t, ".", seq=1, ack=1)
        assert sock.cc.cwnd == 10_000 + 1000 * i
    s.expect_nothing(212)
    s.inject(213, ".", seq=1, ack=1)
    s.expect(213, ".", seq=seg(13))
    # the retransmission arrives: ACK up to the second hole, below recover (partial ACK): the
    # next hole is retransmitted at once; cwnd = 13000 - 4000 + 1000 = 10000, so one new
    # segment goes too (RFC 6582 3.2 step 3)
    s.inject(300, ".", seq=1, ack=seg(5))
    s.expect(300, ".", seq=seg(5))
    s.expect(300, ".", seq=seg(14))
    assert sock.cc.cwnd == 10_000
    # everything arrives: a full ACK ends recovery with cwnd = min(ssthresh, max(FlightSize,
    # SMSS) + SMSS) = min(6000, 2000) (RFC 6582 3.2 step 3, first option)
    s.inject(400, ".", seq=1, ack=seg(15))
    assert not sock.cc.in_recovery and sock.cc.cwnd == 2000
    s.expect(400, ".", seq=seg(15))
    s.expect(400, ".", seq=seg(16))
    s.expect_nothing(450)
    assert sock.stats["retransmits"] == 2 and sock.stats["rto"] == 0
    assert sock.stats["fast_retransmits"] == 1


def test_limited_transmit_off() -> None:
    s, sock = start(initial_window=10 * MSS, limited_transmit=False)
    sock.send(b"x" * 40_000)
    flight(s, 100)
    s.inject(200, ".", seq=1, ack=1)
    s.inject(201, ".", seq=1, ack=1)
    s.expect_nothing(201)  # no new data on the 1st and 2nd duplicate ACK
    s.inject(202, ".", seq=1, ack=1)
    s.expect(202, ".", seq=seg(1))


def test_no_second_fast_retransmit_for_the_same_window() -> None:
    """RFC 6582 3.2 step 1: duplicate ACKs after an RTO that do not cover "recover" (the
    highest sequence sent when the RTO fired) start no fast retransmit."""
    s, sock = start(initial_window=10 * MSS)
    sock.send(b"x" * 10_000)
    flight(s, 100)
    s.expect(1100, ".", seq=seg(1))  # RTO: go back N from segment 1
    for t in (1150, 1151, 1152, 1153):
        s.inject(t, ".", seq=1, ack=1)  # late duplicates of the first flight
    s.expect_nothing(1160)
    assert sock.stats["fast_retransmits"] == 0


# ---------------------------------------------------------------------------------------------
# SACK as a receiver (RFC 2018 4, RFC 2883)


def test_sack_blocks_most_recent_first_at_most_four() -> None:
    s, _sock = start(sack=True)
    # four separate blocks of 100 above a hole at 1..100, sent in increasing order
    got: list[list[tuple[int, int]]] = []
    for i in range(5):
        lo = 101 + 200 * i
        s.inject(200 + i, ".", seq=lo, ack=1, data=b"x" * 100)
        got.append(s.expect(200 + i, ".", ack=1).sack(s))
    assert got[0] == [(101, 201)]
    assert got[1] == [(301, 401), (101, 201)]
    assert got[2] == [(501, 601), (301, 401), (101, 201)]
    assert got[3] == [(701, 801), (501, 601), (301, 401), (101, 201)]
    # a fifth block: still four (40 bytes of options), the oldest left out
    assert got[4] == [(901, 1001), (701, 801), (501, 601), (301, 401)]
    # a segment joining two blocks: the first block reports the one containing it
    s.inject(300, ".", seq=201, ack=1, data=b"x" * 100)
    assert s.expect(300, ".", ack=1).sack(s)[:2] == [(101, 401), (901, 1001)]
    # the hole is filled: cumulative ACK to the first hole above, the rest still SACKed
    s.inject(301, ".", seq=1, ack=1, data=b"x" * 100)
    out = s.expect(301, ".", ack=401)
    assert out.sack(s) == [(901, 1001), (701, 801), (501, 601)]


def test_sack_blocks_with_timestamps_at_most_three() -> None:
    s, sock = start(sack=True, ts=True)
    assert sock.ts_ok and sock.sack_ok
    for i in range(4):
        s.inject(200 + i, ".", seq=101 + 200 * i, ack=1, data=b"x" * 100, opts=[s.peer_ts(10)])
        out = s.expect(200 + i, ".", ack=1)
    # 10 bytes of timestamps + 2 NOPs leave room for 3 blocks (RFC 2018 3)
    assert out.sack(s) == [(701, 801), (501, 601), (301, 401)]


def test_dsack_for_a_duplicate_below_the_cumulative_ack() -> None:
    """RFC 2883 4.1.1: the first block reports the duplicate, even below the ACK."""
    s, _sock = start(sack=True)
    s.inject(200, "P.", seq=1, ack=1, data=b"x" * 100)
    s.expect(240, ".", ack=101)
    assert s.sent[-1].sack(s) == []
    s.inject(300, "P.", seq=1, ack=1, data=b"x" * 100)  # a spurious retransmission
    assert s.expect(300, ".", ack=101).sack(s) == [(1, 101)]
    s.inject(400, "P.", seq=101, ack=1, data=b"y" * 100)  # D-SACK is reported once
    assert s.expect(440, ".", ack=201).sack(s) == []


def test_dsack_for_a_duplicate_of_out_of_order_data() -> None:
    """RFC 2883 4.1.2: the duplicate first, then the block that contains it."""
    s, _sock = start(sack=True)
    s.inject(200, ".", seq=101, ack=1, data=b"x" * 100)
    s.expect(200, ".", ack=1)
    s.inject(201, ".", seq=301, ack=1, data=b"x" * 100)
    s.expect(201, ".", ack=1)
    s.inject(202, ".", seq=301, ack=1, data=b"x" * 100)
    assert s.expect(202, ".", ack=1).sack(s) == [(301, 401), (301, 401), (101, 201)]


def test_no_sack_when_not_negotiated() -> None:
    s, _sock = start(sack=False)
    s.inject(200, ".", seq=101, ack=1, data=b"x" * 100)
    assert s.expect(200, ".", ack=1).sack(s) == []


# ---------------------------------------------------------------------------------------------
# SACK as a sender: RFC 6675 loss recovery retransmits only what is missing


def test_sack_recovery_retransmits_only_the_holes() -> None:
    s, sock = start(sack=True, initial_window=10 * MSS)
    sock.send(b"x" * 10_000)
    assert [o.seq for o in flight(s, 100)] == [seg(k) for k in range(1, 11)]
    # lost: 2, 5, 6, 9. The peer's ACKs as 1, 3, 4, 7, 8, 10 arrive:
    s.inject(200, ".", seq=1, ack=seg(2))
    s.inject(201, ".", seq=1, ack=seg(2), opts=[s.sack((seg(3), seg(4)))])
    s.inject(202, ".", seq=1, ack=seg(2), opts=[s.sack((seg(3), seg(5)))])
    s.expect_nothing(202)
    # 3rd duplicate (and 3 segments SACKed above 2): enter recovery, retransmit segment 2.
    # ssthresh = cwnd = FlightSize / 2 = 4500 (RFC 6675 5 step 4.2)
    s.inject(203, ".", seq=1, ack=seg(2), opts=[s.sack((seg(7), seg(8)), (seg(3), seg(5)))])
    s.expect(203, ".", seq=seg(2))
    assert sock.cc.ssthresh == 4500
    # pipe: 2 retransmitted (1000) + 5..6 not yet lost (2000) + 8..10 (3000) = 6000 > 4500
    s.inject(204, ".", seq=1, ack=seg(2), opts=[s.sack((seg(7), seg(9)), (seg(3), seg(5)))])
    s.expect_nothing(204)
    # 10 SACKed: 5 and 6 now have 3 segments SACKed above them (IsLost); pipe = 1000 (2) +
    # 1000 (9, not lost) = 2000: room for both
    s.inject(
        205,
        ".",
        seq=1,
        ack=seg(2),
        opts=[s.sack((seg(10), seg(11)), (seg(7), seg(9)), (seg(3), seg(5)))],
    )
    s.expect(205, ".", seq=seg(5))
    s.expect(205, ".", seq=seg(6))
    s.expect_nothing(250)
    # 2 arrives: ACK up to 5. Pipe = 2000 (5, 6) + 1000 (9) = 3000: room for one more, and
    # with no new data to send, NextSeg rule 3 picks the remaining hole, 9
    s.inject(300, ".", seq=1, ack=seg(5), opts=[s.sack((seg(7), seg(9)), (seg(10), seg(11)))])
    s.expect(300, ".", seq=seg(9))
    s.inject(301, ".", seq=1, ack=seg(9), opts=[s.sack((seg(10), seg(11)))])
    s.inject(400, ".", seq=1, ack=seg(11))
    s.expect_nothing(60_000)
    retransmitted = sorted(o.seq for o in s.sent if o.data and o.t_ms > 100)
    assert retransmitted == [seg(2), seg(5), seg(6), seg(9)]
    assert sock.stats["rto"] == 0 and not sock.cc.in_recovery and sock.unacked == 0


@pytest.mark.parametrize("profile", ["riot-gnrc", "uip"])
def test_single_segment_stacks_never_fast_retransmit(profile: str) -> None:
    """uIP and RIOT gnrc_tcp have no fast retransmit: three duplicate ACKs change nothing, the
    lost segment goes again only when the RTO expires (the profile's initial RTO)."""
    s = Script(profile)
    sock = s.handshake_passive(0, opts=[OptMss(1220)])
    sock.send(b"a" * 100)
    first = s.expect(0, "P.", seq=1, length=100)
    for t in (10, 20, 30):
        s.inject(t, ".", seq=1, ack=1)  # three duplicate ACKs for byte 1
    s.expect_nothing(400)  # a fast retransmit would leave at 30 ms
    retx = s.expect(None, "P.", seq=1, length=100)  # the RTO (at least one 500 ms tick)
    assert retx.t_ms >= 500 and sock.stats["fast_retransmits"] == 0
    del first
