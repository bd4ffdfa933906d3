"""The reference stack against the Linux kernel stack, over a real TAP in a namespace.

Linux is the peer: its ping, its sockets, its neighbour table. The stack runs as the real
``hil stack serve`` process. Every capture the stack writes is checked by tshark.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest

from stack.iface import Interface, InterfaceConfig
from stack.phy import TapDevice
from stack.phy.loop import run
from stack.time import MonotonicClock
from stack.wire import addr as A
from tests import tshark
from tests.integration.conftest import Netns, Served, start_stack

pytestmark = pytest.mark.root


def ping(ns: Netns, target: str, *opts: str, count: int = 3) -> str:
    v6 = ":" in target
    argv = ["ping", "-6" if v6 else "-4", "-c", str(count), "-i", "0.2", "-W", "2", *opts, target]
    res = ns.run(*argv, check=False, timeout=30)
    assert res.returncode == 0, f"{' '.join(argv)} in {ns.name} failed:\n{res.stdout}{res.stderr}"
    assert f"{count} received" in res.stdout, res.stdout
    return res.stdout


def test_ping_v4_v6_and_link_local(netns: Netns, served: Served) -> None:
    ping(netns, served.v4)
    ping(netns, served.v6)
    ping(netns, f"{served.ll}%{netns.tap}")


def test_ping_fragmented_both_ways(netns: Netns, served: Served) -> None:
    out4 = ping(netns, served.v4, "-s", "4000")
    out6 = ping(netns, served.v6, "-s", "4000")
    assert "4008 bytes from" in out4 and "4008 bytes from" in out6


def test_udp_echo_byte_exact(netns: Netns, served: Served) -> None:
    code = r"""
import os, socket, sys
for fam, addr in ((socket.AF_INET, "V4"), (socket.AF_INET6, "V6")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    for size in (0, 1, 512, 1472, 4000, 30000):
        payload = os.urandom(size)
        s.sendto(payload, (addr, 7))
        data, src = s.recvfrom(65535)
        assert data == payload, (fam, size, len(data))
        assert src[1] == 7
print("ok")
""".replace("V4", served.v4).replace("V6", served.v6)
    assert netns.python(code).strip() == "ok"


def test_closed_udp_port_draws_port_unreachable(netns: Netns, served: Served) -> None:
    # A connected UDP socket on Linux turns an ICMP port unreachable into ECONNREFUSED.
    code = r"""
import socket
import sys
for fam, addr in ((socket.AF_INET, "V4"), (socket.AF_INET6, "V6")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((addr, 9999))
    s.send(b"anyone?")
    try:
        s.recv(100)
        print("no error")
    except ConnectionRefusedError:
        print("refused")
""".replace("V4", served.v4).replace("V6", served.v6)
    assert netns.python(code).split() == ["refused", "refused"]


def test_linux_resolved_our_mac(netns: Netns, served: Served) -> None:
    ping(netns, served.v4, count=1)
    ping(netns, served.v6, count=1)
    neigh = netns.run("ip", "neigh", "show", "dev", netns.tap).stdout
    assert re.search(rf"{re.escape(served.v4)} lladdr {served.mac}", neigh), neigh
    assert re.search(rf"{re.escape(served.v6)} lladdr {served.mac}", neigh), neigh


def test_stack_resolves_linux_first(netns: Netns) -> None:
    """The stack speaks first: it must ARP and NS for Linux before its datagrams can leave."""
    code_listen = r"""
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 5500 + int(sys.argv[1])))
s.settimeout(10)
data, src = s.recvfrom(100)
print(data.decode())
"""
    iface = Interface(InterfaceConfig(mac=A.mac_parse("02:00:00:00:00:02")))
    iface.add_ipv4(A.ip_parse("10.77.0.2"), 24)
    iface.add_ipv6(A.ip_parse("2001:db8:77::2"), 64)
    device = TapDevice(netns.tap, netns=netns.name)
    results: dict[str, str] = {}

    def listen(v: str) -> None:
        results[v] = netns.run(sys.executable, "-c", code_listen, v, timeout=20).stdout.strip()

    listeners = [threading.Thread(target=listen, args=(v,)) for v in ("4", "6")]
    for t in listeners:
        t.start()
    clock = MonotonicClock()
    start = clock.now()
    sent = {"4": False, "6": False}

    def stop() -> bool:
        now = clock.now()
        if not sent["4"] and now - start > 500_000:  # give the listeners time to bind
            sent["4"] = iface.send_udp(now, None, 4444, A.ip_parse("10.77.0.1"), 5504, b"hello4")
        if not sent["6"] and A.ip_parse("2001:db8:77::2") in iface.preferred_ipv6():
            sent["6"] = iface.send_udp(
                now, None, 4444, A.ip_parse("2001:db8:77::1"), 5506, b"hello6"
            )
        return not any(t.is_alive() for t in listeners) or now - start > 15_000_000

    try:
        run(iface, device, clock, stop=stop)
    finally:
        device.close()
    assert results == {"4": "hello4", "6": "hello6"}
    assert iface.counters["tx.arp.request"] >= 1 and iface.counters["tx.ndp.ns"] >= 1
    assert iface.neighbors.lookup(clock.now(), A.ip_parse("10.77.0.1")) is not None
    assert iface.neighbors.lookup(clock.now(), A.ip_parse("2001:db8:77::1")) is not None


def test_capture_dissects_cleanly_and_counters_print(netns: Netns, tmp_path: Path) -> None:
    pcap = tmp_path / "stack.pcapng"
    served = start_stack(netns, "--udp-echo", "7", pcap=pcap)
    ping(netns, served.v4, "-s", "4000", count=2)
    ping(netns, served.v6, "-s", "3000", count=2)
    ping(netns, f"{served.ll}%{netns.tap}", count=2)
    netns.python(
        "import socket\n"
        "s = socket.socket(); s.close()\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.sendto(b'x' * 100, ('{served.v4}', 7))\n"
        f"u.sendto(b'closed', ('{served.v4}', 9))\n"
    )
    summary = served.stop()
    assert re.search(r"frames in \d+, out \d+, malformed dropped 0", summary), summary
    assert "internal errors 0" in summary
    assert tshark.count(pcap) > 20
    assert tshark.problems(pcap) == []
    # the capture shows what we claim happened: fragments, an echo reply, an ICMP error
    assert tshark.count(pcap, "ip.flags.mf == 1 && ip.src == 10.77.0.2") >= 2
    assert tshark.count(pcap, "ipv6.fragment && ipv6.src == 2001:db8:77::2") >= 2
    assert tshark.count(pcap, "icmp.type == 3 && icmp.code == 3") == 1
    assert tshark.count(pcap, "udp.srcport == 7 && ip.src == 10.77.0.2") == 1
