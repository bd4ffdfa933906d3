"""The live wire: the tester's interface of a lab target, played from the raw side.

A probe that must withhold an ACK, shrink a window or inject a crafted segment cannot use the
tester's kernel: the kernel would answer on its own. So raw probes take an address of their own
on the target's subnet (the *raw peer*, by default the last host address of the tester's
prefix, see :func:`raw_peer_ip`) and a MAC of their own, put the tester interface in
promiscuous mode and speak for that address from a packet socket: :class:`~harness.probes.wire.Link`
answers ARP and neighbour solicitations for it, and the tester's kernel ignores frames sent to a
MAC it does not own (``PACKET_OTHERHOST``), so it never resets a raw connection.

Times are the kernel's. Received frames carry their ``SO_TIMESTAMPNS`` receive stamp; a sent
frame's time is the stamp of its own copy, which a second packet socket on the same interface
sees as ``PACKET_OUTGOING`` when the frame enters the link -- both are the clock ``dumpcap``
writes, so a probe's numbers and its evidence pcap agree to the microsecond. Everything the
wire sees, in both directions (the tester kernel's own frames included), is written to a
pcapng file as it happens, each frame with its direction and an optional comment;
:meth:`LiveWire.frame_number` turns a frame back into its number in that file for the evidence.
"""

from __future__ import annotations

import hashlib
import ipaddress
import select
import socket
import threading
import time
from collections import deque
from pathlib import Path

from harness.probes.capture import Packet, decode, read_frames
from harness.probes.wire import WireInfo
from stack.phy.netns import in_netns
from stack.phy.packet import (
    ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP,
    PACKET_MR_PROMISC,
    PACKET_MREQ,
    PACKET_OUTGOING,
    SO_TIMESTAMPNS,
    SOL_PACKET,
    TIMESPEC,
    kernel_timestamp,
)
from stack.phy.pcapng import PcapngWriter

__all__ = ["RAW_PEER_MAC", "LinkRecorder", "LiveWire", "raw_peer_ip"]

# Locally administered, unicast: "02" + "HIL" + a per-family byte.
RAW_PEER_MAC = {4: bytes.fromhex("0248494c0004"), 6: bytes.fromhex("0248494c0006")}

_READ = 65536 + 256
TX_STAMP_WAIT_S = 0.5


def raw_peer_ip(tester_if: str, avoid: tuple[str, ...] = ()) -> str:
    """The raw peer's address: the highest host of the tester's prefix not otherwise in use.

    The lab file gives the tester and target addresses with their prefix; a real lab reserves
    the top of the subnet for the harness the same way (documented in docs/lab.md).
    """
    iface = ipaddress.ip_interface(tester_if)
    taken = {iface.ip, *(ipaddress.ip_interface(a).ip for a in avoid)}
    net = iface.network
    # IPv6: ::fe rather than the all-ones host -- readable, and never a reserved anycast.
    top = int(net.broadcast_address) - 1 if net.version == 4 else int(net.network_address) + 0xFE
    for host in range(top, top - 16, -1):
        ip = ipaddress.ip_address(host)
        if ip not in taken and ip in net:
            return str(ip)
    raise ValueError(f"no free host address for the raw peer in {net}")


