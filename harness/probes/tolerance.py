"""Timing tolerance models for timeline checks, tick inference and repeated measurements.

A target's timers are not a Linux high-resolution timer wheel: lwIP counts its timeouts in
250/500 ms ticks, uIP in 0.5 s ticks, and a real wire adds capture jitter. A fixed tolerance is
therefore either too tight for embedded stacks or too loose to say anything about Linux, so the
model is pluggable (tcp-behaviour.md §1.3, §2.4):

* :class:`AbsPct` is packetdrill's rule, ``max(abs_ms, pct% of the interval since the previous
  event)`` either side of the expected time.
* :class:`Ticks` accepts an event anywhere within a whole number of timer ticks of its nominal
  time (plus capture jitter), the tick given or inferred from the events seen so far with
  :func:`infer_tick`.
* :class:`Statistical` runs a measurement N times and reports the mean with a Student-t
  confidence interval, for quantities a single run cannot pin down (a delayed-ACK latency that
  depends on the phase of the target's timer).

Every check produces a :class:`Check` record (expected, observed, the allowed window, which
model, ok) so a report can show *why* a time passed, not only that it did.

Times are float milliseconds throughout; the timeline converts from the wire's microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AbsPct",
    "Check",
    "Statistical",
    "Stats",
    "TickFit",
    "Ticks",
    "Tolerance",
    "WelchResult",
    "infer_tick",
    "t_cdf",
    "t_ppf",
    "welch",
]

DEFAULT_TICK_CANDIDATES: tuple[float, ...] = (10, 100, 200, 250, 500, 1000)


class Tolerance(Protocol):
    """What the timeline asks of a tolerance model.

    ``window`` returns the absolute interval ``[lo, hi]`` (ms, script time) in which an event
    expected at ``expected_ms`` passes, given the time of the previous event (packetdrill scales
    its tolerance with that interval). ``observe`` is told every time the target was seen to
    send, so a model may learn from the run (the tick of :class:`Ticks`).
    """

    def window(self, expected_ms: float, previous_ms: float) -> tuple[float, float]: ...

    def observe(self, observed_ms: float) -> None: ...

    def describe(self) -> str: ...


@dataclass(slots=True)
class Check:
    """One timing check: what was expected, what was seen, the window that applied, verdict.

    ``expected_ms`` is ``(lo, hi)`` of the script's own range (equal for a point in time);
    ``observed_ms`` is None when nothing arrived; ``lo_ms``/``hi_ms`` is the window after
    tolerance. ``what`` names the step (the script line).
    """

    what: str
    expected_ms: tuple[float, float]
    observed_ms: float | None
    lo_ms: float
    hi_ms: float
    tolerance: str
    ok: bool

    @property
    def error_ms(self) -> float | None:
        """How far the observation lies outside the script's own range (0 inside it)."""
        if self.observed_ms is None:
            return None
        lo, hi = self.expected_ms
        if self.observed_ms < lo:
            return self.observed_ms - lo
        if self.observed_ms > hi:
            return self.observed_ms - hi
        return 0.0

    def __str__(self) -> str:
        lo, hi = self.expected_ms
        exp = f"{lo:.3f}" if lo == hi else f"{lo:.3f}~{hi:.3f}"
        obs = "nothing" if self.observed_ms is None else f"{self.observed_ms:.3f}"
        verdict = "ok" if self.ok else "FAIL"
        return (
            f"{self.what}: expected {exp} ms, observed {obs} ms, "
            f"allowed [{self.lo_ms:.3f}, {self.hi_ms:.3f}] ({self.tolerance}) {verdict}"
        )


# ------------------------------------------------------------------------------- AbsPct


@dataclass(slots=True)
class AbsPct:
    """packetdrill's ``verify_time``: ``tolerance = max(abs_ms, pct% x (expected - previous))``.

    The defaults (4 ms, 12.5 %) are packetdrill's; 12.5 % is the worst-case error of the Linux
    non-cascading timer wheel. ``AbsPct(0, 0)`` demands exact times (virtual time).
    """

    abs_ms: float = 4.0
    pct: float = 12.5

    def tolerance_ms(self, expected_ms: float, previous_ms: float) -> float:
        return max(self.abs_ms, self.pct / 100.0 * max(0.0, expected_ms - previous_ms))

    def window(self, expected_ms: float, previous_ms: float) -> tuple[float, float]:
        tol = self.tolerance_ms(expected_ms, previous_ms)
        return expected_ms - tol, expected_ms + tol

    def observe(self, observed_ms: float) -> None:
        pass

    def describe(self) -> str:
        return f"AbsPct({self.abs_ms:g} ms, {self.pct:g}%)"


