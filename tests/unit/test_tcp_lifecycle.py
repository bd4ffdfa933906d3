"""The TCP connection lifecycle in virtual time, written like packetdrill scripts.

Each test is one timeline: ``inject`` is a segment from the peer (packetdrill's ``<``),
``expect`` the stack's answer and when it left (``>``); times are ms from the start, sequence
numbers relative to each side's ISN. Expected values come from the RFCs (RFC 9293 state
machine and resets, RFC 6298 RTO, RFC 5961 challenge ACKs, RFC 6528 ISNs) and from the profile
values with their sources (stack/tcp/profile.py, tcp-behaviour.md §6/§7); where a constrained
profile behaves differently, the test runs once per profile.
"""

from __future__ import annotations

from typing import Any

import pytest

from stack.tcp.profile import PROFILES, TcpConfig
from stack.tcp.socket import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TcpSocket,
)
from stack.time import MS, SECOND
from stack.wire.checksum import checksum, pseudo_header
from stack.wire.tcp import ACK, SYN, OptMss, TcpHeader
from tests.tcpscript import REMOTE4, Script

ALL = sorted(PROFILES)


# ---------------------------------------------------------------------- derivations


def ceil_to(t_us: int, tick_us: int) -> int:
    """Round up to a whole number of ticks (lwIP and uIP count their timers in ticks)."""
    return -(-t_us // tick_us) * tick_us if tick_us else t_us


def fires(cfg: TcpConfig, start_us: int, d_us: int, rto: bool = False) -> int:
    """When a timer of ``d_us`` started at ``start_us`` fires. A tick-driven stack counts whole
    ticks, so the timer fires on the tick in (start + d - tick, start + d] (lwIP's tcp_slowtmr
    and fast timer), or one tick later when the counter is tested with a post-decrement (uIP's
    ``timer-- == 0``, timer_extra_ticks). Retransmission timers count lwIP's 500 ms slow
    ticks (the RTO tick), the others the 250 ms timer tick; uIP counts everything in 500 ms."""
    tick = (cfg.rto.tick_us or cfg.timer_tick_us) if rto else cfg.timer_tick_us
    if not tick:
        return start_us + d_us
    first = ceil_to(start_us + max(d_us - tick, 0) + 1, tick)
    return first + cfg.timer_extra_ticks * tick


def first_rto_us(cfg: TcpConfig, r_us: int) -> int:
    """RFC 6298 2.2: after the first sample R, RTO = R + max(G, K * R/2), clamped to the
    profile's [min, max] (2.4, 2.5) and rounded up to its RTO tick."""
    r = cfg.rto
    rto = r_us + max(r.granularity_us, r.k * (r_us // 2))
    return ceil_to(min(max(rto, r.min_us), r.max_us), r.tick_us)


def backed_off_us(cfg: TcpConfig, base_us: int, k: int) -> int:
    """RFC 6298 5.5: the timer doubles on each expiry, up to max_backoff doublings and max."""
    r = cfg.rto
    return ceil_to(min(base_us << min(k, r.max_backoff), r.max_us), r.tick_us)


def ms(t_us: int) -> float:
    return t_us / MS


def established(name: str = "full", rtt_ms: int = 100, **kw: Any) -> tuple[Script, TcpSocket]:
    """Passive open at 0 ms without options; the handshake's ACK arrives ``rtt_ms`` later, so
    the connection has one RTT sample (RFC 6298 2.2) and the peer's MSS is the default."""
    s = Script(name, **kw)
    s.listen(8080)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(rtt_ms, ".", seq=1, ack=1)
    sock = s.accept()
    assert sock.state is ESTABLISHED
    return s, sock


def syn_flags(s: Script) -> str:
    return "SEW" if s.config.ecn else "S"  # RFC 3168 6.1.1: an ECN-setup SYN


# ---------------------------------------------------------------------- opening


@pytest.mark.parametrize("name", ALL)
def test_passive_open(name: str) -> None:
    s = Script(name)
    lst = s.listen(8080)
    s.inject(0, "S", seq=0, win=8000, opts=[OptMss(1460)])
    synack = s.expect(0, "S.", seq=0, ack=1)
    # RFC 9293 3.4: the SYN-ACK's window is the receive buffer, unscaled (RFC 7323 2.2)
    assert synack.win == min(s.config.rcv_buf, 0xFFFF)
    assert lst.accept() is None, "a connection is accepted only once established"
    assert [c.state for c in s.tcp.conns.values()] == [SYN_RECEIVED]
    s.inject(5, ".", seq=1, ack=1)
    sock = s.accept()
    assert sock.state is ESTABLISHED and sock.remote_port == Script.REMOTE_PORT
    assert s.tcp.counters["tcp.established"] == 1
    s.expect_nothing(10_000)  # nothing left to send: the SYN-ACK's timer is stopped


def test_third_segment_of_the_handshake_may_carry_data() -> None:
    s = Script("full")
    s.listen(8080)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(10, "P.", seq=1, ack=1, data=b"hello")
    assert s.accept().recv() == b"hello"
    s.expect(50, ".", seq=1, ack=6)  # delayed ACK, 40 ms (profile full)


@pytest.mark.parametrize("name", ALL)
def test_active_open(name: str) -> None:
    s = Script(name)
    connected: list[TcpSocket] = []
    sock = s.connect(0)
    sock.on_connected = connected.append
    syn = s.expect(0, syn_flags(s), seq=0)
    assert syn.hdr.ack == 0 and sock.state is SYN_SENT
    s.inject(30, "S.", seq=0, ack=1, opts=[OptMss(1460)])
    s.expect(30, ".", seq=1, ack=1)  # RFC 9293 3.10.7.3: ACK the SYN-ACK at once
    assert sock.state is ESTABLISHED and connected == [sock]
    sock.send(b"ping")
    s.expect(30, "P.", seq=1, ack=1, data=b"ping")


def test_active_open_refused_by_rst() -> None:
    s = Script("full")
    sock = s.connect(0)
    s.expect(0, "SEW", seq=0)
    s.inject(10, "R", seq=0, ack=0)  # RFC 9293 3.10.7.3: a RST without ACK is dropped
    assert sock.state is SYN_SENT
    s.inject(20, "R.", seq=0, ack=1)  # acceptable ACK: "connection reset"
    assert sock.state is CLOSED and sock.error == "refused"
    s.expect_nothing(10_000)


def test_syn_ack_with_a_bad_ack_is_answered_with_rst() -> None:
    s = Script("full")
    sock = s.connect(0)
    s.expect(0, "SEW", seq=0)
    s.inject(10, "S.", seq=0, ack=1000)  # SEG.ACK > SND.NXT
    s.expect(10, "R", seq=1000)  # RFC 9293 3.10.7.3: <SEQ=SEG.ACK><CTL=RST>
    assert sock.state is SYN_SENT
    s.inject(20, "S.", seq=0, ack=1)
    s.expect(20, ".", seq=1, ack=1)
    assert sock.state is ESTABLISHED


def test_simultaneous_open_completes_on_the_syn_ack() -> None:
    """RFC 9293 3.5 figure 8: SYNs cross, both answer SYN-ACK with their own ISN, and each
    becomes ESTABLISHED on the other's SYN-ACK (line 6) without a further exchange."""
    s = Script("full")
    sock = s.connect(0)
    s.expect(0, "SEW", seq=0)
    s.inject(10, "S", seq=0, opts=[OptMss(1460)])
    s.expect(10, "S.", seq=0, ack=1)  # line 5: same ISN, now acknowledging the peer's SYN
    assert sock.state is SYN_RECEIVED
    s.inject(20, "S.", seq=0, ack=1)  # line 6
    assert sock.state is ESTABLISHED
    s.expect_nothing(5_000)  # no SYN-ACK retransmission, no RST
    sock.send(b"x")
    s.expect(5_000, "P.", seq=1, ack=1, data=b"x")


def test_simultaneous_open_completes_on_a_plain_ack() -> None:
    s = Script("full")
    sock = s.connect(0)
    s.expect(0, "SEW", seq=0)
    s.inject(10, "S", seq=0)
    s.expect(10, "S.", seq=0, ack=1)
    s.inject(20, ".", seq=1, ack=1)
    assert sock.state is ESTABLISHED


# SYN retransmission times and give-up, by hand from the profile values (RFC 6298 5.5 doubling):
#   full: 1 s doubling, RTO cap 60 s, 6 retries -> 1, 3, 7, 15, 31, 63 s; gives up 60 s later
#   linux-like: cap 120 s -> gives up at 63 + 64 = 127 s (tcp-behaviour.md §7: Linux 127 s)
#   lwip-default: 3 s, no SYN back-off (tcp.c:1281), counted in 500 ms slow ticks: connect at
#     100 ms -> the 6th tick, 3 s; then every 3 s; gives up at the 7th expiry, 21 s (§7: ~21 s)
#   riot-gnrc: 1 s doubling up to 60 s, but the 120 s user-call timeout ends it (§7)
#   uip: 1.5 s doubling up to 24 s (max_backoff 4) in 500 ms ticks, firing one tick late
#     (timer-- == 0); connect at 100 ms -> 2, 5.5, 12, 24.5, 49 s; gives up at 73.5 s (5 retries)
SYN_SCHEDULES = [
    ("full", 0, [1, 3, 7, 15, 31, 63], 123),
    ("linux-like", 0, [1, 3, 7, 15, 31, 63], 127),
    ("lwip-default", 100, [3, 6, 9, 12, 15, 18], 21),
    ("riot-gnrc", 0, [1, 3, 7, 15, 31, 63], 120),
    ("uip", 100, [2, 5.5, 12, 24.5, 49], 73.5),
]


@pytest.mark.parametrize(("name", "start_ms", "rtx_s", "give_up_s"), SYN_SCHEDULES)
def test_syn_retransmission_schedule_and_give_up(
    name: str, start_ms: int, rtx_s: list[float], give_up_s: float
) -> None:
    s = Script(name)
    sock = s.connect(start_ms)
    syn = s.expect(start_ms, syn_flags(s), seq=0)
    for t in rtx_s:
        again = s.expect(t * 1000, syn.flags, seq=0)
        assert again.hdr.mss == syn.hdr.mss
    s.expect_nothing(give_up_s * 1000 - 0.001)
    assert sock.state is SYN_SENT
    s.run_until(give_up_s * 1000)
    assert sock.state is CLOSED and sock.error == "timeout"
    assert not s.tcp.conns
    s.expect_nothing(give_up_s * 1000 + 600_000)  # never synchronised: no RST (RFC 9293 3.10.7.3)


def test_syn_ack_retransmission_and_a_retransmitted_syn() -> None:
    s = Script("full")
    lst = s.listen(8080)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(500, "S", seq=0)  # the peer lost our SYN-ACK and retransmits its SYN
    s.expect(500, "S.", seq=0, ack=1)
    s.expect(1000, "S.", seq=0, ack=1)  # RTO 1 s from the first SYN-ACK
    s.expect(3000, "S.", seq=0, ack=1)  # doubled
    # 6 retries as for SYN (RFC 9293 MUST-23 counts the SYN-ACK's R2 too)
    for t in (7, 15, 31, 63):
        s.expect(t * 1000, "S.", seq=0, ack=1)
    s.expect_nothing(123_000 - 0.001)
    s.run_until(123_000)
    assert not s.tcp.conns and not lst.embryonic and lst.accept() is None


# ---------------------------------------------------------------------- retry limits


@pytest.mark.parametrize("name", ALL)
def test_data_retry_limit_aborts_with_rst(name: str) -> None:
    """R2 for data (RFC 9293 3.8.3): retransmit with back-off, then give up and reset.

    The handshake takes 100 ms, so the first RTO is 100 + 4 * 50 = 300 ms, clamped to the
    profile's minimum and rounded to its tick (riot-gnrc's 120 s user timeout ends it earlier).
    """
    s, sock = established(name, rtt_ms=100)
    cfg = s.config
    base = first_rto_us(cfg, 100 * MS)
    t0 = 1000 * MS
    s.run_until(ms(t0))
    sock.send(b"d" * 100)
    s.expect(ms(t0), "P.", seq=1, ack=1, length=100)
    deadline = t0 + cfg.user_timeout_us if cfg.user_timeout_us is not None else None
    t = t0
    for k in range(cfg.data_retries + 1):
        t = fires(cfg, t, backed_off_us(cfg, base, k), rto=True)
        if k == cfg.data_retries or (deadline is not None and t >= deadline):
            break
        s.expect(ms(t), "P.", seq=1, ack=1, length=100)
    give_up = t if deadline is None else min(t, deadline)
    s.expect_nothing(ms(give_up) - 0.001)
    assert sock.state is ESTABLISHED
    s.expect(ms(give_up), "R", seq=101)
    assert sock.state is CLOSED and sock.error == "timeout" and not s.tcp.conns


def test_data_retry_schedule_full_profile_literal() -> None:
    """RFC 6298: 1 s minimum, doubling, capped at 60 s; 15 retries (Linux tcp_retries2)."""
    s, sock = established("full", rtt_ms=100)
    s.run_until(1000)
    sock.send(b"d" * 10)
    s.expect(1000, "P.", seq=1, length=10)
    t = 1.0
    for gap in (1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60, 60):
        t += gap
        s.expect(t * 1000, "P.", seq=1, length=10)
    s.expect((t + 60) * 1000, "R", seq=11)  # at 664 s


def test_lwip_data_back_off_stops_at_x128() -> None:
    """lwIP's tcp_backoff table {1,2,...,7,7,...} shifts: x2 ... x128 (tcp.c:163-166)."""
    s, sock = established("lwip-default", rtt_ms=100)
    s.run_until(1000)
    sock.send(b"d" * 10)
    s.expect(1000, "P.", seq=1, length=10)
    t = 1.0
    for gap in (0.5, 1, 2, 4, 8, 16, 32, 64, 64, 64, 64, 64):  # 500 ms base RTO (one tick)
        t += gap
        s.expect(t * 1000, "P.", seq=1, length=10)
    s.expect((t + 64) * 1000, "R", seq=11)


def test_user_timeout_aborts_before_r2() -> None:
    s, sock = established("full", rtt_ms=100, user_timeout_us=10 * SECOND)
    s.run_until(1000)
    sock.send(b"d" * 10)
    s.expect(1000, "P.", seq=1)
    for t in (2000, 4000, 8000):  # 1 s RTO doubling
        s.expect(t, "P.", seq=1)
    s.expect(11_000, "R", seq=11)  # RFC 9293 3.8.3: the user timeout, 10 s after the send
    assert sock.error == "timeout" and s.tcp.counters["tcp.user-timeout"] == 1


def test_user_timeout_restarts_on_progress() -> None:
    s, sock = established("full", rtt_ms=100, user_timeout_us=10 * SECOND)
    s.run_until(1000)
    sock.send(b"a" * 10)
    s.expect(1000, "P.", seq=1)
    for t in (2000, 4000, 8000):
        s.expect(t, "P.", seq=1)
    s.inject(8500, ".", seq=1, ack=11)  # acknowledged at last, before the 10 s ran out
    sock.send(b"b" * 10)
    s.expect(8500, "P.", seq=11)
    s.run_until(11_000)
    assert sock.state is ESTABLISHED  # the timeout counts from the last progress
    # Karn: the ACK of a retransmission gives no sample, so the backed-off 8 s RTO stays
    s.expect(16_500, "P.", seq=11)
    s.expect(18_500, "R", seq=21)  # 10 s after the progress at 8.5 s
    assert sock.error == "timeout"


# ---------------------------------------------------------------------- closing

# TIME-WAIT lengths from tcp-behaviour.md §6: Linux TCP_TIMEWAIT_LEN 60 s, lwIP 2 * TCP_MSL =
# 120 s, RIOT 2 * 30 s, uIP 120 ticks of 0.5 s; "full" follows Linux.
TIME_WAIT_S = {"full": 60, "linux-like": 60, "lwip-default": 120, "riot-gnrc": 60, "uip": 60}


@pytest.mark.parametrize("name", ALL)
def test_active_close_fin_wait_and_time_wait(name: str) -> None:
    s, sock = established(name)
    s.run_until(1000)
    sock.close()
    s.expect(1000, "F.", seq=1, ack=1)
    assert sock.state is FIN_WAIT_1
    s.inject(1100, ".", seq=1, ack=2)  # within every profile's RTO
    assert sock.state is FIN_WAIT_2
    s.expect_nothing(1999)
    s.inject(2000, "F.", seq=1, ack=2)
    s.expect(2000, ".", seq=2, ack=2)
    assert sock.state is TIME_WAIT
    assert s.config.time_wait_us == TIME_WAIT_S[name] * SECOND
    end = ms(fires(s.config, 2000 * MS, s.config.time_wait_us))  # exact, or on the tick
    s.expect_nothing(end - 0.001)
    assert sock.state is TIME_WAIT and sock.key in s.tcp.conns
    s.run_until(end)
    assert sock.state is CLOSED and sock.error is None and not s.tcp.conns
    s.expect_nothing(end + 10_000)


@pytest.mark.parametrize("name", ALL)
def test_passive_close_close_wait_and_last_ack(name: str) -> None:
    s, sock = established(name)
    s.inject(1000, "F.", seq=1, ack=1)
    s.expect(1000, ".", seq=1, ack=2)  # RFC 9293 3.10.7.4 eighth: acknowledge the FIN
    assert sock.state is CLOSE_WAIT and sock.eof and sock.recv() == b""
    s.run_until(1500)
    assert sock.send(b"bye") == 3  # CLOSE-WAIT still sends
    sock.close()
    s.expect(1500, "FP.", seq=1, ack=2, data=b"bye")
    assert sock.state is LAST_ACK
    # no ACK: the FIN (with the data) is retransmitted after one RTO
    t = ms(fires(s.config, 1500 * MS, first_rto_us(s.config, 100 * MS), rto=True))
    s.expect(t, "FP.", seq=1, ack=2, data=b"bye")
    s.inject(t + 10, ".", seq=2, ack=5)
    assert sock.state is CLOSED and sock.error is None and not s.tcp.conns
    s.expect_nothing(t + 100_000)


@pytest.mark.parametrize("name", ["full", "uip"])
def test_simultaneous_close_through_closing(name: str) -> None:
    s, sock = established(name)
    s.run_until(1000)
    sock.close()
    s.expect(1000, "F.", seq=1, ack=1)
    s.inject(1000, "F.", seq=1, ack=1)  # the peer's FIN crosses ours (RFC 9293 figure 13)
    s.expect(1000, ".", seq=2, ack=2)
    assert sock.state is CLOSING
    s.inject(1500, ".", seq=2, ack=2)
    assert sock.state is TIME_WAIT
    end = ms(fires(s.config, 1500 * MS, TIME_WAIT_S[name] * SECOND))
    s.run_until(end - 0.001)
    assert sock.state is TIME_WAIT
    s.run_until(end)
    assert sock.state is CLOSED


def test_fin_ack_in_fin_wait_1_goes_straight_to_time_wait() -> None:
    s, sock = established("full")
    s.run_until(1000)
    sock.close()
    s.expect(1000, "F.", seq=1, ack=1)
    s.inject(1010, "F.", seq=1, ack=2)
    s.expect(1010, ".", seq=2, ack=2)
    assert sock.state is TIME_WAIT


@pytest.mark.parametrize("name", ALL)
def test_half_close_still_receives(name: str) -> None:
    s, sock = established(name)
    cfg = s.config
    s.run_until(1000)
    sock.shutdown()
    s.expect(1000, "F.", seq=1, ack=1)
    s.inject(1000, ".", seq=1, ack=2)
    assert sock.state is FIN_WAIT_2
    with pytest.raises(ConnectionError):
        sock.send(b"no")
    s.inject(1500, "P.", seq=1, ack=2, data=b"x" * 100)
    # a delayed ACK (RFC 9293 3.8.6.3), or at once where the stack has none (RIOT, uIP)
    when = fires(cfg, 1500 * MS, cfg.delayed_ack_us) if cfg.delayed_ack else 1500 * MS
    s.expect(ms(when), ".", seq=2, ack=101)
    assert sock.recv() == b"x" * 100
    s.inject(3000, "F.", seq=101, ack=2)
    s.expect(3000, ".", seq=2, ack=102)
    assert sock.state is TIME_WAIT and sock.eof


@pytest.mark.parametrize("name", ["full", "lwip-default"])
def test_time_wait_reacks_a_retransmitted_fin_and_restarts(name: str) -> None:
    s, sock = established(name)
    s.run_until(1000)
    sock.close()
    s.expect(1000, "F.", seq=1, ack=1)
    s.inject(1000, "F.", seq=1, ack=2)
    s.expect(1000, ".", seq=2, ack=2)
    assert sock.state is TIME_WAIT
    s.inject(31_000, "F.", seq=1, ack=2)  # our last ACK was lost: the FIN comes again
    s.expect(31_000, ".", seq=2, ack=2)
    tw = TIME_WAIT_S[name] * SECOND
    s.run_until(ms(fires(s.config, 1000 * MS, tw)))
    assert sock.state is TIME_WAIT, "the 2 MSL timer restarts (RFC 9293 3.10.7.4)"
    end = ms(fires(s.config, 31_000 * MS, tw))
    s.run_until(end - 0.001)
    assert sock.state is TIME_WAIT
    s.run_until(end)
    assert sock.state is CLOSED


def test_new_syn_in_time_wait_reopens() -> None:
    """RFC 9293 MAY-2 / RFC 6191: a SYN above the old sequence space reuses the 4-tuple."""
    s, sock = established("full")
    s.run_until(1000)
    sock.close()
    s.expect(1000, "F.", seq=1, ack=1)
    s.inject(1000, "F.", seq=1, ack=2)
    s.expect(1000, ".", seq=2, ack=2)
    s.inject(2000, "S", seq=100_000)
    s.expect(2000, "S.", ack=100_001)
    assert sock.state is CLOSED and s.tcp.counters["tcp.time-wait.reused"] == 1
    assert [c.state for c in s.tcp.conns.values()] == [SYN_RECEIVED]


# ---------------------------------------------------------------------- RST (RFC 5961)


@pytest.mark.parametrize("flags", ["R", "R."])
def test_rst_at_rcv_nxt_resets(flags: str) -> None:
    s, sock = established("full")
    s.inject(1000, flags, seq=1, ack=1)
    assert sock.state is CLOSED and sock.error == "reset" and not s.tcp.conns
    s.expect_nothing(10_000)


@pytest.mark.parametrize("name", ALL)
def test_in_window_rst(name: str) -> None:
    """RFC 5961 3.2: an in-window RST that is not at RCV.NXT gets a challenge ACK; without
    RFC 5961 (RIOT, uIP) RFC 793 applies and any in-window RST resets."""
    s, sock = established(name)
    assert s.config.rfc5961 == (name not in ("riot-gnrc", "uip"))  # tcp-behaviour.md §6
    s.inject(1000, "R", seq=1 + 500)  # every profile's window is above 500 bytes
    if s.config.rfc5961:
        s.expect(1000, ".", seq=1, ack=1)
        assert sock.state is ESTABLISHED
        s.inject(1010, "R", seq=1)  # the exact RST the challenge ACK asks for
        assert sock.state is CLOSED and sock.error == "reset"
    else:
        assert sock.state is CLOSED and sock.error == "reset"
    s.expect_nothing(10_000)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("rel_seq", [0, -1000, 1 + 200_000])
def test_out_of_window_rst_is_ignored(name: str, rel_seq: int) -> None:
    s, sock = established(name)
    s.inject(1000, "R", seq=rel_seq)
    assert sock.state is ESTABLISHED
    s.expect_nothing(1500)
    assert s.tcp.counters["tcp.rx.drop.rst-out-of-window"] == 1


@pytest.mark.parametrize("per_s", [10, 3])
def test_challenge_ack_rate_limit(per_s: int) -> None:
    s, sock = established("full", challenge_ack_per_s=per_s)
    for i in range(per_s + 5):
        s.inject(1000, "R", seq=100 + i)
    acks = s.drain()
    assert len(acks) == per_s and all(o.flags == "." and o.ack == 1 for o in acks)
    assert s.tcp.counters["tcp.challenge-ack.limited"] == 5
    for i in range(per_s + 5):  # one second later the budget is back
        s.inject(2000, "R", seq=100 + i)
    assert len(s.drain()) == per_s
    for i in range(100):  # a steady stream gets challenge_ack_per_s per second
        s.inject(2000 + 100 * (i + 1), "R", seq=100)
    assert abs(len(s.drain()) - per_s * 10) <= 1
    assert sock.state is ESTABLISHED


@pytest.mark.parametrize("name", ALL)
def test_syn_in_established(name: str) -> None:
    """RFC 5961 4.2: challenge ACK, whatever the sequence number; RFC 793 (RIOT, uIP): an
    in-window SYN is an error and resets the connection."""
    s, sock = established(name)
    s.inject(1000, "S", seq=300)
    if s.config.rfc5961:
        s.expect(1000, ".", seq=1, ack=1)
        assert sock.state is ESTABLISHED
    else:
        s.expect(1000, "R", seq=1)
        assert sock.state is CLOSED and sock.error == "reset"


@pytest.mark.parametrize("name", ALL)
def test_retransmitted_syn_in_established_gets_an_ack(name: str) -> None:
    s, sock = established(name)
    s.inject(1000, "S", seq=0)  # the old SYN again: below the window, so just ACK it
    s.expect(1000, ".", seq=1, ack=1)
    assert sock.state is ESTABLISHED


@pytest.mark.parametrize("name", ALL)
def test_ack_of_unsent_data_is_acked_and_dropped(name: str) -> None:
    """RFC 9293 3.10.7.4 fifth: SEG.ACK > SND.NXT -> send an ACK, drop the segment."""
    s, sock = established(name)
    s.inject(1000, "P.", seq=1, ack=1000, data=b"abc")
    s.expect(1000, ".", seq=1, ack=1)
    assert sock.readable == 0 and sock.state is ESTABLISHED
    assert s.tcp.counters["tcp.rx.drop.ack-unsent"] == 1


def test_too_old_ack_is_dropped_with_an_ack() -> None:
    """RFC 5961 5.2: SEG.ACK below SND.UNA - MAX.SND.WND is unacceptable."""
    s, sock = established("full")  # the peer's window is 65535, nothing sent yet
    s.inject(1000, "P.", seq=1, ack=-70_000, data=b"abc")
    s.expect(1000, ".", seq=1, ack=1)
    assert sock.readable == 0


def test_ack_in_syn_received_that_is_not_for_our_syn_gets_rst() -> None:
    s = Script("full")
    s.listen(8080)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(10, ".", seq=1, ack=50)
    s.expect(10, "R", seq=50)  # RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: <SEQ=SEG.ACK>
    s.inject(20, ".", seq=1, ack=1)
    assert s.accept().state is ESTABLISHED


# ---------------------------------------------------------------------- closed ports


def closed_port_script(v6: bool = False) -> Script:
    s = Script("full", v6=v6)
    s.local_port = 9  # nothing listens there
    return s


@pytest.mark.parametrize("v6", [False, True])
def test_rst_for_segments_to_a_closed_port(v6: bool) -> None:
    """RFC 9293 3.10.7.1: no ACK -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; ACK ->
    <SEQ=SEG.ACK><CTL=RST>. Sequence numbers below are absolute (the stack has no ISN)."""
    s = closed_port_script(v6)
    s.inject(0, "S", seq=0)
    s.expect(0, "R.", seq=0, ack=1)
    s.inject(10, "S", seq=0, data=b"0123456789")  # SEG.LEN counts the SYN and the data
    s.expect(10, "R.", seq=0, ack=11)
    s.inject(20, "F", seq=5)
    s.expect(20, "R.", seq=0, ack=6)
    s.inject(30, "P", seq=5, data=b"abc")
    s.expect(30, "R.", seq=0, ack=8)
    s.inject(40, ".", seq=5, ack=777)
    rst = s.expect(40, "R", seq=777)
    assert rst.hdr.ack == 0 and rst.win == 0
    s.inject(50, "P.", seq=5, ack=0xFFFFFFF0, data=b"abc")
    s.expect(50, "R", seq=0xFFFFFFF0)
    assert s.tcp.counters["tcp.rx.closed-port"] == 6


@pytest.mark.parametrize("flags", ["R", "R.", "RS"])
def test_no_rst_in_answer_to_a_rst(flags: str) -> None:
    s = closed_port_script()
    s.inject(0, flags, seq=5, ack=9)
    s.expect_nothing(1000)
    assert s.tcp.counters["tcp.tx.rst"] == 0


def test_listener_answers_ack_with_rst_and_ignores_rst_and_bare_segments() -> None:
    """RFC 9293 3.10.7.2 (LISTEN): RST ignored; ACK -> <SEQ=SEG.ACK><CTL=RST>; anything else
    without SYN dropped."""
    s = Script("full")
    s.listen(8080)
    s.inject(0, "R", seq=5)
    s.inject(10, ".", seq=5, ack=1234)
    s.expect(10, "R", seq=1234)
    s.inject(20, "F", seq=5)
    s.inject(30, "P", seq=5, data=b"abc")
    s.expect_nothing(1000)
    assert not s.tcp.conns


# ---------------------------------------------------------------------- backlog and accept


def test_listen_backlog_drops_syns_beyond_it() -> None:
    s = Script("full")
    lst = s.listen(8080, backlog=2)
    for port in (40001, 40002, 40003):
        s.inject(0, "S", seq=0, src_port=port)
    synacks = s.drain()
    assert [o.hdr.dst_port for o in synacks] == [40001, 40002]
    assert lst.dropped == 1 and s.tcp.counters["tcp.listen.overflow"] == 1
    # the dropped SYN is not answered at all (no RST): the peer simply retransmits
    s.run_until(500)
    assert not s.drain()
    # complete the first two; they wait in the accept queue, still counted in the backlog
    for o in synacks:
        s.inject(
            600,
            ".",
            seq=Script.REMOTE_ISN + 1,
            ack=(o.hdr.seq + 1) & 0xFFFFFFFF,
            absolute=True,
            src_port=o.hdr.dst_port,
        )
    assert len(lst.queue) == 2 and not lst.embryonic
    s.inject(700, "S", seq=0, src_port=40004)
    assert not s.drain() and lst.dropped == 2
    first = lst.accept()
    assert first is not None and first.remote_port == 40001  # FIFO
    s.inject(800, "S", seq=0, src_port=40004)
    (synack,) = s.drain()
    assert synack.flags == "S." and synack.hdr.dst_port == 40004


def test_accept_callback_instead_of_queue() -> None:
    s = Script("full")
    got: list[TcpSocket] = []
    s.listen(8080, on_accept=got.append)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(10, ".", seq=1, ack=1)
    assert [c.state for c in got] == [ESTABLISHED]
    assert s.listener is not None and s.listener.accept() is None


def test_closing_the_listener_resets_queued_connections() -> None:
    s = Script("full")
    lst = s.listen(8080)
    s.inject(0, "S", seq=0)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(10, ".", seq=1, ack=1)
    lst.close()
    s.expect(10, "R", seq=1)
    s.inject(20, "S", seq=0, src_port=40009)
    s.expect(20, "R.", ack=1)  # port closed now


# ---------------------------------------------------------------------- ISN (RFC 6528)


def isn_of(s: Script, t_ms: float, src_port: int, dst_port: int = 80) -> int:
    s.run_until(t_ms)
    sock = s.tcp.connect(s.clock.now(), REMOTE4, dst_port, src_port=src_port)
    s.run_until(t_ms)
    syn = [o for o in s.drain() if o.hdr.src_port == src_port and o.hdr.flags & SYN]
    assert len(syn) == 1
    sock.abort()
    return syn[0].hdr.seq


def test_isn_rfc6528_keyed_per_tuple_and_clocked() -> None:
    """ISN = M + F(4-tuple, secret) with M a 4 µs clock: the same tuple 1 s later is exactly
    250 000 further on; another tuple at the same time is unrelated to it."""
    s = Script("full")
    a = isn_of(s, 0, 50000)
    b = isn_of(s, 0, 50001)
    a_later = isn_of(s, 1000, 50000)
    assert (a_later - a) & 0xFFFFFFFF == 1 * SECOND // 4
    d = (b - a) & 0xFFFFFFFF
    assert min(d, 2**32 - d) > 10_000_000, "neighbouring ports must not give nearby ISNs"
    other = Script("full", seed=2)  # another boot: another secret
    assert isn_of(other, 0, 50000) != a


def test_isn_counter_is_predictable() -> None:
    s = Script("uip")  # uIP: a global counter (tcp-behaviour.md §6, uip6.c:216)
    assert s.config.isn == "counter"
    isns = [isn_of(s, t, port) for t, port in ((0, 50000), (0, 50001), (5000, 50002))]
    step = (isns[1] - isns[0]) & 0xFFFFFFFF
    assert (isns[2] - isns[1]) & 0xFFFFFFFF == step, "same step whatever the tuple or time"


# ---------------------------------------------------------------------- malformed input


def raw_segment(
    s: Script, flags: int, seq: int = 0, options: bytes = b"", data_offset: int | None = None
) -> bytearray:
    """A TCP segment from the peer with raw option bytes, any data offset (in 32-bit words)
    and a correct checksum, so that only the part under test is wrong."""
    words = (20 + len(options)) // 4 if data_offset is None else data_offset
    hdr = TcpHeader(Script.REMOTE_PORT, 8080, seq, 0, flags, 1000)
    buf = bytearray(hdr.to_bytes(s.remote, s.local)) + options
    buf[12] = words << 4
    buf[16:18] = b"\0\0"
    buf[16:18] = checksum(buf, pseudo_header(s.remote, s.local, 6, len(buf))).to_bytes(2, "big")
    return buf


def test_malformed_segments_are_counted_never_raised() -> None:
    s, sock = established("full")
    c = s.iface.counters
    bad = raw_segment(s, ACK, seq=Script.REMOTE_ISN + 1)
    bad[16] ^= 0xFF
    s.inject_raw(1000, bytes(bad))
    assert c["rx.malformed.tcp.bad-checksum"] == 1
    s.inject(1010, "R", seq=1, bad_checksum=True)  # a reset that does not check out
    assert c["rx.malformed.tcp.bad-checksum"] == 2 and sock.state is ESTABLISHED
    s.inject_raw(1020, bytes(10))  # shorter than a header
    assert c["rx.malformed.tcp.truncated"] == 1
    s.inject_raw(1030, bytes(raw_segment(s, ACK, data_offset=4)))  # < 5 words
    assert c["rx.malformed.tcp.bad-length"] == 1
    s.inject_raw(1040, bytes(raw_segment(s, ACK, data_offset=15)))  # 60 bytes, 20 there
    assert c["rx.malformed.tcp.truncated"] == 2
    s.inject_raw(1050, bytes(raw_segment(s, SYN, options=bytes([2, 9, 0, 0]))))  # MSS, len 9
    assert c["rx.malformed.tcp.bad-option"] == 1
    assert c["rx.malformed"] == 6 and c["internal-error"] == 0
    s.expect_nothing(2000)  # none of it is answered
    assert sock.state is ESTABLISHED
    s.inject(2000, "P.", seq=1, ack=1, data=b"ok")  # and the connection carries on
    assert sock.recv() == b"ok"
