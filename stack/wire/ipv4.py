"""IPv4 header (RFC 791).

Design choices:

* ``frag_offset`` is in bytes, not 8-byte units, so reassembly code does arithmetic on one unit
  throughout; ``emit`` rejects offsets that are not a multiple of 8.
* Options are kept verbatim as bytes (including any EOL/padding the sender wrote) and are not
  validated: the stack processes no IPv4 option, and a probe must be able to send and observe
  odd ones unchanged. ``emit`` pads with zeros (EOL) to a 4-byte boundary.
* The reserved flag bit (RFC 3514's "evil bit") is accepted and dropped: RFC 791 says it must be
  zero but receivers have no reason to discard such packets, and probes send it to check that a
  stack does not. ``emit`` always writes zero, so a parsed header with that bit set does not
  re-emit byte-identically.
* Length errors are split by what they tell the operator: a total length beyond the buffer is
  ``truncated`` (the frame lost bytes on the way, as Linux's InTruncatedPkts), while a total
  length shorter than the header or an IHL below 5 is ``bad-length`` (the sender is broken).
  Bytes past the total length are link-layer padding and are dropped from the payload.
* Whether ``frag_offset + payload_len`` exceeds 65535 (ping of death) is left to reassembly,
  which is where it matters; a single fragment is still a well-formed header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer, checksum, verify
from stack.wire.errors import Malformed

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_CSUM = struct.Struct("!H")
_ZEROS = bytes(40)

_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF
MAX_OPTIONS_LEN = 40  # IHL is 4 bits: at most 60 header bytes


@dataclass(slots=True)
class Ipv4Header:
    src: bytes
    dst: bytes
    protocol: int
    payload_len: int
    ttl: int = 64
    ident: int = 0
    dont_frag: bool = False
    more_frags: bool = False
    frag_offset: int = 0
    tos: int = 0
    options: bytes = b""

    @classmethod
    def parse(cls, data: Buffer, verify_checksum: bool = True) -> tuple[Self, memoryview]:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < 20:
            raise Malformed("truncated", f"ipv4 packet of {n} bytes")
        vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(mv)
        if vihl >> 4 != 4:
            raise Malformed("bad-version", f"version {vihl >> 4}")
        hlen = (vihl & 0x0F) << 2
        if hlen < 20:
            raise Malformed("bad-length", f"ihl {hlen >> 2}")
        if hlen > n:
            raise Malformed("truncated", f"header of {hlen} bytes in {n}")
        if total < hlen:
            raise Malformed("bad-length", f"total length {total} < header length {hlen}")
        if total > n:
            raise Malformed("truncated", f"total length {total} > {n} bytes received")
        if verify_checksum and not verify(mv[:hlen]):
            raise Malformed("bad-checksum", "ipv4 header")
        hdr = cls(
            src,
            dst,
            proto,
            total - hlen,
            ttl,
            ident,
            bool(frag & _FLAG_DF),
            bool(frag & _FLAG_MF),
            (frag & _OFFSET_MASK) << 3,
            tos,
            bytes(mv[20:hlen]) if hlen > 20 else b"",
        )
        return hdr, mv[hlen:total]

    @property
    def header_len(self) -> int:
        return 20 + ((len(self.options) + 3) & ~3)

    @property
    def is_fragment(self) -> bool:
        return self.more_frags or self.frag_offset != 0

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Write the header with its checksum; the payload is not read (IPv4 covers only itself)."""
        opts = self.options
        olen = len(opts)
        if olen > MAX_OPTIONS_LEN:
            raise ValueError(f"ipv4 options of {olen} bytes exceed {MAX_OPTIONS_LEN}")
        if self.frag_offset & ~0xFFF8:
            raise ValueError(
                f"fragment offset {self.frag_offset} is not a multiple of 8 in 0..65528"
            )
        hlen = 20 + ((olen + 3) & ~3)
        total = hlen + self.payload_len
        if total > 0xFFFF:
            raise ValueError(f"ipv4 total length {total} exceeds 65535")
        if len(buf) < offset + hlen:
            # Checked up front: slice assignment would silently grow a bytearray.
            raise ValueError(f"buffer of {len(buf)} bytes too short for header at {offset}")
        frag = self.frag_offset >> 3
        if self.dont_frag:
            frag |= _FLAG_DF
        if self.more_frags:
            frag |= _FLAG_MF
        _IPV4.pack_into(
            buf,
            offset,
            0x40 | (hlen >> 2),
            self.tos,
            total,
            self.ident,
            frag,
            self.ttl,
            self.protocol,
            0,
            self.src,
            self.dst,
        )
        if olen:
            end = offset + hlen
            buf[offset + 20 : offset + 20 + olen] = opts
            buf[offset + 20 + olen : end] = _ZEROS[: hlen - 20 - olen]
            csum = checksum(buf[offset:end])
        else:
            csum = checksum(buf[offset : offset + 20])
        _CSUM.pack_into(buf, offset + 10, csum)

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        """Header + payload. The header says ``payload_len`` whatever ``len(payload)`` is, so a
        probe can send inconsistent lengths on purpose."""
        hl = self.header_len
        buf = bytearray(hl + len(payload))
        self.emit(buf, 0)
        buf[hl:] = payload
        return bytes(buf)
