"""TCP header codec (RFC 9293) with every option kind the stack and the probes use.

This sits on the hot path of the reference TCP stack (about 17k full-size segments a second
each way at 200 Mbit/s), so it trades a little code size for speed:

* one precompiled ``struct`` unpack for the fixed header, and a second one that reads the
  fixed header *and* the ``NOP, NOP, Timestamps`` block (the layout every data segment of a
  timestamp-enabled connection carries) in a single call;
* the other frequent layouts (no options; ``MSS``; Linux's SYN layout
  ``MSS, SACK-permitted, Timestamps, NOP, Window scale``) are recognised by comparing a few
  integers from one unpack, without running the generic option loop;
* options are small slotted dataclasses; the field-less ones (``NOP``, ``EOL``,
  ``SACK-permitted``) are shared instances when parsed. They are *not* frozen: a frozen slotted
  dataclass costs ~2.5x more to build, and headers are mutable anyway so a probe can rewrite
  them (docs/wire-api.md).

Flags: ``flags`` holds the low 12 bits of the 16-bit "data offset / flags" word, i.e. the eight
classic flags, ``NS`` (RFC 3540; the AE bit of RFC 9768) at 0x100 and the three remaining
reserved bits at 0xE00. Keeping all twelve makes ``parse`` → ``emit`` byte-exact and lets a probe
set reserved bits to see whether a target ignores them (RFC 9293 3.1: MUST be zero on send,
ignored on receipt).

Malformed input raises only :class:`~stack.wire.errors.Malformed`:

* ``truncated`` -- fewer than 20 bytes, or a data offset pointing past the end of ``data``;
* ``bad-length`` -- data offset below 5;
* ``bad-checksum`` -- the checksum over pseudo-header + segment does not verify;
* ``bad-option`` -- an option overruns the option space, has a length below 2, or has the
  wrong length for its kind (MSS 4, window scale 3, SACK-permitted 2, SACK 2 + 8n with
  n = 1..4, timestamps 10, Fast Open 2 or 6..18 and even (RFC 7413 4.1.1), experimental Fast
  Open 4 or 8..20 and even).

``emit`` is deliberately permissive about option *content*: ``OptUnknown`` writes any kind with
any data, which is how a probe crafts a malformed option (e.g. ``OptUnknown(2, b"\\x05")`` is
an MSS option of length 3). It only refuses what cannot be encoded at all (a value out of range
for its field, more than 40 bytes of options).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeAlias

from stack.wire.checksum import Buffer, checksum, pseudo_header, verify
from stack.wire.errors import Malformed

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "NS",
    "PSH",
    "RST",
    "SYN",
    "TFO_EXPERIMENT_MAGIC",
    "URG",
    "OptEol",
    "OptFastOpen",
    "OptMss",
    "OptNop",
    "OptSack",
    "OptSackPermitted",
    "OptTimestamps",
    "OptUnknown",
    "OptWindowScale",
    "TcpHeader",
    "TcpOption",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
NS = 0x100
"""RFC 3540 nonce sum; the AE (accurate ECN) bit of RFC 9768."""

TFO_EXPERIMENT_MAGIC = 0xF989
"""RFC 6994 experiment identifier of TCP Fast Open, used with the shared option kind 254."""

_PROTO_TCP = 6
_MAX_OPTIONS = 40

# Fixed header: src port, dst port, seq, ack, offset/flags, window, checksum, urgent.
_HDR = struct.Struct("!HHIIHHHH")
# Fixed header followed by the 12-byte NOP, NOP, TS block (marker word 0x0101080A).
_HDR_TS = struct.Struct("!HHIIHHHHIII")
# Linux SYN / SYN-ACK options: MSS(4) SACKPERM(2) TS(10) NOP WS(3) = 20 bytes.
# Unpacked as: 0x0204, mss, 0x0402, 0x080A, tsval, tsecr, 0x0103, 0x03, shift.
_SYN_OPTS = struct.Struct("!HHHHIIHBB")
_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")
_TS_OPT = struct.Struct("!BBII")
_NOP_NOP_TS = 0x0101080A


# --------------------------------------------------------------------------------- options


@dataclass(slots=True)
class OptEol:
    """End of option list (kind 0). Parsing stops here; what follows is padding."""

    wire_len: ClassVar[int] = 1

    def encode(self) -> bytes:
        return b"\x00"


@dataclass(slots=True)
class OptNop:
    """No-operation (kind 1), used to align the following option."""

    wire_len: ClassVar[int] = 1

    def encode(self) -> bytes:
        return b"\x01"


@dataclass(slots=True)
class OptMss:
    """Maximum segment size (kind 2, length 4)."""

    mss: int
    wire_len: ClassVar[int] = 4

    def encode(self) -> bytes:
        return b"\x02\x04" + _U16.pack(self.mss)


@dataclass(slots=True)
class OptWindowScale:
    """Window scale shift count (kind 3, length 3; RFC 7323 2). Kept as sent, even if > 14."""

    shift: int
    wire_len: ClassVar[int] = 3

    def encode(self) -> bytes:
        return bytes((3, 3, self.shift))


@dataclass(slots=True)
class OptSackPermitted:
    """SACK permitted (kind 4, length 2; RFC 2018)."""

    wire_len: ClassVar[int] = 2

    def encode(self) -> bytes:
        return b"\x04\x02"


@dataclass(slots=True)
class OptSack:
    """SACK blocks (kind 5, length 2 + 8n): ``(left edge, right edge)`` pairs, 1 to 4 of them."""

    blocks: tuple[tuple[int, int], ...]

    @property
    def wire_len(self) -> int:
        return 2 + 8 * len(self.blocks)

    def encode(self) -> bytes:
        n = len(self.blocks)
        if not 1 <= n <= 4:
            raise ValueError(f"SACK carries 1 to 4 blocks, not {n} (use OptUnknown to craft one)")
        return bytes((5, 2 + 8 * n)) + b"".join(_U32X2.pack(lo, hi) for lo, hi in self.blocks)


@dataclass(slots=True)
class OptTimestamps:
    """Timestamps (kind 8, length 10; RFC 7323 3)."""

    tsval: int
    tsecr: int
    wire_len: ClassVar[int] = 10

    def encode(self) -> bytes:
        return _TS_OPT.pack(8, 10, self.tsval, self.tsecr)


@dataclass(slots=True)
class OptFastOpen:
    """TCP Fast Open cookie (RFC 7413): kind 34, or kind 254 with magic 0xF989 (RFC 6994).

    ``cookie`` is empty for a cookie request, else 4 to 16 bytes (an even number).
    ``experimental`` selects the pre-standard kind 254 encoding that older Linux kernels and
    some embedded stacks still send.
    """

    cookie: bytes
    experimental: bool = False

    @property
    def wire_len(self) -> int:
        return (4 if self.experimental else 2) + len(self.cookie)

    def encode(self) -> bytes:
        n = len(self.cookie)
        if n and (n < 4 or n > 16 or n & 1):
            raise ValueError(
                f"a Fast Open cookie has 0 or 4..16 (even) bytes, not {n} "
                "(use OptUnknown to craft one)"
            )
        if self.experimental:
            return bytes((254, 4 + n)) + _U16.pack(TFO_EXPERIMENT_MAGIC) + bytes(self.cookie)
        return bytes((34, 2 + n)) + bytes(self.cookie)


@dataclass(slots=True)
class OptUnknown:
    """Any other option, kept verbatim: ``data`` is what follows the kind and length bytes.

    Also the way to emit a deliberately malformed option: the kind and data are written as
    given, whatever the kind.
    """

    kind: int
    data: bytes

    @property
    def wire_len(self) -> int:
        return 2 + len(self.data)

    def encode(self) -> bytes:
        return bytes((self.kind, 2 + len(self.data))) + bytes(self.data)


TcpOption: TypeAlias = (
    OptEol
    | OptNop
    | OptMss
    | OptWindowScale
    | OptSackPermitted
    | OptSack
    | OptTimestamps
    | OptFastOpen
    | OptUnknown
)

# Shared instances for the field-less options, so parsing does not allocate them.
_EOL = OptEol()
_NOP = OptNop()
_SACK_PERM = OptSackPermitted()


def _bad_option(detail: str) -> Malformed:
    return Malformed("bad-option", detail)


def _parse_options(opts: bytes) -> list[TcpOption]:
    """The generic option walk, for layouts the fast paths in ``TcpHeader.parse`` don't match."""
    out: list[TcpOption] = []
    append = out.append
    end = len(opts)
    i = 0
    while i < end:
        kind = opts[i]
        if kind == 1:
            append(_NOP)
            i += 1
            continue
        if kind == 0:
            append(_EOL)
            break
        if i + 1 >= end:
            raise _bad_option(f"kind {kind} at {i} has no length byte")
        length = opts[i + 1]
        nxt = i + length
        if length < 2 or nxt > end:
            raise _bad_option(f"kind {kind} at {i}: length {length} with {end - i} bytes left")
        if kind == 8:
            if length != 10:
                raise _bad_option(f"timestamps length {length}")
            tsval, tsecr = _U32X2.unpack_from(opts, i + 2)
            append(OptTimestamps(tsval, tsecr))
        elif kind == 5:
            if length not in (10, 18, 26, 34):
                raise _bad_option(f"SACK length {length}")
            words = struct.unpack_from(f"!{(length - 2) >> 2}I", opts, i + 2)
            append(OptSack(tuple(zip(words[0::2], words[1::2], strict=True))))
        elif kind == 2:
            if length != 4:
                raise _bad_option(f"MSS length {length}")
            append(OptMss((opts[i + 2] << 8) | opts[i + 3]))
        elif kind == 3:
            if length != 3:
                raise _bad_option(f"window scale length {length}")
            append(OptWindowScale(opts[i + 2]))
        elif kind == 4:
            if length != 2:
                raise _bad_option(f"SACK-permitted length {length}")
            append(_SACK_PERM)
        elif kind == 34:
            if length != 2 and (length < 6 or length > 18 or length & 1):
                raise _bad_option(f"Fast Open length {length}")
            append(OptFastOpen(opts[i + 2 : nxt], False))
        elif kind == 254 and length >= 4 and opts[i + 2] == 0xF9 and opts[i + 3] == 0x89:
            if length != 4 and (length < 8 or length > 20 or length & 1):
                raise _bad_option(f"experimental Fast Open length {length}")
            append(OptFastOpen(opts[i + 4 : nxt], True))
        else:
            append(OptUnknown(kind, opts[i + 2 : nxt]))
        i = nxt
    return out


