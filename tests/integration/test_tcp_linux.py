"""The reference stack's TCP against the Linux kernel's, over a TAP in a network namespace.

Linux is the peer that every embedded stack must talk to, and the one whose TCP options are
easy to switch: ``net.ipv4.tcp_{sack,window_scaling,timestamps,ecn,fastopen}`` are per
namespace (the ``ipv4`` ones apply to IPv6 too). For each setting on and off, 20 MB cross the
TAP byte-exact in both directions, over IPv4 and IPv6, with the stack as server (the real
``hil stack serve`` process: echo, discard, chargen) and as client (the stack run in this
process, connecting to a Linux echo server). Linux's own view of each connection
(``TCP_INFO``: which options it agreed to, whether it saw ECT, whether its SYN data was
acknowledged) is the independent check that the negotiation went the way RFC 7323, RFC 2018,
RFC 3168 and RFC 7413 say it must. Captures, dissected by tshark, check ECN and Fast Open on
the wire. Finally the everyday tools, ``nc`` and ``iperf`` (iperf2), are pointed at the stack.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack.iface import Interface, InterfaceConfig
from stack.phy import PcapDevice, PcapngWriter, TapDevice
from stack.phy.base import Device
from stack.phy.loop import run
from stack.tcp.layer import TcpLayer
from stack.tcp.profile import profile
from stack.tcp.socket import TcpSocket
from stack.time import MonotonicClock
from stack.wire import addr as A
from tests import tshark
from tests.integration.conftest import Netns, Served, sh, start_stack

pytestmark = pytest.mark.root

MB20 = 20_000_000
SERVICES = f"echo:7,discard:9,chargen:19:{MB20}"
LINUX_ECHO_PORT = 5007
FULL = profile("full")  # what `hil stack serve` and the in-process stack run here

# The RFC 864 pattern, built from the RFC's words (95 printing characters as a ring, line N
# holds characters N .. N+71, CR LF), not taken from the stack.
_RING = bytes(range(32, 127))
CHARGEN_RFC864 = b"".join(
    bytes(_RING[(n + i) % 95] for i in range(72)) + b"\r\n" for n in range(95)
)


def _ws_shift(rcv_buf: int) -> int:
    """RFC 7323 2.3: the smallest shift that lets the 16-bit field carry the whole buffer."""
    shift = 0
    while rcv_buf >> shift > 0xFFFF and shift < 14:
        shift += 1
    return shift


def test_chargen_oracle_is_rfc864s_sample() -> None:
    # RFC 864's sample, lines 0 and 1 (line 0 starts with the space)
    assert CHARGEN_RFC864[:148] == (
        b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
    )


# ----------------------------------------------------------------------------- the Linux side

PEER = r"""
import json, random, socket, struct, sys, threading, time

def info(s):
    # struct tcp_info (linux/tcp.h): options byte 5, wscale nibbles byte 6,
    # total_retrans u32 @100, bytes_acked u64 @120, bytes_received u64 @128
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 136)
    o = raw[5]
    return {
        "ts": bool(o & 1), "sack": bool(o & 2), "ws": bool(o & 4), "ecn": bool(o & 8),
        "ecn_seen": bool(o & 16), "syn_data": bool(o & 32),
        "snd_wscale": raw[6] & 15, "rcv_wscale": raw[6] >> 4,
        "retrans": struct.unpack_from("I", raw, 100)[0],
        "bytes_acked": struct.unpack_from("Q", raw, 120)[0],
        "bytes_received": struct.unpack_from("Q", raw, 128)[0],
    }

def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET

def read_all(s, n):
    buf = bytearray(n + 65536)
    view = memoryview(buf)
    got = 0
    while True:
        k = s.recv_into(view[got:])
        if not k:
            return bytes(buf[:got])
        got += k
        if got == len(buf):
            return bytes(buf[:got]) + b"<overflow>"

def open_conn(addr, port, data, tfo):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    first = 0
    if tfo:
        # blocking: returns once the handshake is done, with what went out (in the SYN or not)
        first = s.sendto(data[:1000], socket.MSG_FASTOPEN, (addr, port))
    else:
        s.settimeout(10)
        s.connect((addr, port))
    s.settimeout(60)
    return s, first

