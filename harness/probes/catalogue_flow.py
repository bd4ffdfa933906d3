"""Flow probes: how much a target sends and accepts, and how it grows and repairs its flight.

P1b (MSS use), P2 (receive buffer, receiver SWS), P3 (flight size), P4 (initial window), P5 (slow
start), P6 (fast retransmit and recovery) and P10 (sender SWS). All of them play the TCP peer
on the live wire (the raw peer): they must withhold, duplicate or shape ACKs and windows, which a
kernel socket cannot. The target's side is its chargen service (data as fast as the window
allows) or, for P2, its agent (an application that stops reading).

The stack-wide ones (everything but P1b) run once, over IPv4 when the target has it (family ""):
congestion control and buffers do not depend on the family. Every connection ends with a RST,
because a small stack (lwIP: 5 PCBs) would otherwise keep unacknowledged data around and the
next probe would see a different target. Our SYNs offer no timestamps or SACK and, except in
P2, no window scaling: window fields are bytes and loss recovery is plain duplicate ACKs.

All of them are exclusive: what they measure is the target's buffers, and on a small stack
every connection draws on the same ones. lwIP copies data it sends into its heap (MEM_SIZE,
1600 B by default), so a second connection with unacknowledged data starves chargen: run
alongside other probes, a flight of two segments shrank to one or to nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.probes import peer
from harness.probes.engine import Context, probe
from harness.probes.observe import Evidence, Observation, Value, Verdict
from harness.probes.timeline import Seg, Timeline
from targets.agent.client import Agent, AgentError

OUR_MSS = 1460  # what a tester on Ethernet offers; the target sends min(this, its own MSS)
WIN = 65535  # our window: the largest without window scaling
DEFAULT_MSS = {"ipv4": 536, "ipv6": 1220}  # RFC 9293 3.7.1 / RFC 8200 5, MUST-15
QUIET_MS = 60.0  # a flight has ended when the target sends nothing for this long
FAST_MS = 100.0  # this soon after the 3rd duplicate ACK: no RTO (Linux: >= 200 ms)
SILLY_MS = 50.0  # a small segment this soon after a window opening is no SWS override timer
MAX_FRAMES = 24  # frames cited per observation (the pcap has them all)
P2_KEYS = ("rcv_buffer", "sws_avoidance_receiver")


# ------------------------------------------------------------------------------ helpers


def _chargen(ctx: Context) -> int:
    if "chargen" not in ctx.services:
        raise RuntimeError("the target offers no chargen service (flow probes need a sender)")
    return ctx.services["chargen"]


def _eff_mss(sa: Seg, fam: str) -> int:
    """The segment size the target may send us: its MSS option (or the default) and ours."""
    return min(OUR_MSS, sa.mss if sa.mss is not None else DEFAULT_MSS[fam])


def _obs(
    key: str,
    value: Value,
    verdict: Verdict,
    pid: str,
    detail: str,
    evidence: Evidence | None = None,
    family: str = "",
) -> Observation:
    return Observation(key, value, verdict, pid, family, detail, evidence=evidence)


def _flight(t: Timeline, first_ms: float, quiet_ms: float = QUIET_MS) -> list[Seg]:
    """The data segments of one flight: the first within ``first_ms``, then every one that
    follows within ``quiet_ms`` of the previous (pure ACKs are skipped)."""
    out: list[Seg] = []
    s = t.next(first_ms)
    while s is not None:
        if s.data:
            out.append(s)
        s = t.next(quiet_ms)
    return out


def _ack(t: Timeline, ack: int, win: int = WIN) -> Seg:
    return t.inject(None, ".", ack=ack, win=win)


@dataclass
class _Sender:
    """The target as a bulk sender (chargen) and us as a receiver acknowledging rounds.

    A round is one flight: what the target sends until it pauses. ``ack_round`` acknowledges
    each of its segments in order, back to back (an ACK per segment, RFC 5681's slow-start
    growth of one SMSS per ACK), and the next flight is the target's answer.
    """

    t: Timeline
    mss: int
    high: int = 1  # the end of the data seen so far (relative)
    rounds: list[list[Seg]] = field(default_factory=list)
    cited: list[Seg] = field(default_factory=list)

    def flight(self, first_ms: float) -> list[Seg]:
        segs = [s for s in _flight(self.t, first_ms) if s.end > self.high]
        for s in segs:
            self.high = max(self.high, s.end)
        self.rounds.append(segs)
        if segs:
            self.cited += [segs[0], segs[-1]]
        return segs

    def ack_round(self, segs: Sequence[Seg]) -> None:
        for s in segs:
            self.cited.append(_ack(self.t, s.end))

    @property
    def sizes(self) -> list[int]:
        return [len(r) for r in self.rounds]

    def window_limited(self, segs: Sequence[Seg]) -> bool:
        """The flight filled our window (it could not have been larger)."""
        return bool(segs) and segs[-1].end - segs[0].seq > WIN - self.mss


def _start_sender(t: Timeline, fam: str) -> _Sender:
    sa = peer.handshake(t, mss=OUR_MSS, win=WIN)
    return _Sender(t, _eff_mss(sa, fam), cited=[sa])


# ------------------------------------------------------------------------------ P1b


@probe(
    "P1b",
    "MSS use: segments within the peer's MSS, default MSS without the option",
    ("mss_respected", "mss_default_when_absent"),
    exclusive=True,
)
def mss_use(ctx: Context) -> list[Observation]:
    """Chargen's first flight (no ACKs: the initial window, full-sized segments) after SYNs
    with MSS 536, 1000 and none; each family on its own (the defaults differ). Nothing below
    536: lwIP sends no data at all to a peer with a smaller MSS, which would say nothing about
    whether it respects it."""
    port = _chargen(ctx)
    out: list[Observation] = []
    for fam in ctx.addresses:
        largest: dict[int | None, Seg | None] = {}
        with peer.timeline(ctx, fam, "P1b-mss", port) as t:
            for mss in (536, 1000, None):
                c = t.open(port)
                try:
                    peer.handshake(t, mss=mss, conn=c)
                    first = t.next(1500, c)
                    segs = [first] if first is not None and first.data else []
                    while (s := t.next(QUIET_MS * 2, c)) is not None:
                        if s.data:
                            segs.append(s)
                    largest[mss] = max(segs, key=lambda s: s.length) if segs else None
                except peer.NoAnswer:
                    largest[mss] = None
                finally:
                    with contextlib.suppress(Exception):
                        t.inject(None, "R.", conn=c)
            out += _mss_observations(ctx, t, fam, largest)
    return out


def _mss_observations(
    ctx: Context, t: Timeline, fam: str, largest: dict[int | None, Seg | None]
) -> list[Observation]:
    out: list[Observation] = []
    tried = [(m, s) for m, s in largest.items() if m is not None]
    seen = [(m, s) for m, s in tried if s is not None]
    ev = peer.evidence(
        ctx, t, [s for _, s in seen], f"largest segment after each MSS option, {fam}"
    )
    sizes = ", ".join(f"MSS {m}: {s.length if s else 'no data'}" for m, s in tried)
    if not seen:
        out.append(
            _obs("mss_respected", None, "inconclusive", "P1b", f"no data from chargen ({sizes})",
                 ev, fam)
        )  # fmt: skip
    else:
        over = [(m, s) for m, s in seen if s.length > m]
        ok = not over
        out.append(
            _obs("mss_respected", ok, "conforms" if ok else "deviates", "P1b",
                 f"largest segment per offered MSS: {sizes}", ev, fam)
        )  # fmt: skip
    seg = largest.get(None)
    limit = DEFAULT_MSS[fam]
    if seg is None:
        out.append(
            _obs("mss_default_when_absent", None, "inconclusive", "P1b",
                 "no data after a SYN without MSS option", None, fam)
        )  # fmt: skip
    else:
        ok = seg.length <= limit
        out.append(
            _obs("mss_default_when_absent", seg.length, "conforms" if ok else "deviates", "P1b",
                 f"largest segment {seg.length} B without an MSS option (at most {limit} B)",
                 peer.evidence(ctx, t, [seg], f"largest segment, SYN without MSS, {fam}"), fam)
        )  # fmt: skip
    return out


# ------------------------------------------------------------------------------ P2


P2_WSCALE = 7  # offered in P2, so a target can advertise a buffer larger than 64 KB in full


@dataclass(frozen=True)
class _Advance:
    """The target moved its window's right edge by ``delta`` bytes, in an ACK that acknowledged
    ``acked`` new bytes, when ``before`` bytes of window were left under the old edge and the
    application held ``user`` unread bytes."""

    seg: Seg
    delta: int
    acked: int
    before: int
    user: int
    phase: str

    @property
    def window(self) -> int:
        return self.before + self.delta


@dataclass
class _Window:
    """The target's window advertisements on one connection (shift: its window scale)."""

    shift: int
    right: int
    ack: int = 1
    advances: list[_Advance] = field(default_factory=list)

    @property
    def grain(self) -> int:
        """A scaled window field moves the edge in steps of 2^shift (RFC 7323 2.4): smaller
        moves are rounding, not window updates."""
        return 1 << self.shift

    def edge(self, s: Seg) -> int:
        return s.ack + (s.win << self.shift)

    def see(self, s: Seg, user: int, phase: str) -> None:
        if "." not in s.flags or "R" in s.flags or s.ack < self.ack:
            return
        edge, acked = self.edge(s), s.ack - self.ack
        self.ack = s.ack
        if edge >= self.right + self.grain:
            before = max(0, self.right - s.ack)
            self.advances.append(_Advance(s, edge - self.right, acked, before, user, phase))
            self.right = edge

    def silly(self, buf: int, threshold: int) -> list[_Advance]:
        """Advances RFC 9293 3.8.6.2.2 does not allow (MUST-39): the right edge moves only
        once the free buffer beyond it, RCV.BUFF - RCV.USER - RCV.WND, is at least
        min(RCV.BUFF / 2, Eff.snd.MSS). Silly: reopening to a small window after the
        application read; and, while it reads small segments as they come, moving the edge
        by what each ACK acknowledges (the window stays the same) before that much buffer is
        free. A window that grows (Linux's autotuning) is not an SWS matter."""
        out = []
        for a in self.advances:
            if a.delta >= threshold:
                continue
            if a.phase == "reopen" and a.window < threshold:
                out.append(a)
            creep = abs(a.delta - a.acked) < self.grain
            if a.phase == "small" and creep and buf - a.user - a.before < threshold:
                out.append(a)
        return out