# ------------------------------------------------------------------------------- ticks


@dataclass(slots=True)
class TickFit:
    """The result of :func:`infer_tick`.

    ``tick_ms`` is the chosen candidate, ``phase_ms`` where its grid sits (times are near
    ``k * tick + phase``), ``residual_ms`` the RMS distance of the times to that grid and
    ``ok`` whether that residual is small enough (``<= max_rel * tick``) to believe the tick.
    ``scores`` maps every candidate to its relative residual (RMS / tick; 0 is a perfect fit,
    about 0.29 is what uniformly random times give).
    """

    tick_ms: float
    phase_ms: float
    residual_ms: float
    ok: bool
    scores: dict[float, float] = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = "fits" if self.ok else "does not fit"
        return (
            f"tick {self.tick_ms:g} ms (phase {self.phase_ms:.1f} ms, "
            f"residual {self.residual_ms:.2f} ms: {verdict})"
        )


def _grid_fit(times: Sequence[float], tick: float) -> tuple[float, float]:
    """Phase (circular mean of the times modulo ``tick``) and RMS distance to that grid."""
    s = sum(math.sin(2 * math.pi * t / tick) for t in times)
    c = sum(math.cos(2 * math.pi * t / tick) for t in times)
    phase = (math.atan2(s, c) / (2 * math.pi) * tick) % tick
    sq = 0.0
    for t in times:
        d = (t - phase) % tick
        if d > tick / 2:
            d -= tick
        sq += d * d
    return phase, math.sqrt(sq / len(times))


def infer_tick(
    times: Iterable[float],
    candidates: Sequence[float] = DEFAULT_TICK_CANDIDATES,
    max_rel: float = 0.1,
) -> TickFit:
    """Which timer tick explains event times (ms) best: the grid they sit on.

    For each candidate tick the phase is fitted (circular mean of ``t mod tick``) and the RMS
    distance of the times to ``k * tick + phase`` is the residual. Times on a 500 ms grid are
    also on the 250 ms and 10 ms grids, so the answer is the *largest* candidate whose residual
    is at most ``max_rel`` of the tick; if none qualifies, the one with the smallest relative
    residual is returned with ``ok=False``. Only absolute times of timer-driven events say
    anything (retransmissions, delayed ACKs, probes); an immediate answer to an injected segment
    sits wherever the tester put it. At least two times are needed.
    """
    ts = [float(t) for t in times]
    if len(ts) < 2:
        raise ValueError("infer_tick needs at least two event times")
    if not candidates:
        raise ValueError("infer_tick needs at least one candidate tick")
    fits: dict[float, tuple[float, float]] = {c: _grid_fit(ts, c) for c in candidates}
    scores = {c: fits[c][1] / c for c in candidates}
    good = [c for c in candidates if scores[c] <= max_rel]
    best = max(good) if good else min(candidates, key=lambda c: scores[c])
    phase, residual = fits[best]
    return TickFit(best, phase, residual, bool(good), scores)


@dataclass(slots=True)
class Ticks:
    """An event passes anywhere within whole timer ticks of its nominal time, plus jitter.

    A stack that counts a timeout of ``d`` in ticks of ``T`` fires it on a tick, and where that
    tick falls relative to the start is the phase of the stack's timer, which the tester does
    not know: lwIP's ``tcp_tmr`` fires in ``(start + d - T, start + d]``, uIP's post-decrement
    one tick later, in ``(start + d, start + d + T]``. The window is therefore
    ``[expected - early_ticks*T - jitter, expected + late_ticks*T + jitter]``.

    With ``tick_ms=None`` the tick is inferred (:func:`infer_tick` over ``candidates``) from the
    target's event times seen so far, once there are ``min_events`` of them and they fit a grid;
    until then ``fallback`` decides. Inference only works when those events are timer driven
    (see :func:`infer_tick`); for a stack whose tick is known, pass it. ``fit`` is the latest
    inference, for the report.
    """

    tick_ms: float | None = None
    jitter_ms: float = 2.0
    early_ticks: float = 1.0
    late_ticks: float = 1.0
    candidates: tuple[float, ...] = DEFAULT_TICK_CANDIDATES
    min_events: int = 4
    fallback: Tolerance = field(default_factory=AbsPct)
    seen: list[float] = field(default_factory=list)
    fit: TickFit | None = None

    def current_tick(self) -> float | None:
        if self.tick_ms is not None:
            return self.tick_ms
        if len(self.seen) < self.min_events:
            return None
        self.fit = infer_tick(self.seen, self.candidates)
        return self.fit.tick_ms if self.fit.ok else None

    def window(self, expected_ms: float, previous_ms: float) -> tuple[float, float]:
        tick = self.current_tick()
        if tick is None:
            return self.fallback.window(expected_ms, previous_ms)
        return (
            expected_ms - self.early_ticks * tick - self.jitter_ms,
            expected_ms + self.late_ticks * tick + self.jitter_ms,
        )

    def observe(self, observed_ms: float) -> None:
        self.seen.append(observed_ms)
        self.fallback.observe(observed_ms)

    def describe(self) -> str:
        span = f"-{self.early_ticks:g}/+{self.late_ticks:g} ticks"
        if self.tick_ms is not None:
            return f"Ticks({self.tick_ms:g} ms, {span}, jitter {self.jitter_ms:g} ms)"
        if self.fit is not None and self.fit.ok:
            return f"Ticks(inferred {self.fit.tick_ms:g} ms, {span}, jitter {self.jitter_ms:g} ms)"
        return f"Ticks(tick not yet inferred: {self.fallback.describe()})"


