"""TAP and TUN devices: the kernel's side of a virtual wire, driven from this process.

A TAP hands us every Ethernet frame the kernel transmits on the interface and injects every
frame we write as if it had been received on it, so a target (or a test's namespace) routed over
the TAP talks to the stack exactly as over a cable. TUN is the same at the IP layer
(``LinkType.RAW_IP``).

Timestamps: a TAP/TUN fd has no kernel receive timestamps (it is a character device, not a
socket, so ``SO_TIMESTAMPNS`` does not apply). ``recv`` and ``send`` therefore read the wall
clock (``time.time_ns()``) right after the ``read``/``write`` syscall. Frames that sat in the
TAP's queue while the loop was busy get the time they were *read*, not the time the kernel
queued them; measurements that need better go through an AF_PACKET socket on the interface
(:class:`stack.phy.packet.AfPacketDevice`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import time

from stack.phy.base import TRANSIENT_TX_ERRNOS, Buffer, DeviceStats
from stack.phy.netns import IFF_UP, get_mtu, in_netns, set_if_flags, set_mtu
from stack.wire.link import LinkType

__all__ = ["TapDevice", "TunDevice"]

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

_IFREQ = struct.Struct("16sH")
_IFREQ_SIZE = 40
# Without IFF_VNET_HDR the kernel never hands us GSO super-frames, so a frame is at most
# MTU + link header; 64 KiB covers any MTU an interface can be given.
_READ_SIZE = 65536


class _TunTap:
    """Shared open/read/write logic; subclasses pick the mode and link type."""

    _MODE = 0
    link_type: LinkType

    def __init__(
        self, name: str, netns: str | None = None, create: bool = False, mtu: int = 1500
    ) -> None:
        """Attach to (or with ``create=True`` create) interface ``name``, in ``netns`` if given.

        A created interface is not persistent: it disappears when :meth:`close` closes the fd,
        so a crashed test leaves nothing behind. It is given ``mtu`` and brought up with
        SIOCSIFFLAGS. An existing interface is attached as is (its admin state and addresses
        are someone else's configuration) and ``mtu`` is read from it.
        """
        raw_name = name.encode()
        if len(raw_name) >= 16:
            raise ValueError(f"interface name too long (max 15 bytes): {name!r}")
        self.netns = netns
        self.stats = DeviceStats()
        self._buf = bytearray(_READ_SIZE)
        self._view = memoryview(self._buf)
        with in_netns(netns):
            exists = _exists(name) if name else False
            if not exists and not create:
                where = f" in netns {netns}" if netns else ""
                raise FileNotFoundError(errno.ENODEV, f"no interface {name!r}{where}")
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                ifr = _IFREQ.pack(raw_name, self._MODE | IFF_NO_PI).ljust(_IFREQ_SIZE, b"\0")
                res = fcntl.ioctl(fd, TUNSETIFF, ifr)
                self.name = bytes(res[:16]).split(b"\0", 1)[0].decode()
                if not exists:
                    if get_mtu(self.name) != mtu:
                        set_mtu(self.name, mtu)
                    set_if_flags(self.name, set_=IFF_UP)
                    self.mtu = mtu
                else:
                    self.mtu = get_mtu(self.name)
            except BaseException:
                os.close(fd)
                raise
        self.created = not exists
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def recv(self) -> tuple[int, bytes] | None:
        if self._fd < 0:
            return None
        try:
            n = os.readv(self._fd, [self._buf])
        except BlockingIOError:
            return None
        ts = time.time_ns()
        frame = bytes(self._view[:n])
        self.stats.count_in(frame)
        return ts, frame

    def send(self, frame: Buffer) -> int:
        if self._fd < 0:
            raise OSError(errno.EBADF, "device closed")
        try:
            n = os.write(self._fd, frame)
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
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> _TunTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f", netns={self.netns!r}" if self.netns else ""
        return f"{type(self).__name__}({self.name!r}{where}, fd={self._fd})"


class TapDevice(_TunTap):
    """An Ethernet TAP interface (``IFF_TAP | IFF_NO_PI``); frames are whole Ethernet frames."""

    _MODE = IFF_TAP
    link_type = LinkType.ETHERNET

    def __enter__(self) -> TapDevice:
        return self


class TunDevice(_TunTap):
    """An IP-level TUN interface (``IFF_TUN | IFF_NO_PI``); frames start at the IP header."""

    _MODE = IFF_TUN
    link_type = LinkType.RAW_IP

    def __enter__(self) -> TunDevice:
        return self


def _exists(name: str) -> bool:
    # Resolved in the calling thread's current namespace (libc opens a fresh socket).
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
