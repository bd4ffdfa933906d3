"""Captures: the clock every measurement reads.

``dumpcap`` runs on the tester's interface in the tester's namespace and timestamps each frame
in the kernel as it crosses the link; probes read times and fields from that file, never from
Python clock reads around a send. :func:`decode` turns a captured frame into a flat
:class:`Packet` with the fields probes look at (addresses, TTL, ECN, TCP header and options,
ICMP type), using the stack's own strict codecs.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from stack.wire import addr as A
from stack.wire.errors import Malformed
from stack.wire.ethernet import EthernetHeader
from stack.wire.ipv4 import Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from stack.wire.tcp import (
    OptFastOpen,
    OptMss,
    OptSack,
    OptSackPermitted,
    OptTimestamps,
    OptWindowScale,
    TcpHeader,
)

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
START_SETTLE_S = 0.5
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58


class Capture:
    """``with Capture(netns, ifname, path):`` records every frame on the link into ``path``."""

    def __init__(
        self, netns: str | None, ifname: str, path: Path, bpf: str | None = None, snaplen: int = 0
    ) -> None:
        self.path = path
        self.drops = 0
        argv = ["dumpcap", "-i", ifname, "-P", "-q", "-w", str(path)]
        if snaplen:
            argv += ["-s", str(snaplen)]
        if bpf:
            argv += ["-f", bpf]
        self.argv = (["ip", "netns", "exec", netns] if netns else []) + argv
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Capture:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "Capturing on" in line or not line:
                break
        if "Capturing on" not in line:
            self.proc.kill()
            rest = self.proc.communicate()[1]
            raise RuntimeError(f"dumpcap did not start ({' '.join(self.argv)}): {line}{rest}")
        # "Capturing on" comes before the capture handle is live: without a pause the first
        # frames of a probe (its SYN, its first ping) can be missing from the file.
        time.sleep(START_SETTLE_S)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, settle_s: float = 0.2) -> None:
        proc = self.proc
        if proc is None:
            return
        time.sleep(settle_s)  # frames still in flight reach the file
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        # "Packets received/dropped on interface 'x': 123/0 (pcap:0/dumpcap:0/...) (0.0%)"
        found = re.search(r"dropped on interface .*?: (\d+)/(\d+) \(", err or "")
        if found:
            self.drops = int(found.group(2))
        self.proc = None

    def packets(self) -> list[Packet]:
        decoded = (decode(f.t, f.data, i) for i, f in enumerate(read_frames(self.path)))
        return [p for p in decoded if p is not None]


def read_pcap(path: Path) -> Iterator[tuple[float, bytes]]:
    """(capture time in seconds, frame) of a little-endian pcap file (``dumpcap -P``)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 0
    if magic == 0xA1B2C3D4:
        div = 1e6
    elif magic == 0xA1B23C4D:
        div = 1e9
    else:
        raise ValueError(f"{path}: not a little-endian pcap file")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        yield sec + frac / div, data[off : off + incl]
        off += incl


@dataclass(frozen=True)
class Frame:
    """One frame of a capture file. ``t_ns`` is the exact stamp (``t`` its float seconds, which
    loses the nanoseconds of an epoch time); ``comment`` is the pcapng per-packet comment (why
    the tester injected it); ``linktype`` the file's link-layer type (1 = Ethernet)."""

    t: float
    data: bytes
    t_ns: int
    linktype: int = 1
    comment: str = ""
    direction: str = ""  # "in", "out" (pcapng epb_flags) or "" when unknown


def read_frames(path: Path) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file, in file order (so ``enumerate`` counts them the
    way Wireshark numbers them, from 0). ``dumpcap -P`` writes pcap, the live wire pcapng."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) == 4 and struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        yield from _read_pcapng(path.read_bytes(), path)
        return
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0] if len(data) >= 24 else 0
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError(f"{path}: neither a little-endian pcap nor a pcapng file")
    mult = 1 if magic == 0xA1B23C4D else 1000  # fraction in ns or in us
    linktype = struct.unpack_from("<I", data, 20)[0] & 0xFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        # ``t`` computed as read_pcap does, so evidence times taken from it match exactly
        t = sec + frac / (1e9 if mult == 1 else 1e6)
        yield Frame(t, data[off : off + incl], sec * 10**9 + frac * mult, linktype)
        off += incl


_PCAPNG_SHB, _PCAPNG_IDB, _PCAPNG_PB, _PCAPNG_SPB, _PCAPNG_EPB = (
    0x0A0D0D0A,
    0x00000001,
    0x00000002,
    0x00000003,
    0x00000006,
)


def _pcapng_options(body: bytes, off: int, end: str) -> Iterator[tuple[int, bytes]]:
    while off + 4 <= len(body):
        code, length = struct.unpack_from(end + "HH", body, off)
        off += 4
        if code == 0:
            return
        yield code, body[off : off + length]
        off += length + (-length % 4)


