"""Unit tests for stack.phy that need neither root nor a real network.

In-memory devices are driven in virtual time; the pcapng writer is checked by two independent
readers (tshark and scapy), and the real-time loop by a socketpair "device" written here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

import pytest

from stack.phy import (
    DeviceStats,
    FaultInjector,
    PcapDevice,
    PcapngWriter,
    PipePair,
    Tracer,
    run,
    run_virtual,
)
from stack.rand import Rng
from stack.time import MonotonicClock, VirtualClock
from stack.wire.checksum import Buffer, checksum
from stack.wire.link import LinkType

REPO = Path(__file__).resolve().parents[2]
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A = bytes([10, 77, 0, 1])
IP_B = bytes([10, 77, 0, 2])


# -- frames built by hand (an oracle independent of stack.wire) ---------------------------


def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    eth = b"\xff" * 6 + src_mac + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, src_ip, bytes(6), target_ip)
    return eth + arp


def ipv4_icmp_echo(src: bytes, dst: bytes, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload)
    icmp[2:4] = struct.pack("!H", checksum(icmp))
    ip = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0x4000, 64, 1, 0, src, dst)
    )
    ip[10:12] = struct.pack("!H", checksum(ip))
    return bytes(ip + icmp)


def eth_icmp_echo(seq: int = 1, payload: bytes = b"tcp-hil" * 8) -> bytes:
    return MAC_B + MAC_A + b"\x08\x00" + ipv4_icmp_echo(IP_A, IP_B, 0x1234, seq, payload)


def numbered(i: int, size: int = 60) -> bytes:
    """A distinguishable Ethernet-sized frame carrying ``i``."""
    return MAC_B + MAC_A + b"\x88\xb5" + struct.pack("!I", i) + bytes(size - 18)


def frame_no(frame: bytes) -> int:
    return int(struct.unpack_from("!I", frame, 14)[0])


# -- PipePair ------------------------------------------------------------------------------


def test_pipe_latency_in_virtual_time() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, latency_us=500)
    assert a.fileno() == -1 and b.fileno() == -1
    assert a.link_type == LinkType.ETHERNET and a.mtu == 1500
    assert a.send(numbered(1)) == 0
    assert b.poll_at() == 500 and a.poll_at() is None
    assert b.recv() is None
    clock.advance(499)
    assert b.recv() is None
    clock.advance(1)
    assert b.recv() == (500_000, numbered(1))
    assert b.recv() is None and b.poll_at() is None
    assert a.stats == DeviceStats(frames_out=1, bytes_out=60)
    assert b.stats == DeviceStats(frames_in=1, bytes_in=60)


def test_pipe_fifo_and_independent_directions() -> None:
    clock = VirtualClock(1_000)
    pair = PipePair(clock, latency_us=100)
    for i in range(5):
        pair.a.send(numbered(i))
        pair.b.send(numbered(100 + i))
        clock.advance(10)
    assert pair.poll_at() == 1_100
    clock.advance_to(10_000)
    got_b = [pair.b.recv() for _ in range(6)]
    got_a = [pair.a.recv() for _ in range(6)]
    assert got_b[-1] is None and got_a[-1] is None
    assert [frame_no(g[1]) for g in got_b if g] == [0, 1, 2, 3, 4]
    assert [frame_no(g[1]) for g in got_a if g] == [100, 101, 102, 103, 104]
    # The capture timestamp is the arrival instant, not when recv() was called.
    assert [g[0] for g in got_b if g] == [(1_100 + 10 * i) * 1000 for i in range(5)]


def test_pipe_copies_frames_and_drops_giants_and_closed() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, mtu=100)
    buf = bytearray(numbered(7))
    a.send(buf)
    buf[14:18] = b"\xff" * 4  # the caller reuses its buffer: the wire must have copied it
    assert b.recv() == (0, numbered(7))
    a.send(bytes(100 + 18))  # mtu + Ethernet header + VLAN tag: still fits
    a.send(bytes(100 + 19))
    assert a.stats.errors == 1 and b.in_flight == 1
    b.close()
    a.send(numbered(8))
    assert a.stats.errors == 2 and b.recv() is None


def test_pipe_raw_ip_link_type() -> None:
    pair = PipePair(VirtualClock(), mtu=1280, link_type=LinkType.RAW_IP)
    assert pair.a.link_type == LinkType.RAW_IP and pair.b.mtu == 1280
    pair.a.send(bytes(1280))
    pair.a.send(bytes(1281))
    assert pair.a.stats.errors == 1


# -- FaultInjector -------------------------------------------------------------------------


def drive(fi: FaultInjector, clock: VirtualClock, n: int, gap_us: int = 100) -> list[int]:
    """Send n numbered frames through ``fi`` (tx), return the numbers arriving at the far end."""
    out: list[int] = []
    peer = fi.inner.peer  # type: ignore[attr-defined]
    for i in range(n):
        fi.send(numbered(i))
        clock.advance(gap_us)
        fi.recv()  # pump
        while (got := peer.recv()) is not None:
            out.append(frame_no(got[1]) if got[1][12:14] == b"\x88\xb5" else -1)
    clock.advance(10_000_000)
    fi.recv()
    while (got := peer.recv()) is not None:
        out.append(frame_no(got[1]) if got[1][12:14] == b"\x88\xb5" else -1)
    return out


def make_fi(seed: int, **faults: object) -> tuple[FaultInjector, VirtualClock]:
    clock = VirtualClock()
    a, _b = PipePair(clock)
    return FaultInjector(a, Rng(seed).fork("fault"), clock, **faults), clock  # type: ignore[arg-type]


ALL_FAULTS = dict(drop=0.2, duplicate=0.2, reorder=0.2, corrupt=0.2, delay_us=300, jitter_us=250)


def test_fault_injector_is_deterministic() -> None:
    runs = []
    for seed in (7, 7, 8):
        fi, clock = make_fi(seed, **ALL_FAULTS)
        out = drive(fi, clock, 300)
        runs.append((out, fi.counters["tx"]))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    c = runs[0][1]
    assert c.frames == 300
    for kind in ("dropped", "duplicated", "reordered", "corrupted", "delayed"):
        assert getattr(c, kind) > 0, kind
    # Conservation: every non-dropped frame arrives once, plus one extra per duplicate.
    assert len(runs[0][0]) == c.frames - c.dropped + c.duplicated


def test_drop_all_and_statistics() -> None:
    fi, clock = make_fi(1, drop=1.0)
    assert drive(fi, clock, 50) == []
    assert fi.counters["tx"].dropped == 50 and fi.stats.frames_out == 50
    fi, clock = make_fi(1, drop=0.5)
    out = drive(fi, clock, 1000)
    assert 400 < len(out) < 600
    assert fi.counters["tx"].dropped == 1000 - len(out)
    assert out == sorted(out)


def test_duplicate() -> None:
    fi, clock = make_fi(1, duplicate=1.0)
    assert drive(fi, clock, 4) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert fi.counters["tx"].duplicated == 4


def test_reorder_releases_after_next() -> None:
    fi, clock = make_fi(1, reorder=1.0)
    # Only one frame is held at a time: 0 held, 1 passes and releases 0, 2 held, 3 ...
    assert drive(fi, clock, 6) == [1, 0, 3, 2, 5, 4]
    assert fi.counters["tx"].reordered == 3 and fi.counters["tx"].reorder_timeouts == 0


def test_reorder_of_last_frame_times_out() -> None:
    fi, clock = make_fi(1, reorder=1.0, reorder_hold_us=5_000)
    peer = fi.inner.peer  # type: ignore[attr-defined]
    fi.send(numbered(1))
    assert fi.poll_at() == 5_000 and peer.recv() is None
    clock.advance_to(4_999)
    fi.recv()
    assert peer.recv() is None
    clock.advance_to(5_000)
    fi.recv()
    got = peer.recv()
    assert got is not None and frame_no(got[1]) == 1 and got[0] == 5_000_000
    assert fi.counters["tx"].reorder_timeouts == 1
    assert fi.poll_at() is None


def test_corrupt_flips_exactly_one_bit() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock)
    fi = FaultInjector(a, Rng(3), clock, corrupt=1.0)
    for i in range(50):
        original = numbered(i)
        fi.send(original)
        got = b.recv()
        assert got is not None
        diff = int.from_bytes(original, "big") ^ int.from_bytes(got[1], "big")
        assert diff.bit_count() == 1
    assert fi.counters["tx"].corrupted == 50


def test_delay_and_jitter_use_the_clock() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, latency_us=50)
    fi = FaultInjector(a, Rng(5), clock, delay_us=1_000)
    assert fi.send(numbered(0)) == 1_000_000  # the predicted transmit time
    assert fi.poll_at() == 1_000
    clock.advance_to(999)
    fi.recv()
    assert b.poll_at() is None
    clock.advance_to(1_000)
    fi.recv()
    assert b.poll_at() == 1_050
    assert fi.counters["tx"].delayed == 1

    clock = VirtualClock()
    a, b = PipePair(clock)
    fi = FaultInjector(a, Rng(5), clock, delay_us=1_000, jitter_us=400)
    arrivals = []
    for i in range(200):
        fi.send(numbered(i))
        t0 = clock.now()
        while (due := fi.poll_at()) is not None:
            clock.advance_to(due)
            fi.recv()
        got = b.recv()
        assert got is not None
        arrivals.append(got[0] // 1000 - t0)
    assert min(arrivals) >= 600 and max(arrivals) <= 1_400
    assert len(set(arrivals)) > 50


def test_rx_direction_only_and_rx_timestamps_shift_with_delay() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock)
    fi = FaultInjector(b, Rng(9), clock, drop=0.0, delay_us=2_000, direction="rx")
    a.send(numbered(1))
    assert fi.recv() is None  # pulled from the pipe, now held for 2 ms
    assert fi.poll_at() == 2_000
    clock.advance_to(2_000)
    got = fi.recv()
    assert got == (2_000_000, numbered(1))
    assert fi.counters["rx"].delayed == 1
    # tx is untouched in rx-only mode
    fi.send(numbered(2))
    assert fi.counters["tx"].frames == 0 and a.recv() == (2_000_000, numbered(2))

    fi2 = FaultInjector(PipePair(clock).a, Rng(9), clock, drop=1.0, direction="rx")
    fi2.send(numbered(3))
    assert fi2.inner.peer.recv() is not None  # type: ignore[attr-defined]


def test_fault_injector_validates_arguments() -> None:
    a, _ = PipePair(VirtualClock())
    with pytest.raises(ValueError):
        FaultInjector(a, Rng(), VirtualClock(), drop=1.5)
    with pytest.raises(ValueError):
        FaultInjector(a, Rng(), VirtualClock(), delay_us=-1)
    with pytest.raises(ValueError):
        FaultInjector(a, Rng(), VirtualClock(), direction="up")  # type: ignore[arg-type]


# -- Tracer --------------------------------------------------------------------------------


def test_tracer_reports_both_directions() -> None:
    clock = VirtualClock(10)
    a, b = PipePair(clock, latency_us=5)
    seen: list[tuple[str, int, bytes]] = []
    ta = Tracer(a, lambda d, ts, f: seen.append((d, ts, f)))
    buf = bytearray(numbered(1))
    ta.send(buf)
    buf[0] = 0  # reused buffer must not change what was traced
    b.send(numbered(2))
    clock.advance(5)
    assert ta.recv() == (15_000, numbered(2))
    assert ta.recv() is None
    assert seen == [("tx", 10_000, numbered(1)), ("rx", 15_000, numbered(2))]
    assert ta.poll_at() is None and ta.fileno() == -1


# -- pcapng --------------------------------------------------------------------------------

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None and not os.environ.get("CI"), reason="tshark not installed"
)
T0 = 1_700_000_000_123_456_789


def tshark(*args: str) -> str:
    assert TSHARK is not None, "tshark is required in CI"
    res = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=60, check=True)
    return res.stdout


def write_sample(path: Path) -> list[tuple[bytes, int, str | None]]:
    raw_ip = ipv4_icmp_echo(IP_B, IP_A, 7, 9, b"raw")
    rows: list[tuple[bytes, int, str | None]] = [
        (arp_request(MAC_A, IP_A, IP_B), T0, "who-has 10.77.0.2"),
        (eth_icmp_echo(1), T0 + 1, None),
        (eth_icmp_echo(2, b"x" * 1000), T0 + 1_000_000_001, "écho, ünïcode; semicolon, comma"),
    ]
    with PcapngWriter(path, LinkType.ETHERNET) as w:
        w.write(rows[0][0], rows[0][1], direction="in", comment=rows[0][2])
        w.write(rows[1][0], rows[1][1], direction="out")
        w.write(rows[2][0], rows[2][1], comment=rows[2][2])
        w.write(raw_ip, T0 + 2_000_000_000, link_type=LinkType.RAW_IP, comment="tun")
    rows.append((raw_ip, T0 + 2_000_000_000, "tun"))
    return rows


@needs_tshark
def test_pcapng_read_by_tshark(tmp_path: Path) -> None:
    path = tmp_path / "sample.pcapng"
    rows = write_sample(path)
    out = tshark(
        "-r", str(path), "-T", "fields", "-E", "separator=|",
        "-e", "frame.len", "-e", "frame.interface_id", "-e", "frame.time_epoch",
        "-e", "frame.comment", "-e", "frame.packet_flags_direction",
    )  # fmt: skip
    lines = out.splitlines()
    assert len(lines) == 4
    fields = [line.split("|") for line in lines]
    assert [int(f[0]) for f in fields] == [len(r[0]) for r in rows]
    assert [int(f[1]) for f in fields] == [0, 0, 0, 1]
    stamps = [Decimal(f[2]) for f in fields]
    assert stamps == [Decimal(r[1]) / 10**9 for r in rows]  # nanoseconds survive
    assert [f[3] or None for f in fields] == [r[2] for r in rows]
    assert [int(f[4], 0) if f[4] else 0 for f in fields] == [1, 2, 0, 0]
    protocols = tshark("-r", str(path), "-T", "fields", "-e", "frame.protocols").split()
    assert protocols == [
        "eth:ethertype:arp",
        "eth:ethertype:ip:icmp:data",
        "eth:ethertype:ip:icmp:data",
        "raw:ip:icmp:data",
    ]
    assert tshark("-r", str(path), "-Y", MALFORMED) == ""


MALFORMED = "_ws.malformed || _ws.expert.severity == error"


@needs_tshark
def test_tshark_malformed_filter_is_not_vacuous(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcapng"
    frame = bytearray(eth_icmp_echo(1))
    frame[14 + 2 : 14 + 4] = struct.pack("!H", 1400)  # IPv4 total length beyond the frame
    with PcapngWriter(path) as w:
        w.write(frame, T0)
    assert tshark("-r", str(path), "-Y", MALFORMED) != ""


def test_pcapng_read_by_scapy(tmp_path: Path) -> None:
    import scapy.layers.inet
    import scapy.layers.l2  # noqa: F401 -- registers Ether/ARP/IP/ICMP for dissection
    from scapy.utils import PcapNgReader

    path = tmp_path / "sample.pcapng"
    rows = write_sample(path)
    with PcapNgReader(str(path)) as reader:
        pkts = list(reader)
    assert len(pkts) == 4
    for pkt, (frame, ts, comment) in zip(pkts, rows, strict=True):
        assert bytes(pkt) == frame
        assert int(pkt.time * 10**9) == ts
        assert pkt.comments == ([comment.encode()] if comment else None)
    assert [p.direction for p in pkts] == [1, 2, None, None]
    assert pkts[0].haslayer("ARP") and pkts[1].haslayer("ICMP")


@needs_tshark
def test_pcapng_empty_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcapng"
    with open(path, "wb") as f:
        w = PcapngWriter(f, LinkType.RAW_IP)
        w.close()
        assert not f.closed  # the caller's file stays open
    assert tshark("-r", str(path)) == ""  # check=True: tshark accepted the file


def test_pcap_device_records_both_directions(tmp_path: Path) -> None:
    from scapy.utils import PcapNgReader

    clock = VirtualClock(1_000)
    a, b = PipePair(clock, latency_us=250)
    path = tmp_path / "dev.pcapng"
    writer = PcapngWriter(path)
    pa = PcapDevice(a, writer, comment=lambda d, f: f"{d} {len(f)}", close_writer=False)
    pa.send(eth_icmp_echo(1))
    b.send(arp_request(MAC_B, IP_B, IP_A))
    clock.advance(250)
    assert pa.poll_at() == 1_250  # forwarded from the pipe end
    got = pa.recv()
    assert got is not None and got[0] == 1_250_000
    assert pa.recv() is None  # end of a receive batch: flushed without waiting for close()
    with PcapNgReader(str(path)) as reader:
        pkts = list(reader)
    pa.close()
    writer.close()
    assert [(p.direction, int(p.time * 10**9), p.comments) for p in pkts] == [
        (2, 1_000_000, [b"out 98"]),
        (1, 1_250_000, [b"in 42"]),
    ]
    assert pa.stats.frames_in == 1 and pa.stats.frames_out == 1


@needs_tshark
def test_pcapng_survives_sigkill(tmp_path: Path) -> None:
    """A test run killed mid-capture leaves a readable file up to its last receive batch."""
    path = tmp_path / "killed.pcapng"
    code = textwrap.dedent(
        f"""
        import os, signal
        from stack.phy import PcapDevice, PcapngWriter, PipePair
        from stack.time import VirtualClock
        clock = VirtualClock()
        a, b = PipePair(clock)
        dev = PcapDevice(b, PcapngWriter({str(path)!r}, flush_every=1000))
        for i in range(5):
            a.send(bytes(60))
        while dev.recv() is not None:
            pass
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert tshark("-r", str(path), "-T", "fields", "-e", "frame.len").split() == ["60"] * 5


