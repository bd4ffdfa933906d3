"""Timer values from tick-quantised samples: the rules the probes report timers by."""

from __future__ import annotations

import pytest

from harness.probes.catalogue_timers import _floor_timer, _timer


def test_ticked_timer_is_largest_sample_rounded_up_to_a_tick() -> None:
    # A 3-tick timer armed at arbitrary tick phases fires 1000-1500 ms after arming.
    est = _timer([1300.0, 1452.0, 1010.0], 500.0)
    assert est.value == 1500.0
    assert est.interval == (1452.0, 1500.0)


def test_floor_ignores_a_sample_inflated_by_a_one_tick_rtt() -> None:
    # Seen in CI on lwIP: one ACK straddled a tick, its RTT sample was one tick and that
    # RTO came out a tick longer. The floor is the smallest tick count a sample shows.
    est = _floor_timer([1994.0, 1452.0, 1300.0], 500.0)
    assert est.value == 1500.0
    assert est.interval == (1300.0, 1500.0)
    assert _timer([1994.0, 1452.0, 1300.0], 500.0).value == 2000.0


def test_floor_does_not_trust_samples_on_a_tick_edge() -> None:
    # 1005 ms is a 2-tick timer fired late or a 3-tick timer fired early: the clear 1300 ms
    # sample decides, and with edge samples only the largest-sample rule applies.
    assert _floor_timer([1005.0, 1300.0], 500.0).value == 1500.0
    assert _floor_timer([1005.0, 1495.0], 500.0).value == 1500.0


@pytest.mark.parametrize("samples", [[1000.4, 1001.2, 999.1], [206.0, 204.0]])
def test_event_driven_floor_is_the_mean(samples: list[float]) -> None:
    est = _floor_timer(samples, None)
    assert est.value == pytest.approx(sum(samples) / len(samples), abs=0.1)
