"""The timeline DSL: packetdrill's model of a TCP test, written as Python.

A script is one timeline of events at times relative to its start (packetdrill's ``.pkt`` file,
tcp-behaviour.md §2). The tester injects segments (packetdrill's ``<`` lines) and expects the
target to send matching segments at about a given time (``>`` lines); unlike packetdrill the
script is ordinary Python, so loops, conditionals and reading back fields of what the target
sent all work::

    t = Timeline(wire, port=7)
    t.inject(0, "S", win=65535, mss=1460, wscale=7, sackok=True, ts=(100, 0))
    syn_ack = t.expect(after(0), "S.", ack=1, mss=1460, ts=(ANY, 100))
    t.inject(after(10), ".", ts=(110, ECHO))
    t.inject(after(0), "P.", data=b"hello", ts=(110, ECHO))
    t.expect(after(0), "P.", ack=6, data=b"hello")

Times are milliseconds. A number is absolute script time; :func:`after` is relative to the
previous event (as observed: a late segment shifts what follows, like packetdrill), and
:func:`between` / ``after(lo, hi)`` give a range; ``None`` means any time. Whether an observed
time passes is decided by a pluggable tolerance model (:mod:`harness.probes.tolerance`).

Numbers are remapped as in packetdrill: sequence and acknowledgment numbers (and SACK blocks)
are relative to each side's ISN (the tester's chosen one, the target's learned from its SYN or
SYN-ACK), the tester picks an ephemeral port, timestamps are relative (the tester's TSval to its
own base, the target's TSval to the first one it sent, TSecr to what the other side sent).

Every expected field is a template: a value, :data:`ANY`, a ``range``, a :class:`Range`, a
predicate, or ``None`` for an option that must be absent. A failing step raises
:class:`TimelineError` (an ``AssertionError``) with the script line, the template against the
observed segment field by field, the times and tolerance, and the last segments both ways.

Times come from the wire (capture and transmit timestamps); see :mod:`harness.probes.wire`.
"""

from __future__ import annotations

import linecache
import math
import random
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from harness.probes.tolerance import AbsPct, Check, Tolerance
from harness.probes.wire import Link, Packet, Wire
from stack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    OptEol,
    OptFastOpen,
    OptMss,
    OptNop,
    OptSack,
    OptSackPermitted,
    OptTimestamps,
    OptUnknown,
    OptWindowScale,
    TcpHeader,
    TcpOption,
)

__all__ = [
    "ANY",
    "ECHO",
    "At",
    "Conn",
    "Range",
    "Seg",
    "Step",
    "Timeline",
    "TimelineError",
    "after",
    "between",
    "flags_of",
    "flags_str",
]

_MASK = 0xFFFFFFFF
_EPS_MS = 1e-6


# ------------------------------------------------------------------------------ templates


class _AnyType:
    """Matches every value, an absent option included."""

    _instance: _AnyType | None = None

    def __new__(cls) -> _AnyType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _AnyType()
"""The wildcard template (packetdrill's ``<...>`` for one field)."""


class _EchoType:
    def __repr__(self) -> str:
        return "ECHO"


