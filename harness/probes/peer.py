"""Building blocks of the raw probes: the tester as a programmable TCP peer on a live wire.

A raw probe opens :meth:`Context.raw` (a live wire speaking for the raw peer's address), runs a
:class:`~harness.probes.timeline.Timeline` on it in non-strict mode, and reads what the target
does with :meth:`Timeline.next` / :meth:`Timeline.collect`. These helpers are the moves every
such probe starts with: a handshake with chosen options, asking the target's agent to do
something while the timeline keeps listening, and turning timer samples into a value with a
confidence interval that respects the target's timer tick.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from harness.probes.engine import Context
from harness.probes.livewire import LiveWire
from harness.probes.observe import Confidence, Evidence
from harness.probes.timeline import ECHO, Conn, Seg, Timeline
from harness.probes.tolerance import t_ppf
from targets.agent.client import Agent, AgentError

T = TypeVar("T")

FAMILIES = ("ipv4", "ipv6")


class NoAnswer(RuntimeError):
    """The target did not answer a step a probe depends on (the probe is inconclusive)."""


@contextmanager
def timeline(
    ctx: Context, fam: str, name: str, port: int, seed: int | None = None
) -> Iterator[Timeline]:
    """A non-strict timeline on a live wire for ``fam``, recorded to ``pcaps/<name>-<fam>``."""
    with ctx.raw(fam, name) as wire:
        yield Timeline(wire, port=port, strict=False, seed=seed, late_grace_ms=0)


def wire_of(t: Timeline) -> LiveWire:
    assert isinstance(t.wire, LiveWire)
    return t.wire


def handshake(
    t: Timeline,
    *,
    mss: int | None = 1460,
    win: int = 65535,
    wscale: int | None = None,
    sackok: bool = False,
    ts: bool = False,
    within_ms: float = 3000.0,
    conn: Conn | None = None,
) -> Seg:
    """SYN with the given options, the target's SYN-ACK, our ACK; returns the SYN-ACK.

    Raises :class:`NoAnswer` if no SYN-ACK comes (a RST, or nothing, within ``within_ms``).
    """
    c = conn or t.conn
    tsopt = (0, 0) if ts else None
    t.inject(None, "S", win=win, mss=mss, wscale=wscale, sackok=sackok, ts=tsopt, conn=c)
    sa = t.next(within_ms, c)
    if sa is None or "S" not in sa.flags or "." not in sa.flags:
        got = "nothing" if sa is None else f"'{sa.flags}'"
        raise NoAnswer(f"no SYN-ACK to our SYN (got {got} within {within_ms:g} ms)")
    t.inject(None, ".", win=win, ts=(1, ECHO) if ts and sa.ts_raw else None, conn=c)
    return sa


def background(fn: Callable[..., T], *args: object, **kw: object) -> Future[T]:
    """Run ``fn`` (typically a blocking agent command) on its own thread; the probe's timeline
    keeps answering the wire meanwhile."""
    fut: Future[T] = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args, **kw))
        except BaseException as exc:  # handed to whoever calls result()
            fut.set_exception(exc)

    threading.Thread(target=run, daemon=True, name=f"probe-bg-{fn.__name__}").start()
    return fut


@dataclass(frozen=True)
class Timer:
    """A timer estimated from samples: the value reported and its confidence."""

    value: float
    confidence: Confidence

    @property
    def interval(self) -> tuple[float, float]:
        return self.confidence.interval or (self.value, self.value)


def estimate(samples: Sequence[float], tick_ms: float | None = None, level: float = 0.95) -> Timer:
    """The mean of timer ``samples`` (ms) with a Student-t interval at ``level``.

    A timer driven by a periodic tick fires anywhere in one tick after its nominal value, so the
    interval is never narrower than one tick (a single sample gets [value - tick, value + tick]
    or +-4 ms, packetdrill's floor, without a tick).
    """
    if not samples:
        raise ValueError("no samples")
    mean = statistics.fmean(samples)
    floor = tick_ms if tick_ms else 4.0
    if len(samples) > 1:
        sd = statistics.stdev(samples)
        half = t_ppf(0.5 + level / 2, len(samples) - 1) * sd / math.sqrt(len(samples))
    else:
        half = 0.0
    half = max(half, floor)
    return Timer(
        round(mean, 1),
        Confidence(len(samples), (round(mean - half, 1), round(mean + half, 1)), level),
    )


def gaps_ms(segs: Sequence[Seg]) -> list[float]:
    """Intervals between consecutive segments, in ms."""
    return [round(b.t_ms - a.t_ms, 3) for a, b in itertools.pairwise(segs)]


# ------------------------------------------------------------------------------ common moves

MAX_EVIDENCE_FRAMES = 40


def stack_family(ctx: Context) -> str:
    """The family stack-wide behaviour (timers, windows, limits) is measured in, once: IPv4
    when the target has it."""
    return "ipv4" if "ipv4" in ctx.addresses else next(iter(ctx.addresses))


def service(ctx: Context, *kinds: str) -> int:
    """The port of the first of ``kinds`` (echo, discard, chargen) the target offers."""
    for kind in kinds:
        if kind in ctx.services:
            return ctx.services[kind]
    raise RuntimeError(f"the target offers none of the services {', '.join(kinds)}")


def reset(t: Timeline, conn: Conn | None = None) -> None:
    """End a raw connection for good (lwIP has 5 PCBs: never leave one behind), never masking
    the probe's own error. The RST carries the target's RCV.NXT -- the ack of the last ACK it
    sent, not our SND.NXT: after out-of-order data the two differ, and an RFC 5961 stack only
    answers an inexact RST with a challenge ACK."""
    c = conn or t.conn
    if c.target_port is None:
        return
    last = next(
        (s for s in reversed(t.segments)
         if s.direction == ">" and c.owns(s.hdr) and "." in s.flags),
        None,
    )  # fmt: skip
    with contextlib.suppress(Exception):  # the wire may be gone; the probe's result matters
        t.inject(None, "R", seq=last.ack if last is not None else c.snd_nxt, conn=c)


def evidence(ctx: Context, t: Timeline, segs: Iterable[Seg], note: str) -> Evidence:
    """Evidence for ``segs`` in the timeline's pcap; long runs keep the first and last frames,
    which tell the story."""
    chosen = sorted(segs, key=lambda s: s.t_us)
    if len(chosen) > MAX_EVIDENCE_FRAMES:
        half = MAX_EVIDENCE_FRAMES // 2
        chosen = chosen[:half] + chosen[-half:]
    return ctx.wire_evidence(wire_of(t), [s.t_us for s in chosen], note)


def agent_listen(agent: Agent, tries: int = 20) -> tuple[int, int]:
    """A listener of the target's agent on a free port: (port, sid)."""
    rng = random.Random()
    for _ in range(tries):
        port = rng.randint(20000, 29999)
        try:
            return port, agent.listen(port)
        except AgentError as exc:
            if exc.code != "inuse":
                raise
    raise RuntimeError("the agent found no free port to listen on")
