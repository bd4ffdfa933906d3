"""Robustness probes: Nagle, SACK, out-of-order data, RST/SYN attacks, ISNs, connection limits and
IP fragment reassembly (P9, P15, P16, P18, P21, P22, P24, P25).

These are the behaviours a stack shows only when the peer misbehaves: it withholds an ACK,
reorders or drops segments, injects a RST or SYN into a live connection, opens connections
until the target runs out, or sends fragments that never complete or overlap. So every probe
here plays the raw peer on a live wire (see :mod:`harness.probes.peer`) and decides from what
the target answers, with the frames that show it as evidence. Per-stack features are measured
once, in IPv4 when the target has it, and reported with family ``""``; fragment checks are per
family. P9 needs the target's agent (the application must make the small writes).
"""

from __future__ import annotations

import itertools
import random
import statistics
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from harness.probes import peer
from harness.probes.engine import Context, probe
from harness.probes.livewire import LiveWire
from harness.probes.observe import Confidence, Evidence, Observation, Value, Verdict
from harness.probes.timeline import Conn, Seg, Timeline
from harness.probes.wire import Link
from stack.wire.errors import Malformed
from stack.wire.ethernet import EthernetHeader
from stack.wire.icmpv4 import ICMP_ECHO_REPLY, ICMP_TIME_EXCEEDED, Icmpv4Message
from stack.wire.icmpv6 import Icmpv6Message
from stack.wire.ipv4 import Ipv4Header
from stack.wire.ipv6 import NH_FRAGMENT, Ipv6Fragment, Ipv6Header
from targets.agent.client import Agent, AgentError

MASK = 0xFFFFFFFF
CLOSED_PORT = 33434  # traceroute's first port: nobody serves it over TCP either
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_TIME_EXCEEDED = 128, 129, 3


# ------------------------------------------------------------------------------ common moves


def _until(
    t: Timeline, pred: Callable[[Seg], bool], within_ms: float, conn: Conn | None = None
) -> tuple[Seg | None, list[Seg]]:
    """Read the target's segments on ``conn`` until one satisfies ``pred`` or ``within_ms`` pass;
    returns that segment (or None) and everything read."""
    end = t.now_ms + within_ms
    seen: list[Seg] = []
    while (left := end - t.now_ms) > 0:
        s = t.next(left, conn)
        if s is None:
            break
        seen.append(s)
        if pred(s):
            return s, seen
    return None, seen


@dataclass
class _Out:
    """Observations of one probe, built with the probe id and family filled in."""

    pid: str
    items: list[Observation] = field(default_factory=list)

    def add(
        self,
        key: str,
        value: Value,
        verdict: Verdict,
        detail: str,
        evidence: Evidence | None = None,
        family: str = "",
        confidence: Confidence | None = None,
    ) -> None:
        self.items.append(
            Observation(
                key, value, verdict, self.pid, family, detail, confidence or Confidence(), evidence
            )
        )


# ------------------------------------------------------------------------------ P9 Nagle

SMALL_WRITES = 5
NAGLE_WINDOW_MS = 150.0  # below every RTO floor (Linux 200 ms): no retransmission mixes in
NAGLE_LIMIT_MS = 190.0


@dataclass
class _Writes:
    """What ``SMALL_WRITES`` one-byte writes produced while the first one stayed unacknowledged."""

    before_ack: list[Seg]  # segments with new data before our ACK
    after_ack: list[Seg]  # segments with the rest of the bytes after it
    ack: Seg | None

    @property
    def outstanding(self) -> int:
        return len(self.before_ack)


def _new_data(segs: list[Seg], start: int) -> list[Seg]:
    """Segments carrying data beyond everything seen before (retransmissions left out)."""
    out, high = [], start
    for s in segs:
        if s.length and s.seq >= high:
            out.append(s)
            high = s.seq + s.length
    return out


def _small_writes(t: Timeline, agent: Agent, cid: int) -> _Writes:
    """The agent writes ``SMALL_WRITES`` single bytes; we hold back the ACK of the first for
    ``NAGLE_WINDOW_MS``, then ACK everything and collect the rest."""
    start = t.conn.rcv_nxt or 1
    sending = peer.background(agent.send, cid, SMALL_WRITES, "hex:41", 1)
    first, _ = _until(t, lambda s: s.length > 0, 3000)
    if first is None:
        sending.result(timeout=30)
        raise peer.NoAnswer("the agent's writes produced no segment within 3 s")
    segs = [first]
    # Until the window has passed and the agent has made every write; but no longer than
    # NAGLE_LIMIT_MS, where a retransmission (Linux: tail loss probe) could carry new data.
    while not (t.now_ms >= first.t_ms + NAGLE_WINDOW_MS and sending.done()):
        if t.now_ms >= first.t_ms + NAGLE_LIMIT_MS:
            raise peer.NoAnswer(f"the agent took over {NAGLE_LIMIT_MS:g} ms for the writes")
        if (s := t.next(5)) is not None:
            segs.append(s)
    sending.result()
    before = _new_data(segs, start)
    high = before[-1].seq + before[-1].length
    ack = t.inject(None, ".", ack=high)
    after: list[Seg] = []
    got = sum(s.length for s in before)
    deadline = t.now_ms + 1500
    while got < SMALL_WRITES and (left := deadline - t.now_ms) > 0:
        s = t.next(left)
        if s is None:
            break
        if s.length and s.seq >= high:
            after.append(s)
            high = s.seq + s.length
            got += s.length
            t.inject(None, ".", ack=high)
    return _Writes(before, after, ack)


