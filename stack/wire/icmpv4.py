"""ICMPv4 (RFC 792) messages.

ICMP has no header/payload split that the layers above care about: the checksum covers the whole
message and every type's body is "the 32-bit word after the checksum" (``rest``: echo
identifier/sequence, the RFC 1191 next-hop MTU, the parameter-problem pointer) followed by
opaque bytes (``data``: echo payload, or the invoking datagram for errors). So the message is one
object with ``header_len`` fixed at 8 and ``data`` as a field; ``parse`` returns ``data`` (a
slice of the input) also as the payload for uniformity with the other codecs.

``emit`` does not copy ``data``: the caller places it right after the 8-byte header (inside-out
building, like UDP/TCP) and ``emit`` checksums ``buf[offset : offset + 8 + len(self.data)]``.
Constructors do not trim the invoking datagram to 576 bytes (RFC 1812 4.3.2.3) or to header +
64 bits (RFC 792): how much to quote is the error generator's policy, not the codec's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer, checksum, verify
from stack.wire.errors import Malformed

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAM_PROBLEM = 12

UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4

EXCEEDED_TTL = 0
EXCEEDED_REASSEMBLY = 1

_ICMP = struct.Struct("!BBHI")


@dataclass(slots=True)
class Icmpv4Message:
    type: int
    code: int
    rest: int = 0
    data: Buffer = b""

    @classmethod
    def parse(cls, data: Buffer, verify_checksum: bool = True) -> tuple[Self, memoryview]:
        """``data`` must be exactly the ICMP message (the IPv4 payload, padding already cut)."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if len(mv) < 8:
            raise Malformed("truncated", f"icmp message of {len(mv)} bytes")
        typ, code, _csum, rest = _ICMP.unpack_from(mv)
        if verify_checksum and not verify(mv):
            raise Malformed("bad-checksum", f"icmp type {typ}")
        body = mv[8:]
        return cls(typ, code, rest, body), body

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def echo_request(cls, ident: int, seq: int, data: Buffer = b"") -> Self:
        return cls(ICMP_ECHO_REQUEST, 0, (ident & 0xFFFF) << 16 | (seq & 0xFFFF), data)

    @classmethod
    def echo_reply(cls, ident: int, seq: int, data: Buffer = b"") -> Self:
        return cls(ICMP_ECHO_REPLY, 0, (ident & 0xFFFF) << 16 | (seq & 0xFFFF), data)

    @classmethod
    def dest_unreachable(cls, code: int, invoking: Buffer, mtu: int = 0) -> Self:
        """``mtu`` is the next-hop MTU of RFC 1191 (low 16 bits of ``rest``), for frag-needed."""
        return cls(ICMP_DEST_UNREACH, code, mtu & 0xFFFF, invoking)

    @classmethod
    def time_exceeded(cls, code: int, invoking: Buffer) -> Self:
        return cls(ICMP_TIME_EXCEEDED, code, 0, invoking)

    @classmethod
    def param_problem(cls, pointer: int, invoking: Buffer) -> Self:
        """Code 0: ``pointer`` is the octet offset of the error in the invoking datagram."""
        return cls(ICMP_PARAM_PROBLEM, 0, (pointer & 0xFF) << 24, invoking)

    # -- views of ``rest`` ---------------------------------------------------------------------

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        return self.rest & 0xFFFF

    @property
    def pointer(self) -> int:
        return self.rest >> 24

    # -- output --------------------------------------------------------------------------------

    @property
    def header_len(self) -> int:
        return 8

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Write the header; ``self.data`` must already be in ``buf`` at ``offset + 8``."""
        end = offset + 8 + len(self.data)
        if len(buf) < end:
            raise ValueError(f"buffer of {len(buf)} bytes too short for icmp message at {offset}")
        rest = self.rest
        # The header words enter the sum arithmetically, so the header is packed once, with its
        # checksum, and only the data is read back from the buffer.
        initial = (self.type << 8 | self.code) + (rest >> 16) + (rest & 0xFFFF)
        csum = checksum(memoryview(buf)[offset + 8 : end], initial)
        _ICMP.pack_into(buf, offset, self.type, self.code, csum, rest)

    def to_bytes(self) -> bytes:
        """The whole message (header + ``data``); ICMP has no separate payload to append."""
        buf = bytearray(8 + len(self.data))
        buf[8:] = self.data
        self.emit(buf, 0)
        return bytes(buf)
