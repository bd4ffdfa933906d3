"""Root-only tests of the real devices: TAP/TUN and AF_PACKET inside throwaway namespaces.

Every namespace and interface made here is named ``hilt-*`` and removed in a ``finally`` /
fixture finalizer, so a failing assertion never leaves anything behind. Nothing here touches an
interface outside those namespaces.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack.phy import AfPacketDevice, PcapDevice, PcapngWriter, TapDevice, TunDevice, run
from stack.phy.netns import in_netns
from stack.wire.checksum import Buffer, checksum
from stack.wire.link import LinkType
from tests.integration.conftest import ns_name

pytestmark = pytest.mark.root

FAKE_MAC = bytes.fromhex("020000000042")
NS_IP = "10.77.0.1"
FAKE_IP = "10.77.0.2"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def _need_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        if os.environ.get("CI"):
            pytest.fail("root tests need root, iproute2 and /dev/net/tun; CI must run them")
        pytest.skip("needs root, iproute2 and /dev/net/tun")


@pytest.fixture
def ns() -> Iterator[str]:
    """A fresh network namespace ``hilt-phy-<hex>``, deleted whatever the test does."""
    _need_root()
    name = ns_name("phy")
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # No IPv6 autoconfiguration chatter (RS, MLD, DAD) on the links we create.
        for conf in ("all", "default"):
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)
        assert name not in sh("ip", "netns", "list").stdout


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def wait_for(
    recv: Callable[[], tuple[int, bytes] | None],
    match: Callable[[bytes], bool],
    timeout: float = 3.0,
) -> tuple[int, bytes]:
    """Poll a device until a frame satisfying ``match`` arrives; other frames are skipped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = recv()
        if got is None:
            time.sleep(0.002)
        elif match(got[1]):
            return got
    raise AssertionError("expected frame did not arrive")


def is_arp_request_for(target: bytes) -> Callable[[bytes], bool]:
    return lambda f: f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == target


def is_echo_request(f: bytes, offset: int = 14) -> bool:
    return len(f) > offset + 20 and f[offset + 9] == 1 and f[offset + 20] == 8


def arp_reply(request: bytes, mac: bytes) -> bytes:
    sender_mac, sender_ip, target_ip = request[22:28], request[28:32], request[38:42]
    eth = sender_mac + mac + b"\x08\x06"
    return eth + struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, target_ip, sender_mac, sender_ip
    )


def echo_reply_ip(packet: bytes) -> bytes:
    """Turn an IPv4 echo request into the reply (addresses swapped, type 0, new checksum)."""
    ihl = (packet[0] & 0x0F) * 4
    ip = bytearray(packet[:ihl])
    ip[12:16], ip[16:20] = packet[16:20], packet[12:16]  # header checksum is order-independent
    icmp = bytearray(packet[ihl:])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(icmp))
    return bytes(ip + icmp)


def echo_reply_eth(frame: bytes) -> bytes:
    return frame[6:12] + frame[0:6] + frame[12:14] + echo_reply_ip(frame[14:])


def ping(ns: str, addr: str, count: int = 1, wait: int = 2) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-c",
            str(count),
            "-i",
            "0.2",
            "-W",
            str(wait),
            addr,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 10) -> int:
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# -- TAP -----------------------------------------------------------------------------------


