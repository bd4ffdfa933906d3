"""IPv6 header and extension headers (RFC 8200).

Design choices:

* ``payload_len`` beyond the buffer is ``truncated`` (Linux counts it as InTruncatedPkts, and
  the IPv4 codec does the same); bytes past ``40 + payload_len`` are link-layer padding and are
  dropped from the returned payload.
* Jumbograms (RFC 2675: ``payload_len`` 0 and a Jumbo Payload option in a Hop-by-Hop header)
  are ``unsupported``: no link the harness drives carries 64 KiB frames, and accepting them
  would make every length computation above depend on an option.
* Extension headers keep everything needed to re-emit them byte-identically (Pad1/PadN as
  explicit option entries, routing data verbatim), so a probe can parse, rewrite one field and
  send the header back. The Fragment header's two reserved fields are ignored on reception
  (RFC 8200 4.5) and written as zero.
* Unknown option types are *not* acted on here: their two high-order bits select skip /
  discard / discard-and-report (RFC 8200 4.2), which is the interface's decision, helped by
  :meth:`Ipv6Options.option_offsets` for the ICMPv6 Parameter Problem pointer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer
from stack.wire.errors import Malformed

_IPV6 = struct.Struct("!IHBB16s16s")
_EXT = struct.Struct("!BB")  # next header, header extension length (8-octet units, minus 1)
_ROUTING = struct.Struct("!BBBB")
_FRAGMENT = struct.Struct("!BxHI")
_OPT_TLV = struct.Struct("!BB")

HEADER_LEN = 40
NH_HOP_BY_HOP = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_NO_NEXT = 59
NH_DEST_OPTS = 60

OPT_PAD1 = 0
OPT_PADN = 1
OPT_JUMBO = 0xC2  # RFC 2675

_NEXT_HEADER_OFFSET = 6  # of the Next Header field in the fixed header, for ICMPv6 pointers
_FRAG_OFFSET_MASK = 0xFFF8  # the 13-bit offset in 8-octet units, already shifted to bytes
_ZEROS = bytes(8)
_OPTIONS_NAMES = {NH_HOP_BY_HOP: "hop-by-hop", NH_DEST_OPTS: "destination options"}


@dataclass(slots=True)
class Ipv6Header:
    """The fixed 40-byte header (RFC 8200 3)."""

    src: bytes
    dst: bytes
    next_header: int
    payload_len: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < HEADER_LEN:
            raise Malformed("truncated", f"ipv6 packet of {n} bytes")
        vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(mv)
        if vtf >> 28 != 6:
            raise Malformed("bad-version", f"version {vtf >> 28}")
        if HEADER_LEN + plen > n:
            raise Malformed("truncated", f"payload length {plen} > {n - HEADER_LEN} bytes received")
        if plen == 0 and nh == NH_HOP_BY_HOP and _has_jumbo_option(mv[HEADER_LEN:]):
            raise Malformed("unsupported", "jumbogram")
        hdr = cls(src, dst, nh, plen, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF)
        return hdr, mv[HEADER_LEN : HEADER_LEN + plen]

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        if not 0 <= self.flow_label <= 0xFFFFF:
            raise ValueError(f"flow label {self.flow_label} does not fit in 20 bits")
        if not 0 <= self.traffic_class <= 0xFF:
            raise ValueError(f"traffic class {self.traffic_class} does not fit in 8 bits")
        _IPV6.pack_into(
            buf,
            offset,
            0x60000000 | (self.traffic_class << 20) | self.flow_label,
            self.payload_len,
            self.next_header,
            self.hop_limit,
            self.src,
            self.dst,
        )

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        """Header + payload. The header says ``payload_len`` whatever ``len(payload)`` is, so a
        probe can send inconsistent lengths on purpose."""
        buf = bytearray(HEADER_LEN + len(payload))
        self.emit(buf, 0)
        buf[HEADER_LEN:] = payload
        return bytes(buf)


def _has_jumbo_option(payload: memoryview) -> bool:
    """Whether the bytes after a ``payload_len == 0`` header hold a Hop-by-Hop Jumbo option.

    Best effort on purpose: if the header is not even well formed, the packet is simply a
    truncated one (its declared payload is empty) and the extension walk reports that.
    """
    try:
        hbh, _ = Ipv6Options.parse(payload, NH_HOP_BY_HOP)
    except Malformed:
        return False
    return any(t == OPT_JUMBO for t, _ in hbh.options)


def _ext_len(mv: memoryview, what: str) -> int:
    """Length in bytes of the extension header at the start of ``mv`` (RFC 8200 4: the length
    byte counts 8-octet units beyond the first 8), checked against the bytes available."""
    n = len(mv)
    if n < 8:
        raise Malformed("truncated", f"{what} header in {n} bytes")
    hlen = (mv[1] + 1) << 3
    if hlen > n:
        raise Malformed("truncated", f"{what} header of {hlen} bytes in {n}")
    return hlen


@dataclass(slots=True)
class Ipv6Options:
    """Hop-by-Hop (``kind`` 0, RFC 8200 4.3) or Destination Options (``kind`` 60, 4.6) header.

    ``options`` lists ``(type, data)`` in wire order, padding included: Pad1 is ``(0, b"")``
    (it has no length byte) and PadN is ``(1, <its zero bytes>)``. Keeping padding explicit is
    what makes ``emit(parse(x)) == x``, and lets a probe send odd padding (non-zero PadN
    content, runs of Pad1) to see how a stack copes.

    ``emit`` pads automatically, with Pad1 or PadN at the end, only when the listed options do
    not already fill a multiple of 8 bytes; so callers can list just the options they mean,
    and a parsed header (always a multiple of 8) is written back unchanged. Alignment
    requirements of individual options (RFC 8200 4.2 "xn+y") are the caller's business.
    """

    next_header: int
    options: list[tuple[int, bytes]]
    kind: int = NH_HOP_BY_HOP

    @classmethod
    def parse(cls, data: Buffer, kind: int = NH_HOP_BY_HOP) -> tuple[Self, memoryview]:
        """Parse the header at the start of ``data``; the returned view is what follows it.

        ``kind`` (0 or 60) says which Next Header value led here: the two formats are the same.
        An option TLV running past the end of the header is ``bad-option``.
        """
        mv = data if isinstance(data, memoryview) else memoryview(data)
        hlen = _ext_len(mv, _OPTIONS_NAMES.get(kind, "options"))
        options: list[tuple[int, bytes]] = []
        i = 2
        while i < hlen:
            otype = mv[i]
            if otype == OPT_PAD1:
                options.append((OPT_PAD1, b""))
                i += 1
                continue
            if i + 2 > hlen:
                raise Malformed("bad-option", f"option {otype} at {i} has no length byte")
            end = i + 2 + mv[i + 1]
            if end > hlen:
                raise Malformed("bad-option", f"option {otype} at {i} overruns its header")
            options.append((otype, bytes(mv[i + 2 : end])))
            i = end
        return cls(mv[0], options, kind), mv[hlen:]

    def _options_len(self) -> int:
        n = 0
        for otype, odata in self.options:
            if otype == OPT_PAD1:
                if odata:
                    raise ValueError("Pad1 carries no data")
                n += 1
            else:
                if len(odata) > 0xFF:
                    raise ValueError(f"option {otype} data of {len(odata)} bytes exceeds 255")
                n += 2 + len(odata)
        return n

    @property
    def header_len(self) -> int:
        return (2 + self._options_len() + 7) & ~7

    def option_offsets(self) -> list[int]:
        """Byte offset of each entry of ``options`` from the start of this header.

        RFC 8200 4.2: an unrecognised option whose type says "discard and report" earns an
        ICMPv6 Parameter Problem (code 2) pointing at the option's type byte; add this offset
        to the header's own offset in the packet.
        """
        offsets = []
        i = 2
        for otype, odata in self.options:
            offsets.append(i)
            i += 1 if otype == OPT_PAD1 else 2 + len(odata)
        return offsets

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        olen = self._options_len()
        hlen = (2 + olen + 7) & ~7
        if hlen > 2048:
            raise ValueError(f"options header of {hlen} bytes exceeds 2048")
        _EXT.pack_into(buf, offset, self.next_header, (hlen >> 3) - 1)
        i = offset + 2
        for otype, odata in self.options:
            if otype == OPT_PAD1:
                buf[i] = OPT_PAD1
                i += 1
            else:
                _OPT_TLV.pack_into(buf, i, otype, len(odata))
                buf[i + 2 : i + 2 + len(odata)] = odata
                i += 2 + len(odata)
        pad = offset + hlen - i
        if pad == 1:
            buf[i] = OPT_PAD1
        elif pad:
            _OPT_TLV.pack_into(buf, i, OPT_PADN, pad - 2)
            buf[i + 2 : i + pad] = _ZEROS[: pad - 2]

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        hl = self.header_len
        buf = bytearray(hl + len(payload))
        self.emit(buf, 0)
        buf[hl:] = payload
        return bytes(buf)


@dataclass(slots=True)
class Ipv6Routing:
    """Routing header (RFC 8200 4.4), any routing type.

    ``data`` is everything after the first four bytes (type-specific: the reserved word and
    addresses of type 0, the SRH fields of type 4 ...), kept verbatim. Whether to process or
    reject a routing type (type 0 is deprecated by RFC 5095) is the interface's decision.
    ``emit`` requires ``4 + len(data)`` to be a multiple of 8: padding the type-specific data
    would silently change what it means.
    """

    next_header: int
    routing_type: int
    segments_left: int
    data: bytes

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        hlen = _ext_len(mv, "routing")
        nh, _len, rtype, segleft = _ROUTING.unpack_from(mv)
        return cls(nh, rtype, segleft, bytes(mv[4:hlen])), mv[hlen:]

    @property
    def header_len(self) -> int:
        return 4 + len(self.data)

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        hlen = 4 + len(self.data)
        if hlen & 7 or hlen > 2048:
            raise ValueError(f"routing header of {hlen} bytes is not a multiple of 8 up to 2048")
        _ROUTING.pack_into(
            buf, offset, self.next_header, (hlen >> 3) - 1, self.routing_type, self.segments_left
        )
        buf[offset + 4 : offset + hlen] = self.data

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        hl = self.header_len
        buf = bytearray(hl + len(payload))
        self.emit(buf, 0)
        buf[hl:] = payload
        return bytes(buf)


@dataclass(slots=True)
class Ipv6Fragment:
    """Fragment header (RFC 8200 4.5). ``offset`` is in bytes (a multiple of 8), like
    ``Ipv4Header.frag_offset``, so reassembly works in one unit for both families."""

    next_header: int
    offset: int
    more: bool
    ident: int

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if len(mv) < 8:
            raise Malformed("truncated", f"fragment header in {len(mv)} bytes")
        nh, offm, ident = _FRAGMENT.unpack_from(mv)
        return cls(nh, offm & _FRAG_OFFSET_MASK, bool(offm & 1), ident), mv[8:]

    @property
    def header_len(self) -> int:
        return 8

    @property
    def is_first(self) -> bool:
        return self.offset == 0

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        if self.offset & 7 or not 0 <= self.offset <= _FRAG_OFFSET_MASK:
            raise ValueError(f"fragment offset {self.offset} is not a multiple of 8 below 65536")
        _FRAGMENT.pack_into(buf, offset, self.next_header, self.offset | int(self.more), self.ident)

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        buf = bytearray(8 + len(payload))
        self.emit(buf, 0)
        buf[8:] = payload
        return bytes(buf)


Ipv6Extension = Ipv6Options | Ipv6Routing | Ipv6Fragment


def walk_extensions(
    next_header: int, payload: Buffer
) -> tuple[list[Ipv6Extension], int, memoryview]:
    """Parse the extension header chain at the start of ``payload`` (an IPv6 payload).

    Returns ``(headers, final_next_header, upper_payload)``. The walk follows Hop-by-Hop (0),
    Routing (43), Fragment (44) and Destination Options (60) and stops at anything else --
    upper-layer protocols, 59 (No Next Header) and unknown values alike -- returning it as
    ``final_next_header``; deciding that a value is unrecognised (RFC 8200 4: Parameter
    Problem, code 1) is the caller's job. Two more stops:

    * Hop-by-Hop is only valid right after the IPv6 header (RFC 8200 4.1); a later one stops
      the walk with ``final_next_header`` 0, which the caller treats like any unrecognised
      value.
    * A Fragment header with a non-zero offset ends the walk after it: what follows is the
      middle of a datagram, not a header. ``final_next_header`` is then that Fragment header's
      Next Header; check ``headers[-1]`` (an :class:`Ipv6Fragment`) before dispatching.

    ``upper_payload`` is a slice of ``payload``, so the upper-layer header starts at byte
    ``len(payload) - len(upper_payload)`` of it; :func:`next_header_pointer` gives the
    Parameter Problem pointer for the field that named ``final_next_header``. A header running
    past the payload raises ``Malformed("truncated")``; an option TLV overrunning its header
    raises ``Malformed("bad-option")``.
    """
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    headers: list[Ipv6Extension] = []
    nh = next_header
    ext: Ipv6Extension
    while True:
        if nh == NH_HOP_BY_HOP and not headers:
            ext, mv = Ipv6Options.parse(mv, NH_HOP_BY_HOP)
        elif nh == NH_DEST_OPTS:
            ext, mv = Ipv6Options.parse(mv, NH_DEST_OPTS)
        elif nh == NH_ROUTING:
            ext, mv = Ipv6Routing.parse(mv)
        elif nh == NH_FRAGMENT:
            ext, mv = Ipv6Fragment.parse(mv)
            headers.append(ext)
            if ext.offset:
                return headers, ext.next_header, mv
            nh = ext.next_header
            continue
        else:
            return headers, nh, mv
        headers.append(ext)
        nh = ext.next_header


def next_header_pointer(headers: list[Ipv6Extension]) -> int:
    """Offset, from the start of the IPv6 header, of the Next Header field that holds the
    ``final_next_header`` returned by :func:`walk_extensions` for these ``headers``.

    It is the pointer of an ICMPv6 Parameter Problem, code 1 (RFC 8200 4, RFC 4443 3.4): the
    fixed header's field (byte 6) when there are no extension headers, else the first byte of
    the last extension header (Next Header is every extension header's first field).
    """
    if not headers:
        return _NEXT_HEADER_OFFSET
    return HEADER_LEN + sum(h.header_len for h in headers[:-1])
