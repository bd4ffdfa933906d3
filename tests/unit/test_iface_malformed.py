"""Hostile input: every malformed frame is counted and dropped, nothing escapes."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from stack.iface import Interface, InterfaceConfig
from stack.wire import addr as A

OUR_MAC = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:99"


def fresh() -> Interface:
    iface = Interface(InterfaceConfig(mac=A.mac_parse(OUR_MAC), dad_transmits=0))
    iface.add_ipv4(A.ip_parse("10.0.0.1"), 24, announce=False)
    iface.add_ipv6(A.ip_parse("2001:db8::1"), 64)
    iface.udp_bind(7, on_recv=lambda s, d, src: s.sendto(d, src))
    return iface


def eth() -> Ether:
    return Ether(src=PEER, dst=OUR_MAC)


V4 = IP(src="10.0.0.9", dst="10.0.0.1")
V6 = IPv6(src="2001:db8::9", dst="2001:db8::1")


def _corrupt_ip_checksum() -> bytes:
    raw = bytearray(bytes(eth() / V4 / UDP(dport=7) / b"x"))
    raw[24] ^= 0xFF
    return bytes(raw)


CASES = {
    "truncated ethernet": (b"\x02\x00\x00", "rx.malformed.ethernet.truncated"),
    "truncated ipv4": (bytes(eth() / V4)[: 14 + 12], "rx.malformed.ipv4.truncated"),
    "ipv4 bad checksum": (_corrupt_ip_checksum(), "rx.malformed.ipv4.bad-checksum"),
    "ipv4 total length beyond frame": (
        bytes(eth() / IP(src="10.0.0.9", dst="10.0.0.1", len=1000) / UDP(dport=7)),
        "rx.malformed.ipv4.truncated",
    ),
    "ipv4 ihl below 5": (
        bytes(eth() / IP(src="10.0.0.9", dst="10.0.0.1", ihl=4) / UDP(dport=7)),
        "rx.malformed.ipv4",
    ),
    "udp bad checksum": (
        bytes(eth() / V4 / UDP(dport=7, chksum=0x1234) / b"data"),
        "rx.malformed.udp.bad-checksum",
    ),
    "udp length beyond datagram": (
        bytes(eth() / V4 / UDP(dport=7, len=500) / b"data"),
        "rx.malformed.udp.bad-length",
    ),
    "icmp bad checksum": (
        bytes(eth() / V4 / ICMP(chksum=0x4321) / b"ping"),
        "rx.malformed.icmpv4.bad-checksum",
    ),
    "ipv6 payload length beyond frame": (
        bytes(eth() / IPv6(src="2001:db8::9", dst="2001:db8::1", plen=900) / UDP(dport=7)),
        "rx.malformed.ipv6",
    ),
    "ipv6 udp zero checksum": (
        bytes(eth() / V6 / UDP(dport=7, chksum=0) / b"x"),
        "rx.malformed.udp.bad-checksum",
    ),
    "hop-by-hop option soup overrun": (
        bytes(
            eth()
            / V6
            / IPv6ExtHdrHopByHop(nh=17, len=0, options=[PadN(optdata=b"\x00" * 4)])
            / UDP()
        )[:-4]
        + b"\x05\x40\x00\x00",
        "rx.malformed",
    ),
    "icmpv6 bad checksum": (
        bytes(eth() / V6 / ICMPv6EchoRequest(cksum=0x1111)),
        "rx.malformed.icmpv6.bad-checksum",
    ),
    "ns with zero-length option": (
        bytes(
            eth()
            / IPv6(src="2001:db8::9", dst="2001:db8::1", hlim=255)
            / ICMPv6ND_NS(tgt="2001:db8::1")
            / ICMPv6NDOptSrcLLAddr(len=0, lladdr=PEER)
        ),
        "rx.malformed",
    ),
    "arp unsupported hardware": (bytes(eth() / ARP(hwtype=6, pdst="10.0.0.1")), "rx.malformed.arp"),
    "vlan tagged when untagged": (
        bytes(Ether(src=PEER, dst=OUR_MAC) / Dot1Q(vlan=5) / V4 / UDP(dport=7)),
        "rx.drop.vlan",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_counted_and_dropped(name: str) -> None:
    frame, key = CASES[name]
    iface = fresh()
    iface.receive(0, frame)
    out = iface.poll(0)
    assert iface.counters["internal-error"] == 0
    assert any(k == key or k.startswith(key + ".") for k in iface.counters), dict(iface.counters)
    assert not [f for f in out if Ether(f).haslayer(UDP) and Ether(f)[UDP].sport == 7], (
        "echoed a bad datagram"
    )


def test_overlapping_fragments_dropped_whole() -> None:
    iface = fresh()
    payload = bytes(UDP(sport=1, dport=7) / (b"A" * 40))
    f1 = (
        eth()
        / IP(src="10.0.0.9", dst="10.0.0.1", id=9, flags="MF", frag=0, proto=17)
        / Raw(payload[:24])
    )
    f2 = (
        eth()
        / IP(src="10.0.0.9", dst="10.0.0.1", id=9, flags="MF", frag=2, proto=17)
        / Raw(payload[16:32])
    )
    f3 = eth() / IP(src="10.0.0.9", dst="10.0.0.1", id=9, frag=4, proto=17) / Raw(payload[32:])
    for f in (f1, f2, f3):
        iface.receive(0, bytes(f))
    assert iface.counters["rx.drop.reasm-overlap"] >= 1
    assert iface.counters["rx.udp"] == 0
    # the same datagram, v6, overlapping: RFC 5722 says discard it all
    p6 = bytes(UDP(sport=1, dport=7) / (b"B" * 40))
    g1 = eth() / V6 / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=3) / Raw(p6[:24])
    g2 = eth() / V6 / IPv6ExtHdrFragment(nh=17, offset=2, m=0, id=3) / Raw(p6[16:])
    for g in (g1, g2):
        iface.receive(0, bytes(g))
    assert iface.counters["rx.drop.reasm-overlap"] >= 2


def _seeds() -> list[bytes]:
    """Valid frames of every kind the stack handles, to mutate."""
    return [
        bytes(eth() / ARP(op=1, hwsrc=PEER, psrc="10.0.0.9", pdst="10.0.0.1")),
        bytes(eth() / V4 / ICMP() / (b"ping" * 10)),
        bytes(eth() / V4 / UDP(sport=5, dport=7) / b"hello"),
        bytes(eth() / IP(src="10.0.0.9", dst="10.0.0.1", flags="MF", id=5, proto=17) / (b"F" * 64)),
        bytes(eth() / IP(src="10.0.0.9", dst="10.0.0.1", frag=8, id=5, proto=17) / (b"G" * 24)),
        bytes(
            eth() / IP(src="10.0.0.9", dst="10.0.0.1", options=b"\x94\x04\x00\x00") / UDP(dport=7)
        ),
        bytes(eth() / V6 / ICMPv6EchoRequest(data=b"x" * 20)),
        bytes(
            eth()
            / IPv6(src="2001:db8::9", dst="ff02::1:ff00:1", hlim=255)
            / ICMPv6ND_NS(tgt="2001:db8::1")
            / ICMPv6NDOptSrcLLAddr(lladdr=PEER)
        ),
        bytes(eth() / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(dport=7) / b"opts"),
        bytes(eth() / V6 / IPv6ExtHdrFragment(nh=17, m=1, id=77) / (b"H" * 48)),
        bytes(eth() / V6 / UDP(dport=9) / b"closed"),
        bytes(
            Ether(src=PEER, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="10.0.0.9", dst="10.0.0.255")
            / UDP(dport=7)
        ),
    ]


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    choice = rng.random()
    if choice < 0.45:  # flip a few bytes, biased to headers
        for _ in range(rng.randint(1, 4)):
            pos = min(len(data) - 1, int(rng.expovariate(1 / 30)))
            data[pos] = rng.randrange(256)
    elif choice < 0.6:  # truncate
        del data[rng.randrange(len(data)) :]
    elif choice < 0.7:  # extend with junk
        data += rng.randbytes(rng.randrange(1, 100))
    elif choice < 0.85:  # pure noise behind a plausible Ethernet header
        data = data[:14] + bytearray(rng.randbytes(rng.randrange(0, 200)))
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randrange(0, 120)))
    return bytes(data)


def test_100k_random_frames_never_escape() -> None:
    rng = random.Random(1234)
    seeds = _seeds()
    iface = fresh()
    now = 0
    for i in range(100_000):
        frame = _mutate(rng, rng.choice(seeds))
        iface.receive(now, frame)  # must not raise
        if i % 64 == 0:
            now += rng.randrange(0, 200_000)
            iface.poll(now)
    c = iface.counters
    assert c["internal-error"] == 0, [d for d in iface.recent_drops]
    assert c["rx.frames"] == 100_000
    assert c["rx.malformed"] > 10_000  # the mutations really were hostile
    assert c["rx.udp"] > 100 and c["rx.icmpv4.type8"] > 100  # and some still got through
    # state stays bounded
    assert len(iface._reasm4) <= iface.config.reassembly_v4.max_datagrams
    assert len(iface._reasm6) <= iface.config.reassembly_v6.max_datagrams
    assert len(iface.neighbors.entries()) < 5000
