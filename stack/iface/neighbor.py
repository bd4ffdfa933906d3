"""Neighbour cache shared by ARP (IPv4) and NDP (IPv6).

One table keyed by protocol address (4 or 16 bytes) holds resolved entries with an expiry time,
and pending resolutions with the packets waiting on them. Requests for one address are sent at
most once per ``request_interval`` (RFC 1122 2.3.2.1 asks for at most one per second), and a
resolution that got no answer after ``max_requests`` is given up and its queued packets dropped,
so a dead peer costs a bounded amount of memory and wire traffic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from stack.time import SECOND


@dataclass(slots=True)
class NeighborConfig:
    entry_lifetime: int = 60 * SECOND
    request_interval: int = 1 * SECOND
    max_requests: int = 3
    max_queued: int = 3  # packets held per unresolved address (Linux: unres_qlen_bytes)


@dataclass(slots=True)
class _Pending:
    next_request: int
    requests_sent: int = 0
    queue: deque[tuple[bytes, int]] = field(default_factory=deque)  # (ip packet, ethertype)


class NeighborCache:
    def __init__(self, config: NeighborConfig | None = None) -> None:
        self.config = config or NeighborConfig()
        self._entries: dict[bytes, tuple[bytes, int]] = {}  # addr -> (mac, expires_at)
        self._pending: dict[bytes, _Pending] = {}

    def lookup(self, now: int, addr: bytes) -> bytes | None:
        entry = self._entries.get(addr)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[addr]
            return None
        return entry[0]

    def fill(self, now: int, addr: bytes, mac: bytes) -> list[tuple[bytes, int]]:
        """Record a mapping; returns the packets that were waiting for it, now sendable."""
        self._entries[addr] = (mac, now + self.config.entry_lifetime)
        pending = self._pending.pop(addr, None)
        return list(pending.queue) if pending else []

    def refresh(self, now: int, addr: bytes, mac: bytes) -> list[tuple[bytes, int]]:
        """Update only an address we know or are resolving (gratuitous ARP, unsolicited NA)."""
        if addr in self._entries or addr in self._pending:
            return self.fill(now, addr, mac)
        return []

    def forget(self, addr: bytes) -> None:
        self._entries.pop(addr, None)

    def enqueue(self, now: int, addr: bytes, packet: bytes, ethertype: int) -> tuple[bool, int]:
        """Hold ``packet`` until ``addr`` resolves.

        Returns (whether a request should be sent now, packets dropped because the queue was full).
        """
        pending = self._pending.get(addr)
        if pending is None:
            pending = self._pending[addr] = _Pending(next_request=now)
        dropped = 0
        pending.queue.append((packet, ethertype))
        while len(pending.queue) > self.config.max_queued:
            pending.queue.popleft()
            dropped += 1
        return self._request_due(now, pending), dropped

    def _request_due(self, now: int, pending: _Pending) -> bool:
        if pending.next_request > now:
            return False
        pending.requests_sent += 1
        pending.next_request = now + self.config.request_interval
        return True

    def poll(self, now: int) -> tuple[list[bytes], int]:
        """Retransmit due requests; give up on exhausted ones.

        Returns (addresses to send a request for, packets dropped by giving up).
        """
        to_request: list[bytes] = []
        dropped = 0
        for addr, pending in list(self._pending.items()):
            if pending.next_request > now:
                continue
            if pending.requests_sent >= self.config.max_requests:
                dropped += len(pending.queue)
                del self._pending[addr]
            elif self._request_due(now, pending):
                to_request.append(addr)
        return to_request, dropped

    def poll_at(self) -> int | None:
        if not self._pending:
            return None
        return min(p.next_request for p in self._pending.values())

    def entries(self) -> dict[bytes, tuple[bytes, int]]:
        return dict(self._entries)
