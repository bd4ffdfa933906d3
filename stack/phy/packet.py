"""AF_PACKET: the stack on an existing interface (veth end, bridge port, real NIC).

A raw packet socket bound to one interface with ``ETH_P_ALL`` sees every frame on it, in both
directions, with a kernel receive timestamp (``SO_TIMESTAMPNS``) taken when the frame entered
the network stack -- much closer to the wire than anything this process can read after a
wakeup, which is why measurements prefer this device over a TAP.

The socket also sees frames *transmitted* on the interface, including the ones we send. Those
arrive with ``pkttype == PACKET_OUTGOING`` and are dropped here, so the stack never receives its
own frames back (and never sees the host kernel's transmissions as inbound traffic). Kernels
since 4.20 can do this filtering in the kernel (``PACKET_IGNORE_OUTGOING``), saving the copy; we
ask for it and keep the userspace check for older kernels.

Transmit timestamps are the wall clock right after ``send`` returns: software TX timestamps
through the error queue would cost a second syscall per frame for little gain on virtual links.
"""

from __future__ import annotations

import errno
import socket
import struct
import time

from stack.phy.base import TRANSIENT_TX_ERRNOS, Buffer, DeviceStats
from stack.phy.netns import get_mtu, hw_type, in_netns
from stack.wire.link import LinkType

__all__ = ["AfPacketDevice"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23
# SO_TIMESTAMPNS (aka SO_TIMESTAMPNS_OLD) and its cmsg type SCM_TIMESTAMPNS are both 35 on
# every Linux architecture but parisc/sparc/alpha/mips; the cmsg carries a native timespec.
SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@ll")
PACKET_MREQ = struct.Struct("iHH8s")

# ARPHRD_* hardware types -> the link type of the frames a SOCK_RAW packet socket carries.
_ARPHRD_LINK = {
    1: LinkType.ETHERNET,  # ARPHRD_ETHER
    772: LinkType.ETHERNET,  # ARPHRD_LOOPBACK (lo frames carry a zeroed Ethernet header)
    0xFFFE: LinkType.RAW_IP,  # ARPHRD_NONE (tun)
    804: LinkType.IEEE802154_NOFCS,  # ARPHRD_IEEE802154
}

# On veth and other offloading devices the socket may see GSO/GRO super-frames far above the
# MTU; reading the whole 64 KiB avoids silently truncating them.
_READ_SIZE = 65536 + 256


class AfPacketDevice:
    """A ``SOCK_RAW`` packet socket bound to ``ifname`` (in ``netns`` if given).

    ``promisc`` (default on) puts the interface in promiscuous mode through a packet-socket
    membership, which the kernel drops when the socket closes -- the stack has its own MAC
    address, so on a real NIC it would otherwise miss frames addressed to it. On virtual links
    (veth, TAP) every frame is delivered anyway.
    """

    def __init__(self, ifname: str, netns: str | None = None, promisc: bool = True) -> None:
        self.ifname = ifname
        self.netns = netns
        self.stats = DeviceStats()
        self.ignore_outgoing_in_kernel = False
        self._buf = bytearray(_READ_SIZE)
        self._view = memoryview(self._buf)
        self._ancsize = socket.CMSG_SPACE(TIMESPEC.size)
        with in_netns(netns):
            hatype = hw_type(ifname)
            link_type = _ARPHRD_LINK.get(hatype)
            if link_type is None:
                raise ValueError(f"{ifname}: unsupported hardware type ARPHRD {hatype}")
            self.link_type = link_type
            self.mtu = get_mtu(ifname)
            # Protocol 0 receives nothing until bind() sets ETH_P_ALL on this one interface, so
            # no frame from another interface slips into the queue in between.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                    self.ignore_outgoing_in_kernel = True
                except OSError:
                    pass
                sock.bind((ifname, ETH_P_ALL))
                self.ifindex = socket.if_nametoindex(ifname)
                if promisc:
                    mreq = PACKET_MREQ.pack(self.ifindex, PACKET_MR_PROMISC, 0, b"")
                    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        return -1 if self._sock is None else self._sock.fileno()

    def recv(self) -> tuple[int, bytes] | None:
        sock = self._sock
        if sock is None:
            return None
        while True:
            try:
                n, ancdata, flags, addr = sock.recvmsg_into([self._buf], self._ancsize)
            except BlockingIOError:
                return None
            if addr[2] == PACKET_OUTGOING:
                continue
            if flags & socket.MSG_TRUNC:
                self.stats.errors += 1
                continue
            ts = kernel_timestamp(ancdata)
            frame = bytes(self._view[:n])
            self.stats.count_in(frame)
            return ts, frame

    def send(self, frame: Buffer) -> int:
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, "device closed")
        try:
            n = sock.send(frame)
        except OSError as e:
            if e.errno not in TRANSIENT_TX_ERRNOS:
                raise
            self.stats.errors += 1
            return time.time_ns()
        ts = time.time_ns()
        if n != len(frame):
            self.stats.errors += 1
        else:
            self.stats.count_out(frame)
        return ts

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def __enter__(self) -> AfPacketDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f", netns={self.netns!r}" if self.netns else ""
        return f"AfPacketDevice({self.ifname!r}{where})"


def kernel_timestamp(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return int(sec) * 1_000_000_000 + int(nsec)
    # The kernel always attaches it once SO_TIMESTAMPNS is on; fall back rather than fail.
    return time.time_ns()