# -- drivers -------------------------------------------------------------------------------


class Echo:
    """Test scaffolding: answers every frame with a copy after ``think_us``."""

    def __init__(self, think_us: int = 0) -> None:
        self.think_us = think_us
        self.pending: deque[tuple[int, bytes]] = deque()
        self.received: list[tuple[int, bytes]] = []

    def receive(self, now_us: int, frame: Buffer) -> None:
        self.received.append((now_us, bytes(frame)))
        self.pending.append((now_us + self.think_us, bytes(frame)))

    def poll(self, now_us: int) -> list[bytes]:
        out = []
        while self.pending and self.pending[0][0] <= now_us:
            out.append(self.pending.popleft()[1])
        return out

    def poll_at(self) -> int | None:
        return self.pending[0][0] if self.pending else None


class Pinger:
    """Test scaffolding: sends ``count`` numbered frames every ``interval_us``; records RTTs."""

    def __init__(self, count: int, interval_us: int, start_us: int = 0) -> None:
        self.count = count
        self.interval_us = interval_us
        self.next_at: int | None = start_us
        self.sent_at: dict[int, int] = {}
        self.rtts: dict[int, int] = {}

    def receive(self, now_us: int, frame: Buffer) -> None:
        n = frame_no(bytes(frame))
        self.rtts.setdefault(n, now_us - self.sent_at[n])

    def poll(self, now_us: int) -> list[bytes]:
        if self.next_at is None or now_us < self.next_at:
            return []
        n = len(self.sent_at)
        self.sent_at[n] = now_us
        self.next_at = now_us + self.interval_us if n + 1 < self.count else None
        return [numbered(n)]

    def poll_at(self) -> int | None:
        return self.next_at


