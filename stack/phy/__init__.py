"""Devices and drivers: the only part of ``stack`` that does I/O or reads a clock.

Everything here implements or drives the :class:`Device` contract (docs/wire-api.md):

* real links -- :class:`TapDevice`, :class:`TunDevice`, :class:`AfPacketDevice` (Linux, may be
  opened inside a named network namespace);
* an in-memory link for virtual-time tests -- :class:`PipePair`;
* wrappers that stack on any device -- :class:`PcapDevice` (capture to :class:`PcapngWriter`),
  :class:`FaultInjector`, :class:`Tracer`;
* drivers -- :func:`run` (epoll, real time) and :func:`run_virtual` (virtual time).
"""

from stack.phy.base import Device, DeviceStats, TimedDevice, device_poll_at
from stack.phy.fault import FaultCounters, FaultInjector
from stack.phy.loop import LoopStats, PollableInterface, run, run_virtual
from stack.phy.netns import in_netns
from stack.phy.packet import AfPacketDevice
from stack.phy.pcapng import PcapDevice, PcapngWriter
from stack.phy.pipe import PipeEnd, PipePair
from stack.phy.tap import TapDevice, TunDevice
from stack.phy.tracer import Tracer

__all__ = [
    "AfPacketDevice",
    "Device",
    "DeviceStats",
    "FaultCounters",
    "FaultInjector",
    "LoopStats",
    "PcapDevice",
    "PcapngWriter",
    "PipeEnd",
    "PipePair",
    "PollableInterface",
    "TapDevice",
    "TimedDevice",
    "Tracer",
    "TunDevice",
    "device_poll_at",
    "in_netns",
    "run",
    "run_virtual",
]