def _read_pcapng(data: bytes, path: Path) -> Iterator[Frame]:
    """The blocks of a pcapng file (draft-ietf-opsawg-pcapng): sections of either byte order,
    interfaces with their time resolution and offset, enhanced, simple and obsolete packet
    blocks. Blocks of other types are skipped; a truncated last block (a capture killed while
    writing) ends the file."""
    end = "<"
    ifaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, units per second, offset
    off = 0
    while off + 12 <= len(data):
        btype = struct.unpack_from(end + "I", data, off)[0]
        if btype == _PCAPNG_SHB:
            magic = data[off + 8 : off + 12]
            if magic == b"\x4d\x3c\x2b\x1a":
                end = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                end = ">"
            else:
                raise ValueError(f"{path}: bad pcapng byte-order magic at offset {off}")
            ifaces = []
        blen = struct.unpack_from(end + "I", data, off + 4)[0]
        if blen < 12 or blen % 4 or off + blen > len(data):
            return  # truncated or corrupt tail
        body = data[off + 8 : off + blen - 4]
        off += blen
        if btype == _PCAPNG_IDB:
            linktype, _, snaplen = struct.unpack_from(end + "HHI", body)
            per_s, tsoff = 10**6, 0
            for code, value in _pcapng_options(body, 8, end):
                if code == 9 and value:  # if_tsresol
                    r = value[0]
                    per_s = 2 ** (r & 0x7F) if r & 0x80 else 10 ** (r & 0x7F)
                elif code == 14 and len(value) == 8:  # if_tsoffset, seconds
                    tsoff = struct.unpack(end + "q", value)[0]
            ifaces.append((linktype, snaplen, per_s, tsoff))
        elif btype in (_PCAPNG_EPB, _PCAPNG_PB):
            if btype == _PCAPNG_EPB:
                iface, hi, lo, caplen, _ = struct.unpack_from(end + "IIIII", body)
            else:
                iface, _, hi, lo, caplen, _ = struct.unpack_from(end + "HHIIII", body)
            if iface >= len(ifaces):
                raise ValueError(f"{path}: packet on undeclared interface {iface}")
            linktype, _, per_s, tsoff = ifaces[iface]
            frame = body[20 : 20 + caplen]
            comment, direction = "", ""
            for code, value in _pcapng_options(body, 20 + caplen + (-caplen % 4), end):
                if code == 1:
                    comment = value.decode("utf-8", "replace")
                elif code == 2 and btype == _PCAPNG_EPB and len(value) == 4:
                    bits = struct.unpack(end + "I", value)[0] & 3
                    direction = {1: "in", 2: "out"}.get(bits, "")
            units = (hi << 32) | lo
            t_ns = tsoff * 10**9 + units * 10**9 // per_s
            yield Frame(t_ns / 1e9, frame, t_ns, linktype, comment, direction)
        elif btype == _PCAPNG_SPB:
            if not ifaces:
                raise ValueError(f"{path}: simple packet block before any interface")
            linktype, snaplen, _, _ = ifaces[0]
            orig = struct.unpack_from(end + "I", body)[0]
            size = min(orig, snaplen) if snaplen else orig
            yield Frame(0.0, body[4 : 4 + size], 0, linktype)


@dataclass
class Packet:
    """One captured IP packet, flattened. ``frame`` is its index in the capture file."""

    t: float
    frame: int
    src: str
    dst: str
    family: int  # 4 or 6
    proto: int
    ttl: int
    ecn: int
    length: int  # IP payload bytes
    sport: int = 0
    dport: int = 0
    flags: int = 0
    seq: int = 0
    ack: int = 0
    win: int = 0
    payload: int = 0
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    tfo: bytes | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    options: list[str] = field(default_factory=list)

    def has(self, *flags: int) -> bool:
        return all(self.flags & f for f in flags)


def decode(t: float, frame: bytes, index: int = 0) -> Packet | None:
    """A captured Ethernet frame as a :class:`Packet`; None for non-IP or malformed frames."""
    try:
        eth, rest = EthernetHeader.parse(frame)
        if eth.ethertype == ETH_IPV4:
            v4, body = Ipv4Header.parse(rest, verify_checksum=False)
            src, dst, proto, ttl, ecn = v4.src, v4.dst, v4.protocol, v4.ttl, v4.tos & 3
            family = 4
            if v4.frag_offset:  # a later fragment: no upper-layer header in it
                return Packet(t, index, A.ip_str(src), A.ip_str(dst), 4, proto, ttl, ecn, len(body))
        elif eth.ethertype == ETH_IPV6:
            v6, body = Ipv6Header.parse(rest)
            src, dst, proto, ttl = v6.src, v6.dst, v6.next_header, v6.hop_limit
            ecn, family = v6.traffic_class & 3, 6
        else:
            return None
        pkt = Packet(t, index, A.ip_str(src), A.ip_str(dst), family, proto, ttl, ecn, len(body))
        if proto == PROTO_TCP:
            tcp, payload = TcpHeader.parse(body, src, dst, verify_checksum=False)
            pkt.sport, pkt.dport, pkt.flags = tcp.src_port, tcp.dst_port, tcp.flags
            pkt.seq, pkt.ack, pkt.win, pkt.payload = tcp.seq, tcp.ack, tcp.window, len(payload)
            for opt in tcp.options:
                pkt.options.append(type(opt).__name__.removeprefix("Opt"))
                if isinstance(opt, OptMss):
                    pkt.mss = opt.mss
                elif isinstance(opt, OptWindowScale):
                    pkt.wscale = opt.shift
                elif isinstance(opt, OptSackPermitted):
                    pkt.sack_permitted = True
                elif isinstance(opt, OptSack):
                    pkt.sack = opt.blocks
                elif isinstance(opt, OptTimestamps):
                    pkt.ts = (opt.tsval, opt.tsecr)
                elif isinstance(opt, OptFastOpen):
                    pkt.tfo = bytes(opt.cookie)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6) and len(body) >= 2:
            pkt.icmp_type, pkt.icmp_code = body[0], body[1]
        elif proto == PROTO_UDP and len(body) >= 4:
            pkt.sport, pkt.dport = struct.unpack_from("!HH", body)
        return pkt
    except (Malformed, ValueError, struct.error):
        return None