def test_tap_created_in_netns_sees_arp_and_answers_ping(ns: str) -> None:
    outside = netns_inode()
    tap = TapDevice("hilt-tap0", netns=ns, create=True)
    try:
        assert netns_inode() == outside  # we came back out
        assert tap.created and tap.link_type == LinkType.ETHERNET and tap.mtu == 1500
        assert "hilt-tap0" not in sh("ip", "link", "show").stdout  # it lives in the netns only
        link = sh("ip", "-n", ns, "link", "show", "hilt-tap0").stdout
        assert ",UP" in link and "mtu 1500" in link
        sh("ip", "-n", ns, "addr", "add", f"{NS_IP}/24", "dev", "hilt-tap0")

        before = time.time_ns()
        proc = ping(ns, FAKE_IP)
        try:
            ts, req = wait_for(tap.recv, is_arp_request_for(ip4(FAKE_IP)))
            assert before <= ts <= time.time_ns()  # stamped at read(), in epoch ns
            assert req[28:32] == ip4(NS_IP)
            tx_ts = tap.send(arp_reply(req, FAKE_MAC))
            assert abs(tx_ts - time.time_ns()) < 1_000_000_000
            _, echo = wait_for(tap.recv, is_echo_request)
            assert echo[0:6] == FAKE_MAC  # the kernel used our ARP answer
            tap.send(echo_reply_eth(echo))
        finally:
            rc = finish(proc)
        assert rc == 0, proc.stdout.read() if proc.stdout else ""
        assert tap.stats.frames_out == 2 and tap.stats.frames_in >= 2 and tap.stats.errors == 0
    finally:
        tap.close()
    # Not persistent: closing the fd removed the interface.
    assert sh("ip", "-n", ns, "link", "show", "hilt-tap0", check=False).returncode != 0
    assert tap.fileno() == -1 and tap.recv() is None


def test_tap_attach_existing_and_missing(ns: str) -> None:
    sh("ip", "-n", ns, "tuntap", "add", "dev", "hilt-ptap", "mode", "tap")
    sh("ip", "-n", ns, "link", "set", "hilt-ptap", "mtu", "1400")
    with TapDevice("hilt-ptap", netns=ns) as tap:
        assert not tap.created and tap.mtu == 1400
    # Persistent interfaces belong to whoever made them: still there after close.
    assert sh("ip", "-n", ns, "link", "show", "hilt-ptap", check=False).returncode == 0
    with pytest.raises(FileNotFoundError):
        TapDevice("hilt-nope", netns=ns)
    assert sh("ip", "-n", ns, "link", "show", "hilt-nope", check=False).returncode != 0


def test_tun_device_raw_ip(ns: str) -> None:
    with TunDevice("hilt-tun0", netns=ns, create=True, mtu=1280) as tun:
        assert tun.link_type == LinkType.RAW_IP and tun.mtu == 1280
        assert "mtu 1280" in sh("ip", "-n", ns, "link", "show", "hilt-tun0").stdout
        sh("ip", "-n", ns, "addr", "add", "10.78.0.1", "peer", "10.78.0.2", "dev", "hilt-tun0")
        proc = ping(ns, "10.78.0.2")
        try:
            ts, pkt = wait_for(tun.recv, lambda p: is_echo_request(p, offset=0))
            assert pkt[0] >> 4 == 4 and pkt[16:20] == ip4("10.78.0.2")
            assert abs(ts - time.time_ns()) < 5_000_000_000
            tun.send(echo_reply_ip(pkt))
        finally:
            rc = finish(proc)
        assert rc == 0


# -- AF_PACKET -----------------------------------------------------------------------------


def test_af_packet_kernel_timestamps_and_own_frames_ignored(ns: str) -> None:
    with (
        TapDevice("hilt-tap0", netns=ns, create=True) as tap,
        AfPacketDevice("hilt-tap0", netns=ns) as afp,
    ):
        assert afp.link_type == LinkType.ETHERNET and afp.mtu == 1500 and afp.fileno() >= 0
        # Writing to the TAP fd = a frame arriving on the interface: the socket sees it inbound.
        inbound = b"\xff" * 6 + FAKE_MAC + b"\x88\xb5" + b"hilt-inbound".ljust(46, b".")
        tap.send(inbound)
        ts, _ = wait_for(afp.recv, lambda f: f == inbound)
        now = time.time_ns()
        assert now - 1_000_000_000 < ts <= now  # a kernel SO_TIMESTAMPNS stamp, in epoch ns

        # What we transmit leaves through the TAP but never comes back to us.
        outbound = b"\xff" * 6 + FAKE_MAC + b"\x88\xb5" + b"hilt-own-frame".ljust(46, b".")
        afp.send(outbound)
        wait_for(tap.recv, lambda f: f == outbound)
        time.sleep(0.05)
        while (got := afp.recv()) is not None:
            assert got[1] != outbound
        assert afp.stats.frames_out == 1 and afp.stats.errors == 0


