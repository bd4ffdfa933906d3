"""ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861) and MLD reports (RFC 2710, RFC 3810).

Layers:

* :class:`Icmpv6Message` is the generic 8-byte header (type, code, checksum, the 32-bit
  ``rest`` word) plus the message body in ``data``. It owns the checksum, which covers the IPv6
  pseudo-header (RFC 4443 2.3, next header 58), so ``parse`` and ``emit`` take the addresses.
* NDP messages and MLD reports are typed views *of a parsed message*: ``from_message(msg)``
  decodes ``msg.rest``/``msg.data``, ``to_message()`` builds the message back. They never see
  checksums or addresses, so a probe can build an odd body and still send it correctly summed.

Checks that depend on the IP header (hop limit 255 for ND, RFC 4861 6.1.1/7.1.1; link-local
source for RAs and MLD) or on state (unsolicited NA to a multicast address ...) belong to the
interface; ``from_message`` validates only the message itself: ND code 0, minimum body
length, every option length non-zero and within the body (RFC 4861 4.6).

Reserved fields are ignored on reception and written as zero, as the RFCs say; flag bits the
typed views do not name are kept in ``other_flags`` where they have later meaning (RA H/Prf/P
bits of RFC 3775/4191/8425, the Prefix R bit of RFC 6275), so re-emitting a parsed RA keeps
them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Self

from stack.wire.checksum import Buffer, checksum, pseudo_header_v6, verify
from stack.wire.errors import Malformed

_ICMP = struct.Struct("!BBHI")
_CSUM = struct.Struct("!H")
_ADDR = struct.Struct("!16s")
_ADDR2 = struct.Struct("!16s16s")
_RA_BODY = struct.Struct("!II")
_OPT_HDR = struct.Struct("!BB")
_PREFIX = struct.Struct("!BBIII16s")  # prefix option data after type/length (30 bytes)
_MTU_OPT = struct.Struct("!xxI")
_MLD2_REC = struct.Struct("!BBH16s")

PROTO_ICMPV6 = 58
HEADER_LEN = 8
# RFC 4443 2.4 (c): an error message must fit the minimum IPv6 MTU (1280) with its IPv6
# header; the invoking packet is cut to what is left.
MAX_INVOKING_LEN = 1280 - 40 - HEADER_LEN

ICMP6_DEST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_PARAM_PROBLEM = 4
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
MLD_QUERY = 130
MLD_REPORT = 131
MLD_DONE = 132
ND_RS = 133
ND_RA = 134
ND_NS = 135
ND_NA = 136
ND_REDIRECT = 137
MLDV2_REPORT = 143

# Destination Unreachable codes (RFC 4443 3.1)
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
# Time Exceeded codes (RFC 4443 3.3)
TIME_EXCEEDED_HOP_LIMIT = 0
TIME_EXCEEDED_REASSEMBLY = 1
# Parameter Problem codes (RFC 4443 3.4)
PARAM_ERRONEOUS_FIELD = 0
PARAM_UNKNOWN_NEXT_HEADER = 1
PARAM_UNKNOWN_OPTION = 2

# NDP option types (RFC 4861 4.6)
SOURCE_LLADDR = 1
TARGET_LLADDR = 2
PREFIX_INFO = 3
REDIRECTED_HEADER = 4
MTU = 5

# MLDv2 multicast address record types (RFC 3810 5.2.12)
MODE_IS_INCLUDE = 1
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3
CHANGE_TO_EXCLUDE = 4
ALLOW_NEW_SOURCES = 5
BLOCK_OLD_SOURCES = 6

_RA_MANAGED = 0x80
_RA_OTHER = 0x40
_NA_ROUTER = 0x80000000
_NA_SOLICITED = 0x40000000
_NA_OVERRIDE = 0x20000000
_PI_ON_LINK = 0x80
_PI_AUTONOMOUS = 0x40
_ZEROS = bytes(8)


def _check_addrs(src: bytes, dst: bytes) -> None:
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("ICMPv6 checksums need the 16-byte IPv6 source and destination")


@dataclass(slots=True)
class Icmpv6Message:
    """An ICMPv6 message: ``rest`` is the 32-bit word after the checksum (identifier and
    sequence, MTU, pointer, ND flags ...), ``data`` the body after it."""

    type: int
    code: int
    rest: int = 0
    data: bytes = b""

    @classmethod
    def parse(
        cls, data: Buffer, src: bytes, dst: bytes, verify_checksum: bool = True
    ) -> tuple[Self, memoryview]:
        """Parse a message carried from ``src`` to ``dst`` (the IPv6 header's addresses, as
        ``bytes``). The returned view is the body, the same bytes as ``.data`` without a copy.
        """
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < HEADER_LEN:
            raise Malformed("truncated", f"icmpv6 message of {n} bytes")
        if verify_checksum and not verify(mv, pseudo_header_v6(src, dst, PROTO_ICMPV6, n)):
            raise Malformed("bad-checksum", "icmpv6")
        mtype, code, _csum, rest = _ICMP.unpack_from(mv)
        body = mv[HEADER_LEN:]
        return cls(mtype, code, rest, bytes(body)), body

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    def emit(
        self,
        buf: bytearray | memoryview,
        offset: int = 0,
        src: bytes = b"",
        dst: bytes = b"",
        payload_len: int | None = None,
    ) -> None:
        """Write the 8-byte header at ``offset`` and checksum it with the body that must
        already sit right after it in ``buf``; ``self.data`` is not copied (use ``to_bytes``
        for that). ``payload_len`` defaults to ``len(self.data)``. ``src`` and ``dst`` are
        required: their defaults only exist to keep ``offset`` positional-with-default like
        every other codec, and an empty address raises ``ValueError``.
        """
        _check_addrs(src, dst)
        plen = len(self.data) if payload_len is None else payload_len
        end = offset + HEADER_LEN + plen
        if end > len(buf):
            raise ValueError(f"buffer of {len(buf)} bytes cannot hold the message up to {end}")
        _ICMP.pack_into(buf, offset, self.type, self.code, 0, self.rest)
        csum = checksum(buf[offset:end], pseudo_header_v6(src, dst, PROTO_ICMPV6, end - offset))
        _CSUM.pack_into(buf, offset + 2, csum)

    def to_bytes(self, src: bytes, dst: bytes) -> bytes:
        """Header + ``data`` with the checksum for ``src`` -> ``dst``."""
        buf = bytearray(HEADER_LEN + len(self.data))
        buf[HEADER_LEN:] = self.data
        self.emit(buf, 0, src, dst)
        return bytes(buf)

    # -- echo and error constructors (RFC 4443 3, 4) --

    @classmethod
    def echo_request(cls, ident: int, seq: int, data: bytes = b"") -> Self:
        return cls(ICMP6_ECHO_REQUEST, 0, (ident << 16) | seq, data)

    @classmethod
    def echo_reply(cls, ident: int, seq: int, data: bytes = b"") -> Self:
        return cls(ICMP6_ECHO_REPLY, 0, (ident << 16) | seq, data)

    @classmethod
    def dest_unreachable(cls, code: int, invoking: Buffer) -> Self:
        """``invoking`` (the offending packet from its IPv6 header on) is cut so the error
        fits the minimum MTU (RFC 4443 2.4 (c)); so are the other error constructors'."""
        return cls(ICMP6_DEST_UNREACH, code, 0, bytes(invoking[:MAX_INVOKING_LEN]))

    @classmethod
    def packet_too_big(cls, mtu: int, invoking: Buffer) -> Self:
        return cls(ICMP6_PACKET_TOO_BIG, 0, mtu, bytes(invoking[:MAX_INVOKING_LEN]))

    @classmethod
    def time_exceeded(cls, code: int, invoking: Buffer) -> Self:
        return cls(ICMP6_TIME_EXCEEDED, code, 0, bytes(invoking[:MAX_INVOKING_LEN]))

    @classmethod
    def param_problem(cls, code: int, pointer: int, invoking: Buffer) -> Self:
        return cls(ICMP6_PARAM_PROBLEM, code, pointer, bytes(invoking[:MAX_INVOKING_LEN]))

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        return self.rest

    @property
    def pointer(self) -> int:
        return self.rest

    @property
    def is_error(self) -> bool:
        """RFC 4443 2.1: types 0-127 are errors (never answered with an error, 2.4 (e))."""
        return self.type < 128


