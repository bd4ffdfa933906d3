"""Running a few syscalls inside a named network namespace, on the current thread only.

A TAP fd or a packet socket belongs to the namespace that was current when it was created and
keeps working there after the thread switches back. So instead of forking a helper into the
namespace (``ip netns exec``) and passing fds around, we ``setns`` the calling thread in, create
the fd, and ``setns`` straight back to the namespace saved beforehand. Other threads are never
affected: network-namespace membership is per thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

__all__ = [
    "NETNS_RUN_DIR",
    "get_mtu",
    "hw_type",
    "if_flags",
    "in_netns",
    "set_if_flags",
    "set_mtu",
]

NETNS_RUN_DIR = "/var/run/netns"
_CLONE_NEWNET = 0x40000000

# <linux/sockios.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFHWADDR = 0x8927
IFF_UP = 0x1
IFF_PROMISC = 0x100

_IFREQ_SIZE = 40  # struct ifreq: 16-byte name + 24-byte union
_IFREQ_SHORT = struct.Struct("16sh")
_IFREQ_INT = struct.Struct("16si")


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace ``name`` (None: no-op).

    ``name`` is an ``ip netns`` name (a bind mount under ``/var/run/netns``). The original
    namespace is restored even if the body raises; if restoring fails the thread would be left
    in the wrong namespace, so that error propagates rather than being swallowed.
    """
    if name is None:
        yield
        return
    if "/" in name or name in (".", ".."):
        raise ValueError(f"bad netns name {name!r}")
    target = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, _CLONE_NEWNET)
            try:
                yield
            finally:
                _setns(original, _CLONE_NEWNET)
        finally:
            os.close(original)
    finally:
        os.close(target)


_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    """``os.setns`` (Python 3.12+), or the libc call through ctypes on 3.11."""
    native = getattr(os, "setns", None)
    if native is not None:
        native(fd, nstype)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ifreq(ifname: str, fmt: struct.Struct, value: int) -> bytes:
    raw = ifname.encode()
    if len(raw) >= 16:
        raise ValueError(f"interface name too long: {ifname!r}")
    return fmt.pack(raw, value).ljust(_IFREQ_SIZE, b"\0")


def _ioctl_sock() -> socket.socket:
    # Any socket will do for interface ioctls; it resolves names in the namespace it was
    # created in, i.e. the calling thread's current one.
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def if_flags(ifname: str) -> int:
    """The interface flags (``IFF_*``) of ``ifname`` in the current namespace."""
    with _ioctl_sock() as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(ifname, _IFREQ_SHORT, 0))
    return int(_IFREQ_SHORT.unpack_from(res)[1]) & 0xFFFF


def set_if_flags(ifname: str, set_: int = 0, clear: int = 0) -> None:
    """Set/clear interface flags (e.g. ``IFF_UP``) with SIOCSIFFLAGS -- no ``ip`` subprocess."""
    flags = (if_flags(ifname) | set_) & ~clear
    with _ioctl_sock() as s:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, _ifreq(ifname, _IFREQ_SHORT, _signed16(flags)))


def get_mtu(ifname: str) -> int:
    with _ioctl_sock() as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, _ifreq(ifname, _IFREQ_INT, 0))
    return int(_IFREQ_INT.unpack_from(res)[1])


def set_mtu(ifname: str, mtu: int) -> None:
    with _ioctl_sock() as s:
        fcntl.ioctl(s.fileno(), SIOCSIFMTU, _ifreq(ifname, _IFREQ_INT, mtu))


def hw_type(ifname: str) -> int:
    """The ARPHRD_* hardware type of ``ifname`` (the sa_family of its hardware address)."""
    with _ioctl_sock() as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, _ifreq(ifname, _IFREQ_SHORT, 0))
    return int(_IFREQ_SHORT.unpack_from(res)[1]) & 0xFFFF


def _signed16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value
