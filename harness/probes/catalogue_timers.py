"""Timer probes: retransmission timeouts and SYN give-up, delayed ACK, zero-window probing,
keep-alive and TIME-WAIT (P7a, P7b, P8, P11, P12, P17).

A timer can only be seen from outside by making the target wait for something that never comes
and timing what it does meanwhile, so every probe here plays the TCP peer on the live wire (the
raw peer): it swallows SYNs, stops acknowledging, closes its window or goes idle, and times the
target's segments by their kernel capture stamps. The target is a server (its chargen, discard
and echo services) or, where the target must open or close the connection itself (SYN
retransmissions, keep-alive, TIME-WAIT), a client driven through its agent.

Timers are a property of the stack, not of the address family: each is measured once, over
IPv4 when the target has it, and reported with family "". Long timers are bounded by
``ctx.budget_s``; a cut wait reports what it saw as a lower bound, and a wait stops early once
the next event is due only after the budget.

Embedded stacks count their timers in ticks (lwIP: 250 ms fast, 500 ms slow timer), so one
timeout fires anywhere in a tick: the tick is inferred from the grid the target's
retransmissions sit on, across black holes started at unrelated times, and timer values come
with a confidence interval of at least one tick.

Small stacks have little to share: lwIP has 5 PCBs, so each probe here uses one connection
at a time, and a 1600 B heap (MEM_SIZE), so a connection holding a full send buffer
(TCP_SND_BUF, 1072 B) unacknowledged leaves no room for another to send. A black hole (P7b) or
a closed window (P11) holds it for tens of seconds; those two probes therefore run alone
(exclusive), or every chargen or echo probe running meanwhile would see a target that cannot
send. Every raw connection ends with a RST (a stale one with unacknowledged data would change
what later probes see); a connection in TIME-WAIT may outlive it (RFC 1337).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from harness.probes import peer
from harness.probes.engine import Context, NoAgent, probe
from harness.probes.observe import Confidence, Evidence, Observation, Value, Verdict
from harness.probes.timeline import Conn, Seg, Timeline
from harness.probes.tolerance import infer_tick
from targets.agent.client import Agent, AgentError

OUR_MSS = 1460
WIN = 65535
TRAIN_WIN = 4380  # a few segments per round trip: we answer each at once, so RTTs stay ~0
TRAIN_SEGMENTS = 30  # RTT samples before a black hole (lwIP's estimator needs about 4)
TRAIN_MIN_MS = 200.0
TICKS = (100.0, 200.0, 250.0, 500.0, 1000.0)  # timer ticks worth naming; finer = event driven
TICK_FIT = 0.06  # RMS distance to the grid, relative to the tick, for a tick to be believed
IMMEDIATE_MS = 15.0  # an ACK sooner than this was not held back by a delayed-ACK timer
# P8's small segment: no PSH and at least 88 B, or Linux ACKs it as soon as the application
# has read it (a "pushed" small segment, tcp_cleanup_rbuf) and no delayed ACK is ever seen.
SMALL = b"tcp-hil delayed ACK " * 5
MAX_FRAMES = 24  # frames cited per observation (the pcap has them all)
ZWP_WAIT_S = 11.0  # three probes of lwIP (1.5, 3, 6 s apart), four of Linux
KEEPALIVE_SET_MS = 1000  # what P12 asks the agent for: idle, interval
KEEPALIVE_SET_CNT = 3
KEEPALIVE_DEFAULT_WAIT_S = 10.0
MIN_TIME_WAIT_S = 60.0  # 2 MSL with the shortest MSL in common use (30 s); RFC 9293 says 2 min


# ------------------------------------------------------------------------------ helpers


def _obs(
    pid: str,
    key: str,
    value: Value,
    verdict: Verdict,
    detail: str,
    confidence: Confidence | None = None,
    evidence: Evidence | None = None,
) -> Observation:
    return Observation(
        key, value, verdict, pid, "", detail, confidence or Confidence(), evidence=evidence
    )


def _mine(t: Timeline, conn: Conn) -> list[Seg]:
    """The segments of one connection (a live wire sees every probe's traffic)."""
    port = conn.tester_port
    return [s for s in t.segments if port in (s.src_port, s.dst_port)]


def _lower_bound(value: float) -> Confidence:
    return Confidence(1, (value, value))


def _timer(samples: Sequence[float], tick: float | None) -> peer.Timer:
    """A timer value from samples. A tick-driven timer fires on the k-th tick after it was
    armed, anywhere in ((k-1) tick, k tick] after the start: its nominal value is the largest
    sample rounded up to whole ticks, not the mean."""
    est = peer.estimate(samples, tick or None)
    if not tick:
        return est
    nominal = math.ceil(max(samples) / tick - 0.02) * tick
    lo = round(min(max(samples), nominal), 1)
    return peer.Timer(float(nominal), Confidence(len(samples), (lo, nominal), 0.95))


def _floor_timer(samples: Sequence[float], tick: float | None) -> peer.Timer:
    """The lowest value a tick-driven timer takes across samples armed in different states.

    An RTO floor is measured after prompt ACKs, but an ACK that happens to straddle the
    target's tick gives a one-tick RTT sample and a timer one tick longer: the floor is the
    smallest whole-tick value a sample clearly belongs to, not the largest. A sample within
    2 % of a tick edge could belong to either side, so it decides only when no sample is clear.
    """
    if not tick:
        return _timer(samples, tick)
    clear = [s for s in samples if abs(s / tick - round(s / tick)) > 0.02]
    if not clear:
        return _timer(samples, tick)
    nominal = min(math.ceil(s / tick) for s in clear) * tick
    members = [s for s in clear if math.ceil(s / tick) * tick == nominal]
    return peer.Timer(
        float(nominal), Confidence(len(samples), (round(min(members), 1), nominal), 0.95)
    )


def _ratio(gaps: Sequence[float]) -> float | None:
    """The growth of successive intervals (their median ratio), None with fewer than two."""
    ratios = [b / a for a, b in itertools.pairwise(gaps) if a > 0]
    return round(statistics.median(ratios), 2) if ratios else None


def _fmt(ms: Iterable[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in ms)


def _accept(t: Timeline, conn: Conn, within_ms: float = 5000.0) -> Seg:
    """The target's SYN to the raw peer, answered with a SYN-ACK; returns the SYN."""
    syn = t.next(within_ms, conn)
    if syn is None or "S" not in syn.flags:
        got = "nothing" if syn is None else f"'{syn.flags}'"
        raise peer.NoAnswer(f"the target did not connect (got {got} within {within_ms:g} ms)")
    t.inject(None, "S.", mss=OUR_MSS, win=WIN, conn=conn)
    return syn


def _agent_connect(
    ctx: Context, t: Timeline, conn: Conn, agent: Agent, fam: str, port: int
) -> tuple[int, Seg]:
    """The agent connects to the raw peer (``conn`` listens on ``port``), which accepts;
    returns (cid, the target's SYN)."""
    fut = peer.background(agent.connect, ctx.raw_peer(fam), port, 5000)
    syn = _accept(t, conn)
    cid, _addr, _port = fut.result(timeout=10)
    t.next(500, conn)  # the target's ACK of our SYN-ACK
    return cid, syn


def _agent_drop(ctx: Context, cid: int) -> None:
    """Free the agent's handle of a connection the probe has finished with."""
    try:
        with ctx.agent_session() as agent:
            agent.abort(cid)
    except (AgentError, NoAgent):  # already gone (reset, timed out): nothing to free
        pass


# ------------------------------------------------------------------- P7a: SYN retransmission


@probe(
    "P7a",
    "SYN retransmission: initial RTO, back-off, retries and give-up (target as client)",
    ("rto_initial_ms", "syn_backoff", "syn_retries", "syn_giveup_s"),
)
def syn_retransmission(ctx: Context) -> list[Observation]:
    """The agent connects to the raw peer, which never answers: the target's SYNs show its
    initial RTO and SYN back-off; its giving up (the agent's connect fails) the SYN retries.
    The wait is the budget; the agent is held all that time (its connect blocks)."""
    pid = "P7a"
    fam = peer.stack_family(ctx)
    port = random.randint(20000, 40000)
    budget_ms = ctx.budget_s * 1000.0
    with ctx.agent_session() as agent, peer.timeline(ctx, fam, "P7a-syn", port) as t:
        conn = t.listen(port)
        fut = peer.background(agent.connect, ctx.raw_peer(fam), port, int(budget_ms))
        syns: list[Seg] = []
        done_ms: float | None = None
        start = t.now_ms
        while True:
            seg = t.next(50, conn)
            if seg is not None and "S" in seg.flags:
                syns.append(seg)
            if fut.done():
                done_ms = t.now_ms
                break
            if not syns and t.now_ms - start > 5000:
                break
            if syns and t.now_ms - syns[0].t_ms > budget_ms + 2000:
                break
        error = ""
        try:
            cid, _a, _p = fut.result(timeout=ctx.budget_s + 10)
            agent.abort(cid)  # somebody answered: not what this probe measures
            error = "the connection was established"
        except AgentError as exc:
            error = f"{exc.code} {exc.text}".strip()
        peer.reset(t, conn)
        if len(syns) < 1:
            return [
                _obs(pid, k, None, "inconclusive", f"the target sent no SYN ({error})")
                for k in ("rto_initial_ms", "syn_backoff", "syn_retries", "syn_giveup_s")
            ]
        ev = peer.evidence(ctx, t, syns, "the target's SYNs to a peer that never answers")
        t0 = syns[0].t_ms
        gaps = [round(b.t_ms - a.t_ms, 1) for a, b in itertools.pairwise(syns)]
        # The stack gave up if the agent's connect failed well before its own deadline.
        gave_up = done_ms is not None and done_ms - t0 < budget_ms - 300
        return _syn_observations(pid, syns, gaps, gave_up, done_ms, budget_ms, error, ev)


def _syn_observations(
    pid: str,
    syns: list[Seg],
    gaps: list[float],
    gave_up: bool,
    done_ms: float | None,
    budget_ms: float,
    error: str,
    ev: Evidence,
) -> list[Observation]:
    out: list[Observation] = []
    shown = f"SYN gaps {_fmt(gaps)} ms"
    if gaps:
        est = peer.estimate([gaps[0]])
        v = est.value
        ok = 950 <= v <= 3100  # RFC 6298 2.1: 1 s, or the 3 s of RFC 1122 (MAY)
        out.append(
            _obs(
                pid, "rto_initial_ms", v, "conforms" if ok else "deviates",
                f"first SYN retransmission after {v:.0f} ms ({shown})", est.confidence, ev,
            )
        )  # fmt: skip
    else:
        out.append(
            _obs(pid, "rto_initial_ms", None, "inconclusive", "no SYN retransmission", None, ev)
        )
    # Back-off may start late: Linux keeps the first tcp_syn_linear_timeouts (4) SYN
    # retransmissions 1 s apart, then doubles. The largest growth is the back-off.
    # The first interval starts at the connect, at any phase of a tick-driven timer: with
    # enough SYNs it is left out.
    steady = gaps[1:] if len(gaps) >= 3 else gaps
    ratios = [round(b / a, 2) for a, b in itertools.pairwise(steady) if a > 0]
    if not ratios:
        out.append(
            _obs(pid, "syn_backoff", None, "inconclusive", f"too few SYNs ({shown})", None, ev)
        )
    else:
        ratio = max(ratios)
        flat = next((i for i, r in enumerate(ratios) if r >= 1.2), len(ratios))
        if steady is gaps and 1.2 <= ratio < 1.3:
            # Two intervals only, the first from the connect at any phase of a 500 ms tick:
            # 2.5 s then 3 s is a flat 3 s timer, not a back-off of x1.2.
            what = f"no back-off (x{ratio:g} from a first interval short by the tick phase)"
            ratio = 1.0
        elif ratio < 1.2:
            what = "no back-off"
        elif flat:
            what = f"{flat + 1 + len(gaps) - len(steady)} equal intervals, then x{ratio:g}"
        else:
            what = f"x{ratio:g} per retransmission"
        verdict: Verdict = "conforms" if ratio >= 1.5 else "deviates"
        out.append(
            _obs(pid, "syn_backoff", ratio, verdict, f"{what} ({shown})", Confidence(len(ratios)),
                 ev)
        )  # fmt: skip
    retries = len(syns) - 1
    if gave_up and done_ms is not None:
        giveup_s = round((done_ms - syns[0].t_ms) / 1000.0, 2)
        verdict = "conforms" if giveup_s >= 180 else "deviates"  # MUST-23: R2 >= 3 min
        out.append(
            _obs(pid, "syn_retries", retries, verdict,
                 f"{retries} retransmissions, then the connect failed ({error})",
                 Confidence(1), ev)
        )  # fmt: skip
        out.append(
            _obs(pid, "syn_giveup_s", giveup_s, verdict,
                 f"connect failed {giveup_s:g} s after the first SYN ({error}; MUST-23: >= 180 s)",
                 Confidence(1, (round(syns[-1].t_ms - syns[0].t_ms) / 1000.0, giveup_s)), ev)
        )  # fmt: skip
    else:
        bound_s = round(budget_ms / 1000.0, 1)
        verdict = "conforms" if bound_s >= 180 else "inconclusive"
        out.append(
            _obs(pid, "syn_retries", retries, verdict,
                 f"at least {retries} retransmissions (cut by the budget of {bound_s:g} s)",
                 _lower_bound(retries), ev)
        )  # fmt: skip
        out.append(
            _obs(pid, "syn_giveup_s", bound_s, verdict,
                 f"at least {bound_s:g} s: still sending SYNs (cut by the budget)",
                 _lower_bound(bound_s), ev)
        )  # fmt: skip
    return out


# ------------------------------------------------------------------- P7b: data retransmission


@dataclass
class _Chain:
    """One black hole: the first unacknowledged segment, its first transmission, and every
    retransmission of it (other segments of the flight do not count)."""

    una: int
    ref_ms: float  # when its timer started: its first transmission or our last ACK, later one
    orig: Seg | None = None
    rtx: list[Seg] = field(default_factory=list)
    end: str = "budget"  # "rst", "dead" (gave up silently), "budget", "acked"
    checks: list[Seg] = field(default_factory=list)  # our liveness checks and their answers

    @property
    def first_rto(self) -> float | None:
        return round(self.rtx[0].t_ms - self.ref_ms, 1) if self.rtx else None

    @property
    def gaps(self) -> list[float]:
        return [round(b.t_ms - a.t_ms, 1) for a, b in itertools.pairwise(self.rtx)]


def _train(t: Timeline, segments: int = TRAIN_SEGMENTS, min_ms: float = TRAIN_MIN_MS) -> Seg:
    """Acknowledge every data segment at once until the target has many near-zero RTT samples;
    returns our last ACK (the moment the black hole starts)."""
    start = t.now_ms
    n = 0
    last: Seg | None = None
    while n < segments or t.now_ms - start < min_ms:
        seg = t.next(5000)
        if seg is None:
            raise peer.NoAnswer("chargen sent nothing for 5 s")
        if "R" in seg.flags:
            raise peer.NoAnswer("the target reset the connection while sending")
        if seg.length:
            n += 1
            last = t.inject(None, ".", win=TRAIN_WIN)
    assert last is not None
    return last


def _black_hole(
    t: Timeline, last_ack: Seg, deadline_ms: float, *, stop_after: int | None = None
) -> _Chain:
    """Stop acknowledging after ``last_ack`` and record the retransmissions of the first
    unacknowledged byte until the target resets or gives up, ``stop_after`` of them, or
    ``deadline_ms``.

    A silent give-up is told from a long back-off by a liveness check: an old byte (below the
    target's RCV.NXT), which a live connection must acknowledge and a closed one resets. The
    first is sent 1.3 intervals after a retransmission, before a doubling timer fires again,
    then one per interval; it acknowledges nothing new, so it changes no timer.
    """
    una = last_ack.ack
    chain = _Chain(una, last_ack.t_ms)
    next_check = math.inf
    final = False  # the next retransmission is due after the deadline: check once and stop
    while (now := t.now_ms) < deadline_ms:
        if now >= next_check:
            chain.checks.append(t.inject(None, ".", seq=0, ack=una, win=TRAIN_WIN, data=b"\0"))
            answer = t.next(1000)
            gap = (chain.gaps or [chain.first_rto or 1000.0])[-1]
            next_check = t.now_ms + max(gap, 2000.0)
            if answer is not None:
                chain.checks.append(answer)
                if "R" in answer.flags:
                    chain.end = "dead"
                    return chain
            if final:
                break
            if answer is None:
                continue
            if answer.seq != una or not answer.length:
                continue
            seg: Seg | None = answer  # a retransmission crossed our check
        else:
            seg = t.next(min(deadline_ms, next_check) - now)
            if seg is None:
                continue
            if "R" in seg.flags:
                chain.end = "rst"
                return chain
            if seg.seq != una or not seg.length:
                continue
        assert seg is not None
        if chain.orig is None:
            # its first transmission; if it left before our ACK, the ACK restarted its timer
            chain.orig = seg
            chain.ref_ms = max(seg.t_ms, last_ack.t_ms)
            continue
        chain.rtx.append(seg)
        gaps = chain.gaps or [chain.first_rto or 0.0]
        next_check = seg.t_ms + 1.3 * gaps[-1] + 300.0
        if stop_after is not None and len(chain.rtx) >= stop_after:
            chain.end = "stopped"
            return chain
        growth = max(1.0, gaps[-1] / gaps[-2]) if len(gaps) > 1 and gaps[-2] > 0 else 2.0
        if seg.t_ms + growth * gaps[-1] > deadline_ms + 0.05 * gaps[-1]:
            # Waiting for it would only see the budget end: one check a little later (a stack
            # giving up at its next tick has done so by then), and stop.
            final = True
            next_check = min(deadline_ms, seg.t_ms + max(1000.0, 0.25 * gaps[-1]))
    chain.end = "budget"
    return chain


@dataclass
class _Karn:
    """A retransmission acknowledged at once, another one late; the RTO after each."""

    prompt: _Chain  # the first black hole (cut at its first retransmission)
    prompt_ack: Seg
    after_prompt: _Chain  # the black hole right after that ACK: its first RTO
    late: _Chain
    late_ack: Seg
    after_late: _Chain


@dataclass
class _Short:
    """The short black holes before the long one: floor samples and timer phases, Karn."""

    trained: list[_Chain] = field(default_factory=list)  # first RTO = the floor
    karn: _Karn | None = None

    def chains(self) -> list[_Chain]:
        k = self.karn
        return self.trained + ([k.after_prompt, k.after_late] if k else [])


@probe(
    "P7b",
    "data retransmission: RTO floor, back-off, cap, retries, timer tick, Karn (chargen)",
    ("rto_min_ms", "rto_backoff", "rto_max_ms", "data_retries", "timer_tick_ms", "karn"),
    exclusive=True,  # holds unacknowledged data for long: see the module doc
)
def data_retransmission(ctx: Context) -> list[Observation]:
    """One chargen connection (small stacks have few PCBs, and other probes run meanwhile).
    Every black hole follows a training phase that acknowledges each segment at once (RTT
    samples near zero, so the RTO falls to its floor). First a few short ones: each first RTO
    is a floor sample, each first retransmission a timer time at an unrelated phase (the
    tick), and one retransmission is acknowledged late: had that ACK become an RTT sample (no
    Karn), the next RTO would jump. Then the long one, silent until the target gives up or the
    budget ends: its intervals are the back-off and the cap, their count the retries."""
    pid = "P7b"
    fam = peer.stack_family(ctx)
    port = peer.service(ctx, "chargen")
    budget_ms = ctx.budget_s * 1000.0
    with peer.timeline(ctx, fam, "P7b-rtx", port) as t:
        short = _Short()
        try:
            peer.handshake(t, mss=OUR_MSS, win=TRAIN_WIN)
            _short_black_holes(t, short, t.now_ms + min(budget_ms, 20000.0))
            if short.trained:
                t.inject(None, ".", win=TRAIN_WIN)  # the last retransmission: data flows again
            last = _train(t)
            chain = _black_hole(t, last, last.t_ms + budget_ms)
        finally:
            peer.reset(t)
        return _data_observations(ctx, pid, t, chain, short)


def _short_black_holes(t: Timeline, short: _Short, deadline: float) -> None:
    """Two black holes cut at their first retransmission, after fresh training each. The
    first retransmission is acknowledged at once, the second 1.5 RTO late (before a doubled
    timer fires again); a black hole after each ACK times the next RTO."""
    last = _train(t)
    prompt = _black_hole(t, last, deadline, stop_after=1)
    if prompt.first_rto is None:
        return
    short.trained.append(prompt)
    prompt_ack = t.inject(None, ".", win=TRAIN_WIN)
    after_prompt = _black_hole(t, prompt_ack, deadline, stop_after=1)
    if after_prompt.first_rto is None:
        return
    t.inject(None, ".", win=TRAIN_WIN)  # the retransmission: data flows again
    last = _train(t, segments=12, min_ms=50.0)
    late = _black_hole(t, last, deadline, stop_after=1)
    if late.first_rto is None:
        return
    short.trained.append(late)
    # Late, but before the timer fires again: a stack that keeps its backed-off timer showed
    # it after the prompt ACK (about 2 RTO); one that resets it fires again 2 RTO after the
    # retransmission all the same (RFC 6298 5.5).
    r0, r1 = late.first_rto, after_prompt.first_rto
    # 1.5 RTO late leaves half an RTO of margin before a doubled timer fires again (a loaded
    # host delays our ACK by tens of ms; at a 200 ms RTO 1.8 left too little).
    late_at = late.rtx[0].t_ms + (0.75 * r1 if r1 > 1.5 * r0 else 1.5 * r0)
    while (left := late_at - t.now_ms) > 0:
        seg = t.next(left)
        if seg is not None and seg.seq == late.una and seg.length:
            late.rtx.append(seg)  # it fired again first: the comparison would not hold
            break
    late_ack = t.inject(None, ".", win=TRAIN_WIN)
    after_late = _black_hole(t, late_ack, deadline, stop_after=1)
    short.karn = _Karn(prompt, prompt_ack, after_prompt, late, late_ack, after_late)


def _data_observations(
    ctx: Context, pid: str, t: Timeline, chain: _Chain, short: _Short
) -> list[Observation]:
    out: list[Observation] = []
    ev = peer.evidence(
        ctx, t, ([chain.orig] if chain.orig else []) + chain.rtx + chain.checks,
        "the first unacknowledged segment and its retransmissions (the long black hole)",
    )  # fmt: skip
    trained = [c for c in [*short.trained, chain] if c.first_rto is not None]
    tick, fit_note, n_events = _tick_of(chain, short)
    armed = [c.first_rto for c in trained if c.first_rto is not None]
    if tick and len(armed) >= 3 and max(armed) - min(armed) <= max(10.0, 0.05 * tick):
        # Timers armed at unrelated moments that all fire the same time after arming run
        # from their own start: a ticked timer would scatter over a tick. Round RTOs (1 s,
        # 2 s, ...) otherwise sit on a 100 ms grid by themselves.
        fit_note = (
            f"event-driven: first RTOs {_fmt(armed)} ms after arming are constant (a "
            f"{tick:g} ms tick would scatter them over up to a tick); {fit_note}"
        )
        tick = 0.0
    out.append(
        _obs(pid, "timer_tick_ms", tick, "conforms" if tick is not None else "inconclusive",
             fit_note, Confidence(n_events), ev)
    )  # fmt: skip

    floors = [c.first_rto for c in trained if c.first_rto is not None]
    if floors:
        est = _floor_timer(floors, tick)
        ok = est.interval[1] >= 1000 - 50  # RFC 6298 2.4: at least 1 s (SHOULD)
        out.append(
            _obs(pid, "rto_min_ms", est.value, "conforms" if ok else "deviates",
                 f"first RTO after prompt ACKs (RTT ~0): {_fmt(floors)} ms"
                 + (f" on a {tick:g} ms tick" if tick else ""), est.confidence, ev)
        )  # fmt: skip
    else:
        out.append(_obs(pid, "rto_min_ms", None, "inconclusive", "no retransmission", None, ev))
    out += _backoff_observations(pid, chain, tick, ev)

    n = len(chain.rtx)
    if chain.end in ("rst", "dead"):
        how = "then a RST" if chain.end == "rst" else "then silence (our check drew a RST)"
        out.append(
            _obs(pid, "data_retries", n, "conforms", f"{n} retransmissions, {how}",
                 Confidence(1), ev)
        )  # fmt: skip
    else:
        out.append(
            _obs(pid, "data_retries", n, "inconclusive",
                 f"at least {n} retransmissions (cut by the budget of {ctx.budget_s:g} s)",
                 _lower_bound(n), ev)
        )  # fmt: skip
    out.append(_karn_observation(ctx, pid, t, short, tick))
    return out


def _tick_of(main: _Chain, short: _Short) -> tuple[float | None, str, int]:
    """The timer tick: the grid the retransmissions of black holes started at unrelated
    moments share (a stack-wide timer); 0 when they share none (each timer runs from its own
    start). One black hole alone always sits on the grid of its own RTO: three are needed."""
    chains = [c for c in [*short.chains(), main] if c.rtx]
    events = [s.t_ms for c in chains for s in c.rtx[:4]]
    if len(chains) < 3:
        return None, f"too few black holes to tell ({len(chains)})", len(events)
    fit = infer_tick(events, TICKS, max_rel=TICK_FIT)
    what = f"{len(events)} retransmissions of {len(chains)} black holes"
    if fit.ok:
        return fit.tick_ms, f"{what} sit on one grid: {fit}", len(events)
    best = min(fit.scores, key=lambda c: fit.scores[c])
    return 0.0, (
        f"event-driven: {what} sit on no common grid of {_fmt(TICKS)} ms (best {best:g} ms, "
        f"residual {fit.scores[best]:.2f} of a tick)"
    ), len(events)  # fmt: skip


def _backoff_observations(
    pid: str, chain: _Chain, tick: float | None, ev: Evidence
) -> list[Observation]:
    out: list[Observation] = []
    gaps = chain.gaps
    # the intervals grow until a cap (or the budget); a cap shows as one that stops growing
    k = next((i for i in range(1, len(gaps)) if gaps[i] <= gaps[i - 1] * 1.25), len(gaps))
    growing = gaps[:k]
    ratio = _ratio(growing)
    shown = f"first RTO {chain.first_rto} ms, then gaps {_fmt(gaps)} ms"
    if ratio is None:
        out.append(_obs(pid, "rto_backoff", None, "inconclusive", f"too few ({shown})", None, ev))
    else:
        out.append(
            _obs(pid, "rto_backoff", ratio, "conforms" if ratio >= 1.5 else "deviates",
                 f"x{ratio:g} per timeout ({shown})", Confidence(len(growing) - 1), ev)
        )  # fmt: skip
    if k < len(gaps):
        est = _timer(gaps[k - 1 :], tick)
        cap = round(statistics.fmean(gaps[k - 1 :]), 1)
        out.append(
            _obs(pid, "rto_max_ms", cap, "conforms" if cap >= 60000 - 1000 else "deviates",
                 f"the interval stopped growing at {cap:.0f} ms ({shown}; RFC 6298 2.5: a cap "
                 "must be at least 60 s)", est.confidence, ev)
        )  # fmt: skip
    else:
        largest = round(max(gaps, default=chain.first_rto or 0.0), 1)
        why = "cut by the budget" if chain.end == "budget" else "the target gave up first"
        out.append(
            _obs(pid, "rto_max_ms", largest or None,
                 "conforms" if largest >= 60000 else "inconclusive",
                 f"no cap reached: at least {largest:.0f} ms ({why}; {shown})",
                 _lower_bound(largest) if largest else None, ev)
        )  # fmt: skip
    return out


def _karn_observation(
    ctx: Context, pid: str, t: Timeline, short: _Short, tick: float | None
) -> Observation:
    """Karn (RFC 6298 3): no RTT sample from a retransmitted segment. The next RTO then
    cannot depend on when the retransmission was acknowledged: whether the stack keeps its
    backed-off timer (RFC 6298 5.5-5.7) or resets it on new data, at once and late give the
    same. A stack sampling the retransmission gets ~0 from the prompt ACK and ~1.5 RTO from
    the late one, so its next RTO after the late ACK is about twice the other. (A stack that
    keeps the backed-off timer and samples from the retransmission ends up near the same
    value either way: that variant goes unnoticed.)"""
    k = short.karn
    if k is None:
        return _obs(pid, "karn", None, "inconclusive", "no retransmission to acknowledge")
    segs = [*k.prompt.rtx, k.prompt_ack, *k.after_prompt.rtx[:1], *k.late.rtx, k.late_ack]
    segs += k.after_late.rtx[:1] + [s for c in (k.after_prompt, k.after_late) if (s := c.orig)]
    ev = peer.evidence(
        ctx, t, segs, "a retransmission ACKed at once, another late; the next RTO of each"
    )
    r_prompt, r_late = k.after_prompt.first_rto, k.after_late.first_rto
    if r_prompt is None or r_late is None:
        what = "no retransmission after an ACK of a retransmission"
        return _obs(pid, "karn", None, "inconclusive", what, None, ev)
    if len(k.late.rtx) > 1:
        what = "the timer fired twice before the late ACK: no comparison"
        return _obs(pid, "karn", None, "inconclusive", what, None, ev)
    delay = k.late_ack.t_ms - k.late.rtx[0].t_ms
    limit = 0.25 * max(r_prompt, r_late) + (tick or 0.0) + 20.0
    ok = abs(r_late - r_prompt) <= limit
    detail = (
        f"next RTO {r_prompt:.0f} ms after a retransmission ACKed at once, {r_late:.0f} ms "
        f"after one ACKed {delay:.0f} ms late ("
        + ("the same: no RTT sample from a retransmitted segment)" if ok else
           "the late ACK became an RTT sample)")
    )  # fmt: skip
    return _obs(pid, "karn", ok, "conforms" if ok else "deviates", detail, Confidence(1), ev)


# ------------------------------------------------------------------------- P8: delayed ACK


@probe(
    "P8",
    "delayed ACK: latency for one small segment, every 2nd full segment, out-of-order",
    ("delayed_ack", "delayed_ack_ms", "ack_every_2nd_full", "immediate_dupack_ooo"),
)
def delayed_ack(ctx: Context) -> list[Observation]:
    """Small segments (100 B, no PSH) to discard, which never answers with data, one at a time
    at random pauses: how long each waits for its ACK. A stack starting in quick-ACK mode
    (Linux) ACKs the first ones at once, so trials go on until several delayed ones were
    seen. Then two full-sized segments back to back (SHLD-19: ACK at once), then one out of
    order (RFC 5681 4.2: duplicate ACK at once)."""
    pid = "P8"
    fam = peer.stack_family(ctx)
    port = peer.service(ctx, "discard")
    rng = random.Random()
    with peer.timeline(ctx, fam, "P8-delack", port) as t:
        try:
            sa = peer.handshake(t, mss=OUR_MSS, win=WIN)
            lat: list[float] = []
            acks: list[Seg] = []
            cited: list[Seg] = []
            delayed_seen = 0
            for _ in range(32):
                seg = t.inject(None, ".", data=SMALL)
                ack = _ack_for(t, seg.end, 800.0)
                if ack is None:
                    cited.append(seg)
                    break
                lat.append(round(ack.t_ms - seg.t_ms, 2))
                acks.append(ack)
                cited += [seg, ack]
                delayed_seen += lat[-1] >= IMMEDIATE_MS
                if delayed_seen >= 8 or (len(lat) >= 20 and delayed_seen == 0):
                    break
                t.collect(rng.uniform(20.0, 120.0))
            full = _two_full(t, sa, fam)
            ooo = _out_of_order(t)
            out = _delack_observations(ctx, pid, t, lat, acks, cited, sa)
            out.append(_pair_observation(ctx, pid, t, full, lat))
            out.append(_ooo_observation(ctx, pid, t, ooo, lat))
            return out
        finally:
            peer.reset(t)


def _ack_for(t: Timeline, end: int, within_ms: float, conn: Conn | None = None) -> Seg | None:
    """The target's first segment acknowledging up to ``end``."""
    deadline = t.now_ms + within_ms
    while (left := deadline - t.now_ms) > 0:
        seg = t.next(left, conn)
        if seg is None:
            return None
        if "." in seg.flags and seg.ack - end >= 0:
            return seg
    return None


def _two_full(t: Timeline, sa: Seg, fam: str) -> tuple[list[Seg], Seg | None] | str:
    size = min(OUR_MSS, sa.mss if sa.mss else (536 if fam == "ipv4" else 1220))
    if sa.win < 2 * size:
        return f"its window ({sa.win} B) holds less than two full segments of {size} B"
    t.collect(30.0)
    a = t.inject(None, ".", data=b"a" * size)
    b = t.inject(None, ".", data=b"b" * size)
    return [a, b], _ack_for(t, b.end, 800.0)


def _out_of_order(t: Timeline) -> tuple[Seg, Seg | None, Seg, Seg | None]:
    t.collect(30.0)
    hole = t.conn.snd_nxt
    ahead = t.inject(None, ".", seq=hole + 100, data=b"o" * 100)
    dup = t.next(800.0)
    fill = t.inject(None, ".", seq=hole, data=b"h" * 100)
    ack = _ack_for(t, fill.end, 800.0)
    return ahead, dup, fill, ack


def _delack_observations(
    ctx: Context,
    pid: str,
    t: Timeline,
    lat: list[float],
    acks: list[Seg],
    cited: list[Seg],
    sa: Seg,
) -> list[Observation]:
    ev = peer.evidence(ctx, t, cited, "a small segment to discard and its ACK, repeated")
    if not lat:
        return [
            _obs(pid, "delayed_ack", None, "inconclusive", "no ACK within 800 ms", None, ev),
            _obs(pid, "delayed_ack_ms", None, "deviates",
                 "no ACK within 800 ms (MUST-40: < 500 ms)", None, ev),
        ]  # fmt: skip
    delayed = [(x, a) for x, a in zip(lat, acks, strict=True) if x >= IMMEDIATE_MS]
    shown = f"ACK after {_fmt(lat)} ms"
    run = streak = 0
    for x in lat:
        run = run + 1 if x >= IMMEDIATE_MS else 0
        streak = max(streak, run)
    if streak < 3:  # a stray slow ACK or two (a busy host) is no delayed-ACK timer
        return [
            _obs(pid, "delayed_ack", False, "deviates",
                 f"every small segment ACKed at once ({shown})", Confidence(len(lat)), ev),
            _obs(pid, "delayed_ack_ms", 0.0, "conforms", f"no delay ({shown})",
                 peer.estimate(lat).confidence, ev),
        ]  # fmt: skip
    samples = [x for x, _ in delayed]
    times = [a.t_ms for _, a in delayed]
    # Our segments leave at random times: ACK times on a common grid mean a periodic timer
    # sends them (lwIP's 250 ms fast timer), and the delay is bounded by whole ticks. Delays
    # spread widely without a clear grid (a tick on a busy host) are bounded by the longest.
    fit = infer_tick(times, TICKS)
    longest, spread = max(samples), max(samples) - min(samples)
    # A timer armed by each segment fires a constant time after it; only a periodic tick
    # scatters the delays. Constant delays on a grid mean our own sends were on one.
    ticked = fit.ok and spread > max(10.0, 0.05 * fit.tick_ms)
    if ticked:
        est = _timer(samples, fit.tick_ms)
        how = f"sent on a {fit.tick_ms:g} ms timer tick: up to {est.value:.0f} ms"
    elif spread > 0.25 * longest:
        est = peer.Timer(longest, Confidence(len(samples), (longest, longest + spread), 0.95))
        how = f"spread over {spread:.0f} ms (no grid: {fit}): up to {longest:.0f} ms seen"
    else:
        est = peer.estimate(samples)
        how = f"{est.value:.0f} ms"
    quick = len(lat) - len(delayed)
    leading = next((i for i, x in enumerate(lat) if x >= IMMEDIATE_MS), 0)
    if quick and leading == quick:
        note = f" after {quick} immediate ones (quick-ACK mode at the start)"
    else:
        note = f" ({quick} sooner than {IMMEDIATE_MS:g} ms)" if quick else ""
    return [
        _obs(pid, "delayed_ack", True, "conforms",
             f"{len(delayed)} of {len(lat)} ACKs delayed{note} ({shown})",
             Confidence(len(lat)), ev),
        _obs(pid, "delayed_ack_ms", est.value, "conforms" if est.value < 500 else "deviates",
             f"delayed ACK {how} (delays {_fmt(samples)} ms; MUST-40: < 500 ms)",
             est.confidence, ev),
    ]  # fmt: skip


def _immediate(latency: float, lat: list[float]) -> bool:
    delayed = [x for x in lat if x >= IMMEDIATE_MS]
    return latency < (min(IMMEDIATE_MS, min(delayed) / 2) if delayed else IMMEDIATE_MS)


def _pair_observation(
    ctx: Context,
    pid: str,
    t: Timeline,
    full: tuple[list[Seg], Seg | None] | str,
    lat: list[float],
) -> Observation:
    if isinstance(full, str):
        return _obs(pid, "ack_every_2nd_full", None, "not-applicable", full)
    segs, ack = full
    ev = peer.evidence(
        ctx, t, segs + ([ack] if ack else []), "two full-sized segments and their ACK"
    )
    if ack is None:
        what = "no ACK within 800 ms of two full-sized segments"
        return _obs(pid, "ack_every_2nd_full", False, "deviates", what, Confidence(1), ev)
    latency = ack.t_ms - segs[1].t_ms
    ok = _immediate(latency, lat)
    return _obs(
        pid, "ack_every_2nd_full", ok, "conforms" if ok else "deviates",
        f"two {segs[0].length} B segments ACKed {latency:.1f} ms after the second", Confidence(1),
        ev,
    )  # fmt: skip


def _ooo_observation(
    ctx: Context,
    pid: str,
    t: Timeline,
    ooo: tuple[Seg, Seg | None, Seg, Seg | None],
    lat: list[float],
) -> Observation:
    ahead, dup, fill, ack = ooo
    ev = peer.evidence(ctx, t, [s for s in (ahead, dup, fill, ack) if s is not None],
             "a segment beyond a hole, the target's answer, the hole filled")  # fmt: skip
    if dup is None or "." not in dup.flags:
        what = "no ACK within 800 ms of an out-of-order segment"
        return _obs(pid, "immediate_dupack_ooo", False, "deviates", what, Confidence(1), ev)
    latency = dup.t_ms - ahead.t_ms
    is_dup = dup.ack - ahead.seq <= 0
    ok = is_dup and _immediate(latency, lat)
    what = "a duplicate ACK" if is_dup else f"an ACK of {dup.ack} (not a duplicate)"
    return _obs(
        pid, "immediate_dupack_ooo", ok, "conforms" if ok else "deviates",
        f"{what} {latency:.1f} ms after a segment beyond a 100 B hole", Confidence(1), ev,
    )  # fmt: skip


# --------------------------------------------------------------------- P11: zero-window probes


@probe(
    "P11",
    "zero-window probing: first probe, back-off, the connection stays open",
    ("zero_window_probe", "zwp_first_ms", "zwp_backoff"),
    exclusive=True,  # holds unsent data for long: see the module doc
)
def zero_window(ctx: Context) -> list[Observation]:
    """chargen fills a small window; we acknowledge it all with window 0 and answer every probe
    with window 0 (without taking the probe's byte), then open the window: the target must
    have kept probing (MUST-36, with a growing interval, SHLD-29/30) and must resume."""
    pid = "P11"
    fam = peer.stack_family(ctx)
    port = peer.service(ctx, "chargen")
    limit_ms = min(ctx.budget_s, ZWP_WAIT_S) * 1000.0
    with peer.timeline(ctx, fam, "P11-zwp", port) as t:
        try:
            peer.handshake(t, mss=OUR_MSS, win=TRAIN_WIN)
            # The first flight fills the window; close it at once, before any RTO (200 ms on
            # Linux) fires: a retransmission would back off the timer the probes run on.
            flight = [s for s in t.collect(3000, quiet_ms=60) if s.length]
            if not flight:
                raise peer.NoAnswer("chargen sent nothing")
            point = t.conn.rcv_nxt or flight[-1].end
            closed = t.inject(None, ".", ack=point, win=0)
            probes: list[Seg] = []
            answers: list[Seg] = []
            reset = False
            while len(probes) < 4 and (elapsed := t.now_ms - closed.t_ms) < limit_ms:
                seg = t.next(limit_ms - elapsed)
                if seg is None:
                    break
                if "R" in seg.flags:
                    reset = True
                    break
                probes.append(seg)
                answers.append(t.inject(None, ".", ack=point, win=0))
            resumed: Seg | None = None
            opened: Seg | None = None
            if not reset:
                opened = t.inject(None, ".", ack=point, win=WIN)
                deadline = t.now_ms + 5000
                while (left := deadline - t.now_ms) > 0 and resumed is None:
                    seg = t.next(left)
                    if seg is None:
                        break
                    if "R" in seg.flags:
                        reset = True
                        break
                    if seg.length and seg.seq - point >= 0 and seg.end - point > 1:
                        resumed = seg
            ev = peer.evidence(
                ctx, t, [closed, *probes, *answers, *([opened] if opened else []),
                         *([resumed] if resumed else [])],
                "window closed, the target's probes and our window-0 answers, window opened",
            )  # fmt: skip
            return _zwp_observations(pid, closed, probes, resumed, reset, ev, limit_ms)
        finally:
            peer.reset(t)


def _zwp_observations(
    pid: str,
    closed: Seg,
    probes: list[Seg],
    resumed: Seg | None,
    reset: bool,
    ev: Evidence,
    limit_ms: float,
) -> list[Observation]:
    out: list[Observation] = []
    times = [round(p.t_ms - closed.t_ms, 1) for p in probes]
    form = ""
    if probes:
        p = probes[0]
        form = f"; a probe is seq {p.seq} with {p.length} B" + (
            " (an old sequence number)" if p.seq < (closed.ack) else " (the next byte)"
        )
    shown = f"probes {_fmt(times)} ms after the window closed{form}"
    if not probes:
        what = "a RST" if reset else f"nothing in {limit_ms / 1000:g} s"
        out.append(_obs(pid, "zero_window_probe", False, "deviates", f"no probe: {what}", None, ev))
    else:
        ok = resumed is not None
        tail = "resumed when the window opened" if ok else (
            "then reset the connection" if reset else "did not resume when the window opened"
        )  # fmt: skip
        out.append(
            _obs(pid, "zero_window_probe", ok, "conforms" if ok else "deviates",
                 f"{len(probes)} probes, {tail} ({shown})", Confidence(len(probes)), ev)
        )  # fmt: skip
    if probes:
        est = peer.estimate([times[0]])
        ok = times[0] >= 100.0
        out.append(
            _obs(pid, "zwp_first_ms", est.value, "conforms" if ok else "deviates",
                 f"first probe {times[0]:.0f} ms after the window closed (SHLD-29: about the RTO)",
                 est.confidence, ev)
        )  # fmt: skip
    else:
        out.append(_obs(pid, "zwp_first_ms", None, "inconclusive", "no probe", None, ev))
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    ratio = _ratio(gaps)
    if ratio is None:
        out.append(_obs(pid, "zwp_backoff", None, "inconclusive", f"too few ({shown})", None, ev))
    else:
        verdict: Verdict = "conforms" if ratio >= 1.5 else "deviates"
        out.append(
            _obs(pid, "zwp_backoff", ratio, verdict,
                 f"x{ratio:g} per probe (gaps {_fmt(gaps)} ms; SHLD-30: exponential)",
                 Confidence(len(gaps) - 1), ev)
        )  # fmt: skip
    return out


# -------------------------------------------------------------------------- P12: keep-alive

_KA_KEYS = ("keepalive_idle_ms", "keepalive_interval_ms", "keepalive_count", "keepalive_probe")


@probe(
    "P12",
    "keep-alive: off by default; idle time, interval, count and form when enabled",
    ("keepalive_default", *_KA_KEYS),
)
def keepalive(ctx: Context) -> list[Observation]:
    """The agent connects to the raw peer (one connection: small stacks have few PCBs). Left
    idle, it must draw no keep-alive (MUST-25: off by default; a default idle time of 2 h or
    more is not excluded by a short wait). Then one byte from us (the idle time counts from
    it), and keep-alive on with short timings: the probes' idle time, spacing and form
    (SEG.SEQ = SND.NXT - 1, 0 or 1 byte), and the drop after the count. Without an agent the
    idle connection is one to a service and the rest is not applicable."""
    pid = "P12"
    fam = peer.stack_family(ctx)
    wait_ms = min(KEEPALIVE_DEFAULT_WAIT_S, ctx.budget_s) * 1000.0
    port = random.randint(20000, 40000)
    cid: int | None = None
    with ExitStack() as wire:
        try:
            # The agent is held from the connect to the options (about the idle wait): the
            # idle time must count from our last segment, not from a wait for the agent.
            with ctx.agent_session() as agent:
                t = wire.enter_context(peer.timeline(ctx, fam, "P12-keepalive", port))
                conn = t.listen(port)
                wire.callback(peer.reset, t, conn)
                cid, _syn = _agent_connect(ctx, t, conn, agent, fam, port)
                idle = t.collect(wait_ms, conn)
                ev = peer.evidence(ctx, t, _mine(t, conn), "an idle connection the target opened")
                out = [_keepalive_default_observation(pid, idle, wait_ms, "the agent's", ev)]
                enabled = _keepalive_enable(t, conn, agent, cid)
        except NoAgent as exc:
            out = _keepalive_default_service(ctx, fam, wait_ms)
            return out + [_obs(pid, k, None, "not-applicable", str(exc)) for k in _KA_KEYS]
        finally:
            if cid is not None:
                wire.callback(_agent_drop, ctx, cid)
        if isinstance(enabled, str):
            return out + [_obs(pid, k, None, "not-applicable", enabled) for k in _KA_KEYS]
        return out + _keepalive_watch(ctx, t, conn, enabled)


def _keepalive_default_service(ctx: Context, fam: str, wait_ms: float) -> list[Observation]:
    kind = "echo" if "echo" in ctx.services else "discard"
    with peer.timeline(ctx, fam, "P12-idle", peer.service(ctx, kind)) as t:
        try:
            peer.handshake(t, mss=OUR_MSS, win=WIN)
            idle = t.collect(wait_ms)
            ev = peer.evidence(ctx, t, _mine(t, t.conn), "the handshake, then an idle connection")
        finally:
            peer.reset(t)
    return [_keepalive_default_observation("P12", idle, wait_ms, f"{kind}'s", ev)]


def _keepalive_default_observation(
    pid: str, idle: list[Seg], wait_ms: float, whose: str, ev: Evidence
) -> Observation:
    if idle:
        s = idle[0]
        return _obs(
            pid, "keepalive_default", True, "deviates",
            f"an idle connection drew '{s.flags}' seq {s.seq} len {s.length} without being "
            "asked (MUST-25: off by default)", Confidence(1), ev,
        )  # fmt: skip
    wait_s = round(wait_ms / 1000.0, 1)
    return _obs(
        pid, "keepalive_default", False, "conforms",
        f"nothing on {whose} idle connection for {wait_s:g} s (a default idle time of 2 h or "
        "more is not excluded by this wait)", _lower_bound(wait_s), ev,
    )  # fmt: skip


def _keepalive_enable(t: Timeline, conn: Conn, agent: Agent, cid: int) -> Seg | str:
    """Our last segment, then keep-alive on with short timings; returns that segment, or why
    the agent could not (an option the stack lacks)."""
    # Fresh activity right before keep-alive goes on: the idle time counts from the last
    # segment the target received (a stack arming its timer from an older one would probe at
    # once), and its ACK is not awaited, so the options follow within milliseconds.
    poke = t.inject(None, ".", data=b"k", win=WIN, conn=conn)
    try:
        for name, value in (
            ("keepidle", KEEPALIVE_SET_MS),
            ("keepintvl", KEEPALIVE_SET_MS),
            ("keepcnt", KEEPALIVE_SET_CNT),
            ("keepalive", 1),
        ):
            agent.setopt(cid, name, value)
    except AgentError as exc:
        words = exc.command.split(" ")
        name = words[2] if len(words) > 2 else exc.command
        return f"setopt {name}: err {exc.code} {exc.text}".strip()
    return poke


def _keepalive_watch(ctx: Context, t: Timeline, conn: Conn, poke: Seg) -> list[Observation]:
    pid = "P12"
    limit = poke.t_ms + min(
        ctx.budget_s * 1000.0, KEEPALIVE_SET_MS * (KEEPALIVE_SET_CNT + 3) + 3000.0
    )
    probes: list[Seg] = []
    reset: Seg | None = None
    while (left := limit - t.now_ms) > 0:
        seg = t.next(left, conn)
        if seg is None:
            break
        if "R" in seg.flags:
            reset = seg
            break
        if seg.seq == 1 and not seg.length and seg.t_ms - poke.t_ms < 500.0:
            continue  # the (delayed) ACK of our byte, at SND.NXT: no keep-alive
        probes.append(seg)
    ev = peer.evidence(ctx, t, [poke, *probes, *([reset] if reset else [])],
             "our last byte, then keep-alives left unanswered, and the RST")  # fmt: skip
    return _keepalive_observations(pid, poke.t_ms, probes, reset, ev)


def _keepalive_observations(
    pid: str, ref: float, probes: list[Seg], reset: Seg | None, ev: Evidence
) -> list[Observation]:
    set_note = (
        f"with keepidle {KEEPALIVE_SET_MS} ms, keepintvl {KEEPALIVE_SET_MS} ms, "
        f"keepcnt {KEEPALIVE_SET_CNT}"
    )
    if not probes:
        what = "a RST" if reset else "nothing"
        return [
            _obs(pid, k, None, "deviates", f"no keep-alive {set_note}: {what}", None, ev)
            for k in _KA_KEYS
        ]
    out: list[Observation] = []
    first = probes[0].t_ms - ref
    est = peer.estimate([first])
    ok = abs(first - KEEPALIVE_SET_MS) <= 600
    out.append(
        _obs(pid, "keepalive_idle_ms", est.value, "conforms" if ok else "deviates",
             f"first keep-alive {first:.0f} ms after the last segment it received ({set_note})",
             est.confidence, ev)
    )  # fmt: skip
    gaps = [round(b.t_ms - a.t_ms, 1) for a, b in itertools.pairwise(probes)]
    if gaps:
        est = peer.estimate(gaps)
        ok = abs(est.value - KEEPALIVE_SET_MS) <= 600
        out.append(
            _obs(pid, "keepalive_interval_ms", est.value, "conforms" if ok else "deviates",
                 f"keep-alives {_fmt(gaps)} ms apart ({set_note})", est.confidence, ev)
        )  # fmt: skip
    else:
        out.append(
            _obs(pid, "keepalive_interval_ms", None, "inconclusive", "a single keep-alive",
                 None, ev)
        )  # fmt: skip
    n = len(probes)
    if reset is not None:
        ok = n == KEEPALIVE_SET_CNT
        out.append(
            _obs(pid, "keepalive_count", n, "conforms" if ok else "deviates",
                 f"{n} unanswered keep-alives, then a RST {reset.t_ms - probes[-1].t_ms:.0f} ms "
                 f"after the last ({set_note})", Confidence(1), ev)
        )  # fmt: skip
    else:
        out.append(
            _obs(pid, "keepalive_count", n, "inconclusive",
                 f"{n} unanswered keep-alives and no RST ({set_note})", _lower_bound(n), ev)
        )  # fmt: skip
    p = probes[0]
    old = p.seq == 0  # the target sent its SYN only: SND.NXT is 1
    form = f"SND.NXT-1, {p.length} B" if old else f"seq {p.seq} (SND.NXT 1), {p.length} B"
    ok = old and p.length <= 1
    out.append(
        _obs(pid, "keepalive_probe", form, "conforms" if ok else "deviates",
             f"a keep-alive is '{p.flags}' seq {p.seq} len {p.length} (RFC 9293 3.8.4: SEG.SEQ "
             "= SND.NXT-1, no data or one garbage octet)", Confidence(n), ev)
    )  # fmt: skip
    return out


# -------------------------------------------------------------------------- P17: TIME-WAIT


@probe("P17", "TIME-WAIT length (the target closes first)", ("time_wait_s",))
def time_wait(ctx: Context) -> list[Observation]:
    """The agent connects to the raw peer and closes: the target's FIN, our ACK and FIN put
    it in TIME-WAIT. A retransmitted FIN (or any ACK) would restart its timer (RFC 9293;
    Linux, lwIP), so the probe is an old byte without the ACK bit: a connection in TIME-WAIT
    acknowledges it (an unacceptable segment, RFC 9293 3.10.7.4) without restarting the timer,
    a closed one resets it. Zero-length old segments (Linux answers them unthrottled, lwIP
    not at all) probe in between the one-byte ones (Linux answers those every 0.5 s)."""
    pid = "P17"
    fam = peer.stack_family(ctx)
    port = random.randint(20000, 40000)
    budget_ms = ctx.budget_s * 1000.0
    with ExitStack() as wire:
        try:
            with ctx.agent_session() as agent:  # before the wire: no backlog while waiting
                t = wire.enter_context(peer.timeline(ctx, fam, "P17-timewait", port))
                conn = t.listen(port)
                cid, _syn = _agent_connect(ctx, t, conn, agent, fam, port)
                agent.close(cid)
        except NoAgent as exc:
            return [_obs(pid, "time_wait_s", None, "not-applicable", str(exc))]
        try:
            fin = _fin_of(t, conn, 5000.0)
            ours = t.inject(None, "F.", ack=fin.end, win=WIN, conn=conn)
            final = _ack_for(t, ours.end, 3000.0, conn)
            if final is None:
                raise peer.NoAnswer("our FIN was not acknowledged")
            start = final.t_ms
            alive: list[Seg] = []
            cited: list[Seg] = [fin, ours, final]
            gone: Seg | None = None
            last_byte = -math.inf
            next_at = start + 100.0
            while gone is None:
                t.collect(max(0.0, next_at - t.now_ms), conn)  # late answers go here
                elapsed = t.now_ms - start
                if elapsed >= budget_ms:
                    break
                with_byte = t.now_ms - last_byte >= 550.0
                if with_byte:
                    last_byte = t.now_ms
                sent = t.inject(
                    None, "P" if with_byte else "", seq=0, data=b"\0" if with_byte else b"",
                    conn=conn,
                )  # fmt: skip
                answer = t.next(250.0, conn)
                if answer is not None and "R" in answer.flags:
                    gone = answer
                    cited += [sent, answer]
                elif answer is not None:
                    alive.append(sent)
                    if len(cited) < MAX_FRAMES // 2:
                        cited += [sent, answer]
                next_at = sent.t_ms + max(200.0, elapsed / 40.0)
            ev = peer.evidence(
                ctx, t, cited + alive[-1:], "our FIN ends it; old segments probe TIME-WAIT"
            )
            return [_time_wait_observation(pid, start, alive, gone, budget_ms, ev)]
        finally:
            peer.reset(t, conn)


def _fin_of(t: Timeline, conn: Conn, within_ms: float) -> Seg:
    deadline = t.now_ms + within_ms
    while (left := deadline - t.now_ms) > 0:
        seg = t.next(left, conn)
        if seg is None:
            break
        if "F" in seg.flags:
            return seg
    raise peer.NoAnswer("no FIN after the agent's close")


def _time_wait_observation(
    pid: str, start: float, alive: list[Seg], gone: Seg | None, budget_ms: float, ev: Evidence
) -> Observation:
    last_alive = (alive[-1].t_ms - start) / 1000.0 if alive else 0.0
    if gone is None:
        bound = round(max(last_alive, budget_ms / 1000.0 if alive else 0.0), 1)
        verdict: Verdict = "conforms" if bound >= MIN_TIME_WAIT_S else "inconclusive"
        return _obs(
            pid, "time_wait_s", bound, verdict,
            f"at least {bound:g} s: still answering from TIME-WAIT (cut by the budget)",
            _lower_bound(bound), ev,
        )  # fmt: skip
    dead = (gone.t_ms - start) / 1000.0
    value = round((last_alive + dead) / 2, 2)
    verdict = "conforms" if value >= MIN_TIME_WAIT_S else "deviates"
    return _obs(
        pid, "time_wait_s", value, verdict,
        f"TIME-WAIT answered {last_alive:.2f} s after our FIN was acknowledged, reset at "
        f"{dead:.2f} s (MUST-13: 2 MSL; at least {MIN_TIME_WAIT_S:g} s taken as conforming)",
        Confidence(len(alive) + 1, (round(last_alive, 2), round(dead, 2))), ev,
    )  # fmt: skip