@probe(
    "P2",
    "receive buffer of an application that does not read; receiver SWS avoidance",
    P2_KEYS,
    exclusive=True,
)
def receive_buffer(ctx: Context) -> list[Observation]:
    """The agent accepts our connection and does not read (``setopt read 0``): we fill the
    window until it is zero, which is the buffer the stack gives an application (RCV.BUFF).
    Then it reads everything: the window must reopen in one large step. Then it keeps reading
    while we send small segments (1/8 MSS): the right edge must not creep forward in small
    steps while the free buffer is small (MUST-39). Exclusive: the held data takes a small
    stack's buffers from every other connection."""
    fam = peer.stack_family(ctx)
    with ctx.agent_session() as agent:
        port, sid = peer.agent_listen(agent)
        cid: int | None = None
        try:
            with peer.timeline(ctx, fam, "P2-rcvbuf", port) as t:
                accepted = peer.background(agent.accept, sid, 5000)
                try:
                    sa = peer.handshake(t, mss=OUR_MSS, win=WIN, wscale=P2_WSCALE)
                    cid = accepted.result(10)[0]
                    return _receive_buffer(ctx, t, fam, sa, agent, cid)
                finally:
                    peer.reset(t)
        finally:
            with contextlib.suppress(AgentError):  # our RST may have freed it already
                if cid is not None:
                    agent.abort(cid)
            with contextlib.suppress(AgentError):
                agent.close(sid)


