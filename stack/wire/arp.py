"""ARP (RFC 826) for Ethernet/IPv4 only.

ARP is generic over hardware and protocol types, but the stack resolves IPv4 over Ethernet and
nothing else, so any other (htype, ptype, hlen, plen) combination is ``unsupported`` instead of
being parsed into variable-length fields nobody reads. The length check comes first: a frame
too short for the 28-byte Ethernet/IPv4 body is ``truncated`` whatever its types claim.

``op`` is kept as a plain int and not restricted to request/reply: RARP (3, 4) and InARP (8, 9)
reuse the format, and a probe may want to see them; the ARP layer ignores unknown ops.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer
from stack.wire.errors import Malformed

ARP_REQUEST = 1
ARP_REPLY = 2

_ARP = struct.Struct("!HHBBH6s4s6s4s")
_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800


@dataclass(slots=True)
class ArpPacket:
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        """The payload is whatever follows the 28-byte body (normally Ethernet padding)."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if len(mv) < 28:
            raise Malformed("truncated", f"arp packet of {len(mv)} bytes")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(mv)
        if htype != _HTYPE_ETHERNET or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
            raise Malformed(
                "unsupported", f"htype {htype} ptype 0x{ptype:04x} hlen {hlen} plen {plen}"
            )
        return cls(op, sha, spa, tha, tpa), mv[28:]

    @property
    def header_len(self) -> int:
        return 28

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        _ARP.pack_into(
            buf,
            offset,
            _HTYPE_ETHERNET,
            _PTYPE_IPV4,
            6,
            4,
            self.op,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        buf = bytearray(28 + len(payload))
        self.emit(buf, 0)
        buf[28:] = payload
        return bytes(buf)