def _quietly(fn: Callable[[], object]) -> None:
    with suppress(AgentError):
        fn()


@probe(
    "P9", "Nagle: small writes while an ACK is outstanding, then TCP_NODELAY", ("nagle", "nodelay")
)
def nagle(ctx: Context) -> list[Observation]:
    out = _Out("P9")
    fam = peer.stack_family(ctx)
    with ctx.agent_session() as agent:
        port, sid = peer.agent_listen(agent)
        cid: int | None = None
        try:
            with peer.timeline(ctx, fam, "P9-nagle", port) as t:
                accepting = peer.background(agent.accept, sid, 5000)
                try:
                    peer.handshake(t, mss=1460)
                    cid = accepting.result(timeout=15)[0]
                    default = _small_writes(t, agent, cid)
                    try:
                        agent.setopt(cid, "nodelay", 1)
                        nodelay: _Writes | None = _small_writes(t, agent, cid)
                        why = ""
                    except AgentError as exc:
                        nodelay, why = None, f"setopt nodelay: err {exc.code}"
                finally:
                    peer.reset(t)
                _judge_nagle(ctx, t, out, default, nodelay, why)
        finally:
            if cid is not None:
                _quietly(lambda: agent.abort(cid))
            _quietly(lambda: agent.close(sid))
    return out.items


def _judge_nagle(
    ctx: Context, t: Timeline, out: _Out, d: _Writes, nd: _Writes | None, why: str
) -> None:
    def shows(w: _Writes) -> list[Seg]:
        return w.before_ack + ([w.ack] if w.ack else []) + w.after_ack[:2]

    def says(w: _Writes) -> str:
        rest = "+".join(str(s.length) for s in w.after_ack)
        return (
            f"{w.outstanding} small segment(s) before our ACK "
            f"({'+'.join(str(s.length) for s in w.before_ack)} B), "
            + (f"then {rest} B" if rest else "nothing after it")
        )

    def lumped(w: _Writes) -> str:
        """Why ``w`` shows nothing, if the first segment already held several writes."""
        n = w.before_ack[0].length
        return f"the first segment carried {n} bytes: the writes reached the stack together"

    ev = peer.evidence(ctx, t, shows(d), f"{SMALL_WRITES} one-byte writes, first ACK held back")
    nd_ev = peer.evidence(ctx, t, shows(nd), "the same with TCP_NODELAY") if nd else None
    if d.before_ack[0].length > 1:
        out.add("nagle", None, "inconclusive", lumped(d), ev)
        out.add("nodelay", None, "inconclusive", lumped(d), nd_ev)
        return
    if nd is not None and nd.before_ack[0].length > 1:
        out.add(
            "nagle",
            d.outstanding == 1,
            "conforms" if d.outstanding == 1 else "deviates",
            f"default: {says(d)}",
            ev,
        )
        out.add("nodelay", None, "inconclusive", lumped(nd), nd_ev)
        return
    stop_and_wait = d.outstanding == 1 and nd is not None and nd.outstanding == 1
    if stop_and_wait:
        detail = (
            f"one segment in flight with or without TCP_NODELAY ({says(d)}): the sender never "
            "has two segments out, so Nagle cannot be seen"
        )
        out.add("nagle", None, "not-applicable", detail, ev)
        out.add("nodelay", None, "not-applicable", detail, nd_ev)
        return
    if d.outstanding == 1:
        out.add("nagle", True, "conforms", f"default: {says(d)}", ev)
    else:
        out.add("nagle", False, "deviates", f"default: {says(d)} (SHLD-7: coalesce)", ev)
    if nd is None:
        out.add("nodelay", False, "deviates", f"cannot turn Nagle off ({why}; MUST-17)", None)
    elif nd.outstanding > 1:
        out.add("nodelay", True, "conforms", f"with TCP_NODELAY: {says(nd)}", nd_ev)
    else:
        out.add("nodelay", False, "deviates", f"TCP_NODELAY changes nothing: {says(nd)}", nd_ev)


# ------------------------------------------------------------------------------ P15 SACK

OOO_LEN = 100
OOO_ORDER = (2, 0, 4, 1, 5, 3)  # arrival order of six disjoint blocks: recency is not seq order


def _ooo_block(k: int) -> tuple[int, int]:
    """Block ``k`` of the six: [101 + 200k, 201 + 200k) -- a 100-byte hole below each."""
    lo = 1 + OOO_LEN + 2 * OOO_LEN * k
    return lo, lo + OOO_LEN


