"""The TCP layer of an interface: demultiplexing, listeners, closed ports, ISNs, hooks, timers.

:class:`TcpLayer` registers itself with an :class:`~stack.iface.Interface` as the handler of IP
protocol 6 and as a poller, so the interface's ``receive``/``poll``/``poll_at`` drive TCP too.
Connections live in a dict keyed by the 4-tuple (stack-design.md §8.11). Segments to no
connection and no listener are answered per RFC 9293 3.10.7.1 (a RST, never a RST for a RST).

Peer hooks (see :mod:`stack.tcp.hooks`) are applied here: a layer-wide hook sees every segment,
a socket's hook only its own. Held (delayed) segments wait in a heap that takes part in
``poll_at``, so delays behave the same in virtual and real time.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from stack.iface.ratelimit import TokenBucket
from stack.rand import Rng
from stack.tcp.hooks import Direction, Segment, SegmentHook, SegmentRecord
from stack.tcp.profile import TcpConfig
from stack.tcp.socket import CLOSED, TIME_WAIT, State, TcpSocket
from stack.wire.errors import Malformed
from stack.wire.link import IpProto
from stack.wire.tcp import ACK, RST, SYN, TcpHeader

if TYPE_CHECKING:
    from stack.iface.interface import Interface

log = logging.getLogger(__name__)

MASK = 0xFFFFFFFF
EPHEMERAL = (49152, 65536)  # RFC 6335 dynamic ports

AcceptCallback = Callable[[TcpSocket], None]


class Listener:
    """A passive open. Children in SYN-RECEIVED plus the accept queue are bounded by backlog."""

    def __init__(
        self,
        layer: TcpLayer,
        addr: bytes | None,
        port: int,
        config: TcpConfig,
        backlog: int,
        on_accept: AcceptCallback | None,
    ) -> None:
        self.layer = layer
        self.addr = addr
        self.port = port
        self.config = config
        self.backlog = backlog
        self.on_accept = on_accept
        self.queue: deque[TcpSocket] = deque()
        self.embryonic: set[TcpSocket] = set()
        self.hook: SegmentHook | None = None  # given to every child
        self.record = False  # children keep a segment log
        self.open = True
        self.dropped = 0

    @property
    def full(self) -> bool:
        return len(self.queue) + len(self.embryonic) >= self.backlog

    def accept(self) -> TcpSocket | None:
        return self.queue.popleft() if self.queue else None

    def close(self) -> None:
        """Stop listening; queued, unaccepted connections are reset (as close(2) does)."""
        self.open = False
        self.layer.listeners.pop((self.addr, self.port), None)
        while self.queue:
            self.queue.popleft().abort()
        for child in list(self.embryonic):
            child.abort()


class TcpLayer:
    def __init__(
        self,
        iface: Interface,
        config: TcpConfig | None = None,
        rng: Rng | None = None,
    ) -> None:
        self.iface = iface
        self.config = config or TcpConfig()
        self.rng = rng or Rng(iface.config.seed).fork("tcp")
        self.counters = iface.counters
        self.now = 0
        self.conns: dict[tuple[bytes, int, bytes, int], TcpSocket] = {}
        self.listeners: dict[tuple[bytes | None, int], Listener] = {}
        self.hook: SegmentHook | None = None
        self.tfo_cache: dict[bytes, bytes] = {}
        self.challenge_bucket = TokenBucket(
            self.config.challenge_ack_per_s, max(self.config.challenge_ack_per_s, 1)
        )
        self._dirty: dict[TcpSocket, None] = {}
        self._held: list[tuple[int, int, Direction, Segment, TcpSocket | None]] = []
        self._held_n = itertools.count()
        self._isn_key = self.rng.bytes(16)
        self._tfo_key = self.rng.bytes(16)
        self._isn_counter = self.rng.u32()
        iface.register_protocol(IpProto.TCP, self._input)
        iface.add_poller(self)

    @property
    def mtu(self) -> int:
        return self.iface.config.mtu

    # ================================================================== user API

    def listen(
        self,
        port: int,
        addr: bytes | None = None,
        config: TcpConfig | None = None,
        backlog: int | None = None,
        on_accept: AcceptCallback | None = None,
    ) -> Listener:
        key = (bytes(addr) if addr else None, port)
        if key in self.listeners:
            raise OSError(f"TCP port {port} already listening")
        cfg = config or self.config
        lst = Listener(self, key[0], port, cfg, backlog or cfg.listen_backlog, on_accept)
        self.listeners[key] = lst
        return lst

    def connect(
        self,
        now: int,
        dst: bytes,
        port: int,
        src: bytes | None = None,
        src_port: int | None = None,
        config: TcpConfig | None = None,
        data: bytes = b"",
        hook: SegmentHook | None = None,
        record: bool = False,
    ) -> TcpSocket:
        """Active open. ``data`` is queued before the SYN, so with Fast Open and a cached
        cookie it rides in the SYN (RFC 7413)."""
        self.now = now
        dst = bytes(dst)
        cfg = config or self.config
        source = bytes(src) if src is not None else self.iface.select_source(dst)
        if source is None:
            raise OSError(f"no route to {dst.hex()}")
        if src_port is None:
            src_port = self._ephemeral(source, dst, port)
        key = (source, src_port, dst, port)
        if key in self.conns:
            raise OSError("connection already exists")
        if len(self.conns) >= cfg.max_connections:
            raise OSError("too many connections")
        sock = TcpSocket(self, cfg, source, src_port, dst, port)
        sock.hook = hook
        if record:
            sock.log = []
        if cfg.fast_open:
            cookie = self.tfo_cache.get(dst)
            if cookie:
                sock.tfo_cookie = cookie
            else:
                sock._tfo_request = True
        self.conns[key] = sock
        sock.open_active(now, self.isn(now, key, cfg), data)
        return sock

    def sockets(self) -> list[TcpSocket]:
        return list(self.conns.values())

    # ================================================================== for sockets

    def wake(self, sock: TcpSocket) -> None:
        """The socket has something to send: output it on the next poll."""
        self._dirty[sock] = None

    def forget(self, sock: TcpSocket) -> None:
        if self.conns.get(sock.key) is sock:
            del self.conns[sock.key]
        self._dirty.pop(sock, None)
        lst = sock.listener
        if isinstance(lst, Listener):
            lst.embryonic.discard(sock)
            if sock in lst.queue:
                lst.queue.remove(sock)

    def accepted(self, sock: TcpSocket) -> None:
        lst = sock.listener
        if not isinstance(lst, Listener):
            return
        lst.embryonic.discard(sock)
        self.counters["tcp.accepted"] += 1
        if lst.on_accept is not None:
            lst.on_accept(sock)
            # data that came before the handshake completed (TFO data in the SYN) was
            # buffered with no one to tell: the callbacks only exist from now on
            if sock.readable and sock.on_readable is not None:
                sock.on_readable(sock)
        else:
            lst.queue.append(sock)

    def isn(self, now: int, key: tuple[bytes, int, bytes, int], cfg: TcpConfig) -> int:
        """RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 µs
        timer, F a keyed hash. The "counter" mode models stacks with a predictable ISN."""
        if cfg.isn == "counter":
            self._isn_counter = (self._isn_counter + 64000) & MASK
            return self._isn_counter
        h = hashlib.blake2b(
            key[0] + key[1].to_bytes(2, "big") + key[2] + key[3].to_bytes(2, "big"),
            key=self._isn_key,
            digest_size=4,
        )
        return (now // 4 + int.from_bytes(h.digest(), "big")) & MASK

    def tfo_cookie(self, client: bytes) -> bytes:
        """RFC 7413 4.1.2: a MAC of the client's address under a server secret (8 bytes)."""
        return hashlib.blake2b(client, key=self._tfo_key, digest_size=8).digest()

    def transmit(
        self,
        now: int,
        sock: TcpSocket | None,
        hdr: TcpHeader,
        payload: bytes | bytearray | memoryview,
        ecn: int,
        injected: bool = False,
    ) -> None:
        """Put a socket's segment on the wire, through the hooks when there are any."""
        if sock is not None:
            src, dst = sock.local, sock.remote
            hook = sock.hook
            seglog = sock.log
        else:
            raise ValueError("transmit needs a socket; use send_segment for raw segments")
        if hook is None and self.hook is None and seglog is None:
            self._send(now, src, dst, hdr, payload, ecn)
            return
        seg = Segment(src, dst, hdr, bytes(payload), ecn)
        results = self._apply_hooks(now, "out", sock, seg)
        if seglog is not None:
            action = "inject" if injected else _action(results, seg)
            seglog.append(SegmentRecord.of(now, "out", seg, action))
        self._dispatch(now, "out", sock, seg, results)

    def send_segment(self, now: int, seg: Segment) -> None:
        """Send a raw segment (probe injection without a connection), bypassing the hooks."""
        self.counters["tcp.tx.injected"] += 1
        self._send(now, seg.src, seg.dst, seg.hdr, seg.payload, seg.ecn)

    def _send(
        self,
        now: int,
        src: bytes,
        dst: bytes,
        hdr: TcpHeader,
        payload: bytes | bytearray | memoryview,
        ecn: int,
    ) -> None:
        hlen = hdr.header_len
        n = len(payload)
        buf = bytearray(hlen + n)
        if n:
            buf[hlen:] = payload
        hdr.emit(buf, 0, src, dst, n)
        self.counters["tcp.tx.segments"] += 1
        self.iface.send_ip(now, dst, IpProto.TCP, buf, src=src, tos=ecn)

    # ================================================================== hooks

    def _apply_hooks(
        self, now: int, direction: Direction, sock: TcpSocket | None, seg: Segment
    ) -> list[tuple[int, Segment]]:
        hooks: list[SegmentHook] = []
        # outbound: the socket's hook first, then the layer's; inbound the other way round
        if direction == "out":
            hooks = [h for h in (sock.hook if sock else None, self.hook) if h is not None]
        else:
            hooks = [h for h in (self.hook, sock.hook if sock else None) if h is not None]
        items: list[tuple[int, Segment]] = [(0, seg)]
        for hook in hooks:
            nxt: list[tuple[int, Segment]] = []
            for delay, s in items:
                try:
                    res = hook(now, direction, sock, s)
                except Exception:
                    self.counters["tcp.hook-error"] += 1
                    log.exception("TCP hook failed; segment passed unchanged")
                    res = None
                if res is None:
                    nxt.append((delay, s))
                else:
                    nxt.extend((delay + d, s2) for d, s2 in res)
            items = nxt
        return items

    def _dispatch(
        self,
        now: int,
        direction: Direction,
        sock: TcpSocket | None,
        seg: Segment,
        results: list[tuple[int, Segment]],
    ) -> None:
        for delay, s in results:
            if delay > 0:
                heapq.heappush(self._held, (now + delay, next(self._held_n), direction, s, sock))
            elif direction == "out":
                self._send(now, s.src, s.dst, s.hdr, s.payload, s.ecn)
            elif sock is not None:
                sock.input(now, s)
            else:
                self._demux(now, s)

    # ================================================================== input

    def _input(
        self, now: int, src: bytes, dst: bytes, payload: memoryview, packet: memoryview
    ) -> bool:
        self.now = now
        try:
            hdr, data = TcpHeader.parse(payload, src, dst)
        except Malformed as exc:
            self.counters["rx.malformed"] += 1
            self.counters[f"rx.malformed.tcp.{exc.reason}"] += 1
            return True
        self.counters["tcp.rx.segments"] += 1
        if len(dst) == 4:
            ecn = packet[1] & 3
            if dst[0] >= 0xE0 or dst == b"\xff\xff\xff\xff" or src[0] >= 0xE0:
                self.counters["tcp.rx.drop.not-unicast"] += 1
                return True
        else:
            ecn = (packet[1] >> 4) & 3
            if dst[0] == 0xFF or src[0] == 0xFF:
                self.counters["tcp.rx.drop.not-unicast"] += 1
                return True
        seg = Segment(src, dst, hdr, data, ecn)  # type: ignore[arg-type]
        if self.hook is not None:
            seg.payload = bytes(data)
            results = self._apply_hooks(now, "in", None, seg)
            self._dispatch(now, "in", None, seg, results)
        else:
            self._demux(now, seg)
        return True

    def _demux(self, now: int, seg: Segment) -> None:
        hdr = seg.hdr
        key = (seg.dst, hdr.dst_port, seg.src, hdr.src_port)
        sock = self.conns.get(key)
        if sock is not None:
            if (
                sock.state is TIME_WAIT
                and hdr.flags & (SYN | ACK | RST) == SYN
                and _seq_gt(hdr.seq, sock.rcv_seq)
                and self._listener_for(seg) is not None
            ):
                # RFC 9293 3.6.1 / RFC 6191: a new SYN above the old sequence space may reopen
                self.counters["tcp.time-wait.reused"] += 1
                sock._enter_closed(None)
            else:
                if sock.hook is not None:
                    if type(seg.payload) is not bytes:
                        seg.payload = bytes(seg.payload)
                    results = self._apply_hooks(now, "in", sock, seg)
                    if sock.log is not None and _action(results, seg) != "pass":
                        sock.log.append(SegmentRecord.of(now, "in", seg, _action(results, seg)))
                    # logged again by input() when processed
                    for delay, s in results:
                        if delay > 0:
                            heapq.heappush(
                                self._held, (now + delay, next(self._held_n), "in", s, sock)
                            )
                        else:
                            sock.input(now, s)
                else:
                    sock.input(now, seg)
                return
        lst = self._listener_for(seg)
        if lst is not None:
            self._listen_input(now, lst, seg)
            return
        self._closed_input(now, seg)

    def _listener_for(self, seg: Segment) -> Listener | None:
        port = seg.hdr.dst_port
        lst = self.listeners.get((seg.dst, port)) or self.listeners.get((None, port))
        return lst if lst is not None and lst.open else None

    def _listen_input(self, now: int, lst: Listener, seg: Segment) -> None:
        """RFC 9293 3.10.7.2 (LISTEN state)."""
        hdr = seg.hdr
        flags = hdr.flags
        if flags & RST:
            return
        if flags & ACK:
            self._reset_for(now, seg)
            return
        if not flags & SYN:
            self.counters["tcp.rx.drop.listen-no-syn"] += 1
            return
        cfg = lst.config
        if lst.full or len(self.conns) >= cfg.max_connections:
            lst.dropped += 1
            self.counters["tcp.listen.overflow"] += 1
            return
        key = (seg.dst, hdr.dst_port, seg.src, hdr.src_port)
        sock = TcpSocket(self, cfg, seg.dst, hdr.dst_port, seg.src, hdr.src_port)
        sock.listener = lst
        sock.hook = lst.hook
        if lst.record:
            sock.log = [SegmentRecord.of(now, "in", seg)]
        lst.embryonic.add(sock)
        self.conns[key] = sock
        if type(seg.payload) is not bytes:
            seg.payload = bytes(seg.payload)
        sock.open_passive(now, self.isn(now, key, cfg), seg)

    def _closed_input(self, now: int, seg: Segment) -> None:
        self.counters["tcp.rx.closed-port"] += 1
        if seg.hdr.flags & RST:
            return
        self._reset_for(now, seg)

    def _reset_for(self, now: int, seg: Segment) -> None:
        """RFC 9293 3.10.7.1: RST <SEQ=SEG.ACK> if ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN>."""
        hdr = seg.hdr
        if hdr.flags & ACK:
            rst = TcpHeader(hdr.dst_port, hdr.src_port, hdr.ack, 0, RST, 0)
        else:
            ack = (hdr.seq + seg.seg_len) & MASK
            rst = TcpHeader(hdr.dst_port, hdr.src_port, 0, ack, RST | ACK, 0)
        self.counters["tcp.tx.rst"] += 1
        self._send(now, seg.dst, seg.src, rst, b"", 0)

    # ================================================================== poller

    def poll(self, now: int) -> None:
        self.now = now
        held = self._held
        while held and held[0][0] <= now:
            _, _, direction, seg, sock = heapq.heappop(held)
            if direction == "out":
                self._send(now, seg.src, seg.dst, seg.hdr, seg.payload, seg.ecn)
            elif sock is not None and sock.state is not CLOSED:
                sock.input(now, seg)
            else:
                self._demux(now, seg)
        if self._dirty:
            dirty = list(self._dirty)
            self._dirty.clear()
            for sock in dirty:
                sock._output(now)
        for sock in list(self.conns.values()):
            t = sock.poll_at()
            if t is not None and t <= now:
                sock.poll(now)

    def poll_at(self) -> int | None:
        if self._dirty:
            return self.now
        best = self._held[0][0] if self._held else None
        for sock in self.conns.values():
            t = sock.poll_at()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _ephemeral(self, src: bytes, dst: bytes, port: int) -> int:
        for _ in range(1000):
            p = self.rng.randrange(*EPHEMERAL)
            if (src, p, dst, port) not in self.conns and (None, p) not in self.listeners:
                return p
        raise OSError("no free ephemeral port")

    def state_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.conns.values():
            out[s.state.value] = out.get(s.state.value, 0) + 1
        return out


def _seq_gt(a: int, b: int) -> bool:
    d = (a - b) & MASK
    return 0 < d < 0x80000000


def _action(results: list[tuple[int, Segment]], seg: Segment) -> str:
    if not results:
        return "drop"
    if len(results) > 1:
        return "dup"
    delay, s = results[0]
    if delay > 0:
        return "delay"
    return "pass" if s is seg else "rewrite"


__all__ = ["Listener", "State", "TcpLayer", "TcpSocket"]
