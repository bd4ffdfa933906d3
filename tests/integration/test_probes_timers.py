"""Ground truth for the timer probes (P7a, P7b, P8, P11, P12, P17).

Every expected value comes from the case's configuration through a model of the stack's timers,
never typed in per case: Linux's from its sysctls over the kernel's constants
(include/net/tcp.h), the reference stack's from its profile with the case's overrides
(stack/tcp/profile.py), lwIP's from the case's lwipopts over lwIP 2.1.3's opt.h defaults. A
tick-driven timer of nominal length d fires within one tick of it: lwIP's (and the reference
stack's) in (d - tick, d], uIP's post-decrement one tick later, in (d, d + tick]; a value the
probe rounds to whole ticks is then d (or d + tick). Waits are cut by the ground-truth budget
(``groundtruth.BUDGET_S``), so long timers are checked as lower bounds.

Where a stack does not do what its documentation suggests, the model follows the measurement
and says why:

- Linux keeps its first SYN retransmissions 1 s apart (``tcp_syn_linear_timeouts``, 4 by
  default since 6.5: five equal intervals, then doubling) and gives up after tcp_syn_retries +
  tcp_syn_linear_timeouts retransmissions or once the time exponential back-off would have
  taken for tcp_syn_retries has passed, whichever comes first (tcp_write_timeout): tcp_syn_retries
  2 gives up after five SYN retransmissions at 7 s, the default 6 after ten at about 131 s.
- lwIP has no RTO floor, but its integer estimator cannot go below 3 slow ticks: with RTT
  samples of 0 ticks, sv shrinks by sv >> 2 until that is 0 (sv = 3), so the RTO after prompt
  ACKs is 1.5 s (tcp_in.c).
- lwIP takes an RTT sample from a retransmitted segment: tcp_rexmit_rto clears rttest, but
  tcp_output_segment starts timing again when it sends the retransmission (Karn's algorithm
  says never), so an ACK that comes late after a retransmission raises its RTO.
- lwIP gives up on a SYN or data segment at the first slow tick after its last permitted
  retransmission (tcp_slowtmr checks nrtx before the timer), 6 SYN retries in about 18 s, not
  the 21 s of 7 x 3 s.
- lwIP's keep-alive fires when the idle ticks exceed keep_idle / 500 ms, so in
  (idle, idle + 500 ms], and the next ones exactly keep_intvl later.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from harness.probes.catalogue import PROBES
from harness.probes.observe import Value
from stack.tcp.profile import TcpConfig, profile
from tests.integration.conftest import GroundTruth, check_evidence
from tests.integration.groundtruth import BUDGET_S, CASES, Case

pytestmark = pytest.mark.slow

PROBE_IDS = ("P7a", "P7b", "P8", "P11", "P12", "P17")
BUDGET = BUDGET_S * 1000.0  # ms
KEEP_SET = 1000.0  # what P12 asks for (catalogue_timers.KEEPALIVE_SET_MS, ..._CNT)
KEEP_CNT = 3
SMALL_JITTER = 30.0  # capture and scheduling noise of an exact timer, ms


@dataclass(frozen=True)
class Want:
    """What an observation must show: a number in [lo, hi], or exactly ``exact``; ``cut``: a
    lower bound (the budget ended the wait), reported as inconclusive."""

    lo: float | None = None
    hi: float | None = None
    exact: Value | str = "-"  # "-": compare as a number
    cut: bool = False

    def ok(self, value: Value) -> bool:
        if self.exact != "-":
            return value == self.exact
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def __str__(self) -> str:
        if self.exact != "-":
            return repr(self.exact)
        return f"[{self.lo}, {self.hi}]" + (" (cut by the budget)" if self.cut else "")


def near(value: float, tol: float, cut: bool = False) -> Want:
    return Want(value - tol, value + tol, cut=cut)


@dataclass(frozen=True)
class Tick:
    """A tick-driven timer: ``tick`` ms (0: exact), ``late`` 1 for uIP's extra tick."""

    tick: float
    late: int = 0
    jitter: float = SMALL_JITTER

    def fires(self, nominal: float) -> Want:
        """Where a timer of ``nominal`` ms armed at a random phase fires."""
        lo = nominal - self.tick * (1 - self.late)
        return Want(lo - self.jitter, nominal + self.late * self.tick + self.jitter)

    def rounded(self, nominal: float) -> float:
        """What the probe reports for such a timer: its firing rounded up to whole ticks."""
        return nominal + self.late * self.tick

    def gap(self, nominal: float) -> float:
        """The interval between two firings of a timer re-armed on a tick."""
        return nominal + self.late * self.tick