ECHO: Any = _EchoType()
"""``ts=(val, ECHO)`` in ``inject``: echo the target's most recent TSval (RFC 7323 TS.Recent)."""


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive numeric range template: ``win=Range(1000, 65535)``."""

    lo: float
    hi: float

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and self.lo <= value <= self.hi

    def __repr__(self) -> str:
        return f"{self.lo:g}..{self.hi:g}"


def matches(template: Any, value: Any) -> bool:
    """Whether ``value`` satisfies ``template`` (see the module doc for the template forms)."""
    if template is ANY:
        return True
    if template is None or value is None:
        return template is None and value is None
    if isinstance(template, range | Range):
        return isinstance(value, int | float) and not isinstance(value, bool) and value in template
    if isinstance(template, tuple | list) and isinstance(value, tuple | list):
        return len(template) == len(value) and all(
            matches(t, v) for t, v in zip(template, value, strict=True)
        )
    if callable(template) and not isinstance(template, type):
        return bool(template(value))
    return bool(template == value)


def show(value: Any) -> str:
    """A short rendering of a template or an observed value for the failure diff."""
    if value is ANY:
        return "*"
    if value is None:
        return "absent"
    if isinstance(value, bytes | bytearray):
        b = bytes(value)
        head = repr(b[:24]) + ("..." if len(b) > 24 else "")
        return f"{len(b)} bytes {head}"
    if isinstance(value, range):
        return f"{value.start}..{value.stop - 1}" if value.step == 1 else repr(value)
    if isinstance(value, tuple | list):
        inner = ", ".join(show(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if callable(value) and not isinstance(value, type | Range):
        return f"predicate {getattr(value, '__name__', repr(value))}"
    return str(value)


# ------------------------------------------------------------------------------ flags

_FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "U": URG, ".": ACK, "E": ECE, "W": CWR}


def flags_of(text: str) -> int:
    """``"S."`` -> SYN|ACK. packetdrill letters: F S R P U, ``.`` = ACK, E = ECE, W = CWR."""
    bits = 0
    for ch in text:
        try:
            bits |= _FLAG_BITS[ch]
        except KeyError:
            raise ValueError(f"unknown TCP flag {ch!r} in {text!r}; use F S R P U . E W") from None
    return bits


def flags_str(bits: int) -> str:
    """The canonical packetdrill spelling, e.g. ``S.``, ``FP.``, ``SEW``; ``-`` for none."""
    return "".join(c for c, b in _FLAG_BITS.items() if bits & b) or "-"


def _signed(v: int) -> int:
    v &= _MASK
    return v - (1 << 32) if v >= 1 << 31 else v


# ------------------------------------------------------------------------------ time specs


@dataclass(frozen=True, slots=True)
class At:
    """When an event is due: ``relative`` to the previous event or absolute, ``lo..hi`` ms."""

    lo_ms: float
    hi_ms: float
    relative: bool

    def __repr__(self) -> str:
        pre = "+" if self.relative else ""
        if self.lo_ms == self.hi_ms:
            return f"{pre}{self.lo_ms:g}"
        return f"{pre}{self.lo_ms:g}~{pre}{self.hi_ms:g}"


def after(lo_ms: float, hi_ms: float | None = None) -> At:
    """``lo_ms`` after the previous event (packetdrill ``+0.2`` is ``after(200)``), or anywhere
    in ``lo_ms..hi_ms`` after it (``+0~+.5`` is ``after(0, 500)``)."""
    hi = lo_ms if hi_ms is None else hi_ms
    if hi < lo_ms:
        raise ValueError(f"after({lo_ms}, {hi_ms}): the range ends before it starts")
    return At(lo_ms, hi, True)


def between(lo_ms: float, hi_ms: float) -> At:
    """Anywhere from ``lo_ms`` to ``hi_ms`` of script time (packetdrill ``a~b``)."""
    if hi_ms < lo_ms:
        raise ValueError(f"between({lo_ms}, {hi_ms}): the range ends before it starts")
    return At(lo_ms, hi_ms, False)


TimeSpec = float | int | At | None


# ------------------------------------------------------------------------------ segments


@dataclass(slots=True)
class Seg:
    """One segment on the timeline, either direction, with relative and raw numbers.

    ``direction`` is ``<`` (the tester sent it) or ``>`` (the target sent it). ``t_ms`` is
    script time, ``t_us`` the wire's own time. ``seq``/``ack``/``sack`` are relative to the
    sender's / the receiver's ISN (signed: an ACK below the ISN reads as negative); ``ts`` is
    ``(tsval, tsecr)`` relative to the sender's first TSval and to the receiver's, ``ts_raw`` as
    on the wire. ``mss``/``wscale``/``ts``/``sack`` are None when the option is absent.
    """

    direction: str
    t_ms: float
    t_us: int
    flags: str
    seq: int
    ack: int
    win: int
    data: bytes
    hdr: TcpHeader
    mss: int | None = None
    wscale: int | None = None
    sackok: bool = False
    sack: tuple[tuple[int, int], ...] | None = None
    ts: tuple[int, int] | None = None
    ts_raw: tuple[int, int] | None = None
    ecn: int = 0
    ttl: int = 64
    consumed: bool = True

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def seq_raw(self) -> int:
        return self.hdr.seq

    @property
    def ack_raw(self) -> int:
        return self.hdr.ack

    @property
    def src_port(self) -> int:
        return self.hdr.src_port

    @property
    def dst_port(self) -> int:
        return self.hdr.dst_port

    @property
    def end(self) -> int:
        """Relative sequence number after this segment (payload, SYN and FIN count)."""
        bits = self.hdr.flags
        return self.seq + len(self.data) + (1 if bits & SYN else 0) + (1 if bits & FIN else 0)

    def field(self, name: str) -> Any:
        return self if name == "match" else getattr(self, name)

    def options_str(self) -> str:
        parts: list[str] = []
        for o in self.hdr.options:
            if isinstance(o, OptMss):
                parts.append(f"mss {o.mss}")
            elif isinstance(o, OptWindowScale):
                parts.append(f"wscale {o.shift}")
            elif isinstance(o, OptSackPermitted):
                parts.append("sackOK")
            elif isinstance(o, OptSack):
                blocks = self.sack or ()
                parts.append("sack " + " ".join(f"{lo}:{hi}" for lo, hi in blocks))
            elif isinstance(o, OptTimestamps):
                val, ecr = self.ts or (o.tsval, o.tsecr)
                parts.append(f"TS val {val} ecr {ecr}")
            elif isinstance(o, OptNop):
                parts.append("nop")
            elif isinstance(o, OptEol):
                parts.append("eol")
            elif isinstance(o, OptFastOpen):
                parts.append(f"FO {o.cookie.hex()}" if o.cookie else "FO")
            elif isinstance(o, OptUnknown):
                parts.append(f"opt{o.kind} {o.data.hex()}")
        return f" <{','.join(parts)}>" if parts else ""

    def line(self) -> str:
        """packetdrill-like: ``> S. 0:0(0) ack 1 win 65535 <mss 1460,...>``."""
        ack = f" ack {self.ack}" if self.hdr.flags & ACK else ""
        n = len(self.data)
        ecn = f" ecn {self.ecn}" if self.ecn else ""
        return (
            f"{self.t_ms:10.3f} {self.direction} {self.flags} {self.seq}:{self.seq + n}({n})"
            f"{ack} win {self.win}{self.options_str()}{ecn}"
        )

    def __str__(self) -> str:
        return self.line().strip()


@dataclass(slots=True)
class Step:
    """Where a script step is: its number, the calling file and line and the line's text."""

    number: int
    kind: str
    filename: str
    lineno: int
    code: str

    def __str__(self) -> str:
        where = f"{self.filename}:{self.lineno}"
        return f"step {self.number} ({self.kind}) at {where}" + (
            f": {self.code}" if self.code else ""
        )