# -- NDP options (RFC 4861 4.6) --


@dataclass(slots=True)
class NdpOption:
    """A type-length-value ND option; ``data`` is everything after the type and length bytes.

    The wire length is in units of 8 octets and covers the type and length bytes, so ``data``
    of a parsed option is ``8 * length - 2`` bytes, trailing padding included. ``emit`` pads
    ``data`` with zeros to fill whole units, so ``source_lladdr`` works for any link-layer
    address length (6 for Ethernet, 8 for 802.15.4's EUI-64 per RFC 4944 8).
    """

    type: int
    data: bytes

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        """One option at the start of ``data``; the view returned is what follows it.

        A zero length (RFC 4861 4.6: "nodes MUST silently discard an ND packet that contains
        an option with length zero") or an option overrunning the body is ``bad-option``.
        """
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < 2:
            raise Malformed("bad-option", f"nd option in {n} bytes")
        otype, units = _OPT_HDR.unpack_from(mv)
        if units == 0:
            raise Malformed("bad-option", f"nd option {otype} of length 0")
        olen = units << 3
        if olen > n:
            raise Malformed("bad-option", f"nd option {otype} of {olen} bytes in {n}")
        return cls(otype, bytes(mv[2:olen])), mv[olen:]

    @property
    def header_len(self) -> int:
        return (2 + len(self.data) + 7) & ~7

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        olen = (2 + len(self.data) + 7) & ~7
        if olen > 0xFF << 3:
            raise ValueError(f"nd option {self.type} of {olen} bytes exceeds 2040")
        _OPT_HDR.pack_into(buf, offset, self.type, olen >> 3)
        dend = offset + 2 + len(self.data)
        buf[offset + 2 : dend] = self.data
        buf[dend : offset + olen] = _ZEROS[: offset + olen - dend]

    def to_bytes(self) -> bytes:
        buf = bytearray(self.header_len)
        self.emit(buf, 0)
        return bytes(buf)

    def lladdr(self, addr_len: int = 6) -> bytes:
        """The link-layer address of a Source/Target Link-Layer Address option (RFC 4861
        4.6.1), without padding; ``addr_len`` is the link's address length."""
        if self.type not in (SOURCE_LLADDR, TARGET_LLADDR) or len(self.data) < addr_len:
            raise Malformed("bad-option", f"nd option {self.type} is no {addr_len}-byte lladdr")
        return self.data[:addr_len]