def schedule(first: float, gaps: list[float]) -> list[float]:
    """Retransmission times from the first timeout and the intervals after it."""
    out = [first]
    for g in gaps:
        out.append(out[-1] + g)
    return out


def within(times: list[float], budget: float = BUDGET) -> int:
    return sum(1 for x in times if x <= budget)


def median_growth(gaps: list[float], n: int) -> float:
    """What the probes report as back-off: the median ratio of the first ``n`` growing
    intervals."""
    grow = [gaps[0]]
    for g in gaps[1:]:
        if g <= grow[-1] * 1.25:
            break
        grow.append(g)
    ratios = sorted(b / a for a, b in itertools.pairwise(grow[: n + 1]))
    if not ratios:
        return 1.0
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def _config(case: Case) -> dict[str, Any]:
    return yaml.safe_load(case.extra) or {}


# ------------------------------------------------------------------------------ models


def expected(case: Case) -> dict[str, Want]:
    if case.stack == "linux":
        return _linux(_config(case).get("sysctl", {}))
    if case.stack == "local":
        cfg = _config(case)
        return _local(profile(cfg.get("profile", "full"), **cfg.get("tcp", {})))
    return _lwip(_config(case).get("lwipopts", {}))


def _linux(sysctl: dict[str, Any]) -> dict[str, Want]:
    syn_retries = int(sysctl.get("net.ipv4.tcp_syn_retries", 6))  # TCP_SYN_RETRIES
    retries2 = int(sysctl.get("net.ipv4.tcp_retries2", 15))  # TCP_RETR2
    linear = int(sysctl.get("net.ipv4.tcp_syn_linear_timeouts", 4))
    # SYNs: TCP_TIMEOUT_INIT 1 s, linear for the first linear + 1 intervals, then doubling.
    syn_gaps = [1000.0 * (1 if k <= linear + 1 else 2 ** (k - linear - 1)) for k in range(1, 20)]
    syn_times = schedule(syn_gaps[0], syn_gaps[1:])
    model_s = (2 ** (syn_retries + 1) - 1) * 1000.0  # tcp_model_timeout, rto_base 1 s
    giveup_k = next(k for k, t in enumerate(syn_times) if k >= syn_retries + linear or t >= model_s)
    syn_rtx, giveup = giveup_k, syn_times[giveup_k]
    ratio = 2.0 if within(syn_times[:syn_rtx]) > linear + 2 else 1.0  # doubling seen
    w: dict[str, Want] = {}
    _syn(w, Tick(0, jitter=70), 1000.0, syn_rtx, giveup, syn_times, ratio)
    # Data: TCP_RTO_MIN 200 ms plus a near-zero SRTT; doubling up to TCP_RTO_MAX 120 s;
    # tcp_retries2 by time: what 200 ms doubling would take for retries2 retransmissions.
    rto = 205.0
    gaps = [rto * 2**k for k in range(1, 20)]
    times = schedule(rto, gaps)
    gives_up = times[min(retries2, len(times) - 1)] <= BUDGET
    w["rto_min_ms"] = Want(200.0, 250.0)
    _data(w, Tick(0, jitter=70), gaps, times, retries2 if gives_up else None, None, 2.0)
    w["timer_tick_ms"] = Want(exact=0.0)
    w["karn"] = Want(exact=True)
    w["delayed_ack"] = Want(exact=True)
    w["delayed_ack_ms"] = Want(38.0, 60.0)  # TCP_ATO_MIN / TCP_DELACK_MIN 40 ms
    w["ack_every_2nd_full"] = Want(exact=True)
    w["immediate_dupack_ooo"] = Want(exact=True)
    w["zero_window_probe"] = Want(exact=True)
    w["zwp_first_ms"] = Want(200.0, 260.0)  # one RTO (tcp_probe0_base)
    w["zwp_backoff"] = near(2.0, 0.2)
    w["keepalive_default"] = Want(exact=False)
    w["keepalive_idle_ms"] = Want(KEEP_SET, KEEP_SET + 100)  # whole seconds, timer wheel
    w["keepalive_interval_ms"] = Want(KEEP_SET - 20, KEEP_SET + 100)
    w["keepalive_count"] = Want(exact=KEEP_CNT)
    w["keepalive_probe"] = Want(exact="SND.NXT-1, 0 B")
    _time_wait(w, 60.0, 0.5)  # TCP_TIMEWAIT_LEN
    return w