def _sack_blocks(ctx: Context, fam: str, out: _Out) -> None:
    """scamper's sack-rcvr: six out-of-order segments to the discard service, each answered by
    a duplicate ACK whose SACK blocks must name what arrived, the newest first (RFC 2018 4)."""
    with peer.timeline(ctx, fam, "P15-sack-blocks", peer.service(ctx, "discard", "echo")) as t:
        sa = peer.handshake(t, mss=1460, sackok=True)
        try:
            sent: list[tuple[int, int]] = []
            acks: list[Seg] = []
            shown = [sa]
            bad: list[str] = []
            for k in OOO_ORDER:
                lo, hi = _ooo_block(k)
                shown.append(t.inject(None, "P.", seq=lo, data=bytes([0x41 + k]) * OOO_LEN))
                sent.append((lo, hi))
                ack, _ = _until(t, lambda s: "." in s.flags and not s.length, 500)
                if ack is None:
                    bad.append(f"no ACK for block {lo}:{hi}")
                    continue
                acks.append(ack)
                shown.append(ack)
                blocks = ack.sack or ()
                if not blocks:
                    continue
                if blocks[0] != (lo, hi):
                    bad.append(f"after {lo}:{hi} the first block is {blocks[0]}")
                if len(blocks) > 4 or any(b not in sent for b in blocks):
                    bad.append(f"after {lo}:{hi} blocks {blocks} (not what arrived)")
        finally:
            peer.reset(t)
        ev = peer.evidence(ctx, t, shown, "six out-of-order segments and the ACKs they drew")
        with_sack = [a for a in acks if a.sack]
        counts = ",".join(str(len(a.sack or ())) for a in acks)
        recent = all(
            list(a.sack or ()) == sent[: i + 1][::-1][: len(a.sack or ())]
            for i, a in enumerate(acks)
            if a.sack
        )
        if not sa.sackok:
            if with_sack:
                out.add(
                    "sack_blocks",
                    True,
                    "deviates",
                    "SACK blocks although SACK was not negotiated (RFC 2018 3)",
                    ev,
                )
            else:
                out.add(
                    "sack_blocks",
                    False,
                    "conforms",
                    f"SACK not negotiated (no sackOK in the SYN-ACK); {len(acks)} plain "
                    "duplicate ACKs",
                    ev,
                )
            return
        if not with_sack:
            out.add(
                "sack_blocks",
                False,
                "deviates",
                f"sackOK negotiated but {len(acks)} ACKs for out-of-order data carry no "
                "SACK blocks",
                ev,
            )
            return
        detail = f"{len(acks)} duplicate ACKs, blocks per ACK {counts}; the newest block first" + (
            ", the others most recent first" if recent else ", the others not by recency"
        )
        if bad:
            out.add("sack_blocks", True, "deviates", "; ".join(bad[:3]), ev)
        else:
            out.add("sack_blocks", True, "conforms", detail, ev)


RECOVERY_MIN_FLIGHT = 7  # two holes with three SACKed segments above the second (RFC 6675)
RECOVERY_WATCH_MS = 150.0  # after the duplicate ACKs: well inside any RTO


