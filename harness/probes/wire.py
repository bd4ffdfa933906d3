"""The tester's wire: raw Ethernet frames in and out, with the times the wire saw them.

A probe plays the TCP peer from the raw side. What it needs from the link is deliberately small
(:class:`Wire`): send a frame, receive the next frame until a deadline, and a clock. Every time
a probe reasons with comes from the wire -- the capture timestamp of a received frame, the
transmit timestamp ``send`` returns -- never from a Python clock read around a call, so a live
wire (AF_PACKET with kernel timestamps on a lab tester interface) and the virtual one here
measure the same thing.

* :class:`Wire` -- the protocol. Times are integer microseconds in the wire's own time base
  (virtual time, or the capture clock of a live interface).
* :class:`WireInfo` -- who is who on the link: tester and target addresses, family, MTU.
* :class:`Link` -- the tester's side of the link on top of any wire: builds Ethernet + IPv4/IPv6
  + TCP frames with the ``stack.wire`` codecs, parses what comes back, answers the target's ARP
  requests and neighbour solicitations for the tester address, resolves the target's MAC if it
  is not known, and records every frame that is not TCP for the tester (a probe may look).
* :class:`VirtualWire` -- a wire whose far end is the reference stack (``Interface`` +
  ``TcpLayer`` with a profile and the echo/discard/chargen services) over an in-memory pipe in
  virtual time: ``recv`` advances the clock until a frame arrives or the deadline passes, so
  a script with RTO back-off over minutes runs in milliseconds and identically every time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stack.iface import Interface, InterfaceConfig
from stack.phy.pipe import PipePair
from stack.services import parse_services, start_services
from stack.tcp.layer import TcpLayer
from stack.tcp.profile import TcpConfig, profile
from stack.tcp.socket import TcpSocket
from stack.time import VirtualClock
from stack.wire import addr as A
from stack.wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket
from stack.wire.errors import Malformed
from stack.wire.ethernet import EthernetHeader
from stack.wire.icmpv6 import (
    ND_NA,
    ND_NS,
    SOURCE_LLADDR,
    TARGET_LLADDR,
    Icmpv6Message,
    NdpOption,
    NeighborAdvert,
    NeighborSolicit,
    find_lladdr,
)
from stack.wire.ipv4 import Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from stack.wire.link import EtherType, IpProto
from stack.wire.tcp import TcpHeader

__all__ = [
    "TARGET_MAC",
    "TESTER_MAC",
    "Link",
    "OtherFrame",
    "Packet",
    "VirtualWire",
    "Wire",
    "WireInfo",
]

TESTER_MAC = bytes.fromhex("020000000001")
TARGET_MAC = bytes.fromhex("020000000002")
TESTER4 = A.ip_parse("192.0.2.1")
TARGET4 = A.ip_parse("192.0.2.2")
TESTER6 = A.ip_parse("2001:db8::1")
TARGET6 = A.ip_parse("2001:db8::2")


@dataclass(slots=True)
class WireInfo:
    """The link as the tester sees it.

    ``target_mac`` None: :class:`Link` resolves it with ARP / a neighbour solicitation before
    the first frame. ``answer_neighbors``: whether the tester side answers the target's ARP
    requests and solicitations for ``tester_ip`` (False where a kernel owns the tester address
    and answers them itself).
    """

    family: int  # 4 or 6
    tester_mac: bytes
    tester_ip: bytes
    target_ip: bytes
    target_mac: bytes | None = None
    mtu: int = 1500
    answer_neighbors: bool = True

    def __post_init__(self) -> None:
        size = 4 if self.family == 4 else 16
        if self.family not in (4, 6) or len(self.tester_ip) != size or len(self.target_ip) != size:
            raise ValueError(f"family {self.family} does not match the addresses")


class Wire(Protocol):
    """A link the tester sends and captures raw frames on.

    * ``now_us()`` -- the current time in the wire's time base (the one capture timestamps use).
    * ``send(frame)`` -- put one Ethernet frame on the link *now*; returns its transmit time.
    * ``recv(until_us)`` -- the next captured frame as ``(capture time, frame)``, waiting (a live
      wire) or advancing virtual time (a virtual one) until it arrives or until ``until_us`` has
      passed, then ``None``. A deadline in the past returns an already captured frame or None
      without waiting. This is also how a script sleeps: frames arriving meanwhile are kept in
      order, never lost, and each keeps its own capture time.
    * ``close()`` -- release the link.
    """

    info: WireInfo

    def now_us(self) -> int: ...

    def send(self, frame: bytes) -> int: ...

    def recv(self, until_us: int) -> tuple[int, bytes] | None: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------ frames


@dataclass(slots=True)
class Packet:
    """A TCP segment from the target to the tester, as captured (``t_us`` in wire time)."""

    t_us: int
    src: bytes
    dst: bytes
    hdr: TcpHeader
    payload: bytes
    ecn: int
    ttl: int
    frame: bytes


@dataclass(slots=True)
class OtherFrame:
    """Any frame that is not a TCP segment for the tester, with what the link made of it."""

    t_us: int
    what: str
    frame: bytes


class Link:
    """The tester's end of a :class:`Wire`: TCP frames built and parsed, neighbours answered.

    ``recv_tcp`` returns only TCP segments from the target to the tester; ARP and neighbour
    discovery for the tester address are answered on the way (when ``info.answer_neighbors``),
    the target's MAC is learned from its replies or its frames, and everything else lands in
    ``others`` (bounded) so a probe can still inspect it.
    """

    def __init__(self, wire: Wire, keep_others: int = 256) -> None:
        self.wire = wire
        self.info = wire.info
        self.target_mac: bytes | None = wire.info.target_mac
        self.others: deque[OtherFrame] = deque(maxlen=keep_others)
        self.sent_frames = 0
        self._queued: deque[Packet] = deque()

    # ------------------------------------------------------------------ send

    def send_tcp(
        self,
        hdr: TcpHeader,
        payload: bytes = b"",
        ecn: int = 0,
        ttl: int = 64,
        bad_checksum: bool = False,
    ) -> int:
        """Send one segment from the tester to the target; returns the wire's transmit time."""
        src, dst = self.info.tester_ip, self.info.target_ip
        l4 = bytearray(hdr.to_bytes(src, dst, payload))
        if bad_checksum:
            l4[16] ^= 0xFF
        return self.send_l4(bytes(l4), IpProto.TCP, ecn, ttl)

    def send_l4(self, l4: bytes, proto: int = IpProto.TCP, ecn: int = 0, ttl: int = 64) -> int:
        """Send ``l4`` verbatim inside an IP packet to the target (malformed segments too)."""
        src, dst = self.info.tester_ip, self.info.target_ip
        if self.info.family == 4:
            ip4 = Ipv4Header(src, dst, proto, len(l4), ttl, 0, True, False, 0, ecn & 3)
            packet = ip4.to_bytes(l4)
            ethertype = EtherType.IPV4
        else:
            packet = Ipv6Header(src, dst, proto, len(l4), ttl, ecn & 3).to_bytes(l4)
            ethertype = EtherType.IPV6
        return self._send_eth(self.resolve(), ethertype, packet)

    def _send_eth(self, dst_mac: bytes, ethertype: int, payload: bytes) -> int:
        frame = EthernetHeader(dst_mac, self.info.tester_mac, ethertype).to_bytes(payload)
        self.sent_frames += 1
        return self.wire.send(frame)

    # ------------------------------------------------------------------ neighbours

    def resolve(self, timeout_us: int = 3_000_000, tries: int = 3) -> bytes:
        """The target's MAC, asking for it (ARP request / neighbour solicitation) if unknown."""
        if self.target_mac is not None:
            return self.target_mac
        for _ in range(tries):
            self._solicit()
            deadline = self.wire.now_us() + timeout_us // tries
            while self.target_mac is None:
                got = self.wire.recv(deadline)
                if got is None:
                    break
                pkt = self._handle(*got)
                if pkt is not None:
                    self._queued.append(pkt)
            if self.target_mac is not None:
                return self.target_mac
        raise TimeoutError(f"the target {A.ip_str(self.info.target_ip)} does not answer ARP/NDP")

    def _solicit(self) -> None:
        info = self.info
        if info.family == 4:
            arp = ArpPacket(
                ARP_REQUEST, info.tester_mac, info.tester_ip, A.ZERO_MAC, info.target_ip
            )
            self._send_eth(A.BROADCAST_MAC, EtherType.ARP, arp.to_bytes())
        else:
            group = A.solicited_node(info.target_ip)
            ns = NeighborSolicit(info.target_ip, [NdpOption(SOURCE_LLADDR, info.tester_mac)])
            body = ns.to_message().to_bytes(info.tester_ip, group)
            packet = Ipv6Header(info.tester_ip, group, IpProto.ICMPV6, len(body), 255).to_bytes(
                body
            )
            self._send_eth(A.ipv6_multicast_mac(group), EtherType.IPV6, packet)

    # ------------------------------------------------------------------ receive

    def recv_tcp(self, until_us: int) -> Packet | None:
        """The next TCP segment from the target to the tester, or None once ``until_us`` passed."""
        if self._queued:
            return self._queued.popleft()
        while (got := self.wire.recv(until_us)) is not None:
            pkt = self._handle(*got)
            if pkt is not None:
                return pkt
        return None

    def _other(self, t_us: int, what: str, frame: bytes) -> None:
        self.others.append(OtherFrame(t_us, what, frame))

    def _handle(self, t_us: int, frame: bytes) -> Packet | None:
        info = self.info
        try:
            eth, payload = EthernetHeader.parse(frame)
        except Malformed as exc:
            self._other(t_us, f"malformed ethernet: {exc}", frame)
            return None
        if bytes(eth.src) == info.tester_mac:
            return None  # our own frame, as a capture on the tester's interface also sees it
        dst_mac = bytes(eth.dst)
        if dst_mac != info.tester_mac and not dst_mac[0] & 1:
            self._other(t_us, "not for the tester's MAC", frame)
            return None
        try:
            if eth.ethertype == EtherType.ARP:
                self._arp(t_us, payload, frame)
                return None
            if eth.ethertype == EtherType.IPV4 and info.family == 4:
                return self._ipv4(t_us, bytes(eth.src), payload, frame)
            if eth.ethertype == EtherType.IPV6 and info.family == 6:
                return self._ipv6(t_us, bytes(eth.src), payload, frame)
        except Malformed as exc:
            self._other(t_us, f"malformed: {exc}", frame)
            return None
        names: dict[int, str] = {EtherType.IPV4: "ipv4", EtherType.IPV6: "ipv6"}
        name = names.get(eth.ethertype, f"ethertype 0x{eth.ethertype:04x}")
        self._other(t_us, f"{name} frame (not the script's IPv{info.family})", frame)
        return None

    def _arp(self, t_us: int, payload: memoryview, frame: bytes) -> None:
        info = self.info
        arp, _ = ArpPacket.parse(payload)
        sender_ip, sender_mac = bytes(arp.sender_ip), bytes(arp.sender_mac)
        if sender_ip == info.target_ip and info.family == 4:
            self.target_mac = sender_mac
        if arp.op == ARP_REQUEST and bytes(arp.target_ip) == info.tester_ip:
            self._other(t_us, "arp request for the tester (answered)", frame)
            if info.answer_neighbors:
                reply = ArpPacket(ARP_REPLY, info.tester_mac, info.tester_ip, sender_mac, sender_ip)
                self._send_eth(sender_mac, EtherType.ARP, reply.to_bytes())
            return
        what = {ARP_REQUEST: "request", ARP_REPLY: "reply"}.get(arp.op, f"op {arp.op}")
        self._other(
            t_us, f"arp {what} {A.ip_str(sender_ip)} about {A.ip_str(bytes(arp.target_ip))}", frame
        )

    def _ipv4(self, t_us: int, src_mac: bytes, payload: memoryview, frame: bytes) -> Packet | None:
        info = self.info
        ip, l4 = Ipv4Header.parse(payload)
        src, dst = bytes(ip.src), bytes(ip.dst)
        if ip.protocol != IpProto.TCP or src != info.target_ip or dst != info.tester_ip:
            self._other(
                t_us, f"ipv4 protocol {ip.protocol} {A.ip_str(src)} > {A.ip_str(dst)}", frame
            )
            return None
        if ip.is_fragment:
            self._other(t_us, "ipv4 fragment (not reassembled by the tester)", frame)
            return None
        return self._tcp(t_us, src_mac, src, dst, l4, ip.tos & 3, ip.ttl, frame)

    def _ipv6(self, t_us: int, src_mac: bytes, payload: memoryview, frame: bytes) -> Packet | None:
        info = self.info
        ip, l4 = Ipv6Header.parse(payload)
        src, dst = bytes(ip.src), bytes(ip.dst)
        if ip.next_header == IpProto.ICMPV6:
            self._icmpv6(t_us, src, dst, l4, frame)
            return None
        if ip.next_header != IpProto.TCP or src != info.target_ip or dst != info.tester_ip:
            self._other(
                t_us, f"ipv6 next header {ip.next_header} {A.ip_str(src)} > {A.ip_str(dst)}", frame
            )
            return None
        return self._tcp(t_us, src_mac, src, dst, l4, ip.traffic_class & 3, ip.hop_limit, frame)

    def _icmpv6(self, t_us: int, src: bytes, dst: bytes, l4: memoryview, frame: bytes) -> None:
        info = self.info
        msg, _ = Icmpv6Message.parse(l4, src, dst)
        if msg.type == ND_NS:
            ns = NeighborSolicit.from_message(msg)
            if bytes(ns.target) == info.tester_ip and src != A.IPV6_ANY:
                self._other(t_us, "neighbour solicitation for the tester (answered)", frame)
                mac = find_lladdr(ns.options, SOURCE_LLADDR)
                if src == info.target_ip and mac is not None:
                    self.target_mac = mac
                if info.answer_neighbors and mac is not None:
                    na = NeighborAdvert(
                        info.tester_ip,
                        False,
                        True,
                        True,
                        [NdpOption(TARGET_LLADDR, info.tester_mac)],
                    )
                    body = na.to_message().to_bytes(info.tester_ip, src)
                    packet = Ipv6Header(info.tester_ip, src, IpProto.ICMPV6, len(body), 255)
                    self._send_eth(mac, EtherType.IPV6, packet.to_bytes(body))
                return
        elif msg.type == ND_NA:
            na = NeighborAdvert.from_message(msg)
            mac = find_lladdr(na.options, TARGET_LLADDR)
            if bytes(na.target) == info.target_ip and mac is not None:
                self.target_mac = mac
        self._other(t_us, f"icmpv6 type {msg.type} {A.ip_str(src)} > {A.ip_str(dst)}", frame)

    def _tcp(
        self,
        t_us: int,
        src_mac: bytes,
        src: bytes,
        dst: bytes,
        l4: memoryview,
        ecn: int,
        ttl: int,
        frame: bytes,
    ) -> Packet | None:
        try:
            hdr, payload = TcpHeader.parse(l4, src, dst)
        except Malformed as exc:
            self._other(t_us, f"malformed tcp: {exc}", frame)
            return None
        if self.target_mac is None:
            self.target_mac = src_mac
        return Packet(t_us, src, dst, hdr, bytes(payload), ecn, ttl, frame)


