"""The interface in virtual time: timers, resolution, fragmentation, ICMP, UDP.

Two real ``Interface`` objects exchange frames through ``Link`` (no device, no clock), so every
timer is checked to the microsecond. scapy crafts the odd inbound frames and dissects outbound
ones as an independent decoder.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from stack.iface import Interface, InterfaceConfig
from stack.iface.reassembly import Reassembler, ReassemblyConfig
from stack.time import MS, SECOND
from stack.wire import addr as A

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A = A.ip_parse("10.0.0.1")
IP_B = A.ip_parse("10.0.0.2")
IP6_A = A.ip_parse("2001:db8::1")
IP6_B = A.ip_parse("2001:db8::2")
MAC_PEER = "02:00:00:00:00:99"


def make(mac: bytes, v4: bytes | None = None, v6: bytes | None = None, **kw: object) -> Interface:
    kw.setdefault("ipv6_link_local", False)
    cfg = InterfaceConfig(mac=mac, **kw)  # type: ignore[arg-type]
    iface = Interface(cfg)
    if v4:
        iface.add_ipv4(v4, 24, announce=False)
    if v6:
        iface.add_ipv6(v6, 64)
    return iface


class Link:
    """Carries frames between interfaces in virtual time; records everything sent."""

    def __init__(self, *ifaces: Interface) -> None:
        self.ifaces = ifaces
        self.log: list[tuple[int, int, bytes]] = []  # (time, sender index, frame)

    def step(self, now: int, deliver: bool = True) -> int:
        moved = 0
        for i, iface in enumerate(self.ifaces):
            for frame in iface.poll(now):
                moved += 1
                self.log.append((now, i, bytes(frame)))
                if deliver:
                    for j, other in enumerate(self.ifaces):
                        if j != i:
                            other.receive(now, frame)
        return moved

    def settle(self, now: int) -> None:
        for _ in range(50):
            if not self.step(now):
                return
        raise AssertionError("link did not settle")

    def sent(self, index: int, since: int = 0) -> list[Ether]:
        return [Ether(f) for t, i, f in self.log if i == index and t >= since]


def udp_sink(iface: Interface, port: int) -> list[tuple[bytes, tuple[bytes, int]]]:
    got: list[tuple[bytes, tuple[bytes, int]]] = []
    iface.udp_bind(port, on_recv=lambda s, d, src: got.append((d, src)))
    return got


# ---------------------------------------------------------------- ARP


def test_arp_request_rate_and_give_up() -> None:
    a = make(MAC_A, IP_A)
    link = Link(a)  # nobody answers
    a.udp_bind(5000)
    assert a.send_udp(0, None, 5000, IP_B, 7, b"x")
    link.step(0)
    arps = [p for p in link.sent(0) if ARP in p]
    assert len(arps) == 1 and arps[0][ARP].pdst == "10.0.0.2" and arps[0].dst == "ff:ff:ff:ff:ff:ff"
    # a second packet to the same address does not trigger a second request within 1 s
    a.send_udp(500 * MS, None, 5000, IP_B, 7, b"y")
    link.step(500 * MS)
    assert len([p for p in link.sent(0) if ARP in p]) == 1
    assert a.poll_at() == 1 * SECOND
    link.step(999_999)
    assert len([p for p in link.sent(0) if ARP in p]) == 1
    link.step(1 * SECOND)
    link.step(2 * SECOND)
    assert [t for t, _, f in link.log if ARP in Ether(f)] == [0, 1 * SECOND, 2 * SECOND]
    link.step(3 * SECOND)  # third request unanswered: give up and drop the queue
    assert a.counters["tx.drop.unresolved"] == 2
    assert a.poll_at() is None


def test_arp_resolves_and_flushes_queue_then_expires() -> None:
    a, b = make(MAC_A, IP_A), make(MAC_B, IP_B)
    got = udp_sink(b, 7)
    link = Link(a, b)
    a.send_udp(0, None, 5000, IP_B, 7, b"hello")
    link.settle(0)
    assert got == [(b"hello", (IP_A, 5000))]
    assert a.neighbors.lookup(0, IP_B) == MAC_B
    assert b.neighbors.lookup(0, IP_A) == MAC_A  # learned from the request targeting it
    # entry lifetime 60 s: afterwards a new request goes out
    a.send_udp(59 * SECOND, None, 5000, IP_B, 7, b"still")
    link.settle(59 * SECOND)
    assert not [p for p in link.sent(0, since=59 * SECOND) if ARP in p]
    a.send_udp(60 * SECOND, None, 5000, IP_B, 7, b"again")
    link.settle(60 * SECOND)
    assert [p for p in link.sent(0, since=60 * SECOND) if ARP in p]
    assert got[-1][0] == b"again"


def test_gratuitous_arp_on_add_and_refresh() -> None:
    a = Interface(InterfaceConfig(mac=MAC_A, ipv6_link_local=False))
    a.add_ipv4(IP_A, 24)
    (frame,) = a.poll(0)
    p = Ether(frame)
    assert (
        p[ARP].op == 1 and p[ARP].psrc == p[ARP].pdst == "10.0.0.1" and p.dst == "ff:ff:ff:ff:ff:ff"
    )
    # a gratuitous ARP only refreshes an entry we have; it never creates one
    b = make(MAC_B, IP_B)
    b.receive(0, frame)
    assert b.neighbors.lookup(0, IP_A) is None


def test_arp_reply_to_request_from_scapy() -> None:
    a = make(MAC_A, IP_A)
    req = Ether(src=MAC_PEER, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=MAC_PEER, psrc="10.0.0.9", pdst="10.0.0.1"
    )
    a.receive(0, bytes(req))
    (reply,) = [Ether(f) for f in a.poll(0)]
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == "02:00:00:00:00:01"
    assert reply[ARP].pdst == "10.0.0.9" and reply.dst == MAC_PEER


# ---------------------------------------------------------------- NDP


def test_dad_schedule_then_preferred() -> None:
    a = Interface(InterfaceConfig(mac=MAC_A))
    a.add_ipv6(IP6_A, 64)
    assert a.poll_at() == 0
    frames = [IPv6(bytes(Ether(f).payload)) for f in a.poll(0)]
    ns = [p for p in frames if ICMPv6ND_NS in p]
    assert {p[ICMPv6ND_NS].tgt for p in ns} == {
        "2001:db8::1",
        A.ip_str(A.link_local_from_mac(MAC_A)),
    }
    assert all(p.src == "::" and p.hlim == 255 and p.dst.startswith("ff02::1:ff") for p in ns)
    assert a.preferred_ipv6() == []
    assert a.poll_at() == 1 * SECOND
    a.poll(999_999)
    assert a.preferred_ipv6() == []
    a.poll(1 * SECOND)
    assert set(a.preferred_ipv6()) == {IP6_A, A.link_local_from_mac(MAC_A)}
    assert a.poll_at() is None


def test_dad_detects_duplicate() -> None:
    owner = make(MAC_B, None, IP6_A, dad_transmits=0)  # already owns 2001:db8::1
    newcomer = make(MAC_A, None, IP6_A)
    Link(newcomer, owner).settle(0)
    entry = next(e for e in newcomer.ipv6 if e.addr == IP6_A)
    assert entry.state == "duplicate"
    assert newcomer.counters["ndp.dad-failed"] == 1
    newcomer.poll(2 * SECOND)
    assert IP6_A not in newcomer.preferred_ipv6()


def test_ndp_resolution_and_udp_v6() -> None:
    a, b = make(MAC_A, None, IP6_A), make(MAC_B, None, IP6_B)
    link = Link(a, b)
    link.settle(0)
    link.settle(1 * SECOND)  # DAD done
    got = udp_sink(b, 7)
    a.send_udp(2 * SECOND, None, 5000, IP6_B, 7, b"v6")
    link.settle(2 * SECOND)
    assert got == [(b"v6", (IP6_A, 5000))]
    ns = [p for p in link.sent(0, since=2 * SECOND) if ICMPv6ND_NS in p]
    assert ns and ns[0][IPv6].src == "2001:db8::1"
    assert b.neighbors.lookup(2 * SECOND, IP6_A) == MAC_A


def test_ns_with_bad_hop_limit_ignored() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    ns = (
        Ether(src=MAC_PEER, dst="33:33:ff:00:00:01")
        / IPv6(src="2001:db8::9", dst="ff02::1:ff00:1", hlim=64)
        / ICMPv6ND_NS(tgt="2001:db8::1")
        / ICMPv6NDOptSrcLLAddr(lladdr=MAC_PEER)
    )
    a.receive(0, bytes(ns))
    assert a.poll(0) == []
    assert a.counters["rx.drop.ndp-invalid"] == 1
    a.receive(0, bytes(_with_hlim(ns, 255)))
    (na,) = [Ether(f) for f in a.poll(0)]
    assert na[ICMPv6ND_NA].tgt == "2001:db8::1" and na[ICMPv6ND_NA].S == 1


def _with_hlim(pkt: Ether, hlim: int) -> Ether:
    p = pkt.copy()
    p[IPv6].hlim = hlim
    del p[ICMPv6ND_NS].cksum
    return Ether(bytes(p))


# ---------------------------------------------------------------- fragmentation


def test_ping_with_fragmentation_both_ways_v4() -> None:
    a, b = make(MAC_A, IP_A), make(MAC_B, IP_B)
    link = Link(a, b)
    data = bytes(range(256)) * 16  # 4096 bytes
    from stack.wire.icmpv4 import Icmpv4Message

    a.send_ip(0, IP_B, 1, Icmpv4Message.echo_request(7, 1, data).to_bytes())
    link.settle(0)
    sent_b = [p for p in link.sent(1) if IP in p]
    assert len(sent_b) == 3 and all(len(bytes(p)) <= 1514 for p in sent_b)
    assert b.counters["rx.ipv4.reassembled"] == 1 and a.counters["rx.ipv4.reassembled"] == 1
    assert a.counters["rx.icmpv4.type0"] == 1


def test_ping_with_fragmentation_both_ways_v6() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    b = make(MAC_B, None, IP6_B, dad_transmits=0)
    link = Link(a, b)
    from stack.wire.icmpv6 import Icmpv6Message

    data = b"\xa5" * 4000
    a.send_ip(0, IP6_B, 58, lambda s, d: Icmpv6Message.echo_request(1, 2, data).to_bytes(s, d))
    link.settle(0)
    frags = [p for p in link.sent(1) if IPv6ExtHdrFragment in p]
    assert len(frags) == 3  # 4008 bytes in 1448-byte pieces at MTU 1500
    assert a.counters["rx.icmpv6.type129"] == 1


def test_reassembly_timeout_sends_time_exceeded_v4() -> None:
    a = make(MAC_A, IP_A)
    a.neighbors.fill(0, A.ip_parse("10.0.0.9"), A.mac_parse(MAC_PEER))
    first = (
        Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
        / IP(src="10.0.0.9", dst="10.0.0.1", id=42, flags="MF", proto=17)
        / Raw(b"\x00" * 64)
    )
    a.receive(0, bytes(first))
    assert a.poll(0) == []
    assert a.poll_at() == 30 * SECOND
    assert a.poll(30 * SECOND - 1) == []
    (err,) = [Ether(f) for f in a.poll(30 * SECOND)]
    assert err[ICMP].type == 11 and err[ICMP].code == 1
    assert a.counters["rx.drop.reasm-timeout"] == 1


def test_reassembly_timeout_v6_without_first_fragment_is_silent() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    later = (
        Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
        / IPv6(src="2001:db8::9", dst="2001:db8::1")
        / IPv6ExtHdrFragment(offset=10, m=0, id=5, nh=17)
        / Raw(b"\x00" * 32)
    )
    a.receive(0, bytes(later))
    assert a.poll_at() == 60 * SECOND
    assert a.poll(60 * SECOND) == []
    assert a.counters["rx.drop.reasm-timeout"] == 1


def test_reassembly_timeout_v6_with_first_fragment() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    a.neighbors.fill(0, A.ip_parse("2001:db8::9"), A.mac_parse(MAC_PEER))
    first = (
        Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
        / IPv6(src="2001:db8::9", dst="2001:db8::1")
        / IPv6ExtHdrFragment(offset=0, m=1, id=5, nh=17)
        / Raw(b"\x00" * 32)
    )
    a.receive(0, bytes(first))
    a.neighbors.fill(60 * SECOND, A.ip_parse("2001:db8::9"), A.mac_parse(MAC_PEER))
    (err,) = [Ether(f) for f in a.poll(60 * SECOND)]
    assert ICMPv6TimeExceeded in err and err[ICMPv6TimeExceeded].code == 1


@pytest.mark.parametrize("policy", ["drop", "first", "last"])
def test_overlap_policies(policy: str) -> None:
    r = Reassembler(ReassemblyConfig(overlap=policy))  # type: ignore[arg-type]
    key = ("k",)
    assert r.feed(0, key, 0, True, b"A" * 16).payload is None
    res = r.feed(0, key, 8, True, b"B" * 16)
    if policy == "drop":
        assert res.dropped == "reasm-overlap"
        assert r.feed(0, key, 24, False, b"C" * 8).payload is None  # poisoned until timeout
        return
    done = r.feed(0, key, 24, False, b"C" * 8).payload
    expected = (
        b"A" * 16 + b"B" * 8 + b"C" * 8 if policy == "first" else b"A" * 8 + b"B" * 16 + b"C" * 8
    )
    assert done == expected


def test_reassembly_exact_duplicate_is_harmless_and_limits_hold() -> None:
    r = Reassembler(ReassemblyConfig(max_datagrams=2))
    assert r.feed(0, (1,), 0, True, b"x" * 8).dropped is None
    assert r.feed(0, (1,), 0, True, b"x" * 8).dropped == "reasm-duplicate"
    assert r.feed(0, (1,), 8, False, b"y").payload == b"x" * 8 + b"y"
    r.feed(0, (2,), 0, True, b"x" * 8)
    r.feed(0, (3,), 0, True, b"x" * 8)
    assert r.feed(0, (4,), 0, True, b"x" * 8).dropped == "reasm-table-full"
    assert r.feed(0, (5,), 65528, False, b"z" * 16).dropped == "reasm-too-big"


# ---------------------------------------------------------------- ICMP errors and rate limiting


def test_udp_closed_port_unreachable_rate_limited() -> None:
    a = make(MAC_A, IP_A)
    a.neighbors.fill(0, A.ip_parse("10.0.0.9"), A.mac_parse(MAC_PEER))
    dgram = (
        Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
        / IP(src="10.0.0.9", dst="10.0.0.1")
        / UDP(sport=1234, dport=9999)
        / Raw(b"q")
    )
    for _ in range(50):
        a.receive(0, bytes(dgram))
    errs = [Ether(f) for f in a.poll(0)]
    assert len(errs) == 10  # the burst
    assert all(e[ICMP].type == 3 and e[ICMP].code == 3 for e in errs)
    assert errs[0][UDPerror].dport == 9999  # quotes the invoking datagram
    assert a.counters["tx.icmp.rate-limited"] == 40
    a.receive(100 * MS, bytes(dgram))  # 10/s refills one token per 100 ms
    assert len(a.poll(100 * MS)) == 1
    a.receive(150 * MS, bytes(dgram))
    assert a.poll(150 * MS) == []


def test_protocol_unreachable_v4_and_param_problem_v6() -> None:
    a = make(MAC_A, IP_A, IP6_A, dad_transmits=0)
    a.neighbors.fill(0, A.ip_parse("10.0.0.9"), A.mac_parse(MAC_PEER))
    a.neighbors.fill(0, A.ip_parse("2001:db8::9"), A.mac_parse(MAC_PEER))
    a.receive(
        0,
        bytes(
            Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
            / IP(src="10.0.0.9", dst="10.0.0.1", proto=253)
            / Raw(b"z")
        ),
    )
    a.receive(
        0,
        bytes(
            Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
            / IPv6(src="2001:db8::9", dst="2001:db8::1", nh=253)
            / Raw(b"z")
        ),
    )
    v4, v6 = (Ether(f) for f in a.poll(0))
    assert v4[ICMP].type == 3 and v4[ICMP].code == 2
    assert v6[ICMPv6ParamProblem].code == 1 and v6[ICMPv6ParamProblem].ptr == 6


def test_routing_header_with_segments_left_draws_param_problem() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    a.neighbors.fill(0, A.ip_parse("2001:db8::9"), A.mac_parse(MAC_PEER))
    pkt = (
        Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
        / IPv6(src="2001:db8::9", dst="2001:db8::1")
        / IPv6ExtHdrRouting(addresses=["2001:db8::77"], segleft=1)
        / UDP(dport=7)
    )
    a.receive(0, bytes(pkt))
    (err,) = [Ether(f) for f in a.poll(0)]
    assert err[ICMPv6ParamProblem].code == 0 and err[ICMPv6ParamProblem].ptr == 42


def test_echo_v6_and_port_unreachable_v6() -> None:
    a = make(MAC_A, None, IP6_A, dad_transmits=0)
    a.neighbors.fill(0, A.ip_parse("2001:db8::9"), A.mac_parse(MAC_PEER))
    base = Ether(src=MAC_PEER, dst="02:00:00:00:00:01") / IPv6(src="2001:db8::9", dst="2001:db8::1")
    a.receive(0, bytes(base / ICMPv6EchoRequest(id=3, seq=4, data=b"ping")))
    a.receive(0, bytes(base / UDP(sport=1, dport=2)))
    reply, unreach = (Ether(f) for f in a.poll(0))
    assert reply[ICMPv6EchoReply].id == 3 and reply[ICMPv6EchoReply].data == b"ping"
    assert unreach[ICMPv6DestUnreach].code == 4


def test_not_our_frames_and_own_frames_dropped() -> None:
    a = make(MAC_A, IP_A)
    a.receive(
        0,
        bytes(
            Ether(src=MAC_PEER, dst="02:00:00:00:00:77")
            / IP(src="10.0.0.9", dst="10.0.0.1")
            / ICMP()
        ),
    )
    a.receive(
        0,
        bytes(
            Ether(src=MAC_PEER, dst="02:00:00:00:00:01")
            / IP(src="10.0.0.9", dst="10.0.0.77")
            / ICMP()
        ),
    )
    assert a.poll(0) == []
    assert a.counters["rx.drop.not-our-mac"] == 1 and a.counters["rx.drop.not-our-ip"] == 1


def test_broadcast_ping_ignored_by_default() -> None:
    a = make(MAC_A, IP_A)
    a.receive(
        0,
        bytes(
            Ether(src=MAC_PEER, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="10.0.0.9", dst="10.0.0.255")
            / ICMP()
        ),
    )
    assert a.poll(0) == []
    assert a.counters["rx.drop.broadcast-ping"] == 1


def test_ttl_and_hop_limit_configurable() -> None:
    a = make(MAC_A, IP_A, IP6_A, ttl=7, hop_limit=9, dad_transmits=0)
    a.neighbors.fill(0, IP_B, MAC_B)
    a.neighbors.fill(0, IP6_B, MAC_B)
    a.send_udp(0, None, 1, IP_B, 2, b"")
    a.send_udp(0, None, 1, IP6_B, 2, b"")
    v4, v6 = (Ether(f) for f in a.poll(0))
    assert v4[IP].ttl == 7 and v6[IPv6].hlim == 9


def test_default_gateway_and_static_route() -> None:
    a = make(MAC_A, IP_A, IP6_A, dad_transmits=0)
    gw4, gw6, gw_mac = A.ip_parse("10.0.0.254"), A.ip_parse("2001:db8::fe"), A.mac_parse(MAC_PEER)
    a.set_gateway(gw4)
    a.set_gateway(gw6)
    a.routes4.add(A.ip_parse("192.168.5.0"), 24, A.ip_parse("10.0.0.253"))
    a.neighbors.fill(0, gw4, gw_mac)
    a.neighbors.fill(0, gw6, gw_mac)
    assert a.send_udp(0, None, 1, A.ip_parse("8.8.8.8"), 53, b"q")
    assert a.send_udp(0, None, 1, A.ip_parse("2001:4860::8888"), 53, b"q")
    assert a.send_udp(0, None, 1, A.ip_parse("192.168.5.7"), 53, b"q")
    v4, v6, arp = (Ether(f) for f in a.poll(0))
    assert v4.dst == MAC_PEER and v4[IP].dst == "8.8.8.8" and v4[IP].src == "10.0.0.1"
    assert v6.dst == MAC_PEER and v6[IPv6].dst == "2001:4860::8888"
    assert arp[ARP].pdst == "10.0.0.253"  # the more specific route's gateway is resolved


def test_no_route_is_refused_and_counted() -> None:
    a = make(MAC_A, IP_A)
    assert not a.send_udp(0, None, 1, A.ip_parse("8.8.8.8"), 53, b"q")
    assert a.counters["tx.drop.no-route"] == 1