def _local(cfg: TcpConfig) -> dict[str, Want]:
    rto_tick = Tick((cfg.rto.tick_us or cfg.timer_tick_us) / 1000.0, cfg.timer_extra_ticks)
    tick = Tick(cfg.timer_tick_us / 1000.0, cfg.timer_extra_ticks)
    w: dict[str, Want] = {}
    # SYNs: the initial RTO, doubled per retransmission if the profile backs off
    init = cfg.rto.initial_us / 1000.0
    max_rto = cfg.rto.max_us / 1000.0
    syn_nominal = [
        min(init * 2.0 ** min(k, 40), max_rto) if cfg.syn_backoff else init
        for k in range(min(cfg.syn_retries, 40) + 1)
    ]
    syn_gaps = [rto_tick.gap(g) for g in syn_nominal]
    syn_times = schedule(syn_gaps[0], syn_gaps[1:])
    ratio = 2.0 if cfg.syn_backoff else 1.0
    if cfg.syn_backoff and rto_tick.late:
        ratio = max(b / a for a, b in itertools.pairwise(syn_gaps[1:5]))
    giveup = syn_times[cfg.syn_retries] if cfg.syn_retries < len(syn_times) else math.inf
    _syn(w, rto_tick, init, cfg.syn_retries, giveup, syn_times, ratio)
    # Data: the floor after RTT samples of ~0 (at least G), in whole ticks
    floor = max(cfg.rto.min_us, cfg.rto.granularity_us) / 1000.0
    if rto_tick.tick:
        floor = math.ceil(floor / rto_tick.tick) * rto_tick.tick
    cap = min(max_rto, floor * 2**cfg.rto.max_backoff)
    gaps = [rto_tick.gap(min(floor * 2**k, cap)) for k in range(1, 20)]
    first = rto_tick.gap(floor)
    times = schedule(first, gaps)
    if rto_tick.tick:
        w["rto_min_ms"] = near(rto_tick.rounded(floor), SMALL_JITTER)
    else:
        w["rto_min_ms"] = Want(floor, floor + cfg.rto.granularity_us / 1000.0 + SMALL_JITTER)
    gives_up = times[cfg.data_retries] <= BUDGET if cfg.data_retries < len(times) else False
    plateau = gaps.index(rto_tick.gap(cap))  # the first interval at the cap
    reached = rto_tick.gap(cap) if within(times) >= plateau + 3 else None
    growth = median_growth(gaps, 6)
    _data(w, rto_tick, gaps, times, cfg.data_retries if gives_up else None, reached, growth)
    w["timer_tick_ms"] = Want(exact=rto_tick.tick)
    w["karn"] = Want(exact=True)  # stack/tcp/rtt.py: no sample from a retransmitted segment
    w["delayed_ack"] = Want(exact=cfg.delayed_ack)
    if cfg.delayed_ack:
        delay = cfg.delayed_ack_us / 1000.0
        if tick.tick:  # a tick-bound delay, or the longest one seen when no grid shows
            w["delayed_ack_ms"] = Want(delay - tick.tick / 2, tick.rounded(delay) + SMALL_JITTER)
        else:
            w["delayed_ack_ms"] = Want(delay, delay + 25.0)
    else:
        w["delayed_ack_ms"] = Want(exact=0.0)
    full = min(cfg.mss, 1460)
    w["ack_every_2nd_full"] = Want(exact=None if cfg.rcv_buf < 2 * full else True)
    w["immediate_dupack_ooo"] = Want(exact=True)
    w["zero_window_probe"] = Want(exact=True)
    # the persist timer runs on the RTO: the first probe about one RTO after the window closed
    # (with a tick, wherever the tick falls before that)
    if rto_tick.tick:
        w["zwp_first_ms"] = Want(0.0, first + rto_tick.tick + SMALL_JITTER)
    else:
        w["zwp_first_ms"] = near(first, SMALL_JITTER)
    w["zwp_backoff"] = near(median_growth(gaps, 2), 0.15)
    w["keepalive_default"] = Want(exact=False)
    w["keepalive_idle_ms"] = tick.fires(KEEP_SET)
    w["keepalive_interval_ms"] = near(tick.gap(KEEP_SET), SMALL_JITTER + tick.tick / 2)
    w["keepalive_count"] = Want(exact=KEEP_CNT)
    w["keepalive_probe"] = Want(exact="SND.NXT-1, 0 B")
    _time_wait(w, cfg.time_wait_us / 1e6, max(0.3, tick.tick / 1000.0))
    return w


