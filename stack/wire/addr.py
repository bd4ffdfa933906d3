"""Addresses are plain ``bytes`` in the data path (4, 6 or 16 bytes).

``ipaddress`` objects cost about a microsecond each to build; bytes are free to slice out of a
frame, hashable and comparable. These helpers convert at the edges (CLI, logs, tests).
"""

from __future__ import annotations

import ipaddress

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
IPV4_ANY = b"\x00" * 4
IPV4_BROADCAST = b"\xff" * 4
IPV6_ANY = b"\x00" * 16
IPV6_ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
IPV6_ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_parse(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(
            f"not a MAC address: {text!r} (expected six hex octets like 02:00:00:00:00:01)"
        )
    return bytes(int(p, 16) for p in parts)


def ip_str(addr: bytes) -> str:
    return str(ipaddress.ip_address(bytes(addr)))


def ip_parse(text: str) -> bytes:
    return ipaddress.ip_address(text.split("%")[0]).packed


def is_ipv6_multicast(addr: bytes) -> bool:
    return addr[0] == 0xFF


def is_ipv6_link_local(addr: bytes) -> bool:
    return addr[0] == 0xFE and (addr[1] & 0xC0) == 0x80


def ipv6_multicast_mac(addr: bytes) -> bytes:
    """RFC 2464 7: 33:33 followed by the low 32 bits of the group."""
    return b"\x33\x33" + bytes(addr[12:16])


def solicited_node(addr: bytes) -> bytes:
    """RFC 4291 2.7.1: ff02::1:ffXX:XXXX from the low 24 bits of a unicast address."""
    return bytes.fromhex("ff0200000000000000000001ff") + bytes(addr[13:16])


def link_local_from_mac(mac: bytes) -> bytes:
    """RFC 4291 app. A modified EUI-64 link-local address (fe80::/64) for an Ethernet MAC."""
    eui = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return bytes.fromhex("fe80000000000000") + eui
