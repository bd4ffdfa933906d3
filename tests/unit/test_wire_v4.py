"""Ethernet, ARP, IPv4, ICMPv4 and UDP codecs.

Three kinds of evidence, for every header:

1. round trips under hypothesis: fields -> bytes -> fields, and canonical bytes (built here with
   ``struct`` and a deliberately naive RFC 1071 checksum, not with the codecs) -> parse -> emit
   gives the same bytes;
2. scapy as an independent codec, both ways: scapy builds -> we parse, and we emit -> scapy
   dissects and recomputes the checksums;
3. malformed input: each rejection reason, and fuzzing (random and mutated frames) to show that
   nothing but ``Malformed`` ever escapes a ``parse``.

scapy is GPL and is imported here only, never from ``stack/``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import (
    ICMP,
    IP,
    UDP,
    IPOption_LSRR,
    IPOption_MTU_Probe,
    IPOption_NOP,
    IPOption_Router_Alert,
    IPOption_RR,
    IPOption_SSRR,
    IPOption_Stream_Id,
)
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from stack.wire.addr import ip_parse, ip_str, mac_parse, mac_str
from stack.wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket
from stack.wire.checksum import Buffer
from stack.wire.errors import Malformed
from stack.wire.ethernet import EthernetHeader
from stack.wire.icmpv4 import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_PARAM_PROBLEM,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAG_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    Icmpv4Message,
)
from stack.wire.ipv4 import Ipv4Header
from stack.wire.udp import UdpHeader

# scapy is slow: keep the cross-checks at a moderate number of examples.
SCAPY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=300, deadline=None)
FUZZ = settings(max_examples=1000, deadline=None)


# --------------------------------------------------------------------------------------------
# Reference helpers (independent of stack.wire.checksum)
# --------------------------------------------------------------------------------------------


def ref_csum(data: bytes) -> int:
    """RFC 1071 the slow, obvious way: add 16-bit words, fold carries, complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + bytes([0, proto]) + length.to_bytes(2, "big")
    return src + dst + length.to_bytes(4, "big") + bytes([0, 0, 0, proto])


def rechecksummed(layer: Packet) -> int:
    """The checksum scapy computes for ``layer`` (rebuilt with the field cleared)."""
    clone = layer.copy()
    clone.chksum = None
    rebuilt: int = type(clone)(bytes(clone)).chksum
    return rebuilt


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
macs = st.binary(min_size=6, max_size=6)
ip4s = st.binary(min_size=4, max_size=4)
ip6s = st.binary(min_size=16, max_size=16)
payloads = st.binary(max_size=80)
ethertypes = st.integers(0x0600, 0xFFFF).filter(lambda t: t != 0x8100)

ethernet_headers = st.builds(EthernetHeader, macs, macs, ethertypes, st.one_of(st.none(), u16))
arp_packets = st.builds(
    ArpPacket, st.one_of(st.sampled_from([ARP_REQUEST, ARP_REPLY]), u16), macs, ip4s, macs, ip4s
)