def _lwip(opts: dict[str, Any]) -> dict[str, Want]:
    slow = Tick(500.0, jitter=50.0)  # TCP_TMR_INTERVAL 250 ms, the slow timer every other call
    syn_max = int(opts.get("TCP_SYNMAXRTX", 6))
    max_rtx = int(opts.get("TCP_MAXRTX", 12))
    w: dict[str, Want] = {}
    # SYNs: 3 s (6 slow ticks), no back-off in SYN_SENT; removed at the tick after the last
    syn_times = schedule(3000.0, [3000.0] * 20)
    giveup = syn_times[syn_max - 1] + 500.0
    _syn(w, slow, 3000.0, syn_max, giveup, syn_times, 1.0)
    # Data: a 1.5 s floor (see the module doc), doubling (tcp_backoff up to x128)
    gaps = [1500.0 * 2**k for k in range(1, 8)]
    times = schedule(1500.0, gaps)
    gives_up = times[max_rtx - 1] + 500 <= BUDGET if max_rtx <= len(times) else False
    w["rto_min_ms"] = near(1500.0, SMALL_JITTER)
    _data(w, slow, gaps, times, max_rtx if gives_up else None, None, 2.0)
    w["timer_tick_ms"] = Want(exact=500.0)
    w["karn"] = Want(exact=False)  # see the module doc
    w["delayed_ack"] = Want(exact=True)
    w["delayed_ack_ms"] = near(250.0, SMALL_JITTER)  # the fast timer, 250 ms
    w["ack_every_2nd_full"] = Want(exact=True)
    w["immediate_dupack_ooo"] = Want(exact=True)
    w["zero_window_probe"] = Want(exact=True)
    w["zwp_first_ms"] = slow.fires(1500.0)  # tcp_persist_backoff[0] = 3 slow ticks
    w["zwp_backoff"] = near(2.0, 0.1)
    w["keepalive_default"] = Want(exact=False)
    if int(opts.get("LWIP_TCP_KEEPALIVE", 0)):
        w["keepalive_idle_ms"] = Tick(500.0, late=1, jitter=50.0).fires(KEEP_SET)
        w["keepalive_interval_ms"] = near(KEEP_SET, SMALL_JITTER)
        w["keepalive_count"] = Want(exact=KEEP_CNT)
        w["keepalive_probe"] = Want(exact="SND.NXT-1, 0 B")
    else:  # per-connection timings need LWIP_TCP_KEEPALIVE: the agent says unsupported
        for key in ("keepalive_idle_ms", "keepalive_interval_ms", "keepalive_count"):
            w[key] = Want(exact=None)
        w["keepalive_probe"] = Want(exact=None)
    _time_wait(w, 120.0, 0.6)  # 2 * TCP_MSL
    return w


def _syn(
    w: dict[str, Want],
    tick: Tick,
    initial: float,
    retries: int,
    giveup: float,
    times: list[float],
    ratio: float,
) -> None:
    w["rto_initial_ms"] = tick.fires(initial)
    w["syn_backoff"] = near(ratio, 0.15) if ratio > 1.2 else Want(0.9, 1.19)
    if giveup <= BUDGET - 1000:
        w["syn_retries"] = Want(exact=retries)
        w["syn_giveup_s"] = near(giveup / 1000.0, (tick.tick + 2 * tick.jitter + 200) / 1000.0)
    else:
        seen = within(times)
        w["syn_retries"] = Want(seen - 1, seen, cut=True)  # the last may straddle the end
        w["syn_giveup_s"] = near(BUDGET / 1000.0, 0.01, cut=True)


def _data(
    w: dict[str, Want],
    tick: Tick,
    gaps: list[float],
    times: list[float],
    retries: int | None,
    cap: float | None,
    growth: float,
) -> None:
    w["rto_backoff"] = near(growth, 0.12)
    seen = retries if retries is not None else within(times)  # retransmissions seen
    if cap is not None:
        w["rto_max_ms"] = near(cap, tick.jitter + tick.tick / 2 + 5)
    else:  # the largest interval seen is the bound
        hi = gaps[seen - 2] * 1.15 + tick.tick + tick.jitter
        w["rto_max_ms"] = Want(gaps[max(0, seen - 3)] - tick.jitter, hi, cut=True)
    if retries is not None:
        w["data_retries"] = Want(exact=retries)
    else:
        w["data_retries"] = Want(seen - 1, seen, cut=True)


def _time_wait(w: dict[str, Want], seconds: float, tol: float) -> None:
    if seconds * 1000 <= BUDGET - 2000:
        w["time_wait_s"] = near(seconds, tol)
    else:
        w["time_wait_s"] = Want(BUDGET / 1000 - 0.5, BUDGET / 1000 + 1, cut=True)


# ------------------------------------------------------------------------------ tests