def test_run_virtual_ping_echo() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, latency_us=250)
    pinger, echo = Pinger(5, 1_000), Echo(think_us=30)
    end = run_virtual([(pinger, a), (echo, b)], clock, until_us=10_000_000)
    assert pinger.rtts == dict.fromkeys(range(5), 530)
    assert [t for t, _ in echo.received] == [250, 1_250, 2_250, 3_250, 4_250]
    assert end == 4_530  # went idle: the clock is not pushed into an empty future


def test_run_virtual_stops_at_until() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, latency_us=250)
    pinger, echo = Pinger(100, 1_000), Echo()
    assert run_virtual([(pinger, a), (echo, b)], clock, until_us=2_600) == 2_600
    assert sorted(pinger.rtts) == [0, 1, 2]  # ping n leaves at n ms, its reply is back 500 us on
    assert len(echo.received) == 3 and pinger.sent_at[2] == 2_000


def test_run_virtual_through_fault_injector() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock, latency_us=100)
    lossy = FaultInjector(a, Rng(11), clock, delay_us=700, direction="tx")
    pinger, echo = Pinger(10, 5_000), Echo()
    run_virtual([(pinger, lossy), (echo, b)], clock, until_us=1_000_000)
    assert pinger.rtts == dict.fromkeys(range(10), 900)  # 100 + 700 out, 100 back