# ------------------------------------------------------------------------ virtual wire


class VirtualWire:
    """A :class:`Wire` whose far end is the reference stack, in virtual time.

    The target is an :class:`~stack.iface.Interface` with a :class:`~stack.tcp.layer.TcpLayer`
    configured by ``profile(name, **overrides)`` (or ``config``), offering ``services``
    (``echo:7,discard:9,chargen:19`` by default), joined to the tester by a
    :class:`~stack.phy.pipe.PipePair` with ``latency_us`` one way. ``recv`` runs the target
    like :func:`stack.phy.loop.run_virtual` does, but stops at the first frame reaching the
    tester. ``tcp`` and ``iface`` are exposed so a test can also drive the target's own side
    (``connect`` for an active open, hooks, counters).

    ``target_mac_known=False`` leaves ``info.target_mac`` unset, so the tester resolves it as it
    would on an unknown board (or learns it from the gratuitous ARP the target sends when its
    IPv4 address comes up, unless ``announce=False``).
    """

    MAX_ROUNDS_PER_INSTANT = 10_000

    def __init__(
        self,
        profile_name: str = "full",
        family: int = 4,
        services: str = "echo:7,discard:9,chargen:19",
        *,
        overrides: Mapping[str, Any] | None = None,
        config: TcpConfig | None = None,
        latency_us: int = 0,
        mtu: int = 1500,
        seed: int = 1,
        start_us: int = 0,
        target_mac_known: bool = True,
        announce: bool = True,
    ) -> None:
        self.clock = VirtualClock(start_us)
        self.pair = PipePair(self.clock, latency_us=latency_us, mtu=mtu)
        self.tester_end, self.target_end = self.pair.a, self.pair.b
        self.iface = Interface(InterfaceConfig(mac=TARGET_MAC, mtu=mtu, seed=seed))
        self.iface.now = start_us
        if family == 4:
            self.iface.add_ipv4(TARGET4, 24, announce=announce)
            tester_ip, target_ip = TESTER4, TARGET4
        elif family == 6:
            self.iface.add_ipv6(TARGET6, 64, dad=False)
            tester_ip, target_ip = TESTER6, TARGET6
        else:
            raise ValueError(f"family must be 4 or 6, not {family}")
        self.config = config or profile(profile_name, **dict(overrides or {}))
        self.tcp = TcpLayer(self.iface, self.config)
        self.services = start_services(self.iface, parse_services(services), self.tcp)
        self.info = WireInfo(
            family, TESTER_MAC, tester_ip, target_ip, TARGET_MAC if target_mac_known else None, mtu
        )

    def now_us(self) -> int:
        return self.clock.now()

    def send(self, frame: bytes) -> int:
        return self.tester_end.send(frame) // 1000

    def recv(self, until_us: int) -> tuple[int, bytes] | None:
        while True:
            self._settle()
            got = self.tester_end.recv()
            if got is not None:
                return got[0] // 1000, got[1]
            now = self.clock.now()
            times = [
                t
                for t in (self.iface.poll_at(), self.pair.poll_at())
                if t is not None and t <= until_us
            ]
            if not times:
                if now >= until_us:
                    return None
                self.clock.advance_to(until_us)
                continue
            # A deadline at or before now after a quiet round would spin; step past it.
            nxt = max(min(times), now + 1)
            if nxt > until_us:
                if now >= until_us:
                    return None
                nxt = until_us
            self.clock.advance_to(nxt)

    def _settle(self) -> None:
        """Deliver what reached the target and send what it queued, until quiet at this instant.

        Frames to the tester stay in the pipe, so their capture time is their arrival time.
        """
        now = self.clock.now()
        for _ in range(self.MAX_ROUNDS_PER_INSTANT):
            progress = False
            while (got := self.target_end.recv()) is not None:
                self.iface.receive(now, got[1])
                progress = True
            out = self.iface.poll(now)
            for frame in out:
                self.target_end.send(frame)
            progress = progress or bool(out)
            if not progress:
                return
        raise RuntimeError(f"livelock at t={now}us: the target keeps sending at one instant")

    def connect(self, port: int, data: bytes = b"") -> TcpSocket:
        """Active open from the target to the tester (what an on-target RPC would do)."""
        return self.tcp.connect(self.clock.now(), self.info.tester_ip, port, data=data)

    def close(self) -> None:
        self.tester_end.close()
        self.target_end.close()