def _keys(groundtruth: GroundTruth) -> set[str]:
    run = [p for p in PROBE_IDS if p in groundtruth.probes]
    if not run:
        pytest.skip(f"none of {PROBE_IDS} in TCP_HIL_GT_PROBES")
    return {k for p in run for k in PROBES[p].keys}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_timers_inferred_equal_configured(groundtruth: GroundTruth, case: Case) -> None:
    """Each timer the probes infer lies where the case's configuration puts it (within a tick
    of it for tick-driven stacks); a timer longer than the budget comes out as a lower bound
    (inconclusive) of what the budget allowed to be seen."""
    keys = _keys(groundtruth)
    want = expected(case)
    wrong = []
    for key in sorted(keys):
        got = groundtruth.values(case.name, key)
        assert set(got) == {""}, (key, got)  # timers: measured once, for the stack
        value = got[""]
        w = want[key]
        if not w.ok(value):
            (o,) = groundtruth.observations(case.name, key)
            wrong.append(f"{key}: expected {w}, got {value!r} ({o.verdict}: {o.detail})")
            continue
        (o,) = groundtruth.observations(case.name, key)
        if w.cut:
            assert o.verdict == "inconclusive" and "at least" in o.detail, o
            assert o.confidence.interval == (value, value), o
        elif value is None:
            assert o.verdict == "not-applicable", o
        else:
            assert o.verdict in ("conforms", "deviates"), o
    assert not wrong, "\n".join(wrong)


# Which frames an observation must cite, as tshark sees them.
SHOWS = {
    "rto_initial_ms": "tcp.flags.syn == 1",
    "syn_backoff": "tcp.flags.syn == 1",
    "syn_retries": "tcp.flags.syn == 1",
    "syn_giveup_s": "tcp.flags.syn == 1",
    "rto_min_ms": "tcp.analysis.retransmission || tcp.analysis.fast_retransmission",
    "rto_backoff": "tcp.analysis.retransmission",
    "rto_max_ms": "tcp.analysis.retransmission",
    "data_retries": "tcp.analysis.retransmission",
    "timer_tick_ms": "tcp.analysis.retransmission",
    "karn": "tcp.analysis.retransmission",
    "delayed_ack": "tcp.len == 0 && tcp.flags.ack == 1",
    "delayed_ack_ms": "tcp.len == 0 && tcp.flags.ack == 1",
    "ack_every_2nd_full": "tcp.len > 500",
    "immediate_dupack_ooo": "tcp.analysis.duplicate_ack || tcp.analysis.out_of_order"
    " || tcp.analysis.lost_segment",
    "zero_window_probe": "tcp.window_size_value == 0",
    "zwp_first_ms": "tcp.window_size_value == 0",
    "zwp_backoff": "tcp.window_size_value == 0",
    "keepalive_default": "tcp.flags.syn == 1",
    "keepalive_idle_ms": "tcp.analysis.keep_alive",
    "keepalive_interval_ms": "tcp.analysis.keep_alive",
    "keepalive_count": "tcp.flags.reset == 1",
    "keepalive_probe": "tcp.analysis.keep_alive",
    "time_wait_s": "tcp.flags.fin == 1",
}


@pytest.mark.parametrize("case", ["lxdef", "locovr", "lwdef", "lwka"])
def test_timer_evidence_dissects(groundtruth: GroundTruth, case: str) -> None:
    """Every evidence pcap opens in tshark, every cited frame exists, and some show what the
    observation is about: SYNs, retransmissions, zero windows, keep-alives, the FIN."""
    keys = _keys(groundtruth)
    checked = 0
    for key in sorted(keys):
        for o in groundtruth.observations(case, key):
            if o.evidence is None:
                assert o.verdict == "not-applicable", o
                continue
            check_evidence(groundtruth.out, o, SHOWS[key])
            checked += 1
    assert checked, f"no evidence for {case}"


def test_timer_probes_keep_to_the_budget(groundtruth: GroundTruth) -> None:
    """No probe fails, and none waits much beyond the budget: P7b's short black holes come
    before its long one (up to 20 s), P7a and P17 may wait for the agent first."""
    _keys(groundtruth)
    limits = {"P7a": 2.0, "P7b": 2.0, "P8": 0.5, "P11": 1.0, "P12": 2.0, "P17": 3.0}
    for case in groundtruth.results:
        for pid in set(PROBE_IDS) & set(groundtruth.probes):
            record = json.loads(
                (groundtruth.out / case / "observations" / f"{pid}.json").read_text()
            )
            assert record["error"] is None, (case, pid, record["error"])
            assert record["seconds"] <= limits[pid] * BUDGET_S, (case, pid, record["seconds"])