def parse_options(data: Buffer) -> list[NdpOption]:
    """All options in an ND message body, in order. Unknown types are kept (RFC 4861 4.6:
    receivers ignore them, which is the caller's choice, and a probe wants to see them)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    options = []
    while mv:
        opt, mv = NdpOption.parse(mv)
        options.append(opt)
    return options


def options_bytes(options: list[NdpOption]) -> bytes:
    """The wire form of ``options``, each padded to whole 8-octet units."""
    return b"".join(opt.to_bytes() for opt in options)


def source_lladdr(mac: bytes) -> NdpOption:
    return NdpOption(SOURCE_LLADDR, mac)


def target_lladdr(mac: bytes) -> NdpOption:
    return NdpOption(TARGET_LLADDR, mac)


def find_option(options: list[NdpOption], opt_type: int) -> NdpOption | None:
    """The first option of ``opt_type``: RFC 4861 allows one Source/Target Link-Layer
    Address and one MTU option per message, so the first is the one to use."""
    for opt in options:
        if opt.type == opt_type:
            return opt
    return None


def find_lladdr(options: list[NdpOption], opt_type: int, addr_len: int = 6) -> bytes | None:
    """The address of the first ``opt_type`` (``SOURCE_LLADDR`` / ``TARGET_LLADDR``) option,
    or None; a too-short one raises ``Malformed("bad-option")``."""
    opt = find_option(options, opt_type)
    return None if opt is None else opt.lladdr(addr_len)


@dataclass(slots=True)
class PrefixInfo:
    """Prefix Information option (RFC 4861 4.6.2). ``prefix`` is the full 16 bytes as sent
    (bits past ``prefix_len`` are not masked: SLAAC code must do that, and a probe may want to
    send them set); ``other_flags`` keeps the flag bits after L and A (R of RFC 6275 ...)."""

    prefix_len: int
    on_link: bool
    autonomous: bool
    valid_lifetime: int
    preferred_lifetime: int
    prefix: bytes
    other_flags: int = 0

    @classmethod
    def from_option(cls, opt: NdpOption) -> Self:
        if opt.type != PREFIX_INFO or len(opt.data) != _PREFIX.size:
            raise Malformed("bad-option", f"nd option {opt.type} of {len(opt.data) + 2} bytes")
        plen, flags, valid, preferred, _res, prefix = _PREFIX.unpack_from(opt.data)
        if plen > 128:
            raise Malformed("bad-field", f"prefix length {plen}")
        return cls(
            plen,
            bool(flags & _PI_ON_LINK),
            bool(flags & _PI_AUTONOMOUS),
            valid,
            preferred,
            prefix,
            flags & 0x3F,
        )

    def to_option(self) -> NdpOption:
        flags = self.other_flags & 0x3F
        if self.on_link:
            flags |= _PI_ON_LINK
        if self.autonomous:
            flags |= _PI_AUTONOMOUS
        return NdpOption(
            PREFIX_INFO,
            _PREFIX.pack(
                self.prefix_len,
                flags,
                self.valid_lifetime,
                self.preferred_lifetime,
                0,
                self.prefix,
            ),
        )


@dataclass(slots=True)
class MtuOption:
    """MTU option (RFC 4861 4.6.4), sent in RAs on links with a variable MTU."""

    mtu: int

    @classmethod
    def from_option(cls, opt: NdpOption) -> Self:
        if opt.type != MTU or len(opt.data) != _MTU_OPT.size:
            raise Malformed("bad-option", f"nd option {opt.type} of {len(opt.data) + 2} bytes")
        return cls(_MTU_OPT.unpack_from(opt.data)[0])

    def to_option(self) -> NdpOption:
        return NdpOption(MTU, _MTU_OPT.pack(self.mtu))


# -- NDP messages (RFC 4861 4.1-4.5) --


def _nd_body(msg: Icmpv6Message, mtype: int, min_len: int, what: str) -> memoryview:
    if msg.type != mtype:
        raise Malformed("unsupported", f"icmpv6 type {msg.type} is not {what}")
    if msg.code != 0:
        raise Malformed("bad-field", f"{what} code {msg.code}")
    if len(msg.data) < min_len:
        raise Malformed("truncated", f"{what} body of {len(msg.data)} bytes")
    return memoryview(msg.data)


@dataclass(slots=True)
class RouterSolicit:
    options: list[NdpOption] = field(default_factory=list)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        return cls(parse_options(_nd_body(msg, ND_RS, 0, "router solicitation")))

    def to_message(self) -> Icmpv6Message:
        return Icmpv6Message(ND_RS, 0, 0, options_bytes(self.options))


@dataclass(slots=True)
class RouterAdvert:
    """Router Advertisement. ``router_lifetime`` in seconds, the two timers in milliseconds
    (0 = unspecified), as on the wire; ``other_flags`` holds the low six flag bits."""

    cur_hop_limit: int
    managed: bool
    other: bool
    router_lifetime: int
    reachable_time: int
    retrans_timer: int
    options: list[NdpOption] = field(default_factory=list)
    other_flags: int = 0

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        body = _nd_body(msg, ND_RA, 8, "router advertisement")
        reachable, retrans = _RA_BODY.unpack_from(body)
        rest = msg.rest
        flags = (rest >> 16) & 0xFF
        return cls(
            rest >> 24,
            bool(flags & _RA_MANAGED),
            bool(flags & _RA_OTHER),
            rest & 0xFFFF,
            reachable,
            retrans,
            parse_options(body[8:]),
            flags & 0x3F,
        )

    def to_message(self) -> Icmpv6Message:
        flags = self.other_flags & 0x3F
        if self.managed:
            flags |= _RA_MANAGED
        if self.other:
            flags |= _RA_OTHER
        rest = (self.cur_hop_limit << 24) | (flags << 16) | self.router_lifetime
        body = _RA_BODY.pack(self.reachable_time, self.retrans_timer)
        return Icmpv6Message(ND_RA, 0, rest, body + options_bytes(self.options))


@dataclass(slots=True)
class NeighborSolicit:
    target: bytes
    options: list[NdpOption] = field(default_factory=list)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        body = _nd_body(msg, ND_NS, 16, "neighbor solicitation")
        return cls(_ADDR.unpack_from(body)[0], parse_options(body[16:]))

    def to_message(self) -> Icmpv6Message:
        return Icmpv6Message(ND_NS, 0, 0, _ADDR.pack(self.target) + options_bytes(self.options))


@dataclass(slots=True)
class NeighborAdvert:
    target: bytes
    router: bool
    solicited: bool
    override: bool
    options: list[NdpOption] = field(default_factory=list)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        body = _nd_body(msg, ND_NA, 16, "neighbor advertisement")
        rest = msg.rest
        return cls(
            _ADDR.unpack_from(body)[0],
            bool(rest & _NA_ROUTER),
            bool(rest & _NA_SOLICITED),
            bool(rest & _NA_OVERRIDE),
            parse_options(body[16:]),
        )

    def to_message(self) -> Icmpv6Message:
        rest = (
            (_NA_ROUTER if self.router else 0)
            | (_NA_SOLICITED if self.solicited else 0)
            | (_NA_OVERRIDE if self.override else 0)
        )
        return Icmpv6Message(ND_NA, 0, rest, _ADDR.pack(self.target) + options_bytes(self.options))


@dataclass(slots=True)
class Redirect:
    target: bytes
    destination: bytes
    options: list[NdpOption] = field(default_factory=list)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        body = _nd_body(msg, ND_REDIRECT, 32, "redirect")
        target, destination = _ADDR2.unpack_from(body)
        return cls(target, destination, parse_options(body[32:]))

    def to_message(self) -> Icmpv6Message:
        body = _ADDR2.pack(self.target, self.destination)
        return Icmpv6Message(ND_REDIRECT, 0, 0, body + options_bytes(self.options))


NdpMessage = RouterSolicit | RouterAdvert | NeighborSolicit | NeighborAdvert | Redirect

_NDP_TYPES: dict[int, type[NdpMessage]] = {
    ND_RS: RouterSolicit,
    ND_RA: RouterAdvert,
    ND_NS: NeighborSolicit,
    ND_NA: NeighborAdvert,
    ND_REDIRECT: Redirect,
}


def parse_ndp(msg: Icmpv6Message) -> NdpMessage:
    """The typed body of an ND message (types 133-137); any other type is ``unsupported``."""
    cls = _NDP_TYPES.get(msg.type)
    if cls is None:
        raise Malformed("unsupported", f"icmpv6 type {msg.type} is not neighbor discovery")
    return cls.from_message(msg)


# -- MLD reports (RFC 2710 3, RFC 3810 5.2) --


@dataclass(slots=True)
class MldRecord:
    """One multicast address record of an MLDv2 report (RFC 3810 5.2.4). In an MLDv1 report
    the single group is a record with ``record_type`` 0 and no sources or aux data.
    ``aux_data`` must be a multiple of 4 bytes (its length is counted in 32-bit words)."""

    record_type: int
    group: bytes
    sources: list[bytes] = field(default_factory=list)
    aux_data: bytes = b""


@dataclass(slots=True)
class MldReport:
    """MLDv1 (type 131, one group) or MLDv2 (type 143, address records) Listener Report."""

    version: int
    groups: list[MldRecord]

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> Self:
        """RFC 2710 3 lets an MLDv1 message be longer than 24 bytes (the rest is ignored);
        an MLDv2 report must end with its last record, so trailing bytes are ``bad-length``."""
        if msg.type == MLD_REPORT:
            if msg.code != 0:
                raise Malformed("bad-field", f"mld report code {msg.code}")
            if len(msg.data) < 16:
                raise Malformed("truncated", f"mld report body of {len(msg.data)} bytes")
            return cls(1, [MldRecord(0, msg.data[:16])])
        if msg.type != MLDV2_REPORT:
            raise Malformed("unsupported", f"icmpv6 type {msg.type} is no mld report")
        if msg.code != 0:
            raise Malformed("bad-field", f"mldv2 report code {msg.code}")
        body = memoryview(msg.data)
        n = len(body)
        i = 0
        groups = []
        for _ in range(msg.rest & 0xFFFF):
            if i + 20 > n:
                raise Malformed("truncated", f"mldv2 record at {i} in {n} bytes")
            rtype, aux_words, nsrc, group = _MLD2_REC.unpack_from(body, i)
            i += 20
            end = i + 16 * nsrc + 4 * aux_words
            if end > n:
                raise Malformed("truncated", f"mldv2 record of {end - i + 20} bytes at {i - 20}")
            sources = [bytes(body[j : j + 16]) for j in range(i, i + 16 * nsrc, 16)]
            i += 16 * nsrc
            groups.append(MldRecord(rtype, group, sources, bytes(body[i:end])))
            i = end
        if i != n:
            raise Malformed("bad-length", f"{n - i} bytes after the last mldv2 record")
        return cls(2, groups)

    def to_message(self) -> Icmpv6Message:
        if self.version == 1:
            if len(self.groups) != 1 or self.groups[0].sources or self.groups[0].aux_data:
                raise ValueError("an MLDv1 report carries exactly one group and no sources")
            return Icmpv6Message(MLD_REPORT, 0, 0, self.groups[0].group)
        if self.version != 2:
            raise ValueError(f"MLD version {self.version}")
        if len(self.groups) > 0xFFFF:
            raise ValueError(f"{len(self.groups)} records do not fit an MLDv2 report")
        parts = []
        for rec in self.groups:
            if len(rec.aux_data) & 3:
                raise ValueError(f"aux data of {len(rec.aux_data)} bytes is not whole words")
            parts.append(
                _MLD2_REC.pack(rec.record_type, len(rec.aux_data) >> 2, len(rec.sources), rec.group)
            )
            if any(len(s) != 16 for s in rec.sources):
                raise ValueError("MLDv2 sources are 16-byte IPv6 addresses")
            parts.extend(rec.sources)
            parts.append(rec.aux_data)
        return Icmpv6Message(MLDV2_REPORT, 0, len(self.groups), b"".join(parts))
