"""The device contract every link driver and wrapper follows.

A :class:`Device` moves whole link-layer frames between the sans-IO core and something else: a
TAP, an AF_PACKET socket, an in-memory pipe, or another device it wraps (capture, tracing, fault
injection). The contract is deliberately tiny -- a readable fd for the event loop, non-blocking
``recv``, ``send`` that returns when the frame left -- so wrappers stack in any order and the loop
treats every device the same.

Timestamps are integer nanoseconds since the epoch of the device's time base: the kernel's
capture time where the kernel offers one (``SO_TIMESTAMPNS`` on AF_PACKET), else the wall clock
read right after the syscall (TAP/TUN), and for in-memory devices driven by a
:class:`~stack.time.VirtualClock` the virtual time (``now_us * 1000``). They are what pcaps record
and what measurements use, so every device takes them as close to the wire as it can.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol

from stack.wire.checksum import Buffer
from stack.wire.link import LinkType

__all__ = [
    "TRANSIENT_TX_ERRNOS",
    "Buffer",
    "Device",
    "DeviceStats",
    "TimedDevice",
    "device_poll_at",
    "link_overhead",
]


class Device(Protocol):
    """A link: frames in, frames out, never blocking."""

    link_type: LinkType
    mtu: int
    """Largest frame *payload* the link carries (1500 for Ethernet); see :func:`link_overhead`."""

    def fileno(self) -> int:
        """A readable fd for epoll; -1 for in-memory devices (those expose ``poll_at``)."""
        ...

    def recv(self) -> tuple[int, bytes] | None:
        """The next frame as ``(capture timestamp ns, frame)``, or None when none is ready."""
        ...

    def send(self, frame: Buffer) -> int:
        """Transmit one frame; returns the transmit timestamp in ns."""
        ...

    def close(self) -> None:
        """Release the underlying resource; idempotent."""
        ...


class TimedDevice(Device, Protocol):
    """A device that holds frames in time (pipes, delay injection) and so has its own deadline.

    Such a device cannot wake an epoll loop through its fd, so the driver must also wait for
    ``poll_at()`` (microseconds in the driving clock's time base) and call ``recv()`` then --
    ``recv`` doubles as the device's pump, releasing frames whose time has come.
    """

    def poll_at(self) -> int | None: ...


@dataclass(slots=True)
class DeviceStats:
    """Per-device counters, kept as ``device.stats`` by every device and wrapper.

    They are what a test report shows when frames go missing, so each layer counts what *it*
    saw: a wrapper's counters describe its outer side (what the stack handed it / got from it).
    """

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    errors: int = 0

    def count_in(self, frame: Buffer) -> None:
        self.frames_in += 1
        self.bytes_in += len(frame)

    def count_out(self, frame: Buffer) -> None:
        self.frames_out += 1
        self.bytes_out += len(frame)


# Transmit errors that mean "the wire is congested or not there right now". A real link drops
# the frame in these cases and the stack's retransmission copes, so devices count them in
# ``stats.errors`` and drop the frame instead of crashing the event loop mid-test.
TRANSIENT_TX_ERRNOS = frozenset(
    {errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.EIO, errno.ENXIO, errno.EMSGSIZE}
)


def link_overhead(link_type: LinkType) -> int:
    """Link header bytes a frame may carry on top of ``mtu`` (Ethernet: header + one VLAN tag)."""
    if link_type == LinkType.ETHERNET:
        return 14 + 4
    if link_type == LinkType.RAW_IP:
        return 0
    # 802.15.4: the MTU is the whole PSDU (127), headers included.
    return 0


def device_poll_at(device: object) -> int | None:
    """``device.poll_at()`` if the device (or a wrapper forwarding it) has one, else None."""
    poll_at = getattr(device, "poll_at", None)
    if poll_at is None:
        return None
    result = poll_at()
    assert result is None or isinstance(result, int)
    return result