# ----------------------------------------------------------------- Student t, by hand
# scipy is not available; the regularized incomplete beta function gives the t CDF exactly
# enough (1e-10) for confidence intervals, and bisection inverts it.


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(ln_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError("degrees of freedom must be > 0")
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (``t_ppf(0.975, 9)`` = 2.262...), by bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            break
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


# ---------------------------------------------------------------------- statistics


@dataclass(slots=True)
class Stats:
    """Summary of repeated measurements: mean, sample stdev and a t confidence interval."""

    samples: list[float]
    mean: float
    stdev: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high

    def __str__(self) -> str:
        return (
            f"n={self.n} mean {self.mean:.3f} stdev {self.stdev:.3f} "
            f"{self.confidence * 100:g}% CI [{self.ci_low:.3f}, {self.ci_high:.3f}]"
        )


@dataclass(slots=True)
class Statistical:
    """Run a measurement ``n`` times; report mean, stdev and a ``confidence`` CI (Student t).

    For quantities one run cannot pin down, like a delayed-ACK latency that depends on where the
    target's timer tick falls. The measurement is any callable returning a number (typically a
    short timeline script on a fresh connection returning an interval in ms).
    """

    n: int = 10
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError("a confidence interval needs at least 2 samples")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must lie in (0, 1)")

    def run(self, measure: Callable[[], float]) -> Stats:
        return self.summarize([float(measure()) for _ in range(self.n)])

    def summarize(self, samples: Sequence[float]) -> Stats:
        xs = [float(x) for x in samples]
        n = len(xs)
        if n < 2:
            raise ValueError("a confidence interval needs at least 2 samples")
        mean = math.fsum(xs) / n
        stdev = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
        half = t_ppf(0.5 + self.confidence / 2.0, n - 1) * stdev / math.sqrt(n)
        return Stats(xs, mean, stdev, mean - half, mean + half, self.confidence)

    def check(self, what: str, expected: float, stats: Stats) -> Check:
        """A :class:`Check` record: does the confidence interval contain ``expected``?"""
        return Check(
            what,
            (expected, expected),
            stats.mean,
            stats.ci_low,
            stats.ci_high,
            f"Statistical(n={stats.n}, {self.confidence * 100:g}% CI)",
            stats.contains(expected),
        )


@dataclass(slots=True)
class WelchResult:
    t: float
    df: float
    p_two_sided: float


def welch(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's unequal-variance t test: do two sets of measurements have the same mean?

    For comparing two stacks (or a stack with the reference profile) on a timing quantity.
    """
    sa, sb = Statistical(max(len(a), 2)).summarize(a), Statistical(max(len(b), 2)).summarize(b)
    va, vb = sa.stdev**2 / sa.n, sb.stdev**2 / sb.n
    if va + vb == 0.0:
        same = sa.mean == sb.mean
        return WelchResult(0.0 if same else math.inf, math.inf, 1.0 if same else 0.0)
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (
        (va**2 / (sa.n - 1) if va else 0.0) + (vb**2 / (sb.n - 1) if vb else 0.0)
    )
    return WelchResult(t, df, 2.0 * (1.0 - t_cdf(abs(t), df)))
