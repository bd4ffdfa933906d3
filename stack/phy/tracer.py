"""A device wrapper that reports every frame to a callback, for logs, probes and live views.

Unlike :class:`~stack.phy.pcapng.PcapDevice` it stores nothing: the callback decides (print a
one-line summary, feed a probe that checks a property on every segment, count by type ...).
The callback runs synchronously in the event loop, so it should be quick; an exception from it
propagates, which is what a checking probe wants.
"""

from __future__ import annotations

from collections.abc import Callable

from stack.phy.base import Buffer, Device, DeviceStats, device_poll_at

__all__ = ["TraceCallback", "Tracer"]

TraceCallback = Callable[[str, int, bytes], None]
"""``callback(direction, timestamp_ns, frame)`` with direction ``"rx"`` or ``"tx"``."""


class Tracer:
    def __init__(self, inner: Device, callback: TraceCallback) -> None:
        self.inner = inner
        self.callback = callback
        self.link_type = inner.link_type
        self.mtu = inner.mtu
        self.stats = DeviceStats()

    def fileno(self) -> int:
        return self.inner.fileno()

    def poll_at(self) -> int | None:
        return device_poll_at(self.inner)

    def recv(self) -> tuple[int, bytes] | None:
        got = self.inner.recv()
        if got is not None:
            self.stats.count_in(got[1])
            self.callback("rx", got[0], got[1])
        return got

    def send(self, frame: Buffer) -> int:
        ts = self.inner.send(frame)
        data = bytes(frame)  # the caller may reuse its buffer once send returns
        self.stats.count_out(data)
        self.callback("tx", ts, data)
        return ts

    def close(self) -> None:
        self.inner.close()
