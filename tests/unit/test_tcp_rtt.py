"""RFC 6298 estimator and sequence arithmetic, checked against hand-computed values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp import seq
from stack.tcp.rtt import KarnSampler, RtoConfig, RttEstimator
from stack.time import MS, SECOND

u32 = st.integers(0, 2**32 - 1)


def test_seq_wraps() -> None:
    assert seq.add(2**32 - 10, 20) == 10
    assert seq.lt(2**32 - 10, 5) and seq.gt(5, 2**32 - 10)
    assert seq.diff(5, 2**32 - 10) == 15
    assert seq.in_window(3, 2**32 - 2, 10) and not seq.in_window(8, 2**32 - 2, 10)
    assert seq.max_seq(2**32 - 1, 1) == 1


@given(u32, st.integers(0, 2**31 - 1))
def test_seq_add_diff_inverse(a: int, n: int) -> None:
    b = seq.add(a, n)
    assert seq.diff(b, a) == n
    assert seq.ge(b, a)
    assert seq.le(a, b)


def test_initial_rto_and_first_sample() -> None:
    est = RttEstimator()
    assert est.rto_us == 1 * SECOND  # RFC 6298 2.1
    est.sample(100 * MS)  # SRTT=100, RTTVAR=50, RTO=100+200=300 -> clamped to 1 s
    assert est.srtt == 100 * MS and est.rttvar == 50 * MS
    assert est.rto_us == 1 * SECOND
    low = RttEstimator(RtoConfig(min_us=200 * MS))
    low.sample(100 * MS)
    assert low.rto_us == 300 * MS


def test_subsequent_samples_follow_rfc6298_2_3() -> None:
    est = RttEstimator(RtoConfig(min_us=0))
    est.sample(800 * MS)
    est.sample(400 * MS)
    # RTTVAR = 3/4*400 + 1/4*|800-400| = 400; SRTT = 7/8*800 + 1/8*400 = 750
    assert est.rttvar == 400 * MS and est.srtt == 750 * MS
    assert est.rto_us == 750 * MS + 4 * 400 * MS


def test_granularity_floor() -> None:
    est = RttEstimator(RtoConfig(min_us=0, granularity_us=10 * MS))
    for _ in range(50):
        est.sample(2 * MS)  # RTTVAR decays towards 0, G keeps the margin
    assert est.rto_us >= est.srtt + 10 * MS  # type: ignore[operator]


def test_backoff_doubles_caps_and_resets_on_valid_sample() -> None:
    est = RttEstimator()
    rtos = []
    for _ in range(8):
        rtos.append(est.rto_us)
        est.on_timeout()
    assert [r // SECOND for r in rtos] == [1, 2, 4, 8, 16, 32, 60, 60]
    est.sample(50 * MS)
    assert est.backoffs == 0 and est.rto_us == 1 * SECOND


def test_tick_quantisation_like_lwip() -> None:
    lwip = RttEstimator(RtoConfig(initial_us=3 * SECOND, min_us=0, tick_us=500 * MS))
    assert lwip.rto_us == 3 * SECOND
    lwip.sample(130 * MS)  # 130 + 4*65 = 390 ms -> one 500 ms tick
    assert lwip.rto_us == 500 * MS
    lwip.on_timeout()
    assert lwip.rto_us == 1 * SECOND


def test_forget_srtt_after_repeated_timeouts() -> None:
    est = RttEstimator(RtoConfig(reset_after_backoffs=3))
    est.sample(300 * MS)
    for _ in range(3):
        est.on_timeout()
    assert est.srtt is None


def test_karn_sampler_discards_retransmitted() -> None:
    k = KarnSampler()
    k.on_send(0, 1000)
    k.on_send(10, 2000)  # still timing the first
    assert k.on_ack(50, 999) is None
    assert k.on_ack(80, 1000) == 80
    k.on_send(100, 3000)
    k.on_retransmit()
    assert k.on_ack(400, 3000) is None  # ambiguous: which transmission was acked?
    k.on_send(500, 4000)
    assert k.on_ack(530, 4000) == 30