class TimelineError(AssertionError):
    """A step failed: the message is the readable diff; the attributes carry the details."""

    def __init__(
        self,
        message: str,
        step: Step | None = None,
        check: Check | None = None,
        observed: Seg | None = None,
        mismatched: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.step = step
        self.check = check
        self.observed = observed
        self.mismatched = mismatched


# ------------------------------------------------------------------------------ connections


@dataclass(slots=True)
class Conn:
    """One connection's remapping state: ports, both ISNs, timestamp bases, next numbers.

    ``snd_nxt`` is the tester's next relative sequence number (the default ``seq`` of an
    injected segment); ``rcv_nxt`` the end of the highest segment seen from the target (the
    default ``ack``). ``target_isn`` / ``target_port`` / ``target_ts0`` are learned.
    """

    tester_port: int
    target_port: int | None
    isn: int
    ts_base: int
    target_isn: int | None = None
    target_ts0: int | None = None
    last_target_tsval: int | None = None
    snd_nxt: int = 0
    rcv_nxt: int | None = None
    pending: deque[Seg] = field(default_factory=deque)

    def owns(self, hdr: TcpHeader) -> bool:
        return hdr.dst_port == self.tester_port and (
            self.target_port is None or hdr.src_port == self.target_port
        )


# ------------------------------------------------------------------------------ timeline

FIELDS = (
    "flags",
    "seq",
    "ack",
    "win",
    "length",
    "data",
    "mss",
    "wscale",
    "sackok",
    "sack",
    "ts",
    "ecn",
    "ttl",
)


class Timeline:
    """One script against one target over a :class:`~harness.probes.wire.Wire`.

    ``port`` is the target's port of the default connection (``conn``); the tester's port is
    ``src_port`` or a random ephemeral one, its ISN ``isn`` or random, its TSval base
    ``ts_base`` or random (``seed`` makes the random choices reproducible). ``tolerance``
    judges the target's times (default packetdrill's :class:`AbsPct`); ``inject_tolerance``
    judges whether the tester itself sent on time. ``strict`` (packetdrill's behaviour) fails a
    step when the target sent a segment no ``expect`` consumed before it. ``max_wait_ms`` bounds
    ``expect(None, ...)``. When nothing arrives in time, ``expect`` listens ``late_grace_ms``
    (or the expected interval, if longer) more, so the failure can say "late by x ms" instead of
    "never" (0 turns this off). ``history`` is how many segments the failure diff lists.
    """

    def __init__(
        self,
        wire: Wire,
        port: int = 7,
        *,
        tolerance: Tolerance | None = None,
        inject_tolerance: Tolerance | None = None,
        src_port: int | None = None,
        isn: int | None = None,
        ts_base: int | None = None,
        seed: int | None = None,
        strict: bool = True,
        max_wait_ms: float = 120_000.0,
        late_grace_ms: float = 1_000.0,
        history: int = 8,
        link: Link | None = None,
    ) -> None:
        self.wire = wire
        self.link = link or Link(wire)
        self.rng = random.Random(seed)
        self.tolerance: Tolerance = tolerance if tolerance is not None else AbsPct()
        self.inject_tolerance: Tolerance = (
            inject_tolerance if inject_tolerance is not None else AbsPct()
        )
        self.strict = strict
        self.max_wait_ms = max_wait_ms
        self.late_grace_ms = late_grace_ms
        self.history = history
        self.t0_us = wire.now_us()
        self.last_us = self.t0_us
        self.checks: list[Check] = []
        self.segments: list[Seg] = []
        self.strays: list[Seg] = []
        self.conns: list[Conn] = []
        self._steps = 0
        self.conn = self.open(port, src_port=src_port, isn=isn, ts_base=ts_base)

    # ------------------------------------------------------------------ connections

    def _port(self) -> int:
        used = {c.tester_port for c in self.conns}
        while (p := self.rng.randint(49152, 65535)) in used:
            pass
        return p

    def open(
        self,
        port: int,
        src_port: int | None = None,
        isn: int | None = None,
        ts_base: int | None = None,
    ) -> Conn:
        """A further connection from the tester to the target's ``port`` (pass it as ``conn=``)."""
        conn = Conn(
            src_port if src_port is not None else self._port(),
            port,
            isn if isn is not None else self.rng.getrandbits(32),
            ts_base if ts_base is not None else self.rng.getrandbits(31),
        )
        self.conns.append(conn)
        return conn

    def listen(self, port: int, isn: int | None = None, ts_base: int | None = None) -> Conn:
        """A connection the target opens to the tester's ``port``; its port is learned."""
        conn = Conn(
            port,
            None,
            isn if isn is not None else self.rng.getrandbits(32),
            ts_base if ts_base is not None else self.rng.getrandbits(31),
        )
        self.conns.append(conn)
        return conn

    # ------------------------------------------------------------------ time

    @property
    def now_ms(self) -> float:
        """The wire's current time in script milliseconds."""
        return (self.wire.now_us() - self.t0_us) / 1000.0

    @property
    def last_ms(self) -> float:
        """The time of the previous event (what :func:`after` counts from)."""
        return (self.last_us - self.t0_us) / 1000.0

    def _ms(self, t_us: int) -> float:
        return (t_us - self.t0_us) / 1000.0

    def _us(self, t_ms: float) -> int:
        return self.t0_us + math.ceil(t_ms * 1000.0 - _EPS_MS)

    def _expected(self, at: TimeSpec) -> tuple[float, float] | None:
        if at is None:
            return None
        if isinstance(at, At):
            base = self.last_ms if at.relative else 0.0
            return base + at.lo_ms, base + at.hi_ms
        return float(at), float(at)

    def _window(self, exp: tuple[float, float], tol: Tolerance) -> tuple[float, float]:
        previous = self.last_ms
        return tol.window(exp[0], previous)[0], tol.window(exp[1], previous)[1]

    # ------------------------------------------------------------------ steps and receiving

    def _step(self, kind: str) -> Step:
        self._steps += 1
        frame = sys._getframe(1)
        here = frame.f_code.co_filename
        while frame.f_back is not None and frame.f_code.co_filename == here:
            frame = frame.f_back
        code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        return Step(self._steps, kind, frame.f_code.co_filename, frame.f_lineno, code)

    def _conn_for(self, hdr: TcpHeader) -> Conn | None:
        for conn in self.conns:
            if conn.owns(hdr):
                return conn
        return None

    def _dispatch(self, pkt: Packet) -> tuple[Conn | None, Seg]:
        """Turn a captured packet into a :class:`Seg`, learning ISN, port and TS base."""
        h = pkt.hdr
        conn = self._conn_for(h)
        if conn is not None:
            if conn.target_port is None:
                conn.target_port = h.src_port
            if h.flags & SYN and conn.target_isn is None:
                conn.target_isn = h.seq
        tsopt = h.timestamps
        ts = None
        if tsopt is not None and conn is not None:
            if conn.target_ts0 is None:
                conn.target_ts0 = tsopt[0]
            conn.last_target_tsval = tsopt[0]
            ts = (_signed(tsopt[0] - conn.target_ts0), _signed(tsopt[1] - conn.ts_base))
        isn = conn.target_isn if conn is not None and conn.target_isn is not None else 0
        peer = conn.isn if conn is not None else 0
        blocks = h.sack_blocks
        sack = (
            tuple((_signed(lo - peer), _signed(hi - peer)) for lo, hi in blocks)
            if blocks is not None
            else None
        )
        seg = Seg(
            direction=">",
            t_ms=self._ms(pkt.t_us),
            t_us=pkt.t_us,
            flags=flags_str(h.flags),
            seq=_signed(h.seq - isn),
            ack=_signed(h.ack - peer),
            win=h.window,
            data=pkt.payload,
            hdr=h,
            mss=h.mss,
            wscale=h.window_scale,
            sackok=h.sack_permitted,
            sack=sack,
            ts=ts if ts is not None else tsopt,
            ts_raw=tsopt,
            ecn=pkt.ecn,
            ttl=pkt.ttl,
            consumed=False,
        )
        self.segments.append(seg)
        self.tolerance.observe(seg.t_ms)
        if conn is None:
            self.strays.append(seg)
        else:
            if conn.rcv_nxt is None or _signed(seg.end - conn.rcv_nxt) > 0:
                conn.rcv_nxt = seg.end
            conn.pending.append(seg)
        return conn, seg

    def _next_for(self, conn: Conn, until_us: int) -> Seg | None:
        if conn.pending:
            return conn.pending.popleft()
        while (pkt := self.link.recv_tcp(until_us)) is not None:
            owner, seg = self._dispatch(pkt)
            if owner is conn:
                conn.pending.popleft()
                return seg
        return None

    def _drain(self, until_us: int) -> None:
        while (pkt := self.link.recv_tcp(until_us)) is not None:
            self._dispatch(pkt)

    def _unconsumed(self) -> list[Seg]:
        segs = [s for c in self.conns for s in c.pending] + [
            s for s in self.strays if not s.consumed
        ]
        return sorted(segs, key=lambda s: s.t_us)

    # ------------------------------------------------------------------ inject

    def inject(
        self,
        at: TimeSpec,
        flags: str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int = 65535,
        data: bytes = b"",
        mss: int | None = None,
        wscale: int | None = None,
        sackok: bool = False,
        sack: tuple[tuple[int, int], ...] | list[tuple[int, int]] | None = None,
        ts: tuple[int, int] | None = None,
        ecn: int = 0,
        ttl: int = 64,
        urg: int = 0,
        options: list[TcpOption] | None = None,
        bad_checksum: bool = False,
        raw: bool = False,
        conn: Conn | None = None,
    ) -> Seg:
        """Send a segment from the tester at ``at`` (packetdrill ``<``); returns it as sent.

        ``seq`` defaults to the tester's next sequence number, ``ack`` (when ``flags`` has
        ``.``) to the end of what the target has sent; both are relative (``raw=True``: as on
        the wire). ``ts=(val, ecr)``: ``val`` relative to the tester's TS base, ``ecr`` relative
        to the target's first TSval or :data:`ECHO`. ``sack`` blocks are relative to the
        target's ISN. Options are laid out as Linux does (mss, sackOK, TS, nop, wscale);
        ``options`` replaces them with an explicit list.
        """
        __tracebackhide__ = True  # a failing step reads as the script line, not ours
        step = self._step("inject")
        c = conn or self.conn
        exp = self._expected(at)
        if exp is not None:
            due_us = self._us(exp[0])
            self._drain(due_us)
        if self.strict and (extra := self._unconsumed()):
            raise self._unexpected(step, extra, "before this injection")
        bits = flags_of(flags)
        if seq is None:
            seq = c.snd_nxt
        if ack is None:
            ack = c.rcv_nxt if bits & ACK and c.rcv_nxt is not None else 0
        if raw:
            seq_abs, ack_abs = seq & _MASK, ack & _MASK
        else:
            seq_abs = (c.isn + seq) & _MASK
            remap_ack = bits & ACK and c.target_isn is not None
            ack_abs = ((c.target_isn or 0) + ack if remap_ack else ack) & _MASK
        ts_abs: tuple[int, int] | None = None
        ts_rel: tuple[int, int] | None = None
        if ts is not None:
            val, ecr = ts
            if ecr is ECHO:
                ecr_abs = c.last_target_tsval or 0
            elif raw or c.target_ts0 is None:
                ecr_abs = int(ecr) & _MASK
            else:
                ecr_abs = (c.target_ts0 + int(ecr)) & _MASK
            val_abs = int(val) & _MASK if raw else (c.ts_base + int(val)) & _MASK
            ts_abs = (val_abs, ecr_abs)
            rel_ecr = _signed(ecr_abs - c.target_ts0) if c.target_ts0 is not None else ecr_abs
            ts_rel = (_signed(val_abs - c.ts_base), rel_ecr)
        sack_abs: tuple[tuple[int, int], ...] | None = None
        if sack:
            base = 0 if raw else (c.target_isn or 0)
            sack_abs = tuple(((base + lo) & _MASK, (base + hi) & _MASK) for lo, hi in sack)
        if options is not None:
            opts = list(options)
        else:
            opts = _layout_options(mss, wscale, sackok, sack_abs, ts_abs)
        if c.target_port is None:
            raise ValueError("this connection's target port is not known yet (expect first)")
        hdr = TcpHeader(c.tester_port, c.target_port, seq_abs, ack_abs, bits, win, urg, opts)
        tx_us = self.link.send_tcp(hdr, data, ecn=ecn, ttl=ttl, bad_checksum=bad_checksum)
        seg = Seg(
            "<",
            self._ms(tx_us),
            tx_us,
            flags_str(bits),
            _signed(seq_abs - c.isn),
            _signed(ack_abs - (c.target_isn or 0)),
            win,
            bytes(data),
            hdr,
            hdr.mss,
            hdr.window_scale,
            hdr.sack_permitted,
            tuple(
                (_signed(lo - (c.target_isn or 0)), _signed(hi - (c.target_isn or 0)))
                for lo, hi in sack_abs
            )
            if sack_abs
            else None,
            ts_rel,
            ts_abs,
            ecn,
            ttl,
        )
        if _signed(seg.end - c.snd_nxt) > 0:
            c.snd_nxt = seg.end
        self.segments.append(seg)
        if exp is not None:
            lo, hi = self._window(exp, self.inject_tolerance)
            ok = lo - _EPS_MS <= seg.t_ms <= hi + _EPS_MS
            check = Check(str(step), exp, seg.t_ms, lo, hi, self.inject_tolerance.describe(), ok)
            self.checks.append(check)
            if not ok:
                raise TimelineError(
                    self._report(
                        step,
                        "the tester sent late (the script scheduled it in the past, or the "
                        "host could not keep up)",
                        [],
                        check,
                    ),
                    step,
                    check,
                    seg,
                )
        self.last_us = tx_us
        return seg

    # ------------------------------------------------------------------ expect

    def expect(
        self,
        at: TimeSpec,
        flags: Any = ANY,
        *,
        seq: Any = ANY,
        ack: Any = ANY,
        win: Any = ANY,
        length: Any = ANY,
        data: Any = ANY,
        mss: Any = ANY,
        wscale: Any = ANY,
        sackok: Any = ANY,
        sack: Any = ANY,
        ts: Any = ANY,
        ecn: Any = ANY,
        ttl: Any = ANY,
        match: Callable[[Seg], bool] | None = None,
        tolerance: Tolerance | None = None,
        conn: Conn | None = None,
    ) -> Seg:
        """The target's next segment on ``conn`` must match the template at about ``at``
        (packetdrill ``>``); returns it with its observed time and fields.

        Unnamed fields are not checked. ``flags`` is a packetdrill string (``"S."``, ``"P."``,
        ``"R"`` ...) compared as a set of flags; ``ts`` is ``(tsval, tsecr)`` relative (tsecr
        against the tester's own TSval); ``sack`` is a tuple of relative blocks; ``mss``,
        ``wscale``, ``ts``, ``sack`` = None demand the option be absent; ``match`` is a
        predicate on the whole :class:`Seg`. ``at=None``: any time up to ``max_wait_ms``.
        """
        __tracebackhide__ = True  # a failing step reads as the script line, not ours
        step = self._step("expect")
        c = conn or self.conn
        tol = tolerance or self.tolerance
        exp = self._expected(at)
        if exp is None:
            lo, hi = -math.inf, max(self.now_ms, self.last_ms) + self.max_wait_ms
            tol_name = "any time"
        else:
            lo, hi = self._window(exp, tol)
            tol_name = tol.describe()
        seg = self._next_for(c, self._us(hi))
        if seg is None and exp is not None and self.late_grace_ms > 0:
            # Keep listening a little to tell "late" from "never": a far better diagnosis.
            grace = max(self.late_grace_ms, hi - self.last_ms)
            seg = self._next_for(c, self._us(hi + grace))
        templates: dict[str, Any] = {
            "flags": flags,
            "seq": seq,
            "ack": ack,
            "win": win,
            "length": length,
            "data": data,
            "mss": mss,
            "wscale": wscale,
            "sackok": sackok,
            "sack": sack,
            "ts": ts,
            "ecn": ecn,
            "ttl": ttl,
        }
        if match is not None:
            templates["match"] = match
        exp_report = exp if exp is not None else (lo, hi)
        if seg is None:
            check = Check(str(step), exp_report, None, lo, hi, tol_name, False)
            self.checks.append(check)
            rows = [(name, show(tmpl), "-", True) for name, tmpl in templates.items()]
            raise TimelineError(
                self._report(
                    step,
                    f"expected segment never arrived (listened until {self.now_ms:.3f} ms)",
                    rows,
                    check,
                ),
                step,
                check,
            )
        seg.consumed = True
        time_ok = lo - _EPS_MS <= seg.t_ms <= hi + _EPS_MS
        check = Check(str(step), exp_report, seg.t_ms, lo, hi, tol_name, time_ok)
        self.checks.append(check)
        rows = []
        bad: list[str] = []
        for name, tmpl in templates.items():
            value = seg.field(name)
            ok = _flags_match(tmpl, seg) if name == "flags" else matches(tmpl, value)
            if not ok:
                bad.append(name)
            rows.append((name, show(tmpl), "" if name == "match" else show(value), ok))
        if bad or not time_ok:
            what = []
            if bad:
                what.append("segment does not match the template (" + ", ".join(bad) + ")")
            if not time_ok:
                early = seg.t_ms < lo
                what.append(
                    f"segment came too {'early' if early else 'late'} "
                    f"({seg.t_ms - (exp_report[0] if early else exp_report[1]):+.3f} ms)"
                )
            raise TimelineError(
                self._report(step, "; ".join(what), rows, check, seg),
                step,
                check,
                seg,
                tuple(bad) + (() if time_ok else ("time",)),
            )
        self.last_us = seg.t_us
        return seg

    # ------------------------------------------------------------------ quiet periods

    def expect_nothing(self, for_ms: float) -> None:
        """The target sends no TCP segment (on any connection) for ``for_ms`` after the previous
        event; the end of that quiet period becomes the previous event."""
        __tracebackhide__ = True  # a failing step reads as the script line, not ours
        step = self._step("expect_nothing")
        start = self.last_ms
        end_us = self._us(start + for_ms)
        self._drain(end_us)
        extra = self._unconsumed()
        check = Check(
            str(step),
            (start, start + for_ms),
            extra[0].t_ms if extra else None,
            start,
            start + for_ms,
            "quiet period",
            not extra,
        )
        self.checks.append(check)
        if extra:
            raise self._unexpected(step, extra, f"during the quiet period of {for_ms:g} ms", check)
        self.last_us = max(self.last_us, end_us)

    def wait(self, for_ms: float) -> None:
        """Let ``for_ms`` pass after the previous event, collecting what arrives (no check:
        in ``strict`` mode the next ``inject`` fails if something arrived unexpected)."""
        end_us = self._us(self.last_ms + for_ms)
        self._drain(end_us)
        self.last_us = max(self.last_us, end_us)

    def next(self, within_ms: float | None = None, conn: Conn | None = None) -> Seg | None:
        """The target's next segment on ``conn`` arriving within ``within_ms`` from now (any
        time up to ``max_wait_ms`` if None), unchecked; None if nothing came. For probes that
        observe rather than assert: the segment counts as expected and becomes the previous
        event."""
        c = conn or self.conn
        span = self.max_wait_ms if within_ms is None else within_ms
        seg = self._next_for(c, self._us(self.now_ms + span))
        if seg is not None:
            seg.consumed = True
            self.last_us = max(self.last_us, seg.t_us)
        return seg

    def collect(
        self, for_ms: float, conn: Conn | None = None, quiet_ms: float | None = None
    ) -> list[Seg]:
        """Every segment the target sends on ``conn`` during the next ``for_ms``, stopping early
        once ``quiet_ms`` pass without one (after the first). Unchecked, like :meth:`next`."""
        end = self.now_ms + for_ms
        out: list[Seg] = []
        while (left := end - self.now_ms) > 0:
            span = left if quiet_ms is None or not out else min(left, quiet_ms)
            seg = self.next(span, conn)
            if seg is None:
                if quiet_ms is not None and out:
                    break
                continue
            out.append(seg)
        return out

    def finish(self, quiet_ms: float = 0.0) -> None:
        """End of script: nothing the target sent may be left unexpected (after ``quiet_ms``
        more of listening, if given)."""
        __tracebackhide__ = True  # a failing step reads as the script line, not ours
        if quiet_ms > 0:
            self.expect_nothing(quiet_ms)
            return
        step = self._step("finish")
        self._drain(self.wire.now_us())
        if extra := self._unconsumed():
            raise self._unexpected(step, extra, "at the end of the script")

    def __enter__(self) -> Timeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()

    # ------------------------------------------------------------------ reports

    def _unexpected(
        self, step: Step, extra: list[Seg], when: str, check: Check | None = None
    ) -> TimelineError:
        first = extra[0]
        for s in extra:
            s.consumed = True
        rows = [(name, "", show(first.field(name)), True) for name in FIELDS]
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        headline = f"the target sent a segment no step expected, {when}{more}:"
        msg = self._report(
            step,
            f"{headline}\n    {first.line().strip()}",
            rows,
            check,
            first,
        )
        return TimelineError(msg, step, check, first)

    def _report(
        self,
        step: Step,
        headline: str,
        rows: list[tuple[str, str, str, bool]],
        check: Check | None,
        seg: Seg | None = None,
    ) -> str:
        out = [f"{step}", f"  {headline}"]
        if rows:
            w1 = max(len("expected"), *(len(r[1]) for r in rows))
            out.append(f"    {'field':8} {'expected':{w1}}  observed")
            for name, exp, obs, ok in rows:
                mark = "  " if ok else "!!"
                out.append(f"  {mark}{name:8} {exp:{w1}}  {obs}")
        if check is not None:
            lo, hi = check.expected_ms
            exp_t = f"{lo:.3f}" if lo == hi else f"{lo:.3f}~{hi:.3f}"
            obs_t = "nothing" if check.observed_ms is None else f"{check.observed_ms:.3f} ms"
            mark = "  " if check.ok else "!!"
            out.append(
                f"  {mark}time     expected {exp_t} ms (previous event {self.last_ms:.3f} ms), "
                f"observed {obs_t}, allowed [{check.lo_ms:.3f}, {check.hi_ms:.3f}] "
                f"by {check.tolerance}"
            )
        recent = self.segments[-self.history :]
        if recent:
            out.append(f"  last {len(recent)} segments (script ms; < tester, > target):")
            for s in recent:
                tag = "   <- this one" if s is seg else ""
                if s.direction == ">" and not s.consumed and s is not seg:
                    tag = "   (not expected yet)"
                out.append(f"    {s.line()}{tag}")
        others = [o for o in self.link.others if o.t_us >= self.t0_us][-3:]
        if others:
            out.append(
                "  other frames lately: "
                + "; ".join(f"{self._ms(o.t_us):.3f} {o.what}" for o in others)
            )
        return "\n".join(out)

    def report(self) -> Iterator[str]:
        """Every timing check so far, one line each."""
        for check in self.checks:
            yield str(check)


def _flags_match(template: Any, seg: Seg) -> bool:
    """A flag string compares as a set of the eight classic flags; anything else as a template
    on the canonical string."""
    if isinstance(template, str):
        return flags_of(template) == seg.hdr.flags & 0xFF
    return matches(template, seg.flags)


def _layout_options(
    mss: int | None,
    wscale: int | None,
    sackok: bool,
    sack: tuple[tuple[int, int], ...] | None,
    ts: tuple[int, int] | None,
) -> list[TcpOption]:
    """Linux's layout: MSS, SACK-permitted + TS (or NOP NOP TS), NOP + window scale, NOP NOP
    SACK blocks; kept 4-byte aligned so the common parse fast paths apply."""
    opts: list[TcpOption] = []
    if mss is not None:
        opts.append(OptMss(mss))
    if ts is not None:
        if sackok:
            opts += [OptSackPermitted(), OptTimestamps(*ts)]
        else:
            opts += [OptNop(), OptNop(), OptTimestamps(*ts)]
    elif sackok:
        opts += [OptNop(), OptNop(), OptSackPermitted()]
    if wscale is not None:
        opts += [OptNop(), OptWindowScale(wscale)]
    if sack:
        opts += [OptNop(), OptNop(), OptSack(tuple(sack))]
    return opts