class LiveWire:
    """A :class:`~harness.probes.wire.Wire` on ``ifname`` in ``netns`` with kernel timestamps.

    ``pcap``: where the record of the link goes (pcapng). ``note(text)`` attaches a comment to
    the next frame the wire sends, so a reader of the capture sees why it was injected.
    """

    def __init__(self, netns: str | None, ifname: str, info: WireInfo, pcap: Path) -> None:
        self.info = info
        self.netns = netns
        self.ifname = ifname
        self.pcap_path = pcap
        self.tx_untimed = 0  # sends whose own copy never showed up (time from the wall clock)
        self._backlog: deque[tuple[int, bytes]] = deque()
        self._index: dict[int, list[tuple[bytes, int]]] = {}
        self._frames = 0
        self._note: str | None = None
        self._buf = bytearray(_READ)
        self._anc = socket.CMSG_SPACE(TIMESPEC.size)
        pcap.parent.mkdir(parents=True, exist_ok=True)
        self._rx, self._tx = self._open(netns, ifname)
        self._pcap = PcapngWriter(pcap, flush_every=16)

    @staticmethod
    def _open(netns: str | None, ifname: str) -> tuple[socket.socket, socket.socket]:
        with in_netns(netns):
            # Protocol 0 until bind: no frame of another interface gets queued meanwhile.
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            try:
                rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                rx.bind((ifname, ETH_P_ALL))
                index = socket.if_nametoindex(ifname)
                rx.setsockopt(
                    SOL_PACKET,
                    PACKET_ADD_MEMBERSHIP,
                    PACKET_MREQ.pack(index, PACKET_MR_PROMISC, 0, b""),
                )
                rx.setblocking(False)
                tx.bind((ifname, 0))  # protocol 0: this socket never receives
            except BaseException:
                rx.close()
                tx.close()
                raise
        return rx, tx

    # ------------------------------------------------------------------ Wire protocol

    def now_us(self) -> int:
        return time.time_ns() // 1000  # the clock SO_TIMESTAMPNS and dumpcap stamp with

    def note(self, text: str) -> None:
        """Comment the next frame sent (shown next to it in Wireshark)."""
        self._note = text

    def send(self, frame: bytes) -> int:
        """Put ``frame`` on the link; its time is the kernel stamp of its own outgoing copy."""
        self._tx.send(frame)
        deadline = time.monotonic() + TX_STAMP_WAIT_S
        while True:
            got = self._read(max(0.0, deadline - time.monotonic()))
            if got is None:
                self.tx_untimed += 1
                ts = time.time_ns()
                self._record(ts, frame, "out")
                return ts // 1000
            ts, data, outgoing = got
            if outgoing and data == frame:
                self._record(ts, data, "out")
                return ts // 1000
            self._record(ts, data, "out" if outgoing else "in")
            if not outgoing:
                self._backlog.append((ts // 1000, data))

    def recv(self, until_us: int) -> tuple[int, bytes] | None:
        """The next frame that arrived from the link (not one we sent), or None at the deadline."""
        if self._backlog:
            return self._backlog.popleft()
        while True:
            wait = max(0.0, (until_us - self.now_us()) / 1e6)
            got = self._read(wait)
            if got is None:
                return None
            ts, data, outgoing = got
            self._record(ts, data, "out" if outgoing else "in")
            if not outgoing:
                return ts // 1000, data

    def close(self) -> None:
        for sock in (self._rx, self._tx):
            sock.close()
        self._pcap.close()

    def __enter__(self) -> LiveWire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ record

    def frame_number(self, t_us: int, frame: bytes | None = None) -> int | None:
        """The 1-based number in the pcap (as Wireshark counts) of the frame seen at ``t_us``
        (the one equal to ``frame`` if several share the microsecond), or None."""
        found = self._index.get(t_us, [])
        if frame is not None:
            digest = _digest(frame)
            found = [f for f in found if f[0] == digest] or found
        return found[0][1] if found else None

    def flush(self) -> None:
        self._pcap.flush()

    def _record(self, ts_ns: int, frame: bytes, direction: str) -> None:
        comment = None
        if direction == "out" and self._note is not None and frame[6:12] == self.info.tester_mac:
            comment, self._note = self._note, None
        self._pcap.write(frame, ts_ns, direction="out" if direction == "out" else "in",
                         comment=comment)  # fmt: skip
        self._frames += 1
        self._index.setdefault(ts_ns // 1000, []).append((_digest(frame), self._frames))

    def _read(self, wait_s: float) -> tuple[int, bytes, bool] | None:
        return _read_frame(self._rx, self._buf, self._anc, wait_s)


def _read_frame(
    rx: socket.socket, buf: bytearray, anc_size: int, wait_s: float
) -> tuple[int, bytes, bool] | None:
    """One frame from a receive socket: (kernel time ns, bytes, sent by this host)."""
    end = time.monotonic() + wait_s
    while True:
        try:
            n, anc, flags, addr = rx.recvmsg_into([buf], anc_size)
        except BlockingIOError:
            left = end - time.monotonic()
            if left <= 0:
                return None
            select.select([rx], [], [], left)
            continue
        if flags & socket.MSG_TRUNC:
            continue
        return kernel_timestamp(anc), bytes(buf[:n]), addr[2] == PACKET_OUTGOING


class LinkRecorder:
    """Everything on ``ifname`` in ``netns`` to a pcapng file, from the moment it is made.

    The record of a user's test. Unlike ``dumpcap``, which reports "Capturing on" before its
    handle is live and so may miss a test's first SYN, the packet socket is bound before the
    constructor returns: every frame from then on is queued for it. A thread writes them out
    with their kernel stamps and directions; :meth:`stop` drains the queue and closes the file.
    """

    def __init__(self, netns: str | None, ifname: str, pcap: Path) -> None:
        self.path = pcap
        self.frames = 0
        pcap.parent.mkdir(parents=True, exist_ok=True)
        self._rx, tx = LiveWire._open(netns, ifname)
        tx.close()
        self._pcap = PcapngWriter(pcap, flush_every=64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rec-{ifname}")
        self._thread.start()

    def _run(self) -> None:
        buf, anc = bytearray(_READ), socket.CMSG_SPACE(TIMESPEC.size)
        while True:
            stopping = self._stop.is_set()
            got = _read_frame(self._rx, buf, anc, 0.0 if stopping else 0.1)
            if got is None:
                if stopping:
                    return
                continue
            ts, data, outgoing = got
            self._pcap.write(data, ts, direction="out" if outgoing else "in")
            self.frames += 1

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(10)
        self._rx.close()
        self._pcap.close()

    def packets(self) -> list[Packet]:
        """The recorded frames decoded (after :meth:`stop`)."""
        decoded = (decode(f.t, f.data, i) for i, f in enumerate(read_frames(self.path)))
        return [p for p in decoded if p is not None]

    def __enter__(self) -> LinkRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _digest(frame: bytes) -> bytes:
    return hashlib.blake2b(frame, digest_size=8).digest()