def test_run_virtual_detects_livelock() -> None:
    clock = VirtualClock()
    a, b = PipePair(clock)  # zero latency, two echoes: a frame bounces forever at t=0
    a.send(numbered(0))
    with pytest.raises(RuntimeError, match="livelock"):
        run_virtual([(Echo(), a), (Echo(), b)], clock, until_us=1)


class DgramDevice:
    """Test scaffolding: one end of an AF_UNIX datagram socketpair, as a real-fd device."""

    link_type = LinkType.ETHERNET
    mtu = 1500

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.stats = DeviceStats()

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[int, bytes] | None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return None
        return time.time_ns(), data

    def send(self, frame: Buffer) -> int:
        self.sock.send(frame)
        return time.time_ns()

    def close(self) -> None:
        self.sock.close()


def test_run_real_time_epoll_and_stop_event() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.settimeout(5)
    stop = threading.Event()
    echo = Echo(think_us=20_000)  # exercises the poll_at timeout, not just readiness
    dev = DgramDevice(ours)
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(run(echo, dev, MonotonicClock(), stop=stop, max_batch=2))
    )
    t.start()
    try:
        start = time.monotonic()
        for i in range(5):
            theirs.send(numbered(i))
        replies = [frame_no(theirs.recv(2048)) for _ in range(5)]
        elapsed = time.monotonic() - start
        assert replies == [0, 1, 2, 3, 4]
        assert 0.015 < elapsed < 2
    finally:
        stop.set()
        t.join(5)
        ours.close()
        theirs.close()
    assert not t.is_alive()
    stats = result[0]
    assert stats.frames_in == 5 and stats.frames_out == 5 and stats.signal is None  # type: ignore[attr-defined]


def test_run_stops_cleanly_on_sigterm() -> None:
    class KillsItself(Echo):
        polls = 0

        def poll(self, now_us: int) -> list[bytes]:
            self.polls += 1
            if self.polls == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return []

    before = signal.getsignal(signal.SIGTERM)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        t0 = time.monotonic()
        stats = run(KillsItself(), DgramDevice(ours), stop=lambda: time.monotonic() - t0 > 10)
    finally:
        ours.close()
        theirs.close()
    assert stats.signal == signal.SIGTERM
    assert time.monotonic() - t0 < 1  # woken by the wakeup fd, not by the 100 ms tick alone
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.set_wakeup_fd(-1) == -1  # restored


def test_run_with_in_memory_device_and_real_clock() -> None:
    clock = MonotonicClock()
    a, b = PipePair(clock, latency_us=2_000)
    echo = Echo()
    b.send(numbered(1))
    stats = run(echo, a, clock, stop=lambda: len(echo.received) > 0)
    # The pipe's poll_at woke the loop (no fd could have), the echo went straight back.
    assert stats.frames_in == 1 and stats.frames_out == 1
    assert echo.received[0][1] == numbered(1) and b.poll_at() is not None
