"""The drivers: what moves frames between a device and the sans-IO interface.

:func:`run` is the real-time loop: one thread, one epoll, no callbacks registered anywhere
else. It sleeps until the device's fd is readable or the next deadline (the interface's
``poll_at()``, or a device's own for wrappers that hold frames), drains a bounded batch of
frames into ``iface.receive``, then sends whatever ``iface.poll`` returns. Keeping it single
threaded means the core never needs a lock and a run is as reproducible as real time allows.

:func:`run_virtual` is the same dance for in-memory setups (:class:`~stack.phy.pipe.PipePair`,
fault injectors) on a :class:`~stack.time.VirtualClock`: instead of sleeping it jumps the clock
to the earliest pending deadline, so hours of protocol time (keepalives, TIME-WAIT, backoff)
pass in milliseconds and every run is identical.
"""

from __future__ import annotations

import select
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from stack.phy.base import Buffer, Device, device_poll_at
from stack.time import Clock, MonotonicClock, VirtualClock

__all__ = ["LoopStats", "PollableInterface", "StopCondition", "run", "run_virtual"]

MAX_SLEEP_US = 100_000
"""Longest epoll wait: how late, at worst, ``run`` notices a ``stop`` set from another thread."""

MAX_PASSES_PER_INSTANT = 10_000
"""Delivery rounds at one virtual instant before :func:`run_virtual` declares a livelock."""


class PollableInterface(Protocol):
    """What the drivers need from ``stack.iface.Interface`` (times in microseconds)."""

    def receive(self, now_us: int, frame: Buffer, /) -> None: ...

    def poll(self, now_us: int, /) -> Sequence[Buffer]: ...

    def poll_at(self) -> int | None: ...


StopCondition = threading.Event | Callable[[], bool] | None


@dataclass(slots=True)
class LoopStats:
    """What a :func:`run` did, for the report; ``signal`` is set when SIGINT/SIGTERM ended it."""

    wakeups: int = 0
    frames_in: int = 0
    frames_out: int = 0
    signal: int | None = None


def _stop_predicate(stop: StopCondition) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    return stop


