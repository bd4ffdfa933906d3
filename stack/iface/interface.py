"""The sans-IO network interface: frames and the time in, frames and the next deadline out.

``Interface`` owns one link: its hardware address, IPv4/IPv6 addresses, neighbour cache,
routes, fragment reassembly, ICMP and UDP sockets, and dispatches other IP protocols (TCP) to
registered handlers. It never reads a clock or touches a device: the driver calls

* ``receive(now, frame)`` for every inbound frame,
* ``poll(now)`` to run due timers and collect the frames to transmit,
* ``poll_at()`` to learn when it must be polled next.

Every malformed or unwanted frame is counted in ``counters`` (key ``rx.malformed.<layer>.<reason>``
or ``rx.drop.<reason>``) and the last few are kept in ``recent_drops`` so a user can see *why*
without turning on logging. No input frame can make ``receive`` raise: codec errors are counted,
and an unexpected exception (a bug of ours) is counted as ``internal-error`` and logged with its
traceback -- the fuzz tests assert that counter stays zero.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from stack.iface.neighbor import NeighborCache, NeighborConfig
from stack.iface.ratelimit import TokenBucket
from stack.iface.reassembly import Reassembler, ReassemblyConfig
from stack.iface.route import Routes, network_of
from stack.rand import Rng
from stack.time import SECOND
from stack.wire import addr as A
from stack.wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket
from stack.wire.errors import Malformed
from stack.wire.ethernet import EthernetHeader
from stack.wire.icmpv4 import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    Icmpv4Message,
)
from stack.wire.icmpv6 import (
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REQUEST,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_PARAM_PROBLEM,
    ICMP6_TIME_EXCEEDED,
    ND_NA,
    ND_NS,
    SOURCE_LLADDR,
    TARGET_LLADDR,
    Icmpv6Message,
    NdpOption,
    NeighborAdvert,
    NeighborSolicit,
    parse_ndp,
)
from stack.wire.ipv4 import Ipv4Header
from stack.wire.ipv6 import Ipv6Fragment, Ipv6Header, Ipv6Options, Ipv6Routing, walk_extensions
from stack.wire.link import EtherType, IpProto, LinkType
from stack.wire.udp import UdpHeader

log = logging.getLogger("tcp_hil.stack.iface")

Buffer = bytes | bytearray | memoryview
L4Builder = bytes | bytearray | Callable[[bytes, bytes], bytes | bytearray]

_V4_MAPPED_MCAST = b"\x01\x00\x5e"
_IPV4_HDR = 20
_IPV6_HDR = 40
_IPV6_MIN_MTU = 1280
_ICMPV4_ERROR_MAX = 576  # RFC 1812 4.3.2.3: as much of the original as fits in 576 bytes


@dataclass(slots=True)
class InterfaceConfig:
    """Everything a lab file or a profile may set about the IP layer of one interface."""

    mac: bytes = b"\x02\x00\x00\x00\x00\x01"
    link_type: LinkType = LinkType.ETHERNET
    mtu: int = 1500
    ttl: int = 64
    hop_limit: int = 64
    seed: int = 0
    ipv6_link_local: bool = True  # form fe80::/64 from the MAC (RFC 4862 5.3)
    dad_transmits: int = 1  # RFC 4862 DupAddrDetectTransmits; 0 disables DAD
    retrans_timer: int = 1 * SECOND  # RFC 4861 RetransTimer, paces DAD probes
    neighbor: NeighborConfig = field(default_factory=NeighborConfig)
    reassembly_v4: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    reassembly_v6: ReassemblyConfig = field(
        default_factory=lambda: ReassemblyConfig(timeout=60 * SECOND)  # RFC 8200 4.5
    )
    icmp_error_rate: float = 10.0  # ICMP errors per second (0 = unlimited)
    icmp_error_burst: int = 10
    answer_broadcast_ping: bool = False  # Linux icmp_echo_ignore_broadcasts=1
    vlan: int | None = None  # accept and send 802.1Q frames with this VID only
    promiscuous: bool = False


AddressState = Literal["tentative", "preferred", "duplicate"]


@dataclass(slots=True)
class Ipv4Address:
    addr: bytes
    prefix_len: int

    @property
    def broadcast(self) -> bytes:
        host_bits = 32 - self.prefix_len
        net = int.from_bytes(network_of(self.addr, self.prefix_len), "big")
        return (net | ((1 << host_bits) - 1)).to_bytes(4, "big")


@dataclass(slots=True)
class Ipv6Address:
    addr: bytes
    prefix_len: int
    state: AddressState = "preferred"
    dad_left: int = 0
    dad_next: int | None = None


@dataclass(slots=True)
class _Rx6:
    """What the IPv6 receive path carries from header to upper layer."""

    hop_limit: int
    src: bytes
    dst: bytes
    unicast: bool  # to one of our preferred addresses (not multicast)
    tentative: bool  # to one of our tentative addresses: only DAD traffic is processed
    packet: memoryview  # the whole IPv6 packet, for ICMPv6 errors quoting it


class IpHandler(Protocol):
    """What a transport protocol (TCP) registers to receive its packets."""

    def __call__(
        self, now: int, src: bytes, dst: bytes, payload: memoryview, packet: memoryview
    ) -> bool:
        """Return False when no endpoint exists (the interface then answers unreachable)."""
        ...


class Poller(Protocol):
    """A component with its own timers (TCP sockets) that the interface drives."""

    def poll(self, now: int) -> None: ...

    def poll_at(self) -> int | None: ...


class UdpSocket:
    """A UDP endpoint. Datagrams are delivered to ``on_recv`` or queued for ``recvfrom``."""

    def __init__(
        self,
        iface: Interface,
        port: int,
        addr: bytes | None,
        on_recv: Callable[[UdpSocket, bytes, tuple[bytes, int]], None] | None,
        queue_limit: int,
    ) -> None:
        self.iface = iface
        self.port = port
        self.addr = addr
        self.on_recv = on_recv
        self._queue: deque[tuple[bytes, tuple[bytes, int]]] = deque()
        self._queue_limit = queue_limit
        self.dropped = 0

    def _deliver(self, data: bytes, src: tuple[bytes, int]) -> None:
        if self.on_recv is not None:
            self.on_recv(self, data, src)
            return
        if len(self._queue) >= self._queue_limit:
            self.dropped += 1
            return
        self._queue.append((data, src))

    def recvfrom(self) -> tuple[bytes, tuple[bytes, int]] | None:
        return self._queue.popleft() if self._queue else None

    def sendto(self, data: Buffer, dst: tuple[bytes, int], src: bytes | None = None) -> bool:
        """Queue a datagram; False when it cannot be sent (no route, too big with DF)."""
        return self.iface.send_udp(
            self.iface.now, src or self.addr, self.port, dst[0], dst[1], data
        )

    def close(self) -> None:
        self.iface._udp.pop((self.addr, self.port), None)


class Interface:
    def __init__(self, config: InterfaceConfig | None = None, rng: Rng | None = None) -> None:
        self.config = cfg = config or InterfaceConfig()
        self.rng = rng or Rng(cfg.seed)
        self.mac = cfg.mac
        self.now = 0
        self.counters: Counter[str] = Counter()
        self.recent_drops: deque[tuple[int, str, bytes]] = deque(maxlen=32)
        self.ipv4: list[Ipv4Address] = []
        self.ipv6: list[Ipv6Address] = []
        self.routes4 = Routes()
        self.routes6 = Routes()
        self._nh_cache: dict[bytes, bytes | None] = {}
        self._nh_stamp: tuple[int, int, int, int] = (-1, -1, -1, -1)
        self.neighbors = NeighborCache(cfg.neighbor)
        self._reasm4 = Reassembler(cfg.reassembly_v4)
        self._reasm6 = Reassembler(cfg.reassembly_v6)
        self._icmp_bucket = TokenBucket(cfg.icmp_error_rate, cfg.icmp_error_burst)
        self._ip_ident = self.rng.u16()
        self._frag6_ident = self.rng.u32()
        self._udp: dict[tuple[bytes | None, int], UdpSocket] = {}
        self._handlers: dict[int, IpHandler] = {}
        self._pollers: list[Poller] = []
        self._tx: list[bytearray] = []
        self._v4_local: set[bytes] = set()
        self._v4_bcast: set[bytes] = {A.IPV4_BROADCAST}
        self._v6_local: set[bytes] = set()
        self._mcast_macs: set[bytes] = {A.BROADCAST_MAC}
        self._v6_groups: set[bytes] = set()
        self._join_v6(A.IPV6_ALL_NODES)
        if cfg.ipv6_link_local and cfg.link_type == LinkType.ETHERNET:
            self.add_ipv6(A.link_local_from_mac(self.mac), 64)

    # ------------------------------------------------------------------ configuration

    def add_ipv4(self, addr: bytes, prefix_len: int, announce: bool = True) -> Ipv4Address:
        entry = Ipv4Address(bytes(addr), prefix_len)
        self.ipv4.append(entry)
        self._v4_local.add(entry.addr)
        self._v4_bcast.add(entry.broadcast)
        if announce and self.config.link_type == LinkType.ETHERNET:
            self._send_arp(ARP_REQUEST, entry.addr, A.ZERO_MAC, entry.addr, A.BROADCAST_MAC)
        return entry

    def add_ipv6(self, addr: bytes, prefix_len: int, dad: bool = True) -> Ipv6Address:
        addr = bytes(addr)
        dad_on = (
            dad and self.config.dad_transmits > 0 and self.config.link_type == LinkType.ETHERNET
        )
        entry = Ipv6Address(addr, prefix_len)
        if dad_on:
            entry.state = "tentative"
            entry.dad_left = self.config.dad_transmits
        else:
            self._v6_local.add(addr)
        self.ipv6.append(entry)
        self._join_v6(A.solicited_node(addr))
        return entry

    def set_gateway(self, gateway: bytes) -> None:
        gateway = bytes(gateway)
        if len(gateway) == 4:
            self.routes4.add(A.IPV4_ANY, 0, gateway)
        else:
            self.routes6.add(A.IPV6_ANY, 0, gateway)

    def _join_v6(self, group: bytes) -> None:
        self._v6_groups.add(group)
        self._mcast_macs.add(A.ipv6_multicast_mac(group))

    def register_protocol(self, protocol: int, handler: IpHandler) -> None:
        self._handlers[protocol] = handler

    def add_poller(self, poller: Poller) -> None:
        self._pollers.append(poller)

    def udp_bind(
        self,
        port: int,
        addr: bytes | None = None,
        on_recv: Callable[[UdpSocket, bytes, tuple[bytes, int]], None] | None = None,
        queue_limit: int = 64,
    ) -> UdpSocket:
        key = (bytes(addr) if addr else None, port)
        if key in self._udp:
            raise OSError(f"UDP port {port} already bound")
        sock = self._udp[key] = UdpSocket(self, port, key[0], on_recv, queue_limit)
        return sock

    def preferred_ipv6(self) -> list[bytes]:
        return [a.addr for a in self.ipv6 if a.state == "preferred"]

    # ------------------------------------------------------------------ sans-IO contract

    def receive(self, now: int, frame: Buffer) -> None:
        self.now = now
        self.counters["rx.frames"] += 1
        mv = memoryview(frame)
        try:
            if self.config.link_type == LinkType.ETHERNET:
                self._rx_ethernet(now, mv)
            elif self.config.link_type == LinkType.RAW_IP:
                self._rx_raw_ip(now, mv)
            else:
                self._drop("unsupported-link", mv)
        except Malformed as exc:  # a codec the handlers call without their own guard
            self._malformed("frame", exc, mv)
        except Exception:
            self.counters["internal-error"] += 1
            log.exception("internal error on frame %s", bytes(mv[:64]).hex())

    def poll(self, now: int) -> list[bytearray]:
        self.now = now
        try:
            self._poll_neighbors(now)
            self._poll_reassembly(now)
            self._poll_dad(now)
            for poller in self._pollers:
                poller.poll(now)
        except Exception:
            self.counters["internal-error"] += 1
            log.exception("internal error in poll")
        out, self._tx = self._tx, []
        self.counters["tx.frames"] += len(out)
        return out

    def poll_at(self) -> int | None:
        if self._tx:
            return self.now
        times = [
            self.neighbors.poll_at(),
            self._reasm4.poll_at(),
            self._reasm6.poll_at(),
            *(
                a.dad_next if a.dad_next is not None else self.now
                for a in self.ipv6
                if a.state == "tentative"
            ),
            *(p.poll_at() for p in self._pollers),
        ]
        valid = [t for t in times if t is not None]
        return min(valid) if valid else None

    # ------------------------------------------------------------------ drops and counters

    def _drop(self, reason: str, frame: Buffer | None = None) -> None:
        self.counters["rx.drop"] += 1
        self.counters[f"rx.drop.{reason}"] += 1
        if frame is not None:
            self.recent_drops.append((self.now, reason, bytes(frame[:64])))

    def _malformed(self, layer: str, exc: Malformed, frame: Buffer) -> None:
        self.counters["rx.malformed"] += 1
        self.counters[f"rx.malformed.{layer}.{exc.reason}"] += 1
        self.recent_drops.append((self.now, f"malformed {layer}: {exc}", bytes(frame[:64])))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("malformed %s (%s): %s", layer, exc, bytes(frame[:64]).hex())

    # ------------------------------------------------------------------ link layer

    def _rx_ethernet(self, now: int, frame: memoryview) -> None:
        try:
            eth, payload = EthernetHeader.parse(frame)
        except Malformed as exc:
            self._malformed("ethernet", exc, frame)
            return
        if eth.vlan_tci is not None:
            if self.config.vlan is None or (eth.vlan_tci & 0x0FFF) != self.config.vlan:
                self._drop("vlan", frame)
                return
        elif self.config.vlan is not None:
            self._drop("untagged", frame)
            return
        dst = eth.dst
        if dst != self.mac and dst not in self._mcast_macs and not self.config.promiscuous:
            self._drop("not-our-mac")
            return
        if eth.src == self.mac:
            self._drop("own-frame")
            return
        ethertype = eth.ethertype
        if ethertype == EtherType.IPV4:
            self._rx_ipv4(now, payload)
        elif ethertype == EtherType.IPV6:
            self._rx_ipv6(now, payload)
        elif ethertype == EtherType.ARP:
            self._rx_arp(now, payload)
        else:
            self._drop("unknown-ethertype", frame)

    def _rx_raw_ip(self, now: int, frame: memoryview) -> None:
        if not len(frame):
            self._drop("empty", frame)
            return
        version = frame[0] >> 4
        if version == 4:
            self._rx_ipv4(now, frame)
        elif version == 6:
            self._rx_ipv6(now, frame)
        else:
            self._drop("unknown-ip-version", frame)

    def _l2_frame(self, dst_mac: bytes, ethertype: int, packet: Buffer) -> bytearray:
        if self.config.link_type != LinkType.ETHERNET:
            return bytearray(packet)
        eth = EthernetHeader(dst_mac, self.mac, ethertype, self.config.vlan)
        hl = eth.header_len
        buf = bytearray(hl + len(packet))
        eth.emit(buf, 0)
        buf[hl:] = packet
        return buf

    def _queue(self, frame: bytearray) -> None:
        self._tx.append(frame)

    # ------------------------------------------------------------------ ARP

    def _send_arp(
        self, op: int, sender_ip: bytes, target_mac: bytes, target_ip: bytes, dst: bytes
    ) -> None:
        arp = ArpPacket(op, self.mac, sender_ip, target_mac, target_ip)
        buf = bytearray(arp.header_len)
        arp.emit(buf, 0)
        self._queue(self._l2_frame(dst, EtherType.ARP, buf))
        self.counters[f"tx.arp.{'request' if op == ARP_REQUEST else 'reply'}"] += 1

    def _rx_arp(self, now: int, payload: memoryview) -> None:
        try:
            arp, _ = ArpPacket.parse(payload)
        except Malformed as exc:
            self._malformed("arp", exc, payload)
            return
        self.counters["rx.arp"] += 1
        sender_ip = bytes(arp.sender_ip)
        target_ip = bytes(arp.target_ip)
        sender_mac = bytes(arp.sender_mac)
        if sender_ip in self._v4_local:
            self.counters["arp.conflict"] += 1
            log.warning("ARP: %s claims our address %s", A.mac_str(sender_mac), A.ip_str(sender_ip))
            return
        is_target = target_ip in self._v4_local
        if sender_ip != A.IPV4_ANY:
            # RFC 826: merge the sender into the table; create an entry only if we are the target
            ready = (self.neighbors.fill if is_target else self.neighbors.refresh)(
                now, sender_ip, sender_mac
            )
            self._flush_ready(ready, sender_mac)
        if arp.op == ARP_REQUEST and is_target:
            self._send_arp(ARP_REPLY, target_ip, sender_mac, sender_ip, sender_mac)

    def _flush_ready(self, ready: list[tuple[bytes, int]], mac: bytes) -> None:
        for packet, ethertype in ready:
            self._queue(self._l2_frame(mac, ethertype, packet))

    # ------------------------------------------------------------------ IPv4

    def _rx_ipv4(self, now: int, data: memoryview) -> None:
        try:
            ip, l4 = Ipv4Header.parse(data)
        except Malformed as exc:
            self._malformed("ipv4", exc, data)
            return
        self.counters["rx.ipv4"] += 1
        dst = bytes(ip.dst)
        src = bytes(ip.src)
        unicast = dst in self._v4_local
        if not unicast and dst not in self._v4_bcast and dst[0] & 0xF0 != 0xE0:
            self._drop("not-our-ip")
            return
        packet = data[: ip.header_len + ip.payload_len]
        if ip.more_frags or ip.frag_offset:
            res = self._reasm4.feed(
                now,
                (src, dst, ip.protocol, ip.ident),
                ip.frag_offset,
                ip.more_frags,
                bytes(l4),
                bytes(packet) if ip.frag_offset == 0 else None,
            )
            if res.dropped:
                self._drop(res.dropped, packet)
            if res.payload is None:
                return
            self.counters["rx.ipv4.reassembled"] += 1
            l4 = memoryview(res.payload)
            packet = memoryview(bytes(packet[: ip.header_len]) + res.payload)
        proto = ip.protocol
        if proto == IpProto.ICMP:
            self._rx_icmpv4(now, src, dst, unicast, l4, packet)
        elif proto == IpProto.UDP:
            self._rx_udp(now, src, dst, unicast, l4, packet)
        else:
            handler = self._handlers.get(proto)
            if handler is not None:
                handler(now, src, dst, l4, packet)  # the transport answers closed ports itself
            elif unicast:
                self._drop("unknown-protocol")
                self._icmpv4_error(now, ICMP_DEST_UNREACH, UNREACH_PROTOCOL, packet)
            else:
                self._drop("unknown-protocol")

    def _rx_icmpv4(
        self, now: int, src: bytes, dst: bytes, unicast: bool, l4: memoryview, packet: memoryview
    ) -> None:
        try:
            msg, _ = Icmpv4Message.parse(l4)
        except Malformed as exc:
            self._malformed("icmpv4", exc, l4)
            return
        self.counters[f"rx.icmpv4.type{msg.type}"] += 1
        if msg.type == ICMP_ECHO_REQUEST and msg.code == 0:
            if not unicast and not self.config.answer_broadcast_ping:
                self._drop("broadcast-ping")
                return
            reply = Icmpv4Message.echo_reply(msg.ident, msg.seq, bytes(msg.data))
            self.send_ip(now, src, IpProto.ICMP, reply.to_bytes(), src=dst if unicast else None)

    def _icmpv4_error(
        self, now: int, type_: int, code: int, packet: memoryview, mtu: int = 0
    ) -> None:
        """RFC 1122 3.2.2 / RFC 1812 4.3.2.7: never about errors, broadcasts or later fragments."""
        try:
            ip, l4 = Ipv4Header.parse(packet, verify_checksum=False)
        except Malformed:
            return
        src, dst = bytes(ip.src), bytes(ip.dst)
        if dst not in self._v4_local or ip.frag_offset:
            return
        if src == A.IPV4_ANY or src in self._v4_bcast or src[0] >= 0xE0 or src[0] == 127:
            return
        if ip.protocol == IpProto.ICMP and len(l4) and l4[0] not in (0, 8, 13, 14, 15, 16, 17, 18):
            return  # never an error about an ICMP error
        if not self._icmp_bucket.take(now):
            self.counters["tx.icmp.rate-limited"] += 1
            return
        invoking = bytes(packet[: _ICMPV4_ERROR_MAX - _IPV4_HDR - 8])
        if type_ == ICMP_DEST_UNREACH:
            msg = Icmpv4Message.dest_unreachable(code, invoking, mtu)
        elif type_ == ICMP_TIME_EXCEEDED:
            msg = Icmpv4Message.time_exceeded(code, invoking)
        else:
            msg = Icmpv4Message(type_, code, 0, invoking)
        self.counters[f"tx.icmpv4.type{type_}.code{code}"] += 1
        self.send_ip(now, src, IpProto.ICMP, msg.to_bytes(), src=dst)

    # ------------------------------------------------------------------ IPv6

    def _rx_ipv6(self, now: int, data: memoryview) -> None:
        try:
            ip, payload = Ipv6Header.parse(data)
        except Malformed as exc:
            self._malformed("ipv6", exc, data)
            return
        self.counters["rx.ipv6"] += 1
        src, dst = bytes(ip.src), bytes(ip.dst)
        unicast = dst in self._v6_local
        tentative = not unicast and any(a.addr == dst and a.state == "tentative" for a in self.ipv6)
        if not unicast and dst not in self._v6_groups and not tentative:
            self._drop("not-our-ip")
            return
        rx = _Rx6(ip.hop_limit, src, dst, unicast, tentative, data[: _IPV6_HDR + ip.payload_len])
        self._rx_ipv6_payload(now, rx, ip.next_header, payload, _IPV6_HDR)

    def _rx_ipv6_payload(
        self, now: int, rx: _Rx6, next_header: int, payload: memoryview, base: int
    ) -> None:
        """Walk the extension headers of ``payload``, which starts at ``base`` in ``rx.packet``."""
        try:
            exts, nh, upper = walk_extensions(next_header, payload)[:3]
        except Malformed as exc:
            self._malformed("ipv6-ext", exc, payload)
            return
        packet = rx.packet
        # offset (in ``packet``) of the Next Header field that names each header, for pointers
        nh_field = 6 if base == _IPV6_HDR else base
        offset = base
        for i, ext in enumerate(exts):
            if isinstance(ext, Ipv6Options):
                if ext.kind == IpProto.HOPOPT and (i or base != _IPV6_HDR):
                    self._drop("hbh-not-first")
                    self._icmpv6_error(now, ICMP6_PARAM_PROBLEM, 1, packet, pointer=nh_field)
                    return
                if not self._check_options(now, ext, packet, offset, rx.dst):
                    return
            elif isinstance(ext, Ipv6Routing):
                if ext.segments_left:
                    # RFC 8200 4.4: we route nothing, so every type is "unrecognized" here
                    self._drop("routing-header")
                    self._icmpv6_error(now, ICMP6_PARAM_PROBLEM, 0, packet, pointer=offset + 2)
                    return
            elif isinstance(ext, Ipv6Fragment):
                data = payload[offset - base + ext.header_len :]
                self._rx_ipv6_fragment(now, rx, ext, data, offset)
                return
            nh_field = offset
            offset += ext.header_len
        self._rx_ipv6_upper(now, rx, nh, upper, nh_field)

    def _check_options(
        self, now: int, ext: Ipv6Options, packet: memoryview, offset: int, dst: bytes
    ) -> bool:
        """RFC 8200 4.2: the two high bits of an unknown option's type say what to do."""
        pos = offset + 2
        for opt_type, opt_data in ext.options:
            if opt_type in (0, 1):  # Pad1, PadN
                pos += 1 if opt_type == 0 else 2 + len(opt_data)
                continue
            action = opt_type >> 6
            if action == 0:
                pos += 2 + len(opt_data)
                continue
            self._drop("unknown-ipv6-option")
            if action == 2 or (action == 3 and not A.is_ipv6_multicast(dst)):
                self._icmpv6_error(
                    now, ICMP6_PARAM_PROBLEM, 2, packet, pointer=pos, allow_multicast=True
                )
            return False
        return True

    def _rx_ipv6_fragment(
        self, now: int, rx: _Rx6, frag: Ipv6Fragment, data: memoryview, offset: int
    ) -> None:
        """``data`` follows the fragment header at ``offset``.

        Headers after a fragment header belong to the fragmentable part: they wait for reassembly.
        """
        if frag.offset == 0 and not frag.more:
            # RFC 8200 4.5: an atomic fragment is processed at once, outside reassembly
            self._rx_ipv6_payload(now, rx, frag.next_header, data, offset + 8)
            return
        packet = rx.packet
        res = self._reasm6.feed(
            now,
            (rx.src, rx.dst, frag.ident),
            frag.offset,
            frag.more,
            bytes(data),
            bytes(packet) if frag.offset == 0 else None,
        )
        if res.dropped:
            self._drop(res.dropped, packet)
        if res.payload is None:
            return
        self.counters["rx.ipv6.reassembled"] += 1
        whole = _Rx6(
            rx.hop_limit,
            rx.src,
            rx.dst,
            rx.unicast,
            rx.tentative,
            memoryview(bytes(packet[:offset]) + res.payload),
        )
        self._rx_ipv6_payload(now, whole, frag.next_header, memoryview(res.payload), offset)

    def _rx_ipv6_upper(self, now: int, rx: _Rx6, nh: int, upper: memoryview, nh_field: int) -> None:
        if nh == IpProto.ICMPV6:
            self._rx_icmpv6(now, rx, upper)
            return
        if rx.tentative:
            self._drop("to-tentative")  # RFC 4862 5.4: only DAD traffic for a tentative address
            return
        if nh == IpProto.UDP:
            self._rx_udp(now, rx.src, rx.dst, rx.unicast, upper, rx.packet)
        elif nh == IpProto.IPV6_NONXT:
            self.counters["rx.ipv6.no-next-header"] += 1
        else:
            handler = self._handlers.get(nh)
            if handler is not None:
                handler(now, rx.src, rx.dst, upper, rx.packet)
            else:
                self._drop("unknown-protocol")
                self._icmpv6_error(now, ICMP6_PARAM_PROBLEM, 1, rx.packet, pointer=nh_field)

    def _rx_icmpv6(self, now: int, rx: _Rx6, data: memoryview) -> None:
        src, dst, unicast = rx.src, rx.dst, rx.unicast
        try:
            msg, _ = Icmpv6Message.parse(data, src, dst)
        except Malformed as exc:
            self._malformed("icmpv6", exc, data)
            return
        t = msg.type
        self.counters[f"rx.icmpv6.type{t}"] += 1
        if t in (ND_NS, ND_NA):
            if rx.hop_limit != 255 or msg.code != 0:
                self._drop("ndp-invalid")  # RFC 4861 7.1: off-link or forged
                return
            try:
                body = parse_ndp(msg)
            except Malformed as exc:
                self._malformed("ndp", exc, data)
                return
            if isinstance(body, NeighborSolicit):
                self._rx_ns(now, src, dst, body)
            elif isinstance(body, NeighborAdvert):
                self._rx_na(now, body)
            return
        if rx.tentative:
            self._drop("to-tentative")
            return
        if t == ICMP6_ECHO_REQUEST and msg.code == 0:
            reply = Icmpv6Message.echo_reply(msg.ident, msg.seq, bytes(msg.data))
            self.send_ip(
                now,
                src,
                IpProto.ICMPV6,
                lambda s, d: reply.to_bytes(s, d),
                src=dst if unicast else None,
            )

    @staticmethod
    def _lladdr(options: list[NdpOption], kind: int) -> bytes | None:
        for opt in options:
            if opt.type == kind and len(opt.data) >= 6:
                return bytes(opt.data[:6])
        return None

    def _rx_ns(self, now: int, src: bytes, dst: bytes, ns: NeighborSolicit) -> None:
        target = bytes(ns.target)
        entry = next((a for a in self.ipv6 if a.addr == target), None)
        slla = self._lladdr(ns.options, SOURCE_LLADDR)
        if src == A.IPV6_ANY:
            if slla is not None or not A.is_ipv6_multicast(dst):
                self._drop("ndp-invalid")  # RFC 4861 7.1.1
                return
            if entry is not None and entry.state == "tentative":
                self._dad_failed(entry, "NS from another node doing DAD")
            elif entry is not None and entry.state == "preferred":
                self._send_na(target, A.IPV6_ALL_NODES, solicited=False)
            return
        if entry is None or entry.state != "preferred":
            return
        if slla is not None:
            self._flush_ready(self.neighbors.fill(now, src, slla), slla)
        self._send_na(target, src, solicited=True)

    def _rx_na(self, now: int, na: NeighborAdvert) -> None:
        target = bytes(na.target)
        entry = next((a for a in self.ipv6 if a.addr == target), None)
        if entry is not None:
            if entry.state == "tentative":
                self._dad_failed(entry, "NA for our tentative address")
            else:
                self.counters["ndp.conflict"] += 1
            return
        tlla = self._lladdr(na.options, TARGET_LLADDR)
        if tlla is None:
            return
        update = self.neighbors.fill if (na.solicited or na.override) else self.neighbors.refresh
        self._flush_ready(update(now, target, tlla), tlla)

    def _send_na(self, target: bytes, dst: bytes, solicited: bool) -> None:
        na = NeighborAdvert(target, False, solicited, True, [NdpOption(TARGET_LLADDR, self.mac)])
        msg = na.to_message()
        self.counters["tx.ndp.na"] += 1
        self._send_ipv6_raw(target, dst, IpProto.ICMPV6, msg.to_bytes(target, dst), hop_limit=255)

    def _send_ns(self, target: bytes, src: bytes | None) -> None:
        """Address resolution (src set, with SLLAO) or a DAD probe (src None: from ::)."""
        dst = A.solicited_node(target)
        options = [NdpOption(SOURCE_LLADDR, self.mac)] if src is not None else []
        msg = NeighborSolicit(target, options).to_message()
        source = src if src is not None else A.IPV6_ANY
        self.counters["tx.ndp.ns"] += 1
        self._send_ipv6_raw(source, dst, IpProto.ICMPV6, msg.to_bytes(source, dst), hop_limit=255)

    def _dad_failed(self, entry: Ipv6Address, why: str) -> None:
        entry.state = "duplicate"
        entry.dad_next = None
        self._v6_local.discard(entry.addr)
        self.counters["ndp.dad-failed"] += 1
        log.warning("DAD failed for %s: %s", A.ip_str(entry.addr), why)

    def _poll_dad(self, now: int) -> None:
        for entry in self.ipv6:
            if entry.state != "tentative":
                continue
            if entry.dad_next is None or entry.dad_next <= now:
                if entry.dad_left > 0:
                    entry.dad_left -= 1
                    entry.dad_next = now + self.config.retrans_timer
                    self._send_ns(entry.addr, None)
                else:
                    entry.state = "preferred"
                    entry.dad_next = None
                    self._v6_local.add(entry.addr)
                    self.counters["ndp.dad-ok"] += 1

    def _icmpv6_error(
        self,
        now: int,
        type_: int,
        code: int,
        packet: memoryview,
        pointer: int = 0,
        mtu: int = 0,
        allow_multicast: bool = False,
    ) -> None:
        """RFC 4443 2.4(e): not about errors, not to multicast (with the noted exceptions)."""
        if len(packet) < _IPV6_HDR:
            return
        src, dst = bytes(packet[8:24]), bytes(packet[24:40])
        if src == A.IPV6_ANY or A.is_ipv6_multicast(src):
            return
        if A.is_ipv6_multicast(dst) and not allow_multicast and type_ != ICMP6_PACKET_TOO_BIG:
            return
        if not self._icmp_bucket.take(now):
            self.counters["tx.icmp.rate-limited"] += 1
            return
        invoking = bytes(packet[: _IPV6_MIN_MTU - _IPV6_HDR - 8])
        rest = (
            pointer if type_ == ICMP6_PARAM_PROBLEM else mtu if type_ == ICMP6_PACKET_TOO_BIG else 0
        )
        msg = Icmpv6Message(type_, code, rest, invoking)
        self.counters[f"tx.icmpv6.type{type_}.code{code}"] += 1
        source = dst if dst in self._v6_local else None
        self.send_ip(now, src, IpProto.ICMPV6, lambda s, d: msg.to_bytes(s, d), src=source)

    # ------------------------------------------------------------------ UDP

    def _rx_udp(
        self, now: int, src: bytes, dst: bytes, unicast: bool, data: memoryview, packet: memoryview
    ) -> None:
        try:
            udp, payload = UdpHeader.parse(data, src, dst)
        except Malformed as exc:
            self._malformed("udp", exc, data)
            return
        self.counters["rx.udp"] += 1
        sock = self._udp.get((dst, udp.dst_port)) or self._udp.get((None, udp.dst_port))
        if sock is not None:
            sock._deliver(bytes(payload), (src, udp.src_port))
            return
        self._drop("udp-closed-port")
        if not unicast:
            return
        if len(src) == 4:
            self._icmpv4_error(now, ICMP_DEST_UNREACH, UNREACH_PORT, packet)
        else:
            self._icmpv6_error(now, ICMP6_DEST_UNREACH, 4, packet)

    def send_udp(
        self, now: int, src: bytes | None, src_port: int, dst: bytes, dst_port: int, data: Buffer
    ) -> bool:
        def build(s: bytes, d: bytes) -> bytearray:
            hdr = UdpHeader(src_port, dst_port, 8 + len(data))
            buf = bytearray(8 + len(data))
            buf[8:] = data
            hdr.emit(buf, 0, s, d)
            return buf

        return self.send_ip(now, bytes(dst), IpProto.UDP, build, src=src)

    # ------------------------------------------------------------------ output path

    def select_source(self, dst: bytes) -> bytes | None:
        """RFC 6724-lite: same subnet first, then link-local for link-local, then any."""
        if len(dst) == 4:
            for a in self.ipv4:
                if network_of(dst, a.prefix_len) == network_of(a.addr, a.prefix_len):
                    return a.addr
            return self.ipv4[0].addr if self.ipv4 else None
        preferred = [a6.addr for a6 in self.ipv6 if a6.state == "preferred"]
        want_ll = A.is_ipv6_link_local(dst) or (A.is_ipv6_multicast(dst) and (dst[1] & 0x0F) == 2)
        for addr in preferred:
            if A.is_ipv6_link_local(addr) == want_ll:
                return addr
        return preferred[0] if preferred else None

    def _next_hop(self, dst: bytes) -> bytes | None:
        """Where to send a packet for ``dst``, cached per destination.

        Every TCP segment needs this; the cache is keyed by the routing state (route table
        versions and the address list), so any change to addresses or routes invalidates it.
        """
        stamp = (self.routes4.version, self.routes6.version, len(self.ipv4), len(self.ipv6))
        if stamp != self._nh_stamp:
            self._nh_cache.clear()
            self._nh_stamp = stamp
        try:
            return self._nh_cache[dst]
        except KeyError:
            pass
        hop = self._route(dst)
        if len(self._nh_cache) < 1024:
            self._nh_cache[dst] = hop
        return hop

    def _route(self, dst: bytes) -> bytes | None:
        if len(dst) == 4:
            if dst in self._v4_bcast or dst[0] & 0xF0 == 0xE0:
                return dst
            for a in self.ipv4:
                if network_of(dst, a.prefix_len) == network_of(a.addr, a.prefix_len):
                    return dst
            route = self.routes4.lookup(dst)
        else:
            if A.is_ipv6_link_local(dst) or A.is_ipv6_multicast(dst):
                return dst
            for a6 in self.ipv6:
                if network_of(dst, a6.prefix_len) == network_of(a6.addr, a6.prefix_len):
                    return dst
            route = self.routes6.lookup(dst)
        if route is None:
            return None
        return route.gateway or dst

    def send_ip(
        self,
        now: int,
        dst: bytes,
        protocol: int,
        l4: L4Builder,
        src: bytes | None = None,
        ttl: int | None = None,
        dont_frag: bool = False,
        tos: int = 0,
    ) -> bool:
        """Route, fragment, resolve and queue one upper-layer payload. False if undeliverable.

        ``l4`` is the transport bytes, or a function of (src, dst) when the transport checksum
        needs the source address that routing picks here.
        """
        self.now = now
        dst = bytes(dst)
        source = src if src is not None else self.select_source(dst)
        next_hop = self._next_hop(dst)
        if source is None or next_hop is None:
            self.counters["tx.drop.no-route"] += 1
            return False
        payload = l4(source, dst) if callable(l4) else l4
        if len(dst) == 4:
            return self._send_ipv4(
                now, source, dst, next_hop, protocol, payload, ttl, dont_frag, tos
            )
        return self._send_ipv6(now, source, dst, next_hop, protocol, payload, ttl, tos)

    def _send_ipv4(
        self,
        now: int,
        src: bytes,
        dst: bytes,
        next_hop: bytes,
        protocol: int,
        payload: Buffer,
        ttl: int | None,
        dont_frag: bool,
        tos: int,
    ) -> bool:
        mtu = self.config.mtu
        ident = self._ip_ident
        self._ip_ident = (ident + 1) & 0xFFFF
        ttl = self.config.ttl if ttl is None else ttl
        total = _IPV4_HDR + len(payload)
        packets: list[bytearray] = []
        if total <= mtu:
            hdr = Ipv4Header(src, dst, protocol, len(payload), ttl, ident, dont_frag, False, 0, tos)
            buf = bytearray(total)
            hdr.emit(buf, 0)
            buf[_IPV4_HDR:] = payload
            packets.append(buf)
        elif dont_frag:
            self.counters["tx.drop.needs-frag"] += 1
            return False
        else:
            step = (mtu - _IPV4_HDR) & ~7
            for off in range(0, len(payload), step):
                chunk = payload[off : off + step]
                more = off + step < len(payload)
                hdr = Ipv4Header(src, dst, protocol, len(chunk), ttl, ident, False, more, off, tos)
                buf = bytearray(_IPV4_HDR + len(chunk))
                hdr.emit(buf, 0)
                buf[_IPV4_HDR:] = chunk
                packets.append(buf)
            self.counters["tx.ipv4.fragmented"] += 1
        return self._resolve_and_queue(now, next_hop, EtherType.IPV4, packets)

    def _send_ipv6(
        self,
        now: int,
        src: bytes,
        dst: bytes,
        next_hop: bytes,
        protocol: int,
        payload: Buffer,
        hop_limit: int | None,
        tclass: int,
    ) -> bool:
        hop_limit = self.config.hop_limit if hop_limit is None else hop_limit
        mtu = max(self.config.mtu, _IPV6_MIN_MTU)
        packets: list[bytearray] = []
        if _IPV6_HDR + len(payload) <= mtu:
            packets.append(self._ipv6_packet(src, dst, protocol, payload, hop_limit, tclass))
        else:
            # RFC 8200 4.5: the source fragments; the unfragmentable part is the bare header
            ident = self._frag6_ident
            self._frag6_ident = (ident + 1) & 0xFFFFFFFF
            step = (mtu - _IPV6_HDR - 8) & ~7
            for off in range(0, len(payload), step):
                chunk = payload[off : off + step]
                frag = Ipv6Fragment(protocol, off, off + step < len(payload), ident)
                body = bytearray(8 + len(chunk))
                frag.emit(body, 0)
                body[8:] = chunk
                packets.append(
                    self._ipv6_packet(src, dst, IpProto.IPV6_FRAG, body, hop_limit, tclass)
                )
            self.counters["tx.ipv6.fragmented"] += 1
        return self._resolve_and_queue(now, next_hop, EtherType.IPV6, packets)

    @staticmethod
    def _ipv6_packet(
        src: bytes, dst: bytes, nh: int, payload: Buffer, hop_limit: int, tclass: int
    ) -> bytearray:
        hdr = Ipv6Header(src, dst, nh, len(payload), hop_limit, tclass)
        buf = bytearray(_IPV6_HDR + len(payload))
        hdr.emit(buf, 0)
        buf[_IPV6_HDR:] = payload
        return buf

    def _send_ipv6_raw(
        self, src: bytes, dst: bytes, nh: int, payload: Buffer, hop_limit: int
    ) -> None:
        """NDP's own sends: no resolution (multicast, or to a neighbour we just heard from)."""
        packet = self._ipv6_packet(src, dst, nh, payload, hop_limit, 0)
        if A.is_ipv6_multicast(dst):
            self._queue(self._l2_frame(A.ipv6_multicast_mac(dst), EtherType.IPV6, packet))
        else:
            self._resolve_and_queue(self.now, dst, EtherType.IPV6, [packet])

    def _resolve_and_queue(
        self, now: int, next_hop: bytes, ethertype: int, packets: list[bytearray]
    ) -> bool:
        if self.config.link_type != LinkType.ETHERNET:
            self._tx.extend(packets)
            return True
        mac = self._mac_for(now, next_hop)
        if mac is not None:
            for p in packets:
                self._queue(self._l2_frame(mac, ethertype, p))
            return True
        for p in packets:
            send_request, dropped = self.neighbors.enqueue(now, next_hop, bytes(p), ethertype)
            if dropped:
                self.counters["tx.drop.neighbor-queue-full"] += dropped
            if send_request:
                self._solicit(next_hop)
        return True

    def _mac_for(self, now: int, next_hop: bytes) -> bytes | None:
        if len(next_hop) == 4:
            if next_hop in self._v4_bcast:
                return A.BROADCAST_MAC
            if next_hop[0] & 0xF0 == 0xE0:
                return _V4_MAPPED_MCAST + bytes([next_hop[1] & 0x7F]) + next_hop[2:4]
        elif A.is_ipv6_multicast(next_hop):
            return A.ipv6_multicast_mac(next_hop)
        return self.neighbors.lookup(now, next_hop)

    def _solicit(self, addr: bytes) -> None:
        if len(addr) == 4:
            src = self.select_source(addr)
            if src is not None:
                self._send_arp(ARP_REQUEST, src, A.ZERO_MAC, addr, A.BROADCAST_MAC)
        else:
            src6 = self.select_source(addr)
            if src6 is not None:
                self._send_ns(addr, src6)

    def _poll_neighbors(self, now: int) -> None:
        to_request, dropped = self.neighbors.poll(now)
        if dropped:
            self.counters["tx.drop.unresolved"] += dropped
        for addr in to_request:
            self._solicit(addr)

    def _poll_reassembly(self, now: int) -> None:
        for _key, first in self._reasm4.expire(now):
            self.counters["rx.drop.reasm-timeout"] += 1
            if first is not None:  # RFC 792: time exceeded, code 1, only with fragment zero
                self._icmpv4_error(now, ICMP_TIME_EXCEEDED, 1, memoryview(first))
        for _key, first in self._reasm6.expire(now):
            self.counters["rx.drop.reasm-timeout"] += 1
            if first is not None:  # RFC 8200 4.5
                self._icmpv6_error(now, ICMP6_TIME_EXCEEDED, 1, memoryview(first))


__all__ = ["Interface", "InterfaceConfig", "Ipv4Address", "Ipv6Address", "UdpSocket"]