def _receive_buffer(
    ctx: Context, t: Timeline, fam: str, sa: Seg, agent: Agent, cid: int
) -> list[Observation]:
    mss = _eff_mss(sa, fam)
    w = _Window(sa.wscale or 0, 1 + sa.win)  # a SYN-ACK's window is never scaled
    cited: list[Seg] = [sa]
    # 1. The application does not read: fill the window until it is zero.
    try:
        agent.setopt(cid, "read", 0)
    except AgentError as exc:
        if exc.code != "unsupported":
            raise
        why = f"the agent cannot stop reading (setopt read: {exc})"
        return [_obs(k, None, "not-applicable", "P2", why) for k in P2_KEYS]
    start = acked = t.conn.snd_nxt
    zero: Seg | None = None
    stalls = 0
    deadline = t.now_ms + min(8000.0, ctx.budget_s * 1000 / 4)
    while t.now_ms < deadline and zero is None and stalls < 4:
        usable = w.right - t.conn.snd_nxt
        if usable > 0:
            seg = t.inject(None, ".", data=b"f" * min(usable, mss), win=WIN)
            if seg.seq - start < 4 * mss:
                cited.append(seg)
            continue  # fill the whole window before reading ACKs
        s = t.next(600)
        if s is None:
            stalls += 1
            if t.conn.snd_nxt > acked:
                t.conn.snd_nxt = acked  # unacknowledged for 600 ms: send it again
            else:
                t.inject(None, ".", seq=acked - 1, win=WIN)  # an old seq: the ACK tells the window
            continue
        if "." not in s.flags or s.ack < acked:
            continue
        stalls = 0
        acked = s.ack
        w.see(s, acked - start, "fill")
        w.right = w.edge(s)  # a shrinking window is believed too
        if s.win == 0 and s.ack >= t.conn.snd_nxt:
            zero = s
    held = acked - start
    out: list[Observation] = []
    if zero is None:
        out.append(
            _obs("rcv_buffer", held, "inconclusive", "P2",
                 f"at least {held} B held; the window did not close (cut short)",
                 peer.evidence(ctx, t, cited, "filling the window of a non-reading application"))
        )  # fmt: skip
    else:
        cited.append(zero)
        out.append(
            _obs("rcv_buffer", held, "conforms", "P2",
                 f"{held} B accepted for an application that does not read, then window 0 "
                 f"({held / mss:.2f} x {mss} B; first window {sa.win} B)",
                 peer.evidence(ctx, t, cited, "filling the window until it is zero"))
        )  # fmt: skip
    buf = max(held, sa.win)
    threshold = min(mss, max(1, buf // 2))
    # 2. The application reads everything: the window reopens.
    agent.setopt(cid, "read", 1)
    reopen = t.collect(500, quiet_ms=200)
    if not any(w.edge(s) > w.right for s in reopen):  # no update sent: ask for the window
        t.inject(None, ".", seq=acked - 1, win=WIN)
        reopen += t.collect(500, quiet_ms=200)
    for s in reopen:
        w.see(s, 0, "reopen")
    cited += reopen[:4]
    # 3. The application reads as data comes: small segments, two at a time (a delayed ACK
    # must not hide window updates: most stacks ACK every second segment at once).
    small = max(1, mss // 8)
    for _ in range(min(8, max(1, (w.right - t.conn.snd_nxt) // (2 * small)))):
        for _ in range(2):
            cited.append(t.inject(None, "P.", data=b"s" * small, win=WIN))
        end = t.now_ms + 400.0
        while (left := end - t.now_ms) > 0:
            s = t.next(left)
            if s is None:
                break
            w.see(s, 0, "small")
            if s.ack >= t.conn.snd_nxt:
                cited.append(s)
                break
    out.append(_receiver_sws(ctx, t, w, buf, threshold, small, cited))
    return out


def _receiver_sws(
    ctx: Context, t: Timeline, w: _Window, buf: int, threshold: int, small: int, cited: list[Seg]
) -> Observation:
    silly = w.silly(buf, threshold)
    parts = []
    for phase, what in (
        ("fill", "filling"),
        ("reopen", "reading all"),
        ("small", f"{small} B segments"),
    ):
        steps = [a.delta for a in w.advances if a.phase == phase]
        shown = ", ".join(str(d) for d in steps[:6]) + (", ..." if len(steps) > 6 else "")
        parts.append(f"{what}: " + (f"edge +{shown}" if steps else "edge kept"))
    bad = ", ".join(f"+{a.delta} B leaving {a.window} B ({a.phase})" for a in silly[:4])
    detail = "; ".join(parts) + f" (buffer {buf} B, small: < {threshold} B)"
    if silly:
        detail += f"; silly: {bad}"
    ev = peer.evidence(ctx, t, cited + [a.seg for a in silly], "window advertisements")
    if not w.advances:
        return _obs("sws_avoidance_receiver", None, "inconclusive", "P2",
                    f"the window never opened: {detail}", ev)  # fmt: skip
    ok = not silly
    return _obs("sws_avoidance_receiver", ok, "conforms" if ok else "deviates", "P2", detail, ev)


# ------------------------------------------------------------------------------ P3


@probe(
    "P3",
    "send-side flight size (chargen, prompt ACKs, 64 KB window)",
    ("flight_size_mss",),
    exclusive=True,
)
def flight_size(ctx: Context) -> list[Observation]:
    """Every segment ACKed as it arrives; the flight is what the target had unacknowledged
    when it sent a segment: its end minus the last ACK we had sent before it was captured."""
    fam = peer.stack_family(ctx)
    with peer.timeline(ctx, fam, "P3-flight", _chargen(ctx)) as t:
        try:
            sa = peer.handshake(t, mss=OUR_MSS, win=WIN)
            mss = _eff_mss(sa, fam)
            ack_t: list[int] = [t.segments[-1].t_us]
            ack_v: list[int] = [1]
            high, best, best_seg, n, largest = 1, 0, None, 0, 0
            cited: list[Seg] = [sa]
            end = t.now_ms + min(1500.0, ctx.budget_s * 1000 / 4)
            while t.now_ms < end and n < 600:
                s = t.next(3000 if n == 0 else 500)
                if s is None:
                    break
                if not s.data:
                    continue
                n += 1
                largest = max(largest, s.length)
                if s.end > high:
                    acked = ack_v[bisect.bisect_right(ack_t, s.t_us) - 1]
                    if s.end - acked > best:
                        best, best_seg = s.end - acked, s
                    high = s.end
                a = _ack(t, high)
                ack_t.append(a.t_us)
                ack_v.append(high)
                if n <= 6:
                    cited += [s, a]
        finally:
            peer.reset(t)
    if best_seg is None:
        return [_obs("flight_size_mss", None, "inconclusive", "P3", "no data from chargen")]
    unit = min(mss, largest)  # the target's segments, if smaller than the MSS allows
    value = round(best / unit, 2)
    detail = f"at most {best} B unacknowledged = {value} x {unit} B ({n} segments)"
    if best > WIN - largest:
        detail += "; limited by our 65535-byte window"
    verdict: Verdict = "deviates" if best > WIN else "conforms"
    ev = peer.evidence(
        ctx, t, [*cited, best_seg], "largest flight (segment with most unacknowledged)"
    )
    return [_obs("flight_size_mss", value, verdict, "P3", detail, ev)]


# ------------------------------------------------------------------------------ P4


def _iw_limits(mss: int) -> tuple[int, int]:
    """RFC 3390 / RFC 5681 3.1 and RFC 6928 (experimental IW10) upper bounds, in bytes."""
    return min(4 * mss, max(2 * mss, 4380)), min(10 * mss, max(2 * mss, 14600))


@probe(
    "P4",
    "initial window (no ACKs until the first retransmission)",
    ("initial_window",),
    exclusive=True,
)
def initial_window(ctx: Context) -> list[Observation]:
    """scamper's ICW method: after the handshake we ACK nothing; the target sends its initial
    window and then, at its RTO, retransmits the first segment. The initial window is the new
    data sent before that retransmission. (Our SYN offers no SACK, and Linux sends a tail loss
    probe, which would be new data, only on SACK connections.)"""
    fam = peer.stack_family(ctx)
    wait_ms = min(10_000.0, ctx.budget_s * 1000 / 2)
    with peer.timeline(ctx, fam, "P4-iw", _chargen(ctx)) as t:
        try:
            sa = peer.handshake(t, mss=OUR_MSS, win=WIN)
            mss = _eff_mss(sa, fam)
            segs: list[Seg] = []
            rtx: Seg | None = None
            high = 1
            end = t.now_ms + wait_ms
            while (left := end - t.now_ms) > 0:
                s = t.next(left)
                if s is None:
                    break
                if not s.data:
                    continue
                if s.end <= high:
                    rtx = s
                    break
                segs.append(s)
                high = s.end
        finally:
            peer.reset(t)
    if not segs:
        return [_obs("initial_window", None, "inconclusive", "P4", "no data from chargen")]
    iw = high - 1
    lo, hi = _iw_limits(mss)
    if iw <= lo:
        verdict: Verdict = "conforms"
        rule = f"within RFC 5681's {lo} B"
    elif iw <= hi:
        verdict, rule = "conforms", f"above RFC 5681's {lo} B, within RFC 6928's {hi} B (IW10)"
    else:
        verdict, rule = "deviates", f"above RFC 6928's {hi} B"
    n = f"{len(segs)} segment{'s' if len(segs) != 1 else ''}"
    if rtx is None:
        detail = f"at least {iw} B in {n}: no retransmission within {wait_ms / 1000:g} s"
        verdict = "inconclusive" if verdict == "conforms" else verdict
    else:
        detail = f"{iw} B in {n}, the first retransmitted after {rtx.t_ms - segs[0].t_ms:.0f} ms"
    ev = peer.evidence(
        ctx, t, [*segs, *([rtx] if rtx else [])], "initial flight and retransmission"
    )
    return [_obs("initial_window", iw, verdict, "P4", f"{detail}; {rule} (MSS {mss})", ev)]


# ------------------------------------------------------------------------------ P5


@probe(
    "P5",
    "slow start: flight growth per round when every segment is ACKed",
    ("slow_start",),
    exclusive=True,
)
def slow_start(ctx: Context) -> list[Observation]:
    """Rounds: take the target's flight, ACK each of its segments, take the next flight. Slow
    start grows the flight by one segment per ACK, doubling it per round (RFC 5681 3.1); a
    stack without it, or held by a send buffer, sends the same flight every round."""
    fam = peer.stack_family(ctx)
    with peer.timeline(ctx, fam, "P5-slowstart", _chargen(ctx)) as t:
        try:
            snd = _start_sender(t, fam)
            segs = snd.flight(3000)
            while segs and len(snd.rounds) < 6 and not snd.window_limited(segs):
                snd.ack_round(segs)
                segs = snd.flight(1500)
                if len(snd.rounds) >= 3 and snd.sizes[-1] == snd.sizes[-2] == snd.sizes[-3]:
                    break  # the flight is fixed
        finally:
            peer.reset(t)
    sizes = snd.sizes
    if not sizes or sizes[0] == 0:
        return [_obs("slow_start", None, "inconclusive", "P5", "no data from chargen")]
    while sizes and sizes[-1] == 0:
        sizes = sizes[:-1]
    shown = ", ".join(str(n) for n in sizes)
    limited = snd.window_limited(snd.rounds[len(sizes) - 1])
    tail = " (the last one filled our window)" if limited else ""
    ev = peer.evidence(ctx, t, snd.cited, "first and last segment of each round, and our ACKs")
    grew = [(a, b) for a, b in itertools.pairwise(sizes) if b > a]
    if not grew:
        return [
            _obs("slow_start", False, "conforms", "P5",
                 f"segments per round: {shown}: the flight never grows (no congestion control "
                 "or a send buffer that small; both look the same from outside)", ev)
        ]  # fmt: skip
    too_fast = [(a, b) for a, b in grew if b > 2 * a + 2]  # +2: a probe or a split flight
    verdict: Verdict = "deviates" if too_fast else "conforms"
    why = f"; more than doubled: {too_fast}" if too_fast else ""
    detail = f"segments per round (each segment ACKed): {shown}{tail}{why}"
    return [_obs("slow_start", True, verdict, "P5", detail, ev)]


# ------------------------------------------------------------------------------ P6


@probe(
    "P6",
    "fast retransmit and fast recovery (one lost segment, duplicate ACKs)",
    ("fast_retransmit", "fast_recovery"),
    exclusive=True,
)
def fast_retransmit(ctx: Context) -> list[Observation]:
    """Grow the flight to at least 4 segments (ACKing every segment), then "lose" the first
    segment of a flight: a duplicate ACK for each later segment, and for each new one that
    follows. Fast retransmit = the lost segment again well before any RTO; fast recovery =
    new data before the hole is filled (window inflation, RFC 5681 3.2 / RFC 6582), or, when
    the sender had no room for new data, a halved (not collapsed) flight after recovery."""
    fam = peer.stack_family(ctx)
    with peer.timeline(ctx, fam, "P6-fastrtx", _chargen(ctx)) as t:
        try:
            snd = _start_sender(t, fam)
            segs = snd.flight(3000)
            while 0 < len(segs) < 4 and len(snd.rounds) < 5:
                if len(snd.rounds) >= 2 and snd.sizes[-1] <= snd.sizes[-2]:
                    break  # not growing: it never will have 4 in flight
                snd.ack_round(segs)
                segs = snd.flight(1500)
            if len(segs) < 4:
                return _no_fast_retransmit(ctx, t, snd)
            return _loss_round(ctx, t, snd, segs)
        finally:
            peer.reset(t)


def _no_fast_retransmit(ctx: Context, t: Timeline, snd: _Sender) -> list[Observation]:
    if not any(snd.sizes):
        why = "no data from chargen"
        return [
            _obs(k, None, "inconclusive", "P6", why) for k in ("fast_retransmit", "fast_recovery")
        ]
    most = max(snd.sizes)
    shown = ", ".join(str(n) for n in snd.sizes)
    why = (
        f"at most {most} segment{'s' if most != 1 else ''} in flight (rounds: {shown}); 3 "
        "duplicate ACKs need a lost segment and 3 more after it, so loss recovery can only "
        "be by timeout"
    )
    ev = peer.evidence(ctx, t, snd.cited, "the flights: never 4 segments")
    return [
        _obs("fast_retransmit", None, "not-applicable", "P6", why, ev),
        _obs("fast_recovery", None, "not-applicable", "P6", why, ev),
    ]


def _loss_round(ctx: Context, t: Timeline, snd: _Sender, segs: list[Seg]) -> list[Observation]:
    hole = segs[0]
    sent_before = snd.high
    cited: list[Seg] = [*snd.cited, hole]
    dups: list[Seg] = []
    for _ in segs[1:]:
        dups.append(_ack(t, hole.seq))
    third = dups[2]
    rtx: Seg | None = None
    early_new: list[Seg] = []  # new data before the retransmission (limited transmit)
    recovery_new: list[Seg] = []  # new data after it, the hole still open (fast recovery)
    end = t.now_ms + 1500.0
    quiet_after_rtx = 300.0
    while (left := end - t.now_ms) > 0:
        wait = left if rtx is None else min(left, quiet_after_rtx)
        s = t.next(wait)
        if s is None:
            break
        if not s.data:
            continue
        if s.seq == hole.seq and rtx is None:
            rtx = s
            end = min(end, t.now_ms + 1000.0)
            continue
        if s.seq >= sent_before or s.end > snd.high:
            snd.high = max(snd.high, s.end)
            (early_new if rtx is None else recovery_new).append(s)
            if len(dups) < 60:
                dups.append(_ack(t, hole.seq))  # it arrived; the hole is still there
    cited += dups[:3] + early_new[:2] + ([rtx] if rtx else []) + recovery_new[:4]
    out: list[Observation] = []
    n = len(segs)
    if rtx is None:
        detail = (
            f"no retransmission within {1500 / 1000:g} s of the 3rd duplicate ACK "
            f"({n} segments in flight, {len(dups)} duplicate ACKs)"
        )
        ev = peer.evidence(ctx, t, cited, "loss round: duplicate ACKs, no retransmission")
        out.append(_obs("fast_retransmit", False, "deviates", "P6", detail, ev))
        out.append(_obs("fast_recovery", None, "not-applicable", "P6", "no fast retransmit", ev))
        return out
    delay = rtx.t_ms - third.t_ms
    fast = delay < FAST_MS
    detail = (
        f"the lost segment again {delay:.1f} ms after the 3rd duplicate ACK "
        f"({n} segments in flight"
        + (f", {len(early_new)} new before it (limited transmit)" if early_new else "")
        + ")"
    )
    if not fast:
        detail += f": a timeout, not fast retransmit (< {FAST_MS:g} ms)"
    ev = peer.evidence(ctx, t, cited, "loss round: duplicate ACKs and the retransmission")
    out.append(_obs("fast_retransmit", fast, "conforms" if fast else "deviates", "P6", detail, ev))
    if not fast:
        out.append(_obs("fast_recovery", None, "not-applicable", "P6", "no fast retransmit", ev))
        return out
    # The hole is filled: ACK everything, then the first flight after recovery.
    cited.append(_ack(t, snd.high))
    after = snd.flight(1000)
    cited += after[:2]
    ev = peer.evidence(ctx, t, cited, "loss round, recovery and the flight after it")
    k = len(after)
    if recovery_new:
        detail = (
            f"{len(recovery_new)} new segment(s) during recovery, after "
            f"{len(dups)} duplicate ACKs in all; {k} segment(s) in the flight after it"
        )
        out.append(_obs("fast_recovery", True, "conforms", "P6", detail, ev))
    elif 2 <= k < n:
        detail = (
            f"no new data during recovery (no room: the sender's {n} segments were all "
            f"outstanding), then a flight of {k} of the {n} before: cwnd = ssthresh, not 1"
        )
        out.append(_obs("fast_recovery", True, "conforms", "P6", detail, ev))
    else:
        what = "slow start from one segment" if k <= 1 else f"{k} segments, not reduced"
        detail = f"no new data during recovery, then {what} (flight of {n} before the loss)"
        out.append(_obs("fast_recovery", False, "deviates", "P6", detail, ev))
    return out


# ------------------------------------------------------------------------------ P10

REOPEN = 100  # bytes by which we open the closed window afterwards: a silly opening of our own


@dataclass
class _Small:
    """A remainder of our window smaller than a segment, and the segment that filled it.
    ``idle``: nothing was in flight when it was sent (we had ACKed everything before it)."""

    usable: int
    ack: Seg  # our last ACK before it
    seg: Seg | None  # None: nothing came
    idle: bool = True

    @property
    def delay_ms(self) -> float:
        return -1.0 if self.seg is None else self.seg.t_ms - self.ack.t_ms


@probe(
    "P10",
    "sender silly-window avoidance (a usable window smaller than a segment)",
    ("sws_avoidance_sender",),
    exclusive=True,
)
def sender_sws(ctx: Context) -> list[Observation]:
    """We play a receiver whose application does not read: the right edge of our 65535-byte
    window stays where the handshake put it while we ACK every segment, until less than a
    segment is left. Then we open the window by ``REOPEN`` bytes, each time with all data
    acknowledged, until we have seen two such remainders with nothing in flight. Then Nagle
    holds nothing back, so only sender SWS avoidance (RFC 9293 3.8.6.2.1, MUST-38) keeps the
    target from filling the remainder at once: it is less than a segment and less than half
    the largest window we offered, so it waits for the override timer (0.1-1 s) or a persist
    timeout. A remainder filled while data was still in flight is reported, not judged: that
    is Nagle's (Minshall's) domain, and Linux sends such a tail at once. Exclusive:
    unacknowledged data takes a small stack's heap."""
    fam = peer.stack_family(ctx)
    seen: list[_Small] = []
    cited: list[Seg] = []
    full = 0
    with peer.timeline(ctx, fam, "P10-sws", _chargen(ctx)) as t:
        try:
            sa = peer.handshake(t, mss=OUR_MSS, win=WIN)
            right, high = 1 + WIN, 1
            last = t.segments[-1]
            acks, ack_t = [last], [last.t_us]  # our ACKs, and their wire times
            cited.append(sa)
            end = t.now_ms + min(8000.0, ctx.budget_s * 1000 / 4)
            while (left := end - t.now_ms) > 0 and sum(w.idle for w in seen) < 2:
                closed = full and right - high < full  # less than a segment left
                s = t.next(min(left, 2000.0 if closed else 600.0))
                if s is None:
                    if closed:
                        seen.append(_Small(right - high, last, None))
                    break
                if not s.data or s.end <= high:
                    continue
                full = max(full, s.length)
                high = s.end
                if s.length < full and s.end >= right:  # it filled a remainder
                    known = acks[bisect.bisect_right(ack_t, s.t_us) - 1]  # when it sent s
                    seen.append(_Small(right - s.seq, known, s, idle=known.ack >= s.seq))
                    right = high + REOPEN
                    last = _ack(t, high, REOPEN)
                else:
                    last = _ack(t, high, max(0, right - high))  # the edge stays
                acks.append(last)
                ack_t.append(last.t_us)
                if right - high < full or s.length < full:
                    cited += [s, last]
        finally:
            peer.reset(t)
    return [_sws_sender_observation(ctx, t, seen, cited, full)]


def _sws_sender_observation(
    ctx: Context, t: Timeline, seen: list[_Small], cited: list[Seg], full: int
) -> Observation:
    parts = []
    silly = []
    for w in seen:
        if w.seg is None:
            parts.append(f"{w.usable} B left: nothing sent into it")
        elif not w.idle:
            parts.append(f"{w.usable} B left: filled at once, data in flight (Nagle's domain)")
        else:
            parts.append(f"{w.usable} B left: filled {w.delay_ms:.0f} ms after our ACK")
            if w.delay_ms < SILLY_MS:
                silly.append(w)
    detail = (
        "; ".join(parts) + f" (segments of {full} B, window 65535; silly: within {SILLY_MS:g} ms)"
    )
    ev = peer.evidence(ctx, t, cited, "remainders of our window and what the target sent into them")
    if not any(w.idle for w in seen):
        return _obs("sws_avoidance_sender", None, "inconclusive", "P10",
                    f"no remainder left with nothing in flight: {detail}", ev)  # fmt: skip
    ok = not silly
    return _obs("sws_avoidance_sender", ok, "conforms" if ok else "deviates", "P10", detail, ev)
