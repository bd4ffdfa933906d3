"""Packetdrill-style scripts against the reference stack's TCP, in virtual time.

A :class:`Script` puts one stack (an :class:`Interface` on a raw-IP link plus a
:class:`TcpLayer`) on a :class:`VirtualClock` and plays the remote peer by hand: ``inject``
writes an inbound segment at a script time (packetdrill's ``<`` line), ``expect`` asserts the
next outbound segment and when it left (``>``). Sequence and acknowledgment numbers are
relative, as in packetdrill: the remote side's ISN is ``Script.REMOTE_ISN`` and numbers in
``inject`` are offsets from it; the stack's ISN is learned from its SYN or SYN-ACK and numbers in
``expect`` are offsets from that. Times are milliseconds from the start of the script.

Example::

    s = Script("full")
    s.listen(8080)
    s.inject(0, "S", seq=0, win=65535, opts=[OptMss(1460)])
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(10, ".", seq=1, ack=1)
    s.inject(20, "P.", seq=1, ack=1, data=b"x" * 100)
    s.expect(60, ".", ack=101)            # delayed ACK, 40 ms later
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stack.iface import Interface, InterfaceConfig
from stack.tcp.hooks import Segment
from stack.tcp.layer import Listener, TcpLayer
from stack.tcp.profile import TcpConfig, profile
from stack.tcp.socket import TcpSocket
from stack.time import MS, VirtualClock
from stack.wire.ipv4 import Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from stack.wire.link import LinkType
from stack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    OptSack,
    OptTimestamps,
    TcpHeader,
    TcpOption,
)

LOCAL4 = ipaddress.ip_address("192.0.2.1").packed
REMOTE4 = ipaddress.ip_address("192.0.2.2").packed
LOCAL6 = ipaddress.ip_address("2001:db8::1").packed
REMOTE6 = ipaddress.ip_address("2001:db8::2").packed
_FLAGS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, ".": ACK, "E": ECE, "W": CWR}


def flags_of(text: str) -> int:
    out = 0
    for ch in text:
        out |= _FLAGS[ch]
    return out


def flags_str(flags: int) -> str:
    return "".join(c for c, b in _FLAGS.items() if flags & b) or "-"


@dataclass
class Out:
    """An outbound segment as the script sees it: time in ms, relative seq/ack."""

    t_ms: float
    seg: Segment
    seq: int  # relative to the stack's ISN
    ack: int  # relative to the remote ISN
    ecn: int

    @property
    def hdr(self) -> TcpHeader:
        return self.seg.hdr

    @property
    def flags(self) -> str:
        return flags_str(self.seg.hdr.flags)

    @property
    def data(self) -> bytes:
        return bytes(self.seg.payload)

    @property
    def win(self) -> int:
        return self.seg.hdr.window

    def sack(self, script: Script) -> list[tuple[int, int]]:
        """SACK blocks, relative to the remote ISN."""
        for o in self.seg.hdr.options:
            if isinstance(o, OptSack):
                return [
                    ((lo - script.REMOTE_ISN) & 0xFFFFFFFF, (hi - script.REMOTE_ISN) & 0xFFFFFFFF)
                    for lo, hi in o.blocks
                ]
        return []

    def __repr__(self) -> str:
        return (
            f"<{self.t_ms:.3f}ms {self.flags} seq={self.seq} ack={self.ack} win={self.win} "
            f"len={len(self.seg.payload)} opts={self.seg.hdr.options}>"
        )


class Script:
    REMOTE_ISN = 1_000_000
    REMOTE_PORT = 40000

    def __init__(
        self,
        profile_name: str = "full",
        v6: bool = False,
        mtu: int = 1500,
        seed: int = 1,
        tol_ms: float = 0.0,
        config: TcpConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.clock = VirtualClock()
        self.config = config or profile(profile_name, **overrides)
        self.iface = Interface(InterfaceConfig(link_type=LinkType.RAW_IP, mtu=mtu, seed=seed))
        self.v6 = v6
        if v6:
            self.iface.add_ipv6(LOCAL6, 64, dad=False)
            self.local, self.remote = LOCAL6, REMOTE6
        else:
            self.iface.add_ipv4(LOCAL4, 24, announce=False)
            self.local, self.remote = LOCAL4, REMOTE4
        self.tcp = TcpLayer(self.iface, self.config)
        self.tol_ms = tol_ms
        self.local_isn: int | None = None
        self.local_port: int | None = None
        self.sent: list[Out] = []  # every outbound segment, in order
        self._pending: list[Out] = []  # not yet consumed by expect()
        self.sock: TcpSocket | None = None
        self.listener: Listener | None = None
        self.other: list[bytes] = []  # outbound non-TCP packets (ICMP)

    # ------------------------------------------------------------------ time

    @property
    def now_ms(self) -> float:
        return self.clock.now() / MS

    def run_until(self, t_ms: float) -> None:
        """Advance virtual time to ``t_ms``, firing timers and collecting output on the way."""
        target = round(t_ms * MS)
        while True:
            self._collect()
            nxt = self.iface.poll_at()
            if nxt is None or nxt > target:
                break
            if nxt <= self.clock.now():
                nxt = self.clock.now()
                self._collect()
                nxt2 = self.iface.poll_at()
                if nxt2 is not None and nxt2 <= self.clock.now():
                    # still due: avoid a spin by stepping one microsecond
                    nxt = self.clock.now() + 1
                    if nxt > target:
                        break
                else:
                    continue
            self.clock.advance_to(nxt)
        if target > self.clock.now():
            self.clock.advance_to(target)
        self._collect()

    def _collect(self) -> None:
        now = self.clock.now()
        for pkt in self.iface.poll(now):
            self._parse_out(now, bytes(pkt))

    def _parse_out(self, now: int, pkt: bytes) -> None:
        if pkt[0] >> 4 == 4:
            ip, l4 = Ipv4Header.parse(memoryview(pkt))
            proto, src, dst, ecn = ip.protocol, bytes(ip.src), bytes(ip.dst), ip.tos & 3
        else:
            ip6, l4 = Ipv6Header.parse(memoryview(pkt))
            proto, src, dst = ip6.next_header, bytes(ip6.src), bytes(ip6.dst)
            ecn = ip6.traffic_class & 3
        if proto != 6:
            self.other.append(pkt)
            return
        hdr, payload = TcpHeader.parse(l4, src, dst)
        if hdr.flags & SYN and self.local_isn is None:
            self.local_isn = hdr.seq
            self.local_port = hdr.src_port
        isn = self.local_isn if self.local_isn is not None else 0
        out = Out(
            now / MS,
            Segment(src, dst, hdr, bytes(payload), ecn),
            (hdr.seq - isn) & 0xFFFFFFFF,
            (hdr.ack - self.REMOTE_ISN) & 0xFFFFFFFF,
            ecn,
        )
        self.sent.append(out)
        self._pending.append(out)

    # ------------------------------------------------------------------ the stack's side

    def listen(self, port: int = 8080, **kw: Any) -> Listener:
        self.local_port = port
        self.listener = self.tcp.listen(port, config=self.config, **kw)
        return self.listener

    def accept(self) -> TcpSocket:
        assert self.listener is not None
        sock = self.listener.accept()
        assert sock is not None, "no connection to accept"
        self.sock = sock
        return sock

    def connect(self, t_ms: float = 0, port: int = 8080, data: bytes = b"") -> TcpSocket:
        self.run_until(t_ms)
        self.REMOTE_PORT = port
        self.sock = self.tcp.connect(self.clock.now(), self.remote, port, data=data)
        self.local_port = self.sock.local_port
        self.run_until(t_ms)
        return self.sock

    def next_connection(self) -> None:
        """Number the next connection's segments afresh: its ISN is learned from its SYN (for
        scripts that open a second connection, e.g. a Fast Open reconnect)."""
        self.local_isn = None

    # ------------------------------------------------------------------ the peer's side

    def inject(
        self,
        t_ms: float,
        flags: str,
        seq: int = 0,
        ack: int = 0,
        win: int = 65535,
        data: bytes = b"",
        opts: Sequence[TcpOption] = (),
        ecn: int = 0,
        absolute: bool = False,
        bad_checksum: bool = False,
        src_port: int | None = None,
        dst_port: int | None = None,
    ) -> None:
        """Deliver a segment from the peer at ``t_ms`` (seq relative to REMOTE_ISN, ack
        relative to the stack's ISN, unless ``absolute``)."""
        self.run_until(t_ms)
        if not absolute:
            seq = (seq + self.REMOTE_ISN) & 0xFFFFFFFF
            if self.local_isn is not None:
                ack = (ack + self.local_isn) & 0xFFFFFFFF
        assert self.local_port is not None, "nothing to talk to: listen() or connect() first"
        hdr = TcpHeader(
            src_port or self.REMOTE_PORT,
            dst_port or self.local_port,
            seq,
            ack,
            flags_of(flags),
            win,
            0,
            list(opts),
        )
        tcp = bytearray(hdr.to_bytes(self.remote, self.local, data))
        if bad_checksum:
            tcp[16] ^= 0xFF
        self.iface.receive(self.clock.now(), self._ip(bytes(tcp), ecn))
        self._collect()

    def inject_raw(self, t_ms: float, l4: bytes, ecn: int = 0) -> None:
        """Deliver ``l4`` verbatim as the TCP part of an IP packet from the peer (malformed
        headers, bad checksums: anything ``inject`` would build correctly)."""
        self.run_until(t_ms)
        self.iface.receive(self.clock.now(), self._ip(l4, ecn))
        self._collect()

    def _ip(self, l4: bytes, ecn: int) -> bytes:
        if self.v6:
            h6 = Ipv6Header(self.remote, self.local, 6, len(l4), 64, ecn)
            buf = bytearray(40 + len(l4))
            h6.emit(buf, 0)
        else:
            h4 = Ipv4Header(self.remote, self.local, 6, len(l4), 64, 1, True, False, 0, ecn)
            buf = bytearray(20 + len(l4))
            h4.emit(buf, 0)
        buf[len(buf) - len(l4) :] = l4
        return bytes(buf)

    # ------------------------------------------------------------------ expectations

    def expect(
        self,
        t_ms: float | None,
        flags: str | None = None,
        seq: int | None = None,
        ack: int | None = None,
        win: int | None = None,
        length: int | None = None,
        data: bytes | None = None,
        tol_ms: float | None = None,
        ecn: int | None = None,
    ) -> Out:
        """Assert the next outbound segment. ``t_ms`` None: any time (up to 1 h ahead)."""
        tol = self.tol_ms if tol_ms is None else tol_ms
        limit = (t_ms + tol) if t_ms is not None else self.now_ms + 3_600_000
        self._collect()  # what the user API queued since the last step
        while not self._pending and self.now_ms < limit:
            nxt = self.iface.poll_at()
            if nxt is None or nxt / MS > limit:
                self.run_until(limit)
                break
            self.run_until(max(nxt / MS, self.now_ms))
            if not self._pending and nxt <= self.clock.now():
                self.run_until(self.now_ms + 0.001)
        assert self._pending, f"expected {flags} segment by {t_ms} ms, nothing sent"
        out = self._pending.pop(0)
        where = f"{out!r}"
        if t_ms is not None:
            assert abs(out.t_ms - t_ms) <= tol + 1e-9, f"sent at {out.t_ms} ms, not {t_ms}: {where}"
        if flags is not None:
            assert out.flags == flags_str(flags_of(flags)), f"flags {out.flags} != {flags}: {where}"
        if seq is not None:
            assert out.seq == seq, f"seq {out.seq} != {seq}: {where}"
        if ack is not None:
            assert out.ack == ack, f"ack {out.ack} != {ack}: {where}"
        if win is not None:
            assert out.win == win, f"win {out.win} != {win}: {where}"
        if length is not None:
            n = len(out.seg.payload)
            assert n == length, f"len {n} != {length}: {where}"
        if data is not None:
            assert out.data == data, f"payload differs: {where}"
        if ecn is not None:
            assert out.ecn == ecn, f"ecn {out.ecn} != {ecn}: {where}"
        return out

    def expect_nothing(self, until_ms: float) -> None:
        """Assert that nothing leaves until ``until_ms``."""
        self.run_until(until_ms)
        assert not self._pending, f"unexpected segments: {self._pending}"

    def drain(self) -> list[Out]:
        out, self._pending = self._pending, []
        return out

    # ------------------------------------------------------------------ handshakes

    def handshake_passive(
        self, t_ms: float = 0, opts: Sequence[TcpOption] = (), win: int = 65535, **listen: Any
    ) -> TcpSocket:
        """listen, inject SYN, expect SYN-ACK, inject ACK, accept: returns the socket."""
        if self.listener is None:
            self.listen(**listen)
        self.inject(t_ms, "S", seq=0, win=win, opts=opts)
        self.expect(t_ms, "S.", seq=0, ack=1)
        self.inject(t_ms, ".", seq=1, ack=1, win=win, opts=_echo_ts(opts))
        return self.accept()

    def handshake_active(
        self, t_ms: float = 0, opts: Sequence[TcpOption] = (), win: int = 65535
    ) -> TcpSocket:
        sock = self.connect(t_ms)
        syn = self.expect(t_ms, "S" + ("EW" if self.config.ecn else ""))
        del syn
        self.inject(t_ms, "S.", seq=0, ack=1, win=win, opts=opts)
        self.expect(t_ms, ".", seq=1, ack=1)
        return sock

    def establish(
        self,
        rtt_ms: float = 100,
        t_ms: float = 0,
        opts: Sequence[TcpOption] = (),
        win: int = 65535,
        **listen: Any,
    ) -> TcpSocket:
        """Passive open whose final ACK arrives ``rtt_ms`` after the SYN-ACK, so the connection
        starts with exactly one RTT sample of ``rtt_ms`` (RFC 6298 2.2: SRTT = R, RTTVAR = R/2).

        With timestamps in ``opts`` the ACK echoes the SYN-ACK's TSval (RFC 7323 3.2), so the
        sample comes from the timestamps instead of Karn's timed segment.
        """
        if self.listener is None:
            self.listen(**listen)
        self.inject(t_ms, "S", seq=0, win=win, opts=opts)
        synack = self.expect(t_ms, "S.", seq=0, ack=1)
        ack_opts: list[TcpOption] = []
        for o in opts:
            if isinstance(o, OptTimestamps):
                echo = synack.hdr.timestamps
                ack_opts.append(OptTimestamps(o.tsval + 1, echo[0] if echo else 0))
        self.inject(t_ms + rtt_ms, ".", seq=1, ack=1, win=win, opts=ack_opts)
        return self.accept()

    def sack(self, *blocks: tuple[int, int]) -> OptSack:
        """A SACK option from the peer, blocks relative to the stack's ISN (like ``ack``)."""
        isn = self.local_isn or 0
        return OptSack(
            tuple(((lo + isn) & 0xFFFFFFFF, (hi + isn) & 0xFFFFFFFF) for lo, hi in blocks)
        )

    def peer_ts(self, tsval: int) -> OptTimestamps:
        """A timestamps option for an inbound segment: ``tsval`` and an echo of the stack's
        latest TSval (RFC 7323 4.3), so the stack can take an RTT sample from it."""
        echo = 0
        for out in reversed(self.sent):
            ts = out.hdr.timestamps
            if ts is not None:
                echo = ts[0]
                break
        return OptTimestamps(tsval, echo)


def _echo_ts(opts: Sequence[TcpOption]) -> list[TcpOption]:
    """The options of the handshake's final ACK: timestamps again if the SYN had them."""
    return [o for o in opts if isinstance(o, OptTimestamps)]