def _merge(ranges: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Merge (lo, hi, newest arrival) ranges that touch, keeping the newest arrival time."""
    out: list[tuple[int, int, float]] = []
    for lo, hi, t in sorted(ranges):
        if out and lo <= out[-1][1]:
            plo, phi, pt = out[-1]
            out[-1] = (plo, max(phi, hi), max(pt, t))
        else:
            out.append((lo, hi, t))
    return out


class _Receiver:
    """A SACK receiver that lost some segments: cumulative ACK plus up to four blocks, the one
    just extended first (RFC 2018 4)."""

    def __init__(self, t: Timeline, cum: int) -> None:
        self.t = t
        self.cum = cum
        self.got: list[tuple[int, int, float]] = []
        self.acks: list[Seg] = []

    def receive(self, s: Seg) -> None:
        self.got.append((s.seq, s.seq + s.length, s.t_ms))
        self.got = _merge(self.got)
        while self.got and self.got[0][0] <= self.cum:
            self.cum = max(self.cum, self.got.pop(0)[1])
        blocks = sorted(self.got, key=lambda b: -b[2])[:4]
        self.acks.append(
            self.t.inject(None, ".", ack=self.cum, sack=tuple((lo, hi) for lo, hi, _ in blocks))
        )


def _sack_recovery(ctx: Context, fam: str, out: _Out) -> None:
    """TBIT's SACK test: the chargen service sends; of one flight we "lose" the 2nd and 4th
    segments and SACK the rest (and all new data), never acknowledging a retransmission. A
    SACK sender retransmits both holes in that one round trip and nothing it was told we have;
    NewReno would wait for a partial ACK before the second hole."""
    with peer.timeline(ctx, fam, "P15-sack-recovery", peer.service(ctx, "chargen")) as t:
        sa = peer.handshake(t, mss=536, sackok=True)
        try:
            if not sa.sackok:
                out.add(
                    "sack_recovery",
                    False,
                    "conforms",
                    "SACK not negotiated (no sackOK in the SYN-ACK)",
                    peer.evidence(ctx, t, [sa], "SYN-ACK without sackOK"),
                )
                return
            flight: list[Seg] = []
            sizes: list[int] = []
            acked = 1
            for _ in range(5):  # ACK whole flights until the sender has >= 7 segments out
                flight = _new_data(t.collect(1500, quiet_ms=60), acked)
                sizes.append(len(flight))
                if len(flight) >= RECOVERY_MIN_FLIGHT or not flight:
                    break
                for s in flight:
                    acked = s.seq + s.length
                    t.inject(None, ".", ack=acked)
            if len(flight) < RECOVERY_MIN_FLIGHT:
                out.add(
                    "sack_recovery",
                    None,
                    "inconclusive",
                    f"flights of {sizes} segments: too few to drop two and SACK three "
                    f"above (needs {RECOVERY_MIN_FLIGHT})",
                    peer.evidence(ctx, t, flight[:8], "the largest flight"),
                )
                return
            _recover(ctx, t, out, flight)
        finally:
            peer.reset(t)


def _recover(ctx: Context, t: Timeline, out: _Out, flight: list[Seg]) -> None:
    holes = [(s.seq, s.seq + s.length) for s in (flight[1], flight[3])]
    rx = _Receiver(t, flight[0].seq)
    for s in flight:
        if (s.seq, s.seq + s.length) not in holes:
            rx.receive(s)
    high = flight[-1].seq + flight[-1].length
    fixed: dict[tuple[int, int], Seg] = {}
    wasted: list[Seg] = []
    end = t.now_ms + RECOVERY_WATCH_MS
    while (left := end - t.now_ms) > 0 and len(fixed) < len(holes):
        got = t.next(left)
        if got is None or not got.length:
            continue
        s = got
        hole = next((h for h in holes if s.seq < h[1] and s.seq + s.length > h[0]), None)
        if hole is not None:
            fixed.setdefault(hole, s)
        elif s.seq < high:
            wasted.append(s)  # data we had acknowledged or SACKed
        else:
            high = s.seq + s.length
            rx.receive(s)
    wasted += [s for s in t.collect(40) if s.length and s.seq < high and not _in(s, holes)]
    shown = flight[:8] + rx.acks[:6] + list(fixed.values()) + wasted[:2]
    ev = peer.evidence(ctx, t, shown, "flight, duplicate ACKs with SACK blocks, retransmissions")
    dup = len(rx.acks)
    what = f"flight of {len(flight)}, holes {holes}, {dup} ACKs with SACK blocks"
    if wasted:
        out.add(
            "sack_recovery",
            False,
            "deviates",
            f"{what}; retransmitted SACKed data {[(s.seq, s.length) for s in wasted[:3]]}",
            ev,
        )
    elif len(fixed) == len(holes):
        gap = max(s.t_ms for s in fixed.values()) - rx.acks[0].t_ms
        out.add(
            "sack_recovery",
            True,
            "conforms",
            f"{what}; both holes retransmitted {gap:.0f} ms after the first, nothing else",
            ev,
        )
    else:
        out.add(
            "sack_recovery",
            False,
            "conforms",
            f"{what}; only {len(fixed)} hole(s) retransmitted within "
            f"{RECOVERY_WATCH_MS:.0f} ms (SACK not used to repair, allowed)",
            ev,
        )


def _in(s: Seg, holes: list[tuple[int, int]]) -> bool:
    return any(s.seq < hi and s.seq + s.length > lo for lo, hi in holes)


@probe(
    "P15",
    "SACK: blocks for out-of-order data, and recovery of only the holes",
    ("sack_blocks", "sack_recovery"),
)
def sack(ctx: Context) -> list[Observation]:
    out = _Out("P15")
    fam = peer.stack_family(ctx)
    _sack_blocks(ctx, fam, out)
    _sack_recovery(ctx, fam, out)
    return out.items


# ------------------------------------------------------------------------------ P16 OOO queue


@probe("P16", "out-of-order data queued (segment 2 before segment 1)", ("ooo_queue",))
def ooo_queue(ctx: Context) -> list[Observation]:
    out = _Out("P16")
    with peer.timeline(
        ctx, peer.stack_family(ctx), "P16-ooo", peer.service(ctx, "discard", "echo")
    ) as t:
        peer.handshake(t, mss=1460)
        try:
            two = t.inject(None, "P.", seq=101, data=b"2" * 100)
            dup, _ = _until(t, lambda s: "." in s.flags, 300)
            one = t.inject(None, "P.", seq=1, data=b"1" * 100)
            final, seen = _until(t, lambda s: "." in s.flags and s.ack >= 201, 700)
        finally:
            peer.reset(t)
        acks = [s for s in seen if "." in s.flags]
        last = final or (acks[-1] if acks else None)
        shown = [two] + ([dup] if dup else []) + [one] + ([last] if last else [])
        ev = peer.evidence(ctx, t, shown, "segment 2, then segment 1, and the ACKs")
    if last is None:
        out.add("ooo_queue", None, "inconclusive", "no ACK after segment 1 within 700 ms", ev)
    elif last.ack >= 201:
        out.add(
            "ooo_queue",
            True,
            "conforms",
            f"ACK {last.ack} covers both segments: segment 2 was queued",
            ev,
        )
    else:
        out.add(
            "ooo_queue",
            False,
            "deviates",
            f"ACK {last.ack} after segment 1: segment 2 was dropped (SHLD-31)",
            ev,
        )
    return out.items


# ------------------------------------------------------------------------------ P18 RST / SYN


def _alive(t: Timeline, conn: Conn) -> tuple[bool | None, list[Seg]]:
    """Send 4 bytes to the echo service: True if echoed, False on RST, None on silence."""
    ping = t.inject(None, "P.", data=b"ping", conn=conn)
    got, seen = _until(t, lambda s: s.length > 0 or "R" in s.flags, 1500, conn)
    if got is not None and got.length:
        t.inject(None, ".", conn=conn)
    return (None if got is None else "R" not in got.flags), [ping, *seen]


def _is_ack(s: Seg, conn: Conn) -> bool:
    return "." in s.flags and "R" not in s.flags and "S" not in s.flags and s.ack == conn.snd_nxt


def _closed_port(ctx: Context, t: Timeline, out: _Out) -> None:
    c = t.open(CLOSED_PORT)
    syn = t.inject(None, "S", win=65535, mss=1460, conn=c)
    r = t.next(1000, c)
    ev = peer.evidence(ctx, t, [syn] + ([r] if r else []), f"SYN to closed port {CLOSED_PORT}")
    if r is None:
        out.add(
            "rst_closed_port",
            False,
            "deviates",
            f"no answer to a SYN to closed port {CLOSED_PORT}",
            ev,
        )
    elif "R" not in r.flags:
        out.add("rst_closed_port", False, "deviates", f"answered '{r.flags}', not RST", ev)
    else:
        ok = r.seq_raw == 0 and "." in r.flags and r.ack == 1
        form = f"RST '{r.flags}' seq {r.seq_raw} ack SYN+{r.ack}"
        if ok:
            out.add("rst_closed_port", True, "conforms", f"{form} (RFC 9293 3.10.7.1)", ev)
        else:
            out.add(
                "rst_closed_port",
                True,
                "deviates",
                f"{form}: expected <SEQ=0><ACK=SEG.SEQ+1><RST,ACK>",
                ev,
            )


def _rst_in_window(ctx: Context, t: Timeline, out: _Out, port: int) -> None:
    c = t.open(port)
    sa = peer.handshake(t, mss=1460, conn=c)
    shown: list[Seg] = [sa]
    off = max(1, min(100, sa.win // 2))
    try:
        nxt = c.snd_nxt
        bogus = t.inject(None, "R", seq=nxt + off, conn=c)
        c.snd_nxt = nxt  # the timeline moved it past the RST's sequence number
        challenge, seen = _until(t, lambda s: _is_ack(s, c) or "R" in s.flags, 500, c)
        alive, more = _alive(t, c)
        shown += [bogus, *seen, *more]
        exact_dead: bool | None = None
        if alive:
            exact = t.inject(None, "R", seq=c.snd_nxt, conn=c)
            t.wait(100)
            after, more = _alive(t, c)
            shown += [exact, *more]
            exact_dead = after is False or after is None
    finally:
        peer.reset(t, c)
    ev = peer.evidence(ctx, t, shown, f"RST at RCV.NXT+{off}, then data; exact RST, then data")
    head = f"RST at RCV.NXT+{off} (window {sa.win})"
    if alive is None:
        out.add(
            "rst_challenge_ack",
            None,
            "inconclusive",
            f"{head}: the echo service did not answer afterwards",
            ev,
        )
    elif not alive:
        why = "challenge ACK, yet " if challenge else ""
        out.add(
            "rst_challenge_ack",
            False,
            "conforms",
            f"{head}: {why}connection reset (RFC 793 behaviour; RFC 5961 is MAY-12)",
            ev,
        )
    elif challenge is None:
        out.add(
            "rst_challenge_ack",
            False,
            "deviates",
            f"{head}: ignored silently, neither reset nor challenge ACK",
            ev,
        )
    elif not exact_dead:
        out.add(
            "rst_challenge_ack",
            True,
            "deviates",
            f"{head}: challenge ACK, but a RST at RCV.NXT did not reset either",
            ev,
        )
    else:
        out.add(
            "rst_challenge_ack",
            True,
            "conforms",
            f"{head}: challenge ACK, connection kept; RST at RCV.NXT reset it",
            ev,
        )


def _syn_established(ctx: Context, t: Timeline, out: _Out, port: int) -> None:
    c = t.open(port)
    shown = [peer.handshake(t, mss=1460, conn=c)]
    try:
        nxt = c.snd_nxt
        syn = t.inject(None, "S", seq=nxt, win=65535, mss=1460, conn=c)
        c.snd_nxt = nxt  # a SYN consumes no sequence space of the live connection
        answer, seen = _until(t, lambda s: _is_ack(s, c) or "R" in s.flags, 500, c)
        alive: bool | None = None
        more: list[Seg] = []
        if answer is None or "R" not in answer.flags:
            alive, more = _alive(t, c)
        shown += [syn, *seen, *more]
    finally:
        peer.reset(t, c)
    ev = peer.evidence(ctx, t, shown, "SYN at RCV.NXT in ESTABLISHED, then data")
    if answer is None:
        out.add(
            "syn_in_established_challenge_ack",
            False,
            "deviates",
            "no answer to a SYN in ESTABLISHED (RFC 5961 4: ACK; RFC 793: RST)",
            ev,
        )
    elif "R" in answer.flags:
        out.add(
            "syn_in_established_challenge_ack",
            False,
            "conforms",
            "RST: connection aborted (RFC 793 behaviour; RFC 5961 is MAY-12)",
            ev,
        )
    elif alive:
        out.add(
            "syn_in_established_challenge_ack",
            True,
            "conforms",
            "challenge ACK, connection kept",
            ev,
        )
    else:
        out.add(
            "syn_in_established_challenge_ack",
            True,
            "deviates",
            "challenge ACK, but the connection did not answer afterwards",
            ev,
        )


@probe(
    "P18",
    "RST and SYN injection (RFC 5961), RST for a closed port",
    ("rst_challenge_ack", "syn_in_established_challenge_ack", "rst_closed_port"),
)
def blind_attacks(ctx: Context) -> list[Observation]:
    out = _Out("P18")
    port = peer.service(ctx, "echo")
    with peer.timeline(ctx, peer.stack_family(ctx), "P18-rst-syn", port) as t:
        _closed_port(ctx, t, out)
        # Two connections: Linux answers at most one challenge ACK per socket per 500 ms.
        _rst_in_window(ctx, t, out, port)
        _syn_established(ctx, t, out, port)
    return out.items


# ------------------------------------------------------------------------------ P21 ISN

ISN_SAMPLES = 60
SMALL_STEP = 1 << 24  # a random 32-bit difference lands below this with probability 1/256


@probe("P21", "ISN predictability across connections", ("isn_predictable",))
def isn(ctx: Context) -> list[Observation]:
    out = _Out("P21")
    port = peer.service(ctx, "discard", "echo", "chargen")
    isns: list[int] = []
    shown: list[Seg] = []
    misses = 0
    with peer.timeline(ctx, peer.stack_family(ctx), "P21-isn", port) as t:
        while len(isns) < ISN_SAMPLES and misses < 10:
            c = t.open(port)
            syn = t.inject(None, "S", win=65535, mss=1460, conn=c)
            sa, _ = _until(t, lambda s: "S" in s.flags or "R" in s.flags, 1000, c)
            if sa is None or "S" not in sa.flags:
                misses += 1  # out of PCBs for a moment (other probes run meanwhile)
                continue
            peer.reset(t, c)  # at once: an embryonic connection holds a PCB too
            isns.append(sa.seq_raw)
            if len(shown) < 8:
                shown += [syn, sa]
        ev = peer.evidence(ctx, t, shown, "SYNs from fresh ports and the SYN-ACKs' ISNs")
    if len(isns) < 10:
        out.add("isn_predictable", None, "inconclusive", f"only {len(isns)} SYN-ACKs", ev)
        return out.items
    steps = [(b - a) & MASK for a, b in itertools.pairwise(isns)]
    small = sum(1 for d in steps if 0 < d < SMALL_STEP)
    repeats = len(isns) - len(set(isns))
    share = small / len(steps)
    predictable = share >= 0.5 or repeats > 0
    detail = (
        f"{len(isns)} ISNs from different ports: {small}/{len(steps)} steps small and positive "
        f"(median step {statistics.median(steps)}), {repeats} repeated"
    )
    conf = Confidence(len(isns))
    if predictable:
        out.add(
            "isn_predictable",
            True,
            "deviates",
            f"{detail}: a counter (MUST-8/9, SHLD-1)",
            ev,
            confidence=conf,
        )
    else:
        out.add(
            "isn_predictable",
            False,
            "conforms",
            f"{detail}: no visible sequence",
            ev,
            confidence=conf,
        )
    return out.items


# ------------------------------------------------------------------------------ P22 connections

MAX_CONNECTIONS_CAP = 64  # a lower bound is enough for hosts; embedded stacks run out far sooner
SYN_WAIT_MS = 1500.0


def _connect(t: Timeline, port: int) -> tuple[Conn, Seg | None, list[Seg]]:
    """SYN (once more after ``SYN_WAIT_MS`` of silence); the SYN-ACK or RST, or None."""
    c = t.open(port)
    sent = []
    for _ in range(2):
        sent.append(t.inject(None, "S", seq=0, win=65535, mss=1460, conn=c))
        got, _ = _until(t, lambda s: "S" in s.flags or "R" in s.flags, SYN_WAIT_MS, c)
        if got is not None:
            if "S" in got.flags:
                t.inject(None, ".", conn=c)
            return c, got, sent
    return c, None, sent


@probe(
    "P22",
    "concurrent connections to one service until refused",
    ("max_connections",),
    exclusive=True,
)
def max_connections(ctx: Context) -> list[Observation]:
    out = _Out("P22")
    port = peer.service(ctx, "discard", "echo", "chargen")
    with peer.timeline(ctx, peer.stack_family(ctx), "P22-connections", port) as t:
        open_: list[Conn] = []
        refusal, shown = "", list[Seg]()
        try:
            while len(open_) < MAX_CONNECTIONS_CAP:
                c, got, sent = _connect(t, port)
                if got is None:
                    refusal, shown = f"silence (no SYN-ACK to {len(sent)} SYNs)", shown + sent
                    break
                if "R" in got.flags:
                    refusal, shown = "RST to the SYN", [*shown, *sent, got]
                    break
                open_.append(c)
                shown = [*sent, got]  # the last connection established
            t.wait(300)
            reset = [c for c in open_ if any("R" in s.flags for s in c.pending)]
            if reset:
                refusal = refusal or f"SYN-ACK, then RST ({len(reset)} connections)"
            alive = [c for c in open_ if c not in reset]
        finally:
            for c in open_:
                peer.reset(t, c)
        t.wait(200)
        c, again, sent = _connect(t, port)
        if again is not None:
            peer.reset(t, c)
        shown += sent + ([again] if again else [])
        ev = peer.evidence(
            ctx, t, shown, "the last connection, the refused SYN, the one after closing all"
        )
    n = len(alive)
    recovered = again is not None and "S" in again.flags
    after = "a new connection works after closing all" if recovered else "none after closing all"
    if not refusal:
        detail = f"at least {n} (search stopped at {MAX_CONNECTIONS_CAP}); {after}"
    else:
        detail = f"{n} established, then {refusal}; {after}"
    out.add(
        "max_connections",
        n,
        "conforms" if recovered else "deviates",
        detail,
        ev,
        confidence=Confidence(1, (n, n)),
    )
    return out.items


# ------------------------------------------------------------------------------ fragments


@dataclass
class _Icmp:
    """An ICMP message from the target seen on the wire."""

    t_us: int
    type: int
    code: int
    rest: int
    body: bytes


class _FragWire:
    """A raw peer that speaks ICMP echo in fragments of its choosing over a live wire."""

    def __init__(self, wire: LiveWire) -> None:
        self.wire = wire
        self.link = Link(wire)
        self.v4 = wire.info.family == 4
        self.rng = random.Random()
        self.ident = self.rng.getrandbits(16)
        self.seq = 0

    def echo(self, size: int) -> tuple[int, bytes]:
        """A fresh echo request of ``size`` bytes in all (header included): (seq, message)."""
        self.seq += 1
        body = bytes((self.seq + i) & 0xFF for i in range(size - 8))
        info = self.wire.info
        if self.v4:
            return self.seq, Icmpv4Message.echo_request(self.ident, self.seq, body).to_bytes()
        msg = Icmpv6Message(ICMP6_ECHO_REQUEST, 0, self.ident << 16 | self.seq, body)
        return self.seq, msg.to_bytes(info.tester_ip, info.target_ip)

    def send(self, msg: bytes, frag_id: int, lo: int, hi: int, more: bool) -> int:
        """Bytes ``[lo, hi)`` of ``msg`` as one fragment; returns the wire time."""
        info = self.wire.info
        part = msg[lo:hi]
        if self.v4:
            packet = Ipv4Header(
                info.tester_ip, info.target_ip, 1, len(part), 64, frag_id, False, more, lo
            ).to_bytes(part)
            return self.link._send_eth(self.link.resolve(), 0x0800, packet)
        frag = Ipv6Fragment(58, lo, more, frag_id).to_bytes(part)
        packet = Ipv6Header(info.tester_ip, info.target_ip, NH_FRAGMENT, len(frag)).to_bytes(frag)
        return self.link._send_eth(self.link.resolve(), 0x86DD, packet)

    def new_id(self) -> int:
        return self.rng.getrandbits(16 if self.v4 else 32)

    def pump(self, until_us: int) -> list[_Icmp]:
        """Everything ICMP the target sent us until ``until_us`` (answering ARP/ND meanwhile)."""
        while self.link.recv_tcp(until_us) is not None:
            pass
        got = []
        while self.link.others:
            o = self.link.others.popleft()
            if (m := self._icmp(o.frame)) is not None:
                got.append(_Icmp(o.t_us, *m))
        return got

    def _icmp(self, frame: bytes) -> tuple[int, int, int, bytes] | None:
        info = self.wire.info
        try:
            _, l3 = EthernetHeader.parse(frame)
            if self.v4:
                ip, l4 = Ipv4Header.parse(l3)
                if ip.protocol != 1 or bytes(ip.src) != info.target_ip or ip.is_fragment:
                    return None
                m4, _ = Icmpv4Message.parse(l4)
                return m4.type, m4.code, m4.rest, bytes(m4.data)
            ip6, l4 = Ipv6Header.parse(l3)
            if ip6.next_header != 58 or bytes(ip6.src) != info.target_ip:
                return None
            m6, _ = Icmpv6Message.parse(l4, bytes(ip6.src), bytes(ip6.dst))
            return m6.type, m6.code, m6.rest, bytes(m6.data)
        except (Malformed, ValueError):
            return None

    def now_us(self) -> int:
        return self.wire.now_us()

    def reply_to(self, seq: int, got: list[_Icmp]) -> _Icmp | None:
        want = ICMP_ECHO_REPLY if self.v4 else ICMP6_ECHO_REPLY
        return next((m for m in got if m.type == want and m.rest == self.ident << 16 | seq), None)

    def expired(self, frag_id: int, got: list[_Icmp]) -> _Icmp | None:
        """The Time Exceeded (reassembly, code 1) that quotes fragment ``frag_id``."""
        for m in got:
            if self.v4 and (m.type, m.code) == (ICMP_TIME_EXCEEDED, 1) and len(m.body) >= 6:
                if struct.unpack_from("!H", m.body, 4)[0] == frag_id:
                    return m
            elif not self.v4 and (m.type, m.code) == (ICMP6_TIME_EXCEEDED, 1):
                if len(m.body) >= 48 and struct.unpack_from("!I", m.body, 44)[0] == frag_id:
                    return m
        return None

    def wait_reply(self, seq: int, within_ms: float) -> tuple[_Icmp | None, list[_Icmp]]:
        end = self.now_us() + int(within_ms * 1000)
        seen: list[_Icmp] = []
        while (now := self.now_us()) < end:
            seen += self.pump(min(end, now + 50_000))
            if (r := self.reply_to(seq, seen)) is not None:
                return r, seen
        return None, seen


@contextmanager
def _frag_wire(ctx: Context, fam: str, name: str) -> Iterator[_FragWire]:
    with ctx.raw(fam, name) as wire:
        yield _FragWire(wire)


def _overlap(ctx: Context, fam: str, key: str, pid: str, out: _Out, strict: bool) -> None:
    """A control echo in two fragments (must be answered), then one whose second fragment
    overlaps the first by 8 bytes and a third that would complete it without the second.
    RFC 5722: the whole datagram, later fragments included, is discarded -- no reply."""
    with _frag_wire(ctx, fam, f"{pid}-overlap") as fw:
        seq, msg = fw.echo(48)
        fid = fw.new_id()
        times = [fw.send(msg, fid, 0, 24, True), fw.send(msg, fid, 24, 48, False)]
        control, _ = fw.wait_reply(seq, 1500)
        seq2, msg2 = fw.echo(48)
        fid2 = fw.new_id()
        times += [
            fw.send(msg2, fid2, 0, 24, True),
            fw.send(msg2, fid2, 16, 32, True),  # overlaps [16, 24) with the same bytes
            fw.send(msg2, fid2, 24, 48, False),
        ]
        reply, _ = fw.wait_reply(seq2, 1500)
        stamps = times + [m.t_us for m in (control, reply) if m is not None]
        ev = ctx.wire_evidence(fw.wire, stamps, "control echo in 2 fragments; overlapping echo")
    if control is None:
        out.add(
            key,
            None,
            "inconclusive",
            "no reply to the control echo in two fragments (no reassembly?)",
            ev,
            fam,
        )
    elif reply is None:
        out.add(
            key,
            True,
            "conforms",
            "no reply: the datagram with overlapping fragments was discarded",
            ev,
            fam,
        )
    else:
        verdict: Verdict = "deviates" if strict else "conforms"
        why = " (RFC 5722: discard the whole datagram)" if strict else " (allowed for IPv4)"
        out.add(
            key, False, verdict, f"echo reply: overlapping fragments were reassembled{why}", ev, fam
        )


REASM_SAMPLES = 3
REASM_SPACING_US = 350_000


def _reassembly_timeout(ctx: Context, out: _Out) -> None:
    """First fragments of ``REASM_SAMPLES`` echo requests, a few hundred ms apart (so a coarse
    timer is sampled at several phases), never completed: the time to each one's Time Exceeded
    (code 1) is the reassembly timeout. One more datagram is completed at half the budget, and
    the first at the end when no Time Exceeded came, so a stack that expires silently still
    gets a bracket."""
    budget_us = int(ctx.budget_s * 1e6)
    with _frag_wire(ctx, "ipv4", "P24-reassembly") as fw:
        firsts: list[tuple[int, int, int, bytes]] = []  # (frag id, sent at, seq, message)
        for i in range(REASM_SAMPLES):
            seq, msg = fw.echo(32)
            fid = fw.new_id()
            firsts.append((fid, fw.send(msg, fid, 0, 24, True), seq, msg))
            if i + 1 < REASM_SAMPLES:
                fw.pump(fw.now_us() + REASM_SPACING_US)
        lseq, lmsg = fw.echo(32)
        lid = fw.new_id()
        t0 = fw.send(lmsg, lid, 0, 24, True)
        half_us = t0 + budget_us // 2
        ladder_sent = False
        seen: list[_Icmp] = []
        expired: dict[int, _Icmp] = {}
        end = firsts[0][1] + budget_us
        while (now := fw.now_us()) < end and len(expired) < REASM_SAMPLES:
            if not ladder_sent and now >= half_us:
                fw.send(lmsg, lid, 24, 32, False)
                ladder_sent = True
            seen += fw.pump(min(end, now + 200_000, half_us if not ladder_sent else end))
            for fid, *_ in firsts:
                if fid not in expired and (m := fw.expired(fid, seen)) is not None:
                    expired[fid] = m
        if not ladder_sent:  # every datagram expired early: half the budget never came
            lid = -1
        late = None
        if not expired:
            fid, _, seq, msg = firsts[0]
            fw.send(msg, fid, 24, 32, False)
            late, more = fw.wait_reply(seq, 1000)
            seen += more
        ladder = fw.reply_to(lseq, seen) if lid >= 0 else None
        stamps = [s for _, s, *_ in firsts] + [m.t_us for m in expired.values()]
        ev = ctx.wire_evidence(fw.wire, stamps, "first fragments and their Time Exceeded")
    half_s = ctx.budget_s / 2
    if expired:
        samples = [(m.t_us - sent) / 1000 for fid, sent, *_ in firsts if (m := expired.get(fid))]
        timer = peer.estimate(samples)
        value = round(timer.value / 1000, 1)
        lo, hi = timer.interval
        conf = Confidence(len(samples), (round(lo / 1000, 2), round(hi / 1000, 2)), 0.95)
        ok = 60 <= value <= 120
        detail = (
            f"ICMP Time Exceeded (code 1) {', '.join(f'{s / 1000:.2f}' for s in samples)} s "
            "after the first fragment" + ("" if ok else "; RFC 1122 3.3.2 recommends 60-120 s")
        )
        out.add(
            "ipv4_reassembly_timeout_s",
            value,
            "conforms" if ok else "deviates",
            detail,
            ev,
            confidence=conf,
        )
    elif late is not None:
        b = round(ctx.budget_s, 1)
        out.add(
            "ipv4_reassembly_timeout_s",
            b,
            "inconclusive",
            f"at least {b:g} s (cut by the budget): the first datagram still completed then",
            ev,
            confidence=Confidence(1, (b, b)),
        )
    else:
        where = (
            f"more than {half_s:g} s (a datagram completed then)"
            if ladder
            else f"at most {half_s:g} s (a datagram completed then was not answered)"
        )
        out.add(
            "ipv4_reassembly_timeout_s",
            None,
            "inconclusive",
            f"no ICMP Time Exceeded; fragments expire silently, {where}",
            ev,
        )


@probe(
    "P24",
    "IPv4 reassembly timeout (Time Exceeded) and overlapping fragments",
    ("ipv4_reassembly_timeout_s", "ipv4_overlap_dropped"),
)
def ipv4_reassembly(ctx: Context) -> list[Observation]:
    out = _Out("P24")
    if "ipv4" not in ctx.addresses:
        for key in ("ipv4_reassembly_timeout_s", "ipv4_overlap_dropped"):
            out.add(key, None, "not-applicable", "the target has no IPv4")
        return out.items
    _overlap(ctx, "ipv4", "ipv4_overlap_dropped", "P24", out, strict=False)
    _reassembly_timeout(ctx, out)
    return out.items


@probe("P25", "IPv6 overlapping fragments (RFC 5722)", ("ipv6_overlap_dropped",))
def ipv6_fragments(ctx: Context) -> list[Observation]:
    out = _Out("P25")
    if "ipv6" not in ctx.addresses:
        out.add("ipv6_overlap_dropped", None, "not-applicable", "the target has no IPv6")
        return out.items
    _overlap(ctx, "ipv6", "ipv6_overlap_dropped", "P25", out, strict=True)
    return out.items