def echo(addr, n, seed, tfo):
    data = random.Random(seed).randbytes(n)
    s, first = open_conn(addr, 7, data, tfo)
    def writer():
        s.sendall(data[first:])
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=writer)
    t.start()
    got = read_all(s, n)
    t.join()
    return {"ok": got == data, "len": len(got), "info": info(s)}

def request(addr, n, seed, tfo):
    # one request, then wait for the whole answer before sending anything else: an echo that
    # sat on data from the SYN until more data or the FIN came would time out here
    data = random.Random(seed).randbytes(n)
    s, first = open_conn(addr, 7, data, tfo)
    s.sendall(data[first:])
    s.settimeout(5)
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            break
        got += d
    res = {"ok": got == data, "len": len(got), "info": info(s)}
    s.close()
    return res

def discard(addr, n, seed, tfo):
    data = random.Random(seed).randbytes(n)
    s, first = open_conn(addr, 9, data, tfo)
    s.sendall(data[first:])
    s.shutdown(socket.SHUT_WR)
    rest = s.recv(100)  # RFC 863: the server closes when we do
    return {"ok": rest == b"", "len": n, "info": info(s)}

def chargen(addr, n, seed, tfo):
    ring = bytes(range(32, 127))
    lines = b"".join(bytes(ring[(k + i) % 95] for i in range(72)) + b"\r\n" for k in range(95))
    s, _ = open_conn(addr, 19, b"", False)
    got = read_all(s, n)
    expected = (lines * (n // len(lines) + 1))[:n]
    return {"ok": got == expected, "len": len(got), "info": info(s)}

def client(jobs):
    for job in jobs:
        t0 = time.monotonic()
        try:
            res = globals()[job["kind"]](job["addr"], job["n"], job["seed"], job["tfo"])
        except Exception as exc:
            res = {"ok": False, "error": repr(exc)}
        res["seconds"] = time.monotonic() - t0
        res.update(job)
        print(json.dumps(res), flush=True)

def server(port, count):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", port))
    # Fast Open is offered on the socket; the netns sysctl decides whether it is used
    ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    ls.listen(8)
    ls.settimeout(120)
    print("listening", flush=True)
    for _ in range(count):
        c, peer = ls.accept()
        c.settimeout(60)
        total = 0
        try:
            while True:
                d = c.recv(262144)
                if not d:
                    break
                c.sendall(d)
                total += len(d)
            res = {"peer": peer[0], "len": total, "info": info(c)}
        except Exception as exc:
            res = {"peer": peer[0], "len": total, "error": repr(exc)}
        c.close()
        print(json.dumps(res), flush=True)

if sys.argv[1] == "client":
    client(json.loads(sys.argv[2]))
else:
    server(int(sys.argv[2]), int(sys.argv[3]))
"""


def linux_client(ns: Netns, jobs: list[dict[str, object]], timeout: float = 180) -> list[dict]:
    res = ns.run(sys.executable, "-c", PEER, "client", json.dumps(jobs), timeout=timeout)
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(jobs), res.stdout + res.stderr
    return out


def set_sysctls(ns: Netns, values: dict[str, str]) -> None:
    ns.run("sysctl", "-qw", *(f"net.ipv4.{k}={v}" for k, v in values.items()))
    for k, v in values.items():  # read back: a silently ignored write would void the test
        assert ns.run("sysctl", "-n", f"net.ipv4.{k}").stdout.strip() == v, k


# ----------------------------------------------------------------------------- the stack as client


@dataclass
class Transfer:
    """Send ``data`` from the stack, read the echo back, both ends of one connection."""

    dst: bytes
    data: bytes
    label: str
    sock: TcpSocket | None = None
    sent: int = 0
    shut: bool = False
    rx: bytearray = field(default_factory=bytearray)
    done: bool = False
    error: str | None = None
    started: float = 0.0
    seconds: float = 0.0

    def start(self, tcp: TcpLayer, now: int) -> None:
        self.started = time.monotonic()
        first = self.data[:1000]  # queued before the SYN: rides in it when a cookie is cached
        self.sock = tcp.connect(now, self.dst, LINUX_ECHO_PORT, data=first)
        self.sent = len(first)
        self.sock.on_writable = self.fill
        self.sock.on_connected = self.fill
        self.sock.on_readable = self.read
        self.sock.on_closed = self.closed

    def fill(self, sock: TcpSocket) -> None:
        view = memoryview(self.data)
        while self.sent < len(self.data):
            room = sock.send_space
            if room <= 0:
                break
            self.sent += sock.send(view[self.sent : self.sent + room])
        if self.sent == len(self.data) and not self.shut and sock.established:
            self.shut = True
            sock.shutdown()

    def read(self, sock: TcpSocket) -> None:
        self.rx += sock.recv()
        if sock.eof and not self.done:
            self.done = True
            self.seconds = time.monotonic() - self.started

    def closed(self, sock: TcpSocket) -> None:
        if sock.error and not self.done:
            self.error = sock.error
            self.done = True


def stack_as_client(
    ns: Netns, transfers: list[Transfer], pcap: Path | None = None, timeout_s: float = 120
) -> TcpLayer:
    """Run the stack in this process on the namespace's TAP and do ``transfers`` in turn."""
    iface = Interface(InterfaceConfig(mac=A.mac_parse(Served.mac), dad_transmits=0))
    iface.add_ipv4(A.ip_parse(Served.v4), 24)
    iface.add_ipv6(A.ip_parse(Served.v6), 64)
    tcp = TcpLayer(iface, FULL)
    device: Device = TapDevice(ns.tap, netns=ns.name)
    if pcap is not None:
        device = PcapDevice(device, PcapngWriter(pcap, device.link_type))
    clock = MonotonicClock()
    deadline = time.monotonic() + timeout_s
    queue = list(transfers)
    current: list[Transfer] = []

    def stop() -> bool:
        if current and not current[0].done:
            return time.monotonic() > deadline
        if not queue:
            return True
        current[:] = [queue.pop(0)]
        current[0].start(tcp, clock.now())
        return False

    try:
        run(iface, device, clock, stop=stop)
    finally:
        device.close()
    assert iface.counters["internal-error"] == 0
    return tcp


def start_linux_echo_server(ns: Netns, count: int) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", ns.name, sys.executable, "-c", PEER, "server"]
    proc = subprocess.Popen(
        [*argv, str(LINUX_ECHO_PORT), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ns.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "listening", line + proc.communicate(timeout=5)[0]
    return proc


# ----------------------------------------------------------------------------- leftovers


_MADE: list[Netns] = []


@pytest.fixture
def netns(netns: Netns) -> Netns:
    """The conftest namespace, remembered so the module can check it is gone afterwards."""
    _MADE.append(netns)
    return netns


@pytest.fixture(scope="module", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Every namespace, TAP and process this module made is gone when it ends.

    Only our own namespaces are looked for: other sessions may be running at the same time.
    """
    yield
    if not _MADE:
        return
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    assert [ns.name for ns in _MADE if ns.name in listed] == []
    assert [p.args for ns in _MADE for p in ns.procs if p.poll() is None] == []
    # a TAP whose namespace is deleted is destroyed with it, not moved to the root namespace
    links = sh("ip", "-o", "link", "show", check=False).stdout
    assert not re.search(rf"\d+: {_MADE[0].tap}[:@]", links), links


# ----------------------------------------------------------------------------- the matrix

ALL_ON = {
    "tcp_sack": "1",
    "tcp_window_scaling": "1",
    "tcp_timestamps": "1",
    "tcp_ecn": "1",  # request ECN as a client, accept it as a server
    "tcp_fastopen": "3",  # client and server
}
OFF = {
    "tcp_sack": "0",
    "tcp_window_scaling": "0",
    "tcp_timestamps": "0",
    "tcp_ecn": "0",
    "tcp_fastopen": "0",
}
# every setting is on in "all-on", off in its own case, and everything is off at once
MATRIX = [
    pytest.param(ALL_ON, id="all-on"),
    *(pytest.param({**ALL_ON, k: OFF[k]}, id=f"{k}=0") for k in OFF),
    pytest.param(OFF, id="all-off"),
]


def _expected(cfg: dict[str, str], linux_is_client: bool) -> dict[str, bool]:
    """What Linux must report agreeing to, from its settings and the stack's full profile.

    Each option is used only when both SYNs carry it (RFC 7323 2.2/3.2, RFC 2018 2); ECN only
    when the client asks (tcp_ecn=1 makes Linux ask, any non-zero value makes it accept)
    and the server echoes (RFC 3168 6.1.1).
    """
    on = {k: v != "0" for k, v in cfg.items()}
    ecn_linux = cfg["tcp_ecn"] == "1" if linux_is_client else on["tcp_ecn"]
    return {
        "sack": on["tcp_sack"] and FULL.sack,
        "ws": on["tcp_window_scaling"] and FULL.window_scale,
        "ts": on["tcp_timestamps"] and FULL.timestamps,
        "ecn": ecn_linux and FULL.ecn,
    }


def _check_info(res: dict, cfg: dict[str, str], linux_is_client: bool, stack_sends: bool) -> None:
    info = res["info"]
    want = _expected(cfg, linux_is_client)
    got = {k: info[k] for k in want}
    assert got == want, (res.get("label", res), info)
    if want["ws"]:
        # Linux's send shift is the one the stack advertised for its receive buffer
        assert info["snd_wscale"] == _ws_shift(FULL.rcv_buf), info
    # RFC 3168 6.1.2/6.1.4: data segments are ECT once ECN is agreed; pure ACKs never are, so
    # Linux sees ECT exactly when the stack sent it data on an ECN connection
    assert info["ecn_seen"] == (want["ecn"] and stack_sends), info


@pytest.mark.slow
@pytest.mark.parametrize("cfg", MATRIX)
def test_20mb_byte_exact_both_directions(netns: Netns, cfg: dict[str, str]) -> None:
    set_sysctls(netns, cfg)
    tfo = cfg["tcp_fastopen"] == "3"
    timings: list[str] = []

    # --- the stack as server: `hil stack serve`; Linux connects
    served = start_stack(netns, "--services", SERVICES, "--no-dad")
    jobs: list[dict[str, object]] = []
    for addr in (served.v4, served.v6):
        if tfo:  # fetch a cookie first (RFC 7413 4.1.1): this SYN asks, carries no data
            jobs.append(dict(kind="request", addr=addr, n=900, seed=1, tfo=True, label="cookie"))
        for kind in ("echo", "discard", "chargen"):
            jobs.append(dict(kind=kind, addr=addr, n=MB20, seed=7, tfo=tfo, label=kind))
    results = linux_client(netns, jobs)
    summary = served.stop()
    for res in results:
        assert res["ok"] and res["len"] == res["n"], res
        _check_info(res, cfg, linux_is_client=True, stack_sends=res["kind"] != "discard")
        if res["label"] == "cookie":
            assert not res["info"]["syn_data"], res  # no cookie yet: data after the handshake
        else:
            # RFC 7413 3: with the cookie the data rides in the SYN and the SYN-ACK acks it
            assert res["info"]["syn_data"] == (tfo and res["kind"] != "chargen"), res
        if res["kind"] == "discard":
            # the stack acknowledged the SYN, every byte and the FIN (Linux counts how far
            # SND.UNA moved from the ISS)
            assert res["info"]["bytes_acked"] == 1 + MB20 + 1, res
        if res["n"] == MB20:
            fam = "v6" if ":" in res["addr"] else "v4"
            mbps = MB20 * 8 / res["seconds"] / 1e6
            timings.append(f"{res['kind']}/{fam} {res['seconds']:.2f}s {mbps:.0f} Mbit/s")
    assert re.search(r"malformed dropped 0,", summary), summary
    assert "internal errors 0" in summary, summary

    # --- the stack as client: in this process, to a Linux echo server
    server = start_linux_echo_server(netns, count=4)
    data = random.Random(3).randbytes(MB20)
    transfers = []
    for linux in (netns.v4, netns.v6):
        transfers.append(Transfer(A.ip_parse(linux), b"cookie?" * 100, f"cookie/{linux}"))
        transfers.append(Transfer(A.ip_parse(linux), data, linux))
    tcp = stack_as_client(netns, transfers)
    out, _ = server.communicate(timeout=30)
    linux_seen = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(linux_seen) == 4, out
    for t, seen in zip(transfers, linux_seen, strict=True):
        assert t.error is None and t.done, (t.label, t.error, len(t.rx))
        assert bytes(t.rx) == t.data, (t.label, len(t.rx))
        assert seen["len"] == len(t.data) and "error" not in seen, seen
        _check_info(seen, cfg, linux_is_client=False, stack_sends=True)
        if len(t.data) == MB20:
            mbps = MB20 * 8 / t.seconds / 1e6
            fam = "v6" if len(t.dst) == 16 else "v4"
            timings.append(f"active-echo/{fam} {t.seconds:.2f}s {mbps:.0f} Mbit/s")
    # Fast Open as the client: the first connection of each family fetches the cookie, the
    # second sends data in its SYN and Linux acknowledges it there
    syn_data = [s["info"]["syn_data"] for s in linux_seen]
    assert syn_data == [False, tfo, False, tfo], linux_seen
    c = tcp.counters
    assert c["tcp.tfo.syn-data"] == (2 if tfo else 0)
    assert c["tcp.tfo.data-not-acked"] == 0
    rtx = re.search(r"retransmitted (\d+)", summary)
    linux_rtx = sum(r["info"]["retrans"] for r in results) + sum(
        s["info"]["retrans"] for s in linux_seen
    )
    timings.append(
        f"retransmissions: serve {rtx.group(1) if rtx else '?'}, "
        f"in-process {c['tcp.tx.retransmit']} (RTOs {c['tcp.rto']}, zero-window probes "
        f"{c['tcp.zwp']}, fast retransmits {c['tcp.fast-retransmit']}), Linux {linux_rtx}"
    )
    head = "/".join(f"{k}={v}" for k, v in cfg.items())
    print(f"\n[{head}] (echo: 20 MB each way at once) " + "; ".join(timings))


# ----------------------------------------------------------------------------- on the wire

SYN_F, ACK_F, ECE_F, CWR_F = 0x02, 0x10, 0x40, 0x80
TFO_KIND = 34


@dataclass
class Frame:
    src: str
    dst: str
    flags: int
    length: int
    ecn: int
    kinds: set[int]
    cookie: str
    seq: int
    ack: int
    retransmit: bool = False

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN_F)


def frames(pcap: Path) -> list[Frame]:
    """Every TCP segment of a capture, with retransmissions marked by us: a data segment whose
    sequence number its sender has used before."""
    names = [
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.flags",
        "tcp.len",
        "ip.dsfield.ecn",
        "ipv6.tclass.ecn",
        "tcp.option_kind",
        "tcp.options.tfo.cookie",
        "tcp.seq_raw",
        "tcp.ack_raw",
    ]
    rows = tshark.fields(pcap, *names, display_filter="tcp && !icmp && !icmpv6")
    out: list[Frame] = []
    seen: set[tuple[str, int]] = set()
    for r in rows:
        r += [""] * (len(names) - len(r))
        kinds = {int(k) for k in r[8].split(",") if k}
        f = Frame(
            src=r[0] or r[1],
            dst=r[2] or r[3],
            flags=int(r[4], 16),
            length=int(r[5]),
            ecn=int(r[6] or r[7] or 0),
            kinds=kinds,
            cookie=r[9],
            seq=int(r[10]),
            ack=int(r[11]),
        )
        if f.length:
            f.retransmit = (f.src, f.seq) in seen
            seen.add((f.src, f.seq))
        out.append(f)
    return out


def _pattern(n: int) -> bytes:
    return (CHARGEN_RFC864 * (n // len(CHARGEN_RFC864) + 1))[:n]


@pytest.mark.parametrize("ecn", ["1", "0"], ids=["tcp_ecn=1", "tcp_ecn=0"])
def test_ecn_negotiation_and_ect_on_the_wire(netns: Netns, tmp_path: Path, ecn: str) -> None:
    """RFC 3168 6.1.1: the client's SYN carries ECE+CWR, the server's SYN-ACK ECE alone, and
    then new data is ECT(0); SYNs, pure ACKs (6.1.4) and retransmissions (6.1.5) are not.
    Linux asks and accepts only with tcp_ecn=1 here; the stack's full profile always does."""
    set_sysctls(netns, {"tcp_ecn": ecn})
    n = 300_000
    pcap_server = tmp_path / "stack-server.pcapng"
    served = start_stack(
        netns, "--services", f"echo:7,chargen:19:{n}", "--no-dad", pcap=pcap_server
    )
    jobs: list[dict[str, object]] = [
        dict(kind=k, addr=a, n=n, seed=5, tfo=False, label=k)
        for a in (served.v4, served.v6)
        for k in ("echo", "chargen")
    ]
    for res in linux_client(netns, jobs):
        assert res["ok"] and res["len"] == n, res
    served.stop()
    pcap_client = tmp_path / "stack-client.pcapng"
    server = start_linux_echo_server(netns, count=2)
    data = random.Random(9).randbytes(n)
    transfers = [Transfer(A.ip_parse(linux), data, linux) for linux in (netns.v4, netns.v6)]
    stack_as_client(netns, transfers, pcap=pcap_client)
    server.communicate(timeout=30)
    assert [bytes(t.rx) == data for t in transfers] == [True, True]

    agreed = ecn == "1" and FULL.ecn
    for pcap, stack_is_client in ((pcap_server, False), (pcap_client, True)):
        assert tshark.problems(pcap) == []
        segs = frames(pcap)
        for me, peer in ((Served.v4, netns.v4), (Served.v6, netns.v6)):
            client, srv = (me, peer) if stack_is_client else (peer, me)
            mine = [f for f in segs if f.src in (me, peer)]
            syns = [f for f in mine if f.src == client and f.flags & (SYN_F | ACK_F) == SYN_F]
            synacks = [
                f for f in mine if f.src == srv and f.flags & (SYN_F | ACK_F) == SYN_F | ACK_F
            ]
            assert syns and synacks
            asks = FULL.ecn if stack_is_client else ecn == "1"
            assert all(f.flags & (ECE_F | CWR_F) == (ECE_F | CWR_F if asks else 0) for f in syns)
            assert all(f.flags & (ECE_F | CWR_F) == (ECE_F if agreed else 0) for f in synacks)
            assert all(f.ecn == 0 for f in syns + synacks)
            for sender in (me, peer):
                new_data = [f for f in mine if f.src == sender and f.length and not f.retransmit]
                assert len(new_data) > 100, (sender, len(new_data))
                assert {f.ecn for f in new_data} == {2 if agreed else 0}, sender
            ours = [f for f in mine if f.src == me]
            assert all(f.ecn == 0 for f in ours if not f.length), "pure ACK or control marked ECT"
            assert all(f.ecn == 0 for f in ours if f.retransmit), "retransmission marked ECT"


def test_fast_open_on_the_wire(netns: Netns, tmp_path: Path) -> None:
    """RFC 7413 with Linux on the other side, both roles: the first SYN asks for a cookie
    (option 34, empty), the SYN-ACK brings one, the next SYN carries the cookie and data, and
    the SYN-ACK acknowledges that data (SEG.ACK = ISN + 1 + data length)."""
    set_sysctls(netns, {"tcp_fastopen": "3"})
    pcap_server = tmp_path / "stack-server.pcapng"
    served = start_stack(netns, "--services", "echo:7", "--no-dad", pcap=pcap_server)
    jobs: list[dict[str, object]] = [
        dict(kind="request", addr=a, n=n, seed=i, tfo=True, label="tfo")
        for a in (served.v4, served.v6)
        for i, n in enumerate((700, 900))
    ]
    results = linux_client(netns, jobs)
    for r in results:
        assert r["ok"], r
    assert [r["info"]["syn_data"] for r in results] == [False, True, False, True], results
    served.stop()
    pcap_client = tmp_path / "stack-client.pcapng"
    server = start_linux_echo_server(netns, count=4)
    transfers = [
        Transfer(A.ip_parse(linux), random.Random(n).randbytes(n), linux)
        for linux in (netns.v4, netns.v6)
        for n in (700, 900)
    ]
    tcp = stack_as_client(netns, transfers, pcap=pcap_client)
    server.communicate(timeout=30)
    assert all(bytes(t.rx) == t.data for t in transfers)
    assert tcp.counters["tcp.tfo.syn-data"] == 2

    for pcap, stack_is_client in ((pcap_server, False), (pcap_client, True)):
        assert tshark.problems(pcap) == []
        segs = frames(pcap)
        for me, peer in ((Served.v4, netns.v4), (Served.v6, netns.v6)):
            client, srv = (me, peer) if stack_is_client else (peer, me)
            syns = [f for f in segs if f.src == client and f.flags & (SYN_F | ACK_F) == SYN_F]
            synacks = [
                f for f in segs if f.src == srv and f.flags & (SYN_F | ACK_F) == SYN_F | ACK_F
            ]
            assert len(syns) == 2 and len(synacks) == 2, (client, syns, synacks)
            ask, use = syns
            assert TFO_KIND in ask.kinds and ask.cookie == "" and ask.length == 0, ask
            assert synacks[0].cookie, "the server's first SYN-ACK must bring a cookie"
            assert synacks[0].ack == (ask.seq + 1) & 0xFFFFFFFF
            assert use.cookie == synacks[0].cookie and use.length > 0, use
            assert synacks[1].ack == (use.seq + 1 + use.length) & 0xFFFFFFFF, "SYN data not acked"
            # the data in the SYN is not sent again
            assert not [f for f in segs if f.src == client and f.length and f.seq == use.seq + 1]


# ----------------------------------------------------------------------------- everyday tools


def _in_ns(ns: Netns, argv: list[str], stdin: Path | None, timeout: float = 30) -> bytes:
    with open(stdin or "/dev/null", "rb") as f:
        res = subprocess.run(
            ["ip", "netns", "exec", ns.name, *argv],
            stdin=f,
            capture_output=True,
            timeout=timeout,
        )
    assert res.returncode == 0, (argv, res.stderr)
    return res.stdout


def test_nc_and_iperf_against_stack_serve(netns: Netns, tmp_path: Path) -> None:
    n = 2_000_000
    served = start_stack(netns, "--services", f"echo:7,discard:9,chargen:19:{n}", "--no-dad")
    payload = tmp_path / "payload"
    payload.write_bytes(random.Random(11).randbytes(n))
    report: list[str] = []
    for addr in (served.v4, served.v6):
        # -N: FIN once stdin is done; nc then waits for the echo service to close
        assert _in_ns(netns, ["nc", "-N", addr, "7"], payload) == payload.read_bytes()
        _in_ns(netns, ["nc", "-N", addr, "9"], payload)
        assert _in_ns(netns, ["nc", "-d", addr, "19"], None) == _pattern(n)
        v6 = ["-V"] if ":" in addr else []
        out = _in_ns(netns, ["iperf", "-c", addr, *v6, "-p", "9", "-t", "3", "-f", "m"], None)
        text = out.decode()
        m = re.search(r"sec\s+([\d.]+) MBytes\s+([\d.]+) Mbits/sec", text)
        assert m, text
        assert float(m.group(1)) > 0 and float(m.group(2)) > 0, text
        report.append(f"iperf {addr}: {m.group(1)} MBytes, {m.group(2)} Mbit/s")
    summary = served.stop()
    assert "internal errors 0" in summary and "malformed dropped 0," in summary, summary
    print("\n" + "; ".join(report) + f"\n{summary}")
