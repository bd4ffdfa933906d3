"""Tests for ``stack.tcp.congestion``: NewReno (RFC 5681/3465/6582/3042) and the "none" mode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.congestion import (
    INFINITE,
    CongestionControl,
    NewReno,
    NoCongestionControl,
    initial_window,
    make_congestion_control,
)

SMSS = 1000  # round numbers; IW = min(4000, max(2000, 4380)) = 4000


def ack_round(cc: NewReno, segments: int, seg: int = SMSS) -> None:
    """One ACK of ``seg`` bytes per segment, ``segments`` times (outside recovery)."""
    for _ in range(segments):
        cc.on_ack(0, seg, cc.cwnd, None)


# --- initial window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smss", "iw"),
    [
        (536, 2144),  # 4 * 536
        (1460, 4380),  # max(2920, 4380), < 5840
        (1220, 4380),  # max(2440, 4380), < 4880
        (1095, 4380),  # 4 * 1095 = 4380 exactly
        (2190, 4380),  # 2 * 2190 = 4380
        (4000, 8000),  # 2 * SMSS above 2190
        (100, 400),
    ],
)
def test_initial_window_rfc5681(smss: int, iw: int) -> None:
    assert initial_window(smss) == iw
    cc = NewReno(smss)
    assert cc.cwnd == cc.window() == iw
    assert cc.ssthresh == INFINITE
    assert not cc.in_recovery


def test_initial_window_override_and_floor() -> None:
    assert NewReno(1460, initial_window=14600).cwnd == 14600  # RFC 6928 IW10
    assert NewReno(1460, initial_window=100).cwnd == 1460  # never below one SMSS
    with pytest.raises(ValueError):
        NewReno(1460, initial_window=0)
    with pytest.raises(ValueError):
        NewReno(0)
    with pytest.raises(ValueError):
        NewReno(1460, abc_l=0)


def test_set_mss_before_any_event_rederives_iw() -> None:
    cc = NewReno(536)
    assert cc.cwnd == 2144
    cc.set_mss(1460)
    assert cc.cwnd == 4380 and cc.smss == 1460
    # after traffic, cwnd is kept in bytes but floored at the new SMSS
    cc.on_rto(0, 10_000)
    cc.set_mss(1200)
    assert cc.cwnd == 1460
    cc.set_mss(3000)
    assert cc.cwnd == 3000 and cc.ssthresh >= 6000


# --- slow start ---------------------------------------------------------------------------------


def test_slow_start_doubles_per_rtt() -> None:
    cc = NewReno(SMSS)
    expected = cc.cwnd
    for _ in range(5):
        ack_round(cc, cc.cwnd // SMSS)  # one ACK per segment of the current window
        expected *= 2
        assert cc.cwnd == expected
    assert cc.cwnd == 4000 * 32


def test_slow_start_with_delayed_acks_abc_l2_still_doubles() -> None:
    cc = NewReno(SMSS)  # L = 2: an ACK for 2 segments grows cwnd by 2 SMSS
    ack_round(cc, 2, seg=2 * SMSS)
    assert cc.cwnd == 8000


def test_abc_limits_stretch_acks() -> None:
    cc = NewReno(SMSS, initial_window=10 * SMSS)
    cc.on_ack(0, 10 * SMSS, 10 * SMSS, None)  # one ACK covering 10 segments
    assert cc.cwnd == 12 * SMSS  # + L*SMSS = 2 SMSS, not 10
    cc1 = NewReno(SMSS, initial_window=10 * SMSS, abc_l=1)
    cc1.on_ack(0, 10 * SMSS, 10 * SMSS, None)
    assert cc1.cwnd == 11 * SMSS
    cc.on_ack(0, 300, cc.cwnd, None)  # sub-MSS ACK counts its bytes only
    assert cc.cwnd == 12 * SMSS + 300


def test_slow_start_stops_at_ssthresh_then_congestion_avoidance() -> None:
    cc = NewReno(SMSS)
    cc.ssthresh = 5500
    cc.on_ack(0, SMSS, 4000, None)
    assert cc.cwnd == 5000
    cc.on_ack(0, SMSS, 5000, None)  # 500 bytes of slow start reach ssthresh, 500 go to CA
    assert cc.cwnd == 5500
    assert cc.bytes_acked == 500
    # now in congestion avoidance: +1 SMSS only once a full cwnd (5500) has been acked
    cc.on_ack(0, 4999, 5500, None)
    assert cc.cwnd == 5500
    cc.on_ack(0, 1, 5500, None)
    assert cc.cwnd == 6500 and cc.bytes_acked == 0


def test_equal_cwnd_and_ssthresh_is_congestion_avoidance() -> None:
    cc = NewReno(SMSS)
    cc.ssthresh = cc.cwnd
    cc.on_ack(0, SMSS, cc.cwnd, None)
    assert cc.cwnd == 4000


# --- congestion avoidance -----------------------------------------------------------------------


@pytest.mark.parametrize("ack_size", [SMSS, 2 * SMSS, 1, 333, 10 * SMSS])
def test_congestion_avoidance_one_smss_per_window(ack_size: int) -> None:
    cc = NewReno(SMSS)
    cc.ssthresh = 2 * SMSS  # CA from the start: cwnd (4000) > ssthresh
    for _ in range(10):
        start = cc.cwnd
        remaining = start
        while remaining:
            n = min(ack_size, remaining)
            cc.on_ack(0, n, start, None)
            remaining -= n
        assert cc.cwnd == start + SMSS
        assert cc.bytes_acked == 0


def test_congestion_avoidance_exact_over_many_acks() -> None:
    cc = NewReno(SMSS, initial_window=10 * SMSS)
    cc.ssthresh = 10 * SMSS
    total = sum(range(10, 20)) * SMSS  # windows 10..19 SMSS, one per RTT
    ack_round(cc, total // SMSS)
    assert cc.cwnd == 20 * SMSS


# --- fast retransmit / NewReno fast recovery ----------------------------------------------------


def test_fast_retransmit_entry() -> None:
    cc = NewReno(SMSS, initial_window=20 * SMSS)
    for _ in range(2):
        cc.on_dup_ack(0, 20 * SMSS)
        assert cc.cwnd == 20 * SMSS  # 1st/2nd dup ACK: no change (limited transmit instead)
    cc.on_dup_ack(0, 20 * SMSS)  # the third, reported before enter_recovery
    cc.enter_recovery(0, 20 * SMSS, snd_nxt=123_456)
    assert cc.in_recovery
    assert cc.ssthresh == 10 * SMSS  # FlightSize / 2
    assert cc.cwnd == 13 * SMSS  # ssthresh + 3 SMSS
    assert cc.recover == 123_456
    cc.on_dup_ack(0, 20 * SMSS)  # each further dup ACK inflates by SMSS
    cc.on_dup_ack(0, 20 * SMSS)
    assert cc.cwnd == 15 * SMSS


def test_fast_retransmit_ssthresh_floor() -> None:
    cc = NewReno(SMSS)
    cc.enter_recovery(0, 3 * SMSS, snd_nxt=0)
    assert cc.ssthresh == 2 * SMSS  # max(1500, 2000)
    assert cc.cwnd == 5 * SMSS


def test_flight_size_not_cwnd_determines_ssthresh() -> None:
    cc = NewReno(SMSS, initial_window=40 * SMSS)  # application-limited: small flight
    cc.enter_recovery(0, 8 * SMSS, snd_nxt=0)
    assert cc.ssthresh == 4 * SMSS


def test_partial_ack_deflation() -> None:
    cc = NewReno(SMSS)
    cc.enter_recovery(0, 20 * SMSS, snd_nxt=20 * SMSS)
    for _ in range(5):
        cc.on_dup_ack(0, 20 * SMSS)
    assert cc.cwnd == 18 * SMSS
    cc.on_partial_ack(0, 4 * SMSS, 16 * SMSS)  # deflate by 4 SMSS, add back 1 SMSS
    assert cc.cwnd == 15 * SMSS
    assert cc.in_recovery
    cc.on_partial_ack(0, 500, 15 * SMSS)  # less than SMSS acked: no add-back
    assert cc.cwnd == 14_500
    assert cc.in_recovery and cc.ssthresh == 10 * SMSS


def test_partial_ack_floor_one_smss() -> None:
    cc = NewReno(SMSS)
    cc.enter_recovery(0, 4 * SMSS, snd_nxt=0)
    cc.on_partial_ack(0, 100 * SMSS, 0)
    assert cc.cwnd == SMSS


@pytest.mark.parametrize(
    ("flight_after", "cwnd"),
    [
        (20 * SMSS, 10 * SMSS),  # min(ssthresh, 21 SMSS)
        (3 * SMSS, 4 * SMSS),  # little outstanding: FlightSize + SMSS, no burst
        (0, 2 * SMSS),  # nothing outstanding: max(0, SMSS) + SMSS
    ],
)
def test_full_ack_exits_recovery(flight_after: int, cwnd: int) -> None:
    cc = NewReno(SMSS)
    cc.enter_recovery(0, 20 * SMSS, snd_nxt=0)
    cc.on_dup_ack(0, 20 * SMSS)
    cc.on_full_ack(0, flight_after)
    assert not cc.in_recovery
    assert cc.cwnd == cwnd
    assert cc.ssthresh == 10 * SMSS
    # back to normal growth (congestion avoidance when cwnd >= ssthresh)
    cc.on_dup_ack(0, flight_after)
    assert cc.cwnd == cwnd  # no inflation outside recovery


# --- retransmission timeout ---------------------------------------------------------------------


def test_rto_collapses_cwnd_and_halves_flight() -> None:
    cc = NewReno(SMSS, initial_window=30 * SMSS)
    cc.on_rto(0, 30 * SMSS, snd_nxt=777)
    assert cc.cwnd == SMSS
    assert cc.ssthresh == 15 * SMSS
    assert cc.recover == 777
    assert cc.window() == SMSS


def test_rto_ssthresh_floor() -> None:
    cc = NewReno(SMSS)
    cc.on_rto(0, 1500)
    assert cc.ssthresh == 2 * SMSS and cc.cwnd == SMSS


def test_rto_exits_recovery() -> None:
    cc = NewReno(SMSS)
    cc.enter_recovery(0, 20 * SMSS, snd_nxt=5)
    cc.on_rto(0, 20 * SMSS)
    assert not cc.in_recovery
    assert cc.cwnd == SMSS and cc.ssthresh == 10 * SMSS


def test_repeated_rto_keeps_ssthresh_until_new_ack() -> None:
    cc = NewReno(SMSS, initial_window=20 * SMSS)
    cc.on_rto(0, 20 * SMSS)
    assert cc.ssthresh == 10 * SMSS
    cc.on_rto(0, 20 * SMSS)  # the retransmission timed out too: ssthresh stays
    assert cc.ssthresh == 10 * SMSS
    cc.on_ack(0, SMSS, 20 * SMSS, 1000)
    assert cc.cwnd == 2 * SMSS  # slow start again
    cc.on_rto(0, 6 * SMSS)  # a new loss episode
    assert cc.ssthresh == 3 * SMSS and cc.cwnd == SMSS


def test_slow_start_after_rto_up_to_ssthresh() -> None:
    cc = NewReno(SMSS, initial_window=16 * SMSS)
    cc.on_rto(0, 16 * SMSS)
    ack_round(cc, 1)
    ack_round(cc, 2)
    ack_round(cc, 4)
    assert cc.cwnd == 8 * SMSS == cc.ssthresh
    ack_round(cc, 8)
    assert cc.cwnd == 9 * SMSS


# --- restart after idle -------------------------------------------------------------------------


def test_idle_restart() -> None:
    cc = NewReno(SMSS)
    ack_round(cc, 16)
    assert cc.cwnd == 20 * SMSS
    ssthresh = cc.ssthresh
    cc.on_idle_restart(0, idle_us=1_000_000, rto_us=1_000_000)  # not more than one RTO
    assert cc.cwnd == 20 * SMSS
    cc.on_idle_restart(0, idle_us=1_000_001, rto_us=1_000_000)
    assert cc.cwnd == 4 * SMSS  # RW = min(IW, cwnd)
    assert cc.ssthresh == ssthresh


def test_idle_restart_never_raises_cwnd() -> None:
    cc = NewReno(SMSS)
    cc.on_rto(0, 10 * SMSS)
    cc.on_idle_restart(0, idle_us=10**9, rto_us=1)
    assert cc.cwnd == SMSS


# --- limited transmit ---------------------------------------------------------------------------


def test_limited_transmit_allowance() -> None:
    cc = NewReno(SMSS)
    assert cc.limited_transmit_allowance(0) == 0
    assert cc.limited_transmit_allowance(1) == SMSS
    assert cc.limited_transmit_allowance(2) == 2 * SMSS
    assert cc.limited_transmit_allowance(3) == 0
    cc.enter_recovery(0, 4 * SMSS, snd_nxt=0)
    assert cc.limited_transmit_allowance(1) == 0  # recovery inflates cwnd instead


def test_limited_transmit_disabled() -> None:
    cc = NewReno(SMSS, limited_transmit=False)
    assert [cc.limited_transmit_allowance(n) for n in range(5)] == [0] * 5


# --- "none" -------------------------------------------------------------------------------------


def test_no_congestion_control_never_limits() -> None:
    cc = NoCongestionControl(1460)
    w = cc.window()
    assert w == INFINITE and w > 65535 << 14  # above any receive window TCP can advertise
    cc.on_ack(0, 1460, 1460, 100)
    cc.on_dup_ack(0, 1460)
    cc.enter_recovery(0, 100_000, snd_nxt=42)
    assert cc.in_recovery and cc.recover == 42 and cc.window() == w
    cc.on_partial_ack(0, 1460, 50_000)
    assert cc.in_recovery and cc.window() == w
    cc.on_full_ack(0, 0)
    assert not cc.in_recovery
    cc.on_rto(0, 100_000, snd_nxt=99)
    cc.on_idle_restart(0, 10**9, 1)
    cc.set_mss(536)
    assert cc.window() == w and cc.cwnd == w and cc.recover == 99 and cc.smss == 536
    assert cc.limited_transmit_allowance(1) == 0


# --- factory ------------------------------------------------------------------------------------


def test_factory() -> None:
    cc = make_congestion_control("newreno", 1460)
    assert isinstance(cc, NewReno) and cc.cwnd == 4380
    reno = make_congestion_control("Reno", 536, initial_window=5360, abc_l=1)
    assert isinstance(reno, NewReno) and reno.cwnd == 5360 and reno.abc_l == 1
    assert isinstance(make_congestion_control("none", 1460), NoCongestionControl)


def test_factory_error_names_choices() -> None:
    with pytest.raises(ValueError, match=r"'cubic'.*newreno, none, reno"):
        make_congestion_control("cubic", 1460)
    # a profile passes its settings whatever controller it names; "none" ignores them
    none = make_congestion_control("none", 1460, initial_window=4000, limited_transmit=True)
    assert isinstance(none, NoCongestionControl)


# --- invariants under random events -------------------------------------------------------------

_event = st.one_of(
    st.tuples(st.just("ack"), st.integers(0, 100_000), st.integers(0, 200_000)),
    st.tuples(st.just("dup"), st.integers(0, 200_000), st.just(0)),
    st.tuples(st.just("enter"), st.integers(0, 200_000), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("partial"), st.integers(0, 100_000), st.integers(0, 200_000)),
    st.tuples(st.just("full"), st.integers(0, 200_000), st.just(0)),
    st.tuples(st.just("rto"), st.integers(0, 200_000), st.just(0)),
    st.tuples(st.just("idle"), st.integers(0, 10**7), st.integers(1, 10**7)),
    st.tuples(st.just("mss"), st.integers(48, 9000), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    smss=st.integers(48, 9000),
    iw=st.one_of(st.none(), st.integers(1, 100_000)),
    abc_l=st.integers(1, 4),
    events=st.lists(_event, max_size=60),
)
def test_invariants_random_events(
    smss: int, iw: int | None, abc_l: int, events: list[tuple[str, int, int]]
) -> None:
    cc: CongestionControl = NewReno(smss, initial_window=iw, abc_l=abc_l)
    lost = False
    for now, (kind, a, b) in enumerate(events):
        if kind == "ack":
            if cc.in_recovery:
                cc.on_partial_ack(now, a, b)
            else:
                cc.on_ack(now, a, b, None)
        elif kind == "dup":
            cc.on_dup_ack(now, a)
        elif kind == "enter":
            if not cc.in_recovery:
                cc.enter_recovery(now, a, b)
                lost = True
        elif kind == "partial":
            if cc.in_recovery:
                cc.on_partial_ack(now, a, b)
        elif kind == "full":
            if cc.in_recovery:
                cc.on_full_ack(now, a)
        elif kind == "rto":
            cc.on_rto(now, a)
            lost = True
        elif kind == "idle":
            cc.on_idle_restart(now, a, b)
        elif kind == "mss":
            cc.set_mss(a)
        assert cc.cwnd >= cc.smss
        assert cc.window() == cc.cwnd
        assert cc.ssthresh >= 2 * cc.smss
        if lost:
            assert cc.ssthresh < INFINITE
        assert 0 <= cc.limited_transmit_allowance(2) <= 2 * cc.smss