def test_af_packet_over_veth(ns: str) -> None:
    sh("ip", "-n", ns, "link", "add", "hilt-va", "type", "veth", "peer", "name", "hilt-vb")
    for dev in ("hilt-va", "hilt-vb"):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    with AfPacketDevice("hilt-va", netns=ns) as a, AfPacketDevice("hilt-vb", netns=ns) as b:
        frames = [b"\xff" * 6 + FAKE_MAC + b"\x88\xb5" + bytes([i]) * 50 for i in range(10)]
        stamps = [a.send(f) for f in frames]
        got = [wait_for(b.recv, lambda f: f[12:14] == b"\x88\xb5") for _ in frames]
        assert [f for _, f in got] == frames  # in order, intact
        rx = [ts for ts, _ in got]
        assert rx == sorted(rx)
        assert all(abs(r - s) < 1_000_000_000 for r, s in zip(rx, stamps, strict=True))
        while (back := a.recv()) is not None:  # a never receives what it sent itself
            assert back[1] not in frames
        assert a.stats.frames_out == 10 and b.stats.frames_in >= 10


def test_in_netns_restores_namespace_on_error(ns: str) -> None:
    before = netns_inode()
    with pytest.raises(RuntimeError), in_netns(ns):
        assert netns_inode() != before
        raise RuntimeError("boom")
    assert netns_inode() == before
    with pytest.raises(FileNotFoundError), in_netns("hilt-does-not-exist"):
        pass
    assert netns_inode() == before


# -- the event loop on a real TAP ----------------------------------------------------------


class Responder:
    """Test scaffolding: answers ARP and ICMP echo for one address, like a minimal host."""

    def __init__(self, mac: bytes, ip: bytes) -> None:
        self.mac = mac
        self.ip = ip
        self.out: list[bytes] = []

    def receive(self, now_us: int, frame: Buffer) -> None:
        f = bytes(frame)
        if is_arp_request_for(self.ip)(f):
            self.out.append(arp_reply(f, self.mac))
        elif f[12:14] == b"\x08\x00" and f[30:34] == self.ip and is_echo_request(f):
            self.out.append(echo_reply_eth(f))

    def poll(self, now_us: int) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def poll_at(self) -> int | None:
        return None


def test_run_loop_answers_ping_over_tap_with_capture(ns: str, tmp_path: Path) -> None:
    pcap = tmp_path / "loop.pcapng"
    tap = TapDevice("hilt-tap0", netns=ns, create=True)
    device = PcapDevice(tap, PcapngWriter(pcap))
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(Responder(FAKE_MAC, ip4(FAKE_IP)), device), kwargs={"stop": stop}
    )
    try:
        sh("ip", "-n", ns, "addr", "add", f"{NS_IP}/24", "dev", "hilt-tap0")
        thread.start()
        proc = ping(ns, FAKE_IP, count=3)
        rc = finish(proc)
        assert rc == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        stop.set()
        thread.join(5)
        device.close()
    assert not thread.is_alive()
    from scapy.utils import PcapNgReader

    with PcapNgReader(str(pcap)) as reader:
        pkts = list(reader)
    directions = [(p.direction, bytes(p)[12:14]) for p in pkts]
    assert (1, b"\x08\x06") in directions and (2, b"\x08\x06") in directions
    assert sum(1 for d in directions if d == (2, b"\x08\x00")) == 3  # three echo replies
