"""Static routes and default gateways for IPv4 and IPv6 (longest-prefix match)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    prefix: bytes  # network address, 4 or 16 bytes
    prefix_len: int
    gateway: bytes | None  # None: on-link

    def matches(self, addr: bytes) -> bool:
        if len(addr) != len(self.prefix):
            return False
        bits = len(addr) * 8
        shift = bits - self.prefix_len
        return int.from_bytes(addr, "big") >> shift == int.from_bytes(self.prefix, "big") >> shift

    def __str__(self) -> str:
        net = f"{ipaddress.ip_address(self.prefix)}/{self.prefix_len}"
        return (
            f"{net} via {ipaddress.ip_address(self.gateway)}" if self.gateway else f"{net} on-link"
        )


def network_of(addr: bytes, prefix_len: int) -> bytes:
    bits = len(addr) * 8
    mask = ((1 << prefix_len) - 1) << (bits - prefix_len) if prefix_len else 0
    return (int.from_bytes(addr, "big") & mask).to_bytes(len(addr), "big")


class Routes:
    def __init__(self) -> None:
        self._routes: list[Route] = []
        self.version = 0  # bumped on every change, so lookups can be cached

    def add(self, prefix: bytes, prefix_len: int, gateway: bytes | None = None) -> Route:
        if not 0 <= prefix_len <= len(prefix) * 8:
            raise ValueError(
                f"prefix length {prefix_len} out of range for {len(prefix) * 8}-bit address"
            )
        route = Route(network_of(prefix, prefix_len), prefix_len, gateway)
        self._routes = [
            r for r in self._routes if (r.prefix, r.prefix_len) != (route.prefix, prefix_len)
        ]
        self._routes.append(route)
        self._routes.sort(key=lambda r: -r.prefix_len)  # longest prefix first
        self.version += 1
        return route

    def remove(self, prefix: bytes, prefix_len: int) -> None:
        net = network_of(prefix, prefix_len)
        self._routes = [r for r in self._routes if (r.prefix, r.prefix_len) != (net, prefix_len)]
        self.version += 1

    def lookup(self, dst: bytes) -> Route | None:
        for route in self._routes:
            if route.matches(dst):
                return route
        return None

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)