def _encode_options(options: list[TcpOption]) -> bytes:
    """Options in list order, zero-padded to a multiple of 4; ValueError if they can't be."""
    try:
        raw = b"".join([o.encode() for o in options])
    except (struct.error, OverflowError) as e:
        raise ValueError(f"TCP option value out of range: {e}") from e
    n = len(raw)
    if n > _MAX_OPTIONS:
        raise ValueError(f"{n} bytes of TCP options (at most {_MAX_OPTIONS} fit)")
    return raw + b"\x00" * (-n & 3)


# ---------------------------------------------------------------------------------- header


@dataclass(slots=True)
class TcpHeader:
    """A TCP header. ``flags`` keeps all 12 bits after the data offset (see the module doc)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    options: list[TcpOption] = field(default_factory=list)

    @classmethod
    def parse(
        cls, data: Buffer, src: bytes, dst: bytes, verify_checksum: bool = True
    ) -> tuple[Self, memoryview]:
        """Parse a segment (``data`` is exactly the TCP segment: the IP layer trims padding).

        ``src``/``dst`` are the IP addresses (4 or 16 bytes, as ``bytes``) for the
        pseudo-header. Returns the header and the payload as a slice of ``data``.
        """
        mv = data if type(data) is memoryview else memoryview(data)
        n = len(mv)
        if n >= 32:
            # One unpack covers both the bare header and the NOP,NOP,TS layout.
            sport, dport, seq, ack, off, win, _, urg, marker, tsval, tsecr = _HDR_TS.unpack_from(mv)
            hlen = (off >> 10) & 0x3C
            if hlen == 32 and marker == _NOP_NOP_TS:
                options: list[TcpOption] = [_NOP, _NOP, OptTimestamps(tsval, tsecr)]
            elif hlen == 20:
                options = []
            else:
                options = _options_slow(mv, n, hlen)
        elif n >= 20:
            sport, dport, seq, ack, off, win, _, urg = _HDR.unpack_from(mv)
            hlen = (off >> 10) & 0x3C
            options = [] if hlen == 20 else _options_slow(mv, n, hlen)
        else:
            raise Malformed("truncated", f"{n} bytes, a TCP header has at least 20")
        if verify_checksum and not verify(mv, pseudo_header(src, dst, _PROTO_TCP, n)):
            raise Malformed("bad-checksum")
        return cls(sport, dport, seq, ack, off & 0x0FFF, win, urg, options), mv[hlen:]

    @property
    def header_len(self) -> int:
        """Bytes ``emit`` writes: 20 plus the options padded to a multiple of 4."""
        opts = self.options
        if not opts:
            return 20
        n = 0
        for o in opts:
            n += o.wire_len
        return 20 + ((n + 3) & ~3)

    def emit(
        self,
        buf: bytearray | memoryview,
        offset: int,
        src: bytes,
        dst: bytes,
        payload_len: int = 0,
    ) -> None:
        """Write the header at ``buf[offset:]`` and checksum it with the ``payload_len`` bytes
        of payload that must already sit right after it (``offset + header_len``).
        """
        opts = self.options
        flags = self.flags
        if flags >> 12:
            raise ValueError(f"TCP flags 0x{flags:x} do not fit in 12 bits")
        try:
            if not opts:
                hlen = 20
                _HDR.pack_into(
                    buf,
                    offset,
                    self.src_port,
                    self.dst_port,
                    self.seq,
                    self.ack,
                    0x5000 | flags,
                    self.window,
                    0,
                    self.urgent,
                )
            elif (
                len(opts) == 3
                and type(ts := opts[2]) is OptTimestamps
                and type(opts[0]) is OptNop
                and type(opts[1]) is OptNop
            ):
                hlen = 32
                _HDR_TS.pack_into(
                    buf,
                    offset,
                    self.src_port,
                    self.dst_port,
                    self.seq,
                    self.ack,
                    0x8000 | flags,
                    self.window,
                    0,
                    self.urgent,
                    _NOP_NOP_TS,
                    ts.tsval,
                    ts.tsecr,
                )
            else:
                raw = _encode_options(opts)
                hlen = 20 + len(raw)
                if len(buf) < offset + hlen:
                    # Checked first: the slice assignment below would grow a bytearray.
                    raise ValueError(f"buffer too short for a {hlen}-byte header at {offset}")
                _HDR.pack_into(
                    buf,
                    offset,
                    self.src_port,
                    self.dst_port,
                    self.seq,
                    self.ack,
                    (hlen << 10) | flags,
                    self.window,
                    0,
                    self.urgent,
                )
                buf[offset + 20 : offset + hlen] = raw
        except struct.error as e:
            raise ValueError(f"TCP header field out of range: {e}") from e
        total = hlen + payload_len
        segment = memoryview(buf)[offset : offset + total]
        if len(segment) != total:
            raise ValueError(f"buffer too short for a {total}-byte segment at offset {offset}")
        _U16.pack_into(
            buf, offset + 16, checksum(segment, pseudo_header(src, dst, _PROTO_TCP, total))
        )

    def to_bytes(self, src: bytes, dst: bytes, payload: Buffer = b"") -> bytes:
        """Header + payload with the checksum filled in (tests and probes; not the hot path)."""
        hlen = self.header_len
        buf = bytearray(hlen + len(payload))
        buf[hlen:] = payload
        self.emit(buf, 0, src, dst, len(payload))
        return bytes(buf)

    # ----------------------------------------------------------- option look-ups for TCP

    @property
    def mss(self) -> int | None:
        """The MSS option's value, or None."""
        for o in self.options:
            if type(o) is OptMss:
                return o.mss
        return None

    @property
    def window_scale(self) -> int | None:
        """The window scale shift as sent (the caller clamps to 14, RFC 7323 2.3), or None."""
        for o in self.options:
            if type(o) is OptWindowScale:
                return o.shift
        return None

    @property
    def sack_permitted(self) -> bool:
        """Whether the SACK-permitted option is present (it has no value, hence a bool)."""
        return any(type(o) is OptSackPermitted for o in self.options)

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...] | None:
        """The first SACK option's blocks, or None."""
        for o in self.options:
            if type(o) is OptSack:
                return o.blocks
        return None

    @property
    def timestamps(self) -> tuple[int, int] | None:
        """``(tsval, tsecr)`` of the timestamps option, or None."""
        for o in self.options:
            if type(o) is OptTimestamps:
                return o.tsval, o.tsecr
        return None

    @property
    def fast_open(self) -> bytes | None:
        """The first Fast Open cookie (either encoding; ``b""`` is a cookie request), or None."""
        for o in self.options:
            if type(o) is OptFastOpen:
                return o.cookie
        return None


def _options_slow(mv: memoryview, n: int, hlen: int) -> list[TcpOption]:
    """Validate the data offset and parse options other than the NOP,NOP,TS layout."""
    if hlen < 20:
        raise Malformed("bad-length", f"data offset {hlen >> 2} (minimum 5)")
    if hlen > n:
        raise Malformed("truncated", f"data offset says {hlen} bytes of header, have {n}")
    if hlen == 24 and mv[20] == 2 and mv[21] == 4:
        return [OptMss((mv[22] << 8) | mv[23])]
    if hlen == 40:
        k_mss, mss, k_sp_ts, k_ts, tsval, tsecr, k_nop_ws, k_ws, shift = _SYN_OPTS.unpack_from(
            mv, 20
        )
        if (
            k_mss == 0x0204
            and k_sp_ts == 0x0402
            and k_ts == 0x080A
            and k_nop_ws == 0x0103
            and k_ws == 0x03
        ):
            return [
                OptMss(mss),
                _SACK_PERM,
                OptTimestamps(tsval, tsecr),
                _NOP,
                OptWindowScale(shift),
            ]
    return _parse_options(mv[20:hlen].tobytes())
