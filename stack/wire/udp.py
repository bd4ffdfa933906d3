"""UDP header (RFC 768) over IPv4 and IPv6.

The address family comes from the address length (4 or 16 bytes), as for the pseudo-header, so
one codec serves both. Checksum rules differ by family:

* IPv4: a zero checksum field means "no checksum" (RFC 768) and is accepted unverified.
* IPv6: the checksum is mandatory (RFC 8200 8.1), so zero is ``bad-checksum``. (RFC 6936's
  zero-checksum tunnels are opt-in per port and out of scope.)
* Emitting: a computed checksum of 0 is sent as 0xFFFF, the other one's-complement zero, since 0
  on the wire means "none".

``verify_checksum=False`` disables every checksum rule, the IPv6 zero rule included, so a probe
can look at exactly what a target sent.

``length`` must lie in 8..len(data); a larger value is ``bad-length`` rather than ``truncated``
because ``data`` is the IP payload, already delimited by the IP length: the two length fields
disagree, nothing was lost in transit. Bytes after ``length`` are ignored, as IP padding is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer, checksum, pseudo_header, verify
from stack.wire.errors import Malformed

_UDP = struct.Struct("!HHHH")
_PROTO_UDP = 17


@dataclass(slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int

    @classmethod
    def parse(
        cls, data: Buffer, src: bytes, dst: bytes, verify_checksum: bool = True
    ) -> tuple[Self, memoryview]:
        """``src``/``dst`` are the IP addresses (4 or 16 bytes) for the pseudo-header."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < 8:
            raise Malformed("truncated", f"udp datagram of {n} bytes")
        sport, dport, length, csum = _UDP.unpack_from(mv)
        if length < 8 or length > n:
            raise Malformed("bad-length", f"udp length {length} in {n} bytes")
        if verify_checksum:
            if csum == 0:
                if len(src) != 4:
                    raise Malformed("bad-checksum", "zero udp checksum over ipv6")
            elif not verify(
                mv if length == n else mv[:length],
                pseudo_header(src, dst, _PROTO_UDP, length),
            ):
                raise Malformed("bad-checksum", "udp")
        return cls(sport, dport, length), mv[8:length]

    @property
    def header_len(self) -> int:
        return 8

    def emit(self, buf: bytearray | memoryview, offset: int, src: bytes, dst: bytes) -> None:
        """Write the header; the ``length - 8`` payload bytes must already follow it in ``buf``."""
        length = self.length
        end = offset + length
        if length < 8 or len(buf) < end:
            raise ValueError(
                f"udp length {length} does not fit a {len(buf)}-byte buffer at {offset}"
            )
        # Header words are summed arithmetically so the header is packed once, checksum included.
        initial = (
            pseudo_header(src, dst, _PROTO_UDP, length) + self.src_port + self.dst_port + length
        )
        csum = checksum(memoryview(buf)[offset + 8 : end], initial) or 0xFFFF
        _UDP.pack_into(buf, offset, self.src_port, self.dst_port, length, csum)

    def to_bytes(self, payload: Buffer = b"", *, src: bytes, dst: bytes) -> bytes:
        """Header + payload with the checksum. ``length`` is written as set; it must cover no more
        than the header and ``payload`` (the checksum spans ``length`` bytes)."""
        buf = bytearray(8 + len(payload))
        buf[8:] = payload
        self.emit(buf, 0, src, dst)
        return bytes(buf)