@st.composite
def ipv4_options(draw: st.DrawFn) -> bytes:
    """Well-formed option TLVs (RFC 791 3.1): NOP, route records and the RFC 4727
    experimental numbers, at most 40 bytes in all, possibly ending in EOL."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["nop", "route", "alert", "exp"]))
        if kind == "nop":
            opt = b"\x01"
        elif kind == "route":
            n = draw(st.integers(0, 3))
            opt = bytes([draw(st.sampled_from([7, 0x83, 0x89])), 3 + 4 * n, 4])
            opt += draw(st.binary(min_size=4 * n, max_size=4 * n))
        elif kind == "alert":
            opt = b"\x94\x04" + draw(u16).to_bytes(2, "big")
        else:
            value = draw(st.binary(max_size=6))
            opt = bytes([draw(st.sampled_from([30, 94, 158, 222])), 2 + len(value)]) + value
        if len(out) + len(opt) > 40:
            break
        out += opt
    if len(out) < 40 and draw(st.booleans()):
        out += b"\x00"
    return out


@st.composite
def ipv4_headers(draw: st.DrawFn, payload_len: int | None = None) -> Ipv4Header:
    return Ipv4Header(
        src=draw(ip4s),
        dst=draw(ip4s),
        protocol=draw(u8),
        payload_len=draw(st.integers(0, 200)) if payload_len is None else payload_len,
        ttl=draw(u8),
        ident=draw(u16),
        dont_frag=draw(st.booleans()),
        more_frags=draw(st.booleans()),
        frag_offset=draw(st.integers(0, 0x1FFF)) * 8,
        tos=draw(u8),
        options=draw(st.one_of(st.just(b""), ipv4_options(), st.binary(max_size=40))),
    )


invoking = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda h, p: h.to_bytes(p), ipv4_headers(payload_len=8), st.binary(min_size=8, max_size=8)
    ),
)

# Named constructors only: they give scapy's conditional ICMP fields something it understands.
icmp_named = st.one_of(
    st.builds(Icmpv4Message.echo_request, u16, u16, payloads),
    st.builds(Icmpv4Message.echo_reply, u16, u16, payloads),
    st.builds(
        Icmpv4Message.dest_unreachable,
        st.sampled_from([UNREACH_NET, UNREACH_HOST, UNREACH_PROTOCOL, UNREACH_PORT]),
        invoking,
    ),
    st.builds(Icmpv4Message.dest_unreachable, st.just(UNREACH_FRAG_NEEDED), invoking, mtu=u16),
    st.builds(Icmpv4Message.time_exceeded, st.sampled_from([0, 1]), invoking),
    st.builds(Icmpv4Message.param_problem, u8, invoking),
)
icmp_any = st.one_of(icmp_named, st.builds(Icmpv4Message, u8, u8, u32, payloads))


@st.composite
def udp_cases(draw: st.DrawFn) -> tuple[UdpHeader, bytes, bytes, bytes]:
    addrs = draw(st.sampled_from([ip4s, ip6s]))
    payload = draw(payloads)
    hdr = UdpHeader(draw(u16), draw(u16), 8 + len(payload))
    return hdr, payload, draw(addrs), draw(addrs)


# --------------------------------------------------------------------------------------------
# Ethernet
# --------------------------------------------------------------------------------------------


@FAST
@given(ethernet_headers, payloads)
def test_ethernet_round_trip(hdr: EthernetHeader, payload: bytes) -> None:
    frame = hdr.to_bytes(payload)
    assert len(frame) == hdr.header_len + len(payload)
    parsed, rest = EthernetHeader.parse(frame)
    assert parsed == hdr
    assert rest == payload


@FAST
@given(macs, macs, ethertypes, st.one_of(st.none(), u16), payloads)
def test_ethernet_canonical_bytes(
    dst: bytes, src: bytes, etype: int, tci: int | None, payload: bytes
) -> None:
    if tci is None:
        frame = dst + src + struct.pack("!H", etype) + payload
    else:
        frame = dst + src + struct.pack("!HHH", 0x8100, tci, etype) + payload
    hdr, rest = EthernetHeader.parse(frame)
    assert (hdr.dst, hdr.src, hdr.ethertype, hdr.vlan_tci) == (dst, src, etype, tci)
    assert hdr.to_bytes(rest) == frame


@SCAPY
@given(ethernet_headers, payloads)
def test_ethernet_scapy_builds_we_parse(hdr: EthernetHeader, payload: bytes) -> None:
    pkt = Ether(dst=mac_str(hdr.dst), src=mac_str(hdr.src))
    if hdr.vlan_tci is None:
        pkt.type = hdr.ethertype
    else:
        tci = hdr.vlan_tci
        pkt /= Dot1Q(prio=tci >> 13, dei=(tci >> 12) & 1, vlan=tci & 0xFFF, type=hdr.ethertype)
    parsed, rest = EthernetHeader.parse(bytes(pkt / Raw(payload)))
    assert parsed == hdr
    assert rest == payload


@SCAPY
@given(ethernet_headers, payloads)
def test_ethernet_we_emit_scapy_dissects(hdr: EthernetHeader, payload: bytes) -> None:
    pkt = Ether(hdr.to_bytes(payload))
    assert mac_parse(pkt.dst) == hdr.dst
    assert mac_parse(pkt.src) == hdr.src
    if hdr.vlan_tci is None:
        assert pkt.type == hdr.ethertype
        assert Dot1Q not in pkt
    else:
        assert pkt.type == 0x8100
        tag = pkt[Dot1Q]
        assert (tag.prio << 13) | (tag.dei << 12) | tag.vlan == hdr.vlan_tci
        assert tag.type == hdr.ethertype


def test_ethernet_rejects() -> None:
    frame = EthernetHeader(b"\x02" * 6, b"\x04" * 6, 0x0800).to_bytes(b"x" * 46)
    for n in range(14):
        with pytest.raises(Malformed) as e:
            EthernetHeader.parse(frame[:n])
        assert e.value.reason == "truncated"
    tagged = EthernetHeader(b"\x02" * 6, b"\x04" * 6, 0x0800, 5).to_bytes()
    for n in range(14, 18):
        with pytest.raises(Malformed, match="truncated"):
            EthernetHeader.parse(tagged[:n])
    for etype in (0, 46, 1500, 0x05FF):
        with pytest.raises(Malformed) as e:
            EthernetHeader.parse(frame[:12] + struct.pack("!H", etype) + frame[14:])
        assert e.value.reason == "unsupported"
        with pytest.raises(Malformed) as e:
            EthernetHeader.parse(frame[:12] + struct.pack("!HHH", 0x8100, 7, etype))
        assert e.value.reason == "unsupported"
    hdr, _ = EthernetHeader.parse(frame[:12] + b"\x06\x00")  # 0x0600 is the first type
    assert hdr.ethertype == 0x0600


# --------------------------------------------------------------------------------------------
# ARP
# --------------------------------------------------------------------------------------------


@FAST
@given(arp_packets, st.binary(max_size=18))
def test_arp_round_trip(pkt: ArpPacket, padding: bytes) -> None:
    data = pkt.to_bytes(padding)
    parsed, rest = ArpPacket.parse(data)
    assert parsed == pkt
    assert rest == padding
    assert pkt.header_len == 28
    assert ArpPacket.parse(data[:28])[0].to_bytes() == data[:28]


@SCAPY
@given(arp_packets)
def test_arp_scapy_builds_we_parse(pkt: ArpPacket) -> None:
    sc = ARP(
        op=pkt.op,
        hwsrc=mac_str(pkt.sender_mac),
        psrc=ip_str(pkt.sender_ip),
        hwdst=mac_str(pkt.target_mac),
        pdst=ip_str(pkt.target_ip),
    )
    parsed, rest = ArpPacket.parse(bytes(sc))
    assert parsed == pkt
    assert len(rest) == 0


@SCAPY
@given(arp_packets)
def test_arp_we_emit_scapy_dissects(pkt: ArpPacket) -> None:
    sc = ARP(pkt.to_bytes())
    assert (sc.hwtype, sc.ptype, sc.hwlen, sc.plen) == (1, 0x0800, 6, 4)
    assert sc.op == pkt.op
    assert mac_parse(sc.hwsrc) == pkt.sender_mac
    assert ip_parse(sc.psrc) == pkt.sender_ip
    assert mac_parse(sc.hwdst) == pkt.target_mac
    assert ip_parse(sc.pdst) == pkt.target_ip


def test_arp_request_and_reply_in_ethernet() -> None:
    req = ArpPacket(ARP_REQUEST, b"\x02\0\0\0\0\x01", b"\x0a\0\0\x01", b"\0" * 6, b"\x0a\0\0\x02")
    frame = EthernetHeader(b"\xff" * 6, req.sender_mac, 0x0806).to_bytes(req.to_bytes(b"\0" * 18))
    sc = Ether(frame)
    assert sc[ARP].op == 1  # who-has
    assert sc[ARP].pdst == "10.0.0.2"
    _, body = EthernetHeader.parse(frame)
    parsed, pad = ArpPacket.parse(body)
    assert parsed == req
    assert len(frame) == 60
    assert bytes(pad) == b"\0" * 18
    reply = bytes(Ether() / ARP(op="is-at", hwsrc="02:00:00:00:00:02", psrc="10.0.0.2"))
    parsed, _ = ArpPacket.parse(EthernetHeader.parse(reply)[1])
    assert parsed.op == ARP_REPLY
    assert parsed.sender_mac == b"\x02\0\0\0\0\x02"


def test_arp_rejects() -> None:
    good = ArpPacket(1, b"\x02" * 6, b"\x01" * 4, b"\0" * 6, b"\x02" * 4).to_bytes()
    for n in range(28):
        with pytest.raises(Malformed) as e:
            ArpPacket.parse(good[:n])
        assert e.value.reason == "truncated"
    for fixed in (
        struct.pack("!HHBB", 6, 0x0800, 6, 4),  # IEEE 802 hardware
        struct.pack("!HHBB", 1, 0x86DD, 6, 4),  # IPv6 protocol
        struct.pack("!HHBB", 1, 0x0800, 8, 4),
        struct.pack("!HHBB", 1, 0x0800, 6, 16),
    ):
        with pytest.raises(Malformed) as e:
            ArpPacket.parse(fixed + good[6:])
        assert e.value.reason == "unsupported"


# --------------------------------------------------------------------------------------------
# IPv4
# --------------------------------------------------------------------------------------------


def padded(options: bytes) -> bytes:
    return options + b"\0" * (-len(options) % 4)


@FAST
@given(ipv4_headers(), st.data())
def test_ipv4_round_trip(hdr: Ipv4Header, data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=hdr.payload_len, max_size=hdr.payload_len))
    link_padding = data.draw(st.binary(max_size=20))
    packet = hdr.to_bytes(payload)
    assert len(packet) == hdr.header_len + hdr.payload_len
    assert hdr.header_len % 4 == 0
    parsed, rest = Ipv4Header.parse(packet + link_padding)
    assert rest == payload
    assert parsed.options == padded(hdr.options)
    parsed.options = hdr.options
    assert parsed == hdr
    assert parsed.is_fragment == (hdr.more_frags or hdr.frag_offset > 0)
    assert ref_csum(packet[: hdr.header_len]) == 0


@FAST
@given(ip4s, ip4s, u8, u8, u16, u8, st.integers(0, 7), st.integers(0, 0x1FFF), st.data())
def test_ipv4_canonical_bytes(
    src: bytes,
    dst: bytes,
    tos: int,
    ttl: int,
    ident: int,
    proto: int,
    flags: int,
    frag: int,
    data: st.DataObject,
) -> None:
    flags &= 3  # DF, MF; the reserved bit does not survive (tested separately)
    options = padded(data.draw(st.binary(max_size=40)))
    payload = data.draw(payloads)
    hlen = 20 + len(options)
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | hlen // 4,
        tos,
        hlen + len(payload),
        ident,
        flags << 13 | frag,
        ttl,
        proto,
        0,
        src,
        dst,
    )
    head += options
    head = head[:10] + struct.pack("!H", ref_csum(head)) + head[12:]
    packet = head + payload
    hdr, rest = Ipv4Header.parse(packet)
    assert hdr.options == options
    assert (hdr.dont_frag, hdr.more_frags, hdr.frag_offset) == (
        bool(flags & 2),
        bool(flags & 1),
        frag * 8,
    )
    assert hdr.to_bytes(rest) == packet
    buf = bytearray(3 + len(packet))
    buf[3 + hlen :] = payload
    hdr.emit(memoryview(buf), 3)
    assert bytes(buf[3:]) == packet


@st.composite
def scapy_ip_options(draw: st.DrawFn) -> list[Packet]:
    ops: list[Packet] = []
    size = 0
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.integers(0, 3))
        routers = [ip_str(draw(ip4s)) for _ in range(n)]
        opt = draw(
            st.sampled_from(
                [
                    IPOption_NOP(),
                    IPOption_RR(routers=routers),
                    IPOption_LSRR(routers=routers),
                    IPOption_SSRR(routers=routers),
                    IPOption_Router_Alert(alert=draw(u16)),
                    IPOption_MTU_Probe(mtu=draw(u16)),
                    IPOption_Stream_Id(security=draw(u16)),
                ]
            )
        )
        if size + len(opt) > 40:
            break
        size += len(opt)
        ops.append(opt)
    return ops


@SCAPY
@given(ipv4_headers(), scapy_ip_options(), payloads, st.booleans())
def test_ipv4_scapy_builds_we_parse(
    hdr: Ipv4Header, options: list[Packet], payload: bytes, evil: bool
) -> None:
    flags = (4 if evil else 0) | (2 if hdr.dont_frag else 0) | (1 if hdr.more_frags else 0)
    sc = IP(
        src=ip_str(hdr.src),
        dst=ip_str(hdr.dst),
        proto=hdr.protocol,
        ttl=hdr.ttl,
        id=hdr.ident,
        flags=flags,
        frag=hdr.frag_offset // 8,
        tos=hdr.tos,
        options=options,
    ) / Raw(payload)
    wire = bytes(sc)
    parsed, rest = Ipv4Header.parse(wire + b"\0" * 6)  # Ethernet-style trailing padding
    sc = IP(wire)
    assert parsed.src == ip_parse(sc.src)
    assert parsed.dst == ip_parse(sc.dst)
    assert parsed.protocol == sc.proto
    assert parsed.payload_len == sc.len - sc.ihl * 4 == len(payload)
    assert parsed.ttl == sc.ttl
    assert parsed.ident == sc.id
    assert parsed.dont_frag == bool(sc.flags.DF)
    assert parsed.more_frags == bool(sc.flags.MF)
    assert parsed.frag_offset == sc.frag * 8
    assert parsed.tos == sc.tos
    assert parsed.options == padded(b"".join(bytes(o) for o in options))
    assert parsed.header_len == sc.ihl * 4
    assert rest == payload
    if not evil:
        assert parsed.to_bytes(rest) == wire


@SCAPY
@given(ipv4_headers(), st.data())
def test_ipv4_we_emit_scapy_dissects(hdr: Ipv4Header, data: st.DataObject) -> None:
    hdr.options = data.draw(ipv4_options())  # options scapy can dissect
    payload = data.draw(st.binary(min_size=hdr.payload_len, max_size=hdr.payload_len))
    sc = IP(hdr.to_bytes(payload))
    assert sc.version == 4
    assert sc.ihl * 4 == hdr.header_len
    assert sc.len == hdr.header_len + hdr.payload_len
    assert ip_parse(sc.src) == hdr.src
    assert ip_parse(sc.dst) == hdr.dst
    assert (sc.proto, sc.ttl, sc.id, sc.tos) == (hdr.protocol, hdr.ttl, hdr.ident, hdr.tos)
    assert int(sc.flags) == (2 if hdr.dont_frag else 0) | (1 if hdr.more_frags else 0)
    assert sc.frag * 8 == hdr.frag_offset
    scapy_opts = b"".join(bytes(o) for o in sc.options)
    assert scapy_opts.ljust(hdr.header_len - 20, b"\0") == padded(hdr.options)
    assert sc.chksum == rechecksummed(sc)


def test_ipv4_evil_bit_accepted_and_not_reemitted() -> None:
    wire = bytes(IP(src="10.0.0.1", dst="10.0.0.2", flags="evil+DF") / Raw(b"abc"))
    hdr, rest = Ipv4Header.parse(wire)
    assert hdr.dont_frag and not hdr.more_frags and bytes(rest) == b"abc"
    assert IP(hdr.to_bytes(rest)).flags == "DF"


def test_ipv4_fragment_flags() -> None:
    base = Ipv4Header(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 17, 8)
    assert not base.is_fragment
    assert Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 8, more_frags=True).is_fragment
    assert Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 8, frag_offset=1480).is_fragment
    sc = IP(Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 0, frag_offset=65528, more_frags=True).to_bytes())
    assert (sc.frag, sc.flags) == (8191, "MF")


def test_ipv4_emit_rejects_bad_fields() -> None:
    def hdr(**kw: Any) -> Ipv4Header:
        return Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 0, **kw)

    assert hdr(options=b"\x01" * 40).header_len == 60
    with pytest.raises(ValueError, match="options"):
        hdr(options=b"\x01" * 41).to_bytes()
    for off in (4, -8, 65536):
        with pytest.raises(ValueError, match="offset"):
            hdr(frag_offset=off).to_bytes()
    with pytest.raises(ValueError, match="total length"):
        Ipv4Header(b"\0" * 4, b"\0" * 4, 17, 65516).to_bytes()
    with pytest.raises(ValueError, match="too short"):
        hdr(options=b"\x01").emit(bytearray(20))


def ipv4_packet(payload: bytes = b"payload!", options: bytes = b"") -> bytes:
    return Ipv4Header(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 6, len(payload), options=options).to_bytes(
        payload
    )


def with_ipv4_fix(packet: bytes, **fields: int) -> bytes:
    """``packet`` with header fields rewritten and the header checksum recomputed."""
    raw = bytearray(packet)
    if "vihl" in fields:
        raw[0] = fields["vihl"]
    if "total" in fields:
        raw[2:4] = fields["total"].to_bytes(2, "big")
    hlen = max(20, min((raw[0] & 15) * 4, len(raw)))
    raw[10:12] = b"\0\0"
    raw[10:12] = ref_csum(bytes(raw[:hlen])).to_bytes(2, "big")
    return bytes(raw)


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ipv4_packet()[:19], "truncated"),
        (b"", "truncated"),
        (with_ipv4_fix(ipv4_packet(), vihl=0x65), "bad-version"),
        (with_ipv4_fix(ipv4_packet(), vihl=0x05), "bad-version"),
        (with_ipv4_fix(ipv4_packet(), vihl=0x44), "bad-length"),
        (with_ipv4_fix(ipv4_packet(), vihl=0x40), "bad-length"),
        (with_ipv4_fix(ipv4_packet(b"")[:20] + b"\x01" * 4, vihl=0x4F), "truncated"),
        (with_ipv4_fix(ipv4_packet(), total=19), "bad-length"),
        (with_ipv4_fix(ipv4_packet(options=b"\x01" * 4), total=23), "bad-length"),
        (with_ipv4_fix(ipv4_packet(), total=29), "truncated"),
        (ipv4_packet()[:27], "truncated"),
    ],
)
def test_ipv4_rejects(packet: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as e:
        Ipv4Header.parse(packet)
    assert e.value.reason == reason


@FAST
@given(st.data())
def test_ipv4_bad_checksum(data: st.DataObject) -> None:
    packet = bytearray(ipv4_packet(options=data.draw(ipv4_options())))
    hlen = (packet[0] & 15) * 4
    # Change one header byte outside version/IHL/total length so only the checksum is wrong.
    i = data.draw(st.sampled_from([1, 4, 5, 6, 7, 8, 9, 10, 11, *range(12, hlen)]))
    packet[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(Malformed) as e:
        Ipv4Header.parse(packet)
    assert e.value.reason == "bad-checksum"
    hdr, _ = Ipv4Header.parse(packet, verify_checksum=False)
    assert hdr.header_len == hlen


def test_ipv4_payload_is_a_view_of_the_input() -> None:
    buf = bytearray(ipv4_packet(b"zero-copy") + b"\0" * 10)
    _, payload = Ipv4Header.parse(buf)
    assert payload.obj is buf
    buf[20] = ord("Z")
    assert bytes(payload) == b"Zero-copy"


# --------------------------------------------------------------------------------------------
# ICMPv4
# --------------------------------------------------------------------------------------------


def test_icmp_constructors() -> None:
    echo = Icmpv4Message.echo_request(0x1234, 0x5678, b"ping")
    assert (echo.type, echo.code, echo.rest, echo.ident, echo.seq) == (
        8,
        0,
        0x12345678,
        0x1234,
        0x5678,
    )
    assert Icmpv4Message.echo_reply(1, 2).type == ICMP_ECHO_REPLY
    frag = Icmpv4Message.dest_unreachable(UNREACH_FRAG_NEEDED, b"x", mtu=1400)
    assert (frag.type, frag.code, frag.rest, frag.mtu) == (ICMP_DEST_UNREACH, 4, 1400, 1400)
    port = Icmpv4Message.dest_unreachable(UNREACH_PORT, b"x")
    assert (port.code, port.rest) == (3, 0)
    te = Icmpv4Message.time_exceeded(1, b"x")
    assert (te.type, te.code, te.rest) == (ICMP_TIME_EXCEEDED, 1, 0)
    pp = Icmpv4Message.param_problem(9, b"x")
    assert (pp.type, pp.code, pp.rest, pp.pointer) == (ICMP_PARAM_PROBLEM, 0, 9 << 24, 9)
    assert ICMP_ECHO_REQUEST == 8 and pp.header_len == 8


@FAST
@given(icmp_any)
def test_icmp_round_trip(msg: Icmpv4Message) -> None:
    wire = msg.to_bytes()
    assert len(wire) == 8 + len(msg.data)
    assert ref_csum(wire) == 0
    parsed, rest = Icmpv4Message.parse(wire)
    assert parsed == msg
    assert rest == msg.data
    assert parsed.to_bytes() == wire


@FAST
@given(u8, u8, u32, payloads)
def test_icmp_canonical_bytes(typ: int, code: int, rest: int, data: bytes) -> None:
    wire = struct.pack("!BBHI", typ, code, 0, rest) + data
    wire = wire[:2] + struct.pack("!H", ref_csum(wire)) + wire[4:]
    msg, _ = Icmpv4Message.parse(wire)
    assert (msg.type, msg.code, msg.rest, bytes(msg.data)) == (typ, code, rest, data)
    buf = bytearray(b"\xaa" * 5) + bytearray(wire)
    buf[7:9] = b"\x55\x55"  # emit must overwrite the checksum, not add to it
    msg.emit(buf, 5)
    assert bytes(buf[5:]) == wire


def scapy_icmp_rest(sc: Packet) -> int:
    if sc.type in (0, 8):
        return int(sc.id << 16 | sc.seq)
    if sc.type == 3:
        return int(sc.reserved << 24 | sc.length << 16 | sc.nexthopmtu)
    if sc.type == 11:
        return int(sc.reserved << 24 | sc.length << 16 | sc.unused)
    assert sc.type == 12
    return int(sc.ptr << 24 | sc.length << 16 | sc.unused)


@SCAPY
@given(icmp_named)
def test_icmp_we_emit_scapy_dissects(msg: Icmpv4Message) -> None:
    sc = ICMP(msg.to_bytes())
    assert (sc.type, sc.code) == (msg.type, msg.code)
    assert scapy_icmp_rest(sc) == msg.rest
    assert bytes(sc.payload) == bytes(msg.data)
    assert sc.chksum == rechecksummed(sc)
    if msg.type == ICMP_DEST_UNREACH and msg.code == UNREACH_FRAG_NEEDED:
        assert sc.nexthopmtu == msg.mtu
    if msg.type == ICMP_PARAM_PROBLEM:
        assert sc.ptr == msg.pointer


@SCAPY
@given(icmp_named, ip4s, ip4s)
def test_icmp_scapy_builds_we_parse(msg: Icmpv4Message, src: bytes, dst: bytes) -> None:
    kw: dict[str, Any] = {"type": msg.type, "code": msg.code}
    if msg.type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        kw |= {"id": msg.ident, "seq": msg.seq}
    elif msg.type == ICMP_DEST_UNREACH:
        kw |= {"nexthopmtu": msg.mtu}
    elif msg.type == ICMP_PARAM_PROBLEM:
        kw |= {"ptr": msg.pointer}
    wire = bytes(IP(src=ip_str(src), dst=ip_str(dst)) / ICMP(**kw) / Raw(bytes(msg.data)))
    ip, body = Ipv4Header.parse(wire)
    assert ip.protocol == 1
    parsed, rest = Icmpv4Message.parse(body)
    assert parsed == msg
    assert rest == msg.data
    sc = IP(wire)[ICMP]
    assert (parsed.type, parsed.code, parsed.rest) == (sc.type, sc.code, scapy_icmp_rest(sc))


def test_icmp_rejects() -> None:
    wire = Icmpv4Message.echo_request(1, 2, b"abcdef").to_bytes()
    for n in range(8):
        with pytest.raises(Malformed) as e:
            Icmpv4Message.parse(wire[:n])
        assert e.value.reason == "truncated"
    for i in range(len(wire)):
        bad = bytearray(wire)
        bad[i] ^= 0x10
        with pytest.raises(Malformed) as e:
            Icmpv4Message.parse(bad)
        assert e.value.reason == "bad-checksum"
        assert Icmpv4Message.parse(bad, verify_checksum=False)[0].type in (8, 0x18)
    with pytest.raises(Malformed, match="bad-checksum"):
        Icmpv4Message.parse(wire[:-1])  # a lost data byte is caught by the checksum


def test_icmp_emit_needs_the_data_in_place() -> None:
    msg = Icmpv4Message.echo_request(1, 2, b"abcdef")
    with pytest.raises(ValueError, match="too short"):
        msg.emit(bytearray(10))


# --------------------------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------------------------


@FAST
@given(udp_cases(), st.binary(max_size=8))
def test_udp_round_trip(case: tuple[UdpHeader, bytes, bytes, bytes], trailer: bytes) -> None:
    hdr, payload, src, dst = case
    wire = hdr.to_bytes(payload, src=src, dst=dst)
    assert ref_csum(pseudo(src, dst, 17, hdr.length) + wire) in (0, 0xFFFF)
    assert wire[6:8] != b"\0\0"
    parsed, rest = UdpHeader.parse(wire + trailer, src, dst)
    assert parsed == hdr
    assert rest == payload


@FAST
@given(udp_cases())
def test_udp_canonical_bytes(case: tuple[UdpHeader, bytes, bytes, bytes]) -> None:
    hdr, payload, src, dst = case
    wire = struct.pack("!HHHH", hdr.src_port, hdr.dst_port, hdr.length, 0) + payload
    csum = ref_csum(pseudo(src, dst, 17, hdr.length) + wire) or 0xFFFF
    wire = wire[:6] + struct.pack("!H", csum) + wire[8:]
    parsed, _ = UdpHeader.parse(wire, src, dst)
    buf = bytearray(2) + bytearray(wire)
    parsed.emit(buf, 2, src, dst)
    assert bytes(buf[2:]) == wire


def test_udp_computed_zero_is_sent_as_ffff() -> None:
    src, dst = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    hdr = UdpHeader(1000, 2000, 10)
    # Choose the last payload word so the whole sum is 0xFFFF, i.e. the checksum computes to 0.
    fill = ref_csum(pseudo(src, dst, 17, 10) + struct.pack("!HHHH", 1000, 2000, 10, 0))
    payload = fill.to_bytes(2, "big")
    wire = hdr.to_bytes(payload, src=src, dst=dst)
    assert wire[6:8] == b"\xff\xff"
    assert UdpHeader.parse(wire, src, dst)[1] == payload
    sc = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=2000) / Raw(payload)
    assert IP(bytes(sc))[UDP].chksum == 0xFFFF  # scapy agrees


@SCAPY
@given(udp_cases())
def test_udp_scapy_builds_we_parse(case: tuple[UdpHeader, bytes, bytes, bytes]) -> None:
    hdr, payload, src, dst = case
    if len(src) == 4:
        wire = bytes(
            IP(src=ip_str(src), dst=ip_str(dst))
            / UDP(sport=hdr.src_port, dport=hdr.dst_port)
            / Raw(payload)
        )
        _, body = Ipv4Header.parse(wire)
        sc = IP(wire)[UDP]
    else:
        wire = bytes(
            IPv6(src=ip_str(src), dst=ip_str(dst))
            / UDP(sport=hdr.src_port, dport=hdr.dst_port)
            / Raw(payload)
        )
        body = memoryview(wire)[40:]
        sc = IPv6(wire)[UDP]
    parsed, rest = UdpHeader.parse(body, src, dst)
    assert parsed == hdr
    assert (parsed.src_port, parsed.dst_port, parsed.length) == (sc.sport, sc.dport, sc.len)
    assert rest == payload
    assert parsed.to_bytes(rest, src=src, dst=dst) == bytes(body)


@SCAPY
@given(udp_cases())
def test_udp_we_emit_scapy_dissects(case: tuple[UdpHeader, bytes, bytes, bytes]) -> None:
    hdr, payload, src, dst = case
    wire = hdr.to_bytes(payload, src=src, dst=dst)
    sc: Packet
    if len(src) == 4:
        sc = IP(bytes(IP(src=ip_str(src), dst=ip_str(dst), proto=17, len=20 + len(wire))) + wire)
    else:
        sc = IPv6(bytes(IPv6(src=ip_str(src), dst=ip_str(dst), nh=17, plen=len(wire))) + wire)
    udp = sc[UDP]
    assert (udp.sport, udp.dport, udp.len) == (hdr.src_port, hdr.dst_port, hdr.length)
    assert bytes(udp.payload) == payload
    assert udp.chksum == _scapy_udp_csum(sc)


def _scapy_udp_csum(sc: Packet) -> int:
    clone = sc.copy()
    clone[UDP].chksum = None
    csum: int = type(clone)(bytes(clone))[UDP].chksum
    return csum


def test_udp_zero_checksum_by_family() -> None:
    v4s, v4d = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    v6s, v6d = ip_parse("fe80::1"), ip_parse("fe80::2")
    hdr = UdpHeader(53, 5353, 12)
    for s, d in ((v4s, v4d), (v6s, v6d)):
        wire = bytearray(hdr.to_bytes(b"data", src=s, dst=d))
        wire[6:8] = b"\0\0"
        if len(s) == 4:
            assert bytes(UdpHeader.parse(wire, s, d)[1]) == b"data"  # RFC 768: no checksum
        else:
            with pytest.raises(Malformed) as e:
                UdpHeader.parse(wire, s, d)  # RFC 8200 8.1: mandatory
            assert e.value.reason == "bad-checksum"
            assert UdpHeader.parse(wire, s, d, verify_checksum=False)[0] == hdr


@pytest.mark.parametrize("family", [4, 16])
def test_udp_rejects(family: int) -> None:
    src, dst = b"\x01" * family, b"\x02" * family
    wire = UdpHeader(1, 2, 13).to_bytes(b"hello", src=src, dst=dst)
    for n in range(8):
        with pytest.raises(Malformed) as e:
            UdpHeader.parse(wire[:n], src, dst)
        assert e.value.reason == "truncated"
    for length in (0, 7, 14, 0xFFFF):
        bad = wire[:4] + length.to_bytes(2, "big") + wire[6:]
        with pytest.raises(Malformed) as e:
            UdpHeader.parse(bad, src, dst, verify_checksum=False)
        assert e.value.reason == "bad-length"
    with pytest.raises(Malformed, match="bad-length"):
        UdpHeader.parse(wire[:12], src, dst)
    for i in range(len(wire)):
        if 4 <= i < 6:
            continue  # the length field: covered above
        flipped = bytearray(wire)
        flipped[i] ^= 0x01
        with pytest.raises(Malformed) as e:
            UdpHeader.parse(flipped, src, dst)
        assert e.value.reason == "bad-checksum"
    # Wrong addresses are wrong pseudo-header: caught by the checksum too.
    with pytest.raises(Malformed, match="bad-checksum"):
        UdpHeader.parse(wire, dst[:-1] + b"\x03", dst)
    with pytest.raises(ValueError, match="does not fit"):
        UdpHeader(1, 2, 20).to_bytes(b"short", src=src, dst=dst)


# --------------------------------------------------------------------------------------------
# A whole frame built inside out in one buffer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vlan", [None, 0x2064])
def test_frame_built_inside_out(vlan: int | None) -> None:
    src_ip, dst_ip = ip_parse("192.0.2.1"), ip_parse("192.0.2.99")
    payload = b"inside out"
    eth = EthernetHeader(b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x01", 0x0800, vlan)
    ip = Ipv4Header(
        src_ip, dst_ip, 17, 8 + len(payload), ident=7, dont_frag=True, options=b"\x94\x04\0\0"
    )
    udp = UdpHeader(4000, 7, 8 + len(payload))
    o_ip = eth.header_len
    o_udp = o_ip + ip.header_len
    buf = bytearray(o_udp + udp.length)
    buf[o_udp + 8 :] = payload
    udp.emit(buf, o_udp, src_ip, dst_ip)
    ip.emit(buf, o_ip)
    eth.emit(buf, 0)
    sc = Ether(bytes(buf))
    assert sc[IP].chksum == rechecksummed(sc[IP])
    assert sc[UDP].chksum == _scapy_udp_csum(sc)
    assert bytes(sc[UDP].payload) == payload
    if vlan is not None:
        assert sc[Dot1Q].vlan == vlan & 0xFFF
    # and back through our own parsers
    e, rest = EthernetHeader.parse(buf)
    i, rest = Ipv4Header.parse(rest)
    u, rest = UdpHeader.parse(rest, i.src, i.dst)
    assert (e, i, u, bytes(rest)) == (eth, ip, udp, payload)


def test_parse_accepts_bytes_bytearray_memoryview() -> None:
    wire = Icmpv4Message.echo_request(1, 1, b"x").to_bytes()
    inputs: tuple[Buffer, ...] = (
        wire,
        bytearray(wire),
        memoryview(wire),
        memoryview(bytearray(wire)),
    )
    for data in inputs:
        _, body = Icmpv4Message.parse(data)
        assert isinstance(body, memoryview) and bytes(body) == b"x"


# --------------------------------------------------------------------------------------------
# Fuzzing: nothing but Malformed escapes
# --------------------------------------------------------------------------------------------

V4 = (b"\x0a\0\0\x01", b"\x0a\0\0\x02")
V6 = (ip_parse("2001:db8::1"), ip_parse("2001:db8::2"))

PARSERS: dict[str, Callable[[bytes, bool], object]] = {
    "ethernet": lambda d, v: EthernetHeader.parse(d),
    "arp": lambda d, v: ArpPacket.parse(d),
    "ipv4": lambda d, v: Ipv4Header.parse(d, verify_checksum=v),
    "icmpv4": lambda d, v: Icmpv4Message.parse(d, verify_checksum=v),
    "udp4": lambda d, v: UdpHeader.parse(d, *V4, verify_checksum=v),
    "udp6": lambda d, v: UdpHeader.parse(d, *V6, verify_checksum=v),
}

VALID: dict[str, bytes] = {
    "ethernet": EthernetHeader(b"\x02" * 6, b"\x04" * 6, 0x0800, 3).to_bytes(ipv4_packet()),
    "arp": ArpPacket(1, b"\x02" * 6, b"\x01" * 4, b"\0" * 6, b"\x02" * 4).to_bytes(),
    "ipv4": ipv4_packet(options=b"\x94\x04\0\0\x01"),
    "icmpv4": Icmpv4Message.dest_unreachable(3, ipv4_packet()).to_bytes(),
    "udp4": UdpHeader(1, 2, 12).to_bytes(b"abcd", src=V4[0], dst=V4[1]),
    "udp6": UdpHeader(1, 2, 12).to_bytes(b"abcd", src=V6[0], dst=V6[1]),
}


def only_malformed(name: str, data: bytes, verify: bool) -> None:
    try:
        PARSERS[name](data, verify)
    except Malformed as e:
        assert e.reason in {
            "truncated",
            "bad-length",
            "bad-checksum",
            "bad-version",
            "unsupported",
            "bad-field",
        }


@FUZZ
@given(st.sampled_from(sorted(PARSERS)), st.binary(max_size=96), st.booleans())
def test_fuzz_random_bytes(name: str, data: bytes, verify: bool) -> None:
    only_malformed(name, data, verify)


@FUZZ
@given(st.sampled_from(sorted(PARSERS)), st.data(), st.booleans())
def test_fuzz_mutated_valid_frames(name: str, data: st.DataObject, verify: bool) -> None:
    frame = bytearray(VALID[name])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(u8)
    cut = data.draw(st.integers(0, len(frame)))
    only_malformed(name, bytes(frame[:cut]), verify)