class _SignalStop:
    """SIGINT/SIGTERM -> "stop after this iteration", waking the epoll at once.

    A handler that raised (the default KeyboardInterrupt) could abort the stack half way through
    processing a frame; this one only records the signal. ``set_wakeup_fd`` makes the kernel
    write to a socket we poll, so the loop does not wait out its sleep. Handlers and the wakeup
    fd are restored on exit. Signals can only be handled on the main thread; elsewhere this is
    a no-op (use ``stop``).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.received: int | None = None
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._old: list[tuple[int, object]] = []
        self._old_wakeup = -1
        self.rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> _SignalStop:
        if not self.enabled:
            return self
        self.rsock, self._wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self._wsock.setblocking(False)
        try:
            for sig in self.SIGNALS:
                self._old.append((sig, signal.getsignal(sig)))
                signal.signal(sig, self._handler)
            self._old_wakeup = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def drain(self) -> None:
        if self.rsock is not None:
            try:
                while self.rsock.recv(64):
                    pass
            except BlockingIOError:
                pass

    def __exit__(self, *exc: object) -> None:
        if self._wsock is not None:
            signal.set_wakeup_fd(self._old_wakeup)
        for sig, old in reversed(self._old):
            signal.signal(sig, old if old is not None else signal.SIG_DFL)  # type: ignore[arg-type]
        self._old.clear()
        for s in (self.rsock, self._wsock):
            if s is not None:
                s.close()
        self.rsock = self._wsock = None


def run(
    iface: PollableInterface,
    device: Device,
    clock: Clock | None = None,
    stop: StopCondition = None,
    max_batch: int = 64,
    handle_signals: bool = True,
    watch: Sequence[tuple[int, Callable[[], bool]]] = (),
) -> LoopStats:
    """Drive ``iface`` over ``device`` in real time until ``stop`` or SIGINT/SIGTERM.

    ``clock`` defaults to :class:`~stack.time.MonotonicClock`; its microseconds are the
    ``now_us`` given to the interface, and device deadlines (``poll_at``) must be on it too.
    ``stop`` is a :class:`threading.Event` or a predicate, checked every iteration; the loop
    never sleeps longer than 100 ms, so setting it from another thread or a signal handler ends
    the run promptly. With ``handle_signals`` (main thread only) SIGINT/SIGTERM end the run
    cleanly and are reported in the returned stats, instead of raising in the middle of frame
    processing. ``watch`` lists extra fds (a console, a control socket) and what to call when
    one is readable; the callback returns False to stop watching its fd (at EOF). Exceptions
    from the interface, the device or a callback propagate.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    clock = clock if clock is not None else MonotonicClock()
    stopped = _stop_predicate(stop)
    stats = LoopStats()
    ep = select.epoll()
    try:
        fd = device.fileno()
        if fd >= 0:
            ep.register(fd, select.EPOLLIN)
        callbacks = dict(watch)
        for wfd in callbacks:
            ep.register(wfd, select.EPOLLIN)
        with _SignalStop(handle_signals) as sigstop:
            if sigstop.rsock is not None:
                ep.register(sigstop.rsock.fileno(), select.EPOLLIN)
            while not stopped() and sigstop.received is None:
                batch = 0
                while batch < max_batch:
                    got = device.recv()
                    if got is None:
                        break
                    iface.receive(clock.now(), got[1])
                    batch += 1
                stats.frames_in += batch
                for frame in iface.poll(clock.now()):
                    device.send(frame)
                    stats.frames_out += 1
                if batch >= max_batch:
                    timeout_us = 0  # more may be queued; let stop/poll run, then drain again
                else:
                    deadline = _earliest((iface.poll_at(), device_poll_at(device)))
                    if deadline is None:
                        timeout_us = MAX_SLEEP_US
                    else:
                        timeout_us = min(max(deadline - clock.now(), 0), MAX_SLEEP_US)
                # epoll rounds the timeout up to whole milliseconds, so no busy-wait before a
                # sub-millisecond deadline.
                events = ep.poll(timeout_us / 1_000_000)
                stats.wakeups += 1
                for efd, _ in events:
                    callback = callbacks.get(efd)
                    if callback is not None and not callback():
                        ep.unregister(efd)
                        del callbacks[efd]
                sigstop.drain()
            stats.signal = sigstop.received
    finally:
        ep.close()
    return stats


def run_virtual(
    ifaces_and_devices: Iterable[tuple[PollableInterface, Device]],
    clock: VirtualClock,
    until_us: int,
) -> int:
    """Run in-memory setups in virtual time until ``until_us`` or until nothing is pending.

    At each instant frames are delivered and interfaces polled, round after round, until no
    device has a frame and no interface has anything to send (zero-latency pipes make a reply
    arrive at the same instant). Then the clock jumps to the earliest deadline among all
    interfaces and devices (``poll_at``). Returns the clock's time at the end: ``until_us`` if a
    deadline lies beyond it, earlier if everything went idle first (the clock is not advanced
    into an empty future).
    """
    pairs = list(ifaces_and_devices)
    while True:
        now = clock.now()
        for _ in range(MAX_PASSES_PER_INSTANT):
            progress = False
            for iface, device in pairs:
                while (got := device.recv()) is not None:
                    iface.receive(now, got[1])
                    progress = True
                out = iface.poll(now)
                for frame in out:
                    device.send(frame)
                progress = progress or bool(out)
            if not progress:
                break
        else:
            raise RuntimeError(
                f"livelock at t={now}us: frames still moving after "
                f"{MAX_PASSES_PER_INSTANT} rounds at one instant"
            )
        deadline = _earliest(
            t for iface, device in pairs for t in (iface.poll_at(), device_poll_at(device))
        )
        if deadline is None:
            return now
        # A deadline at or before now after a quiet round would spin forever; step past it.
        deadline = max(deadline, now + 1)
        if deadline > until_us:
            return clock.advance_to(until_us)
        clock.advance_to(deadline)


def _earliest(times: Iterable[int | None]) -> int | None:
    found = [t for t in times if t is not None]
    return min(found) if found else None
