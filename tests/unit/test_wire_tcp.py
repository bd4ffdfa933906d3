"""Tests for ``stack.wire.tcp``: round trips, scapy as an independent oracle, malformed input.

Scapy (GPL-2) is used only as a test oracle here, never imported by ``stack``.

Scapy 2.8 names TCP option kinds 0-5, 8, 14, 15, 19, 25, 28, 29 and 34 ("TFO", whose value it
dissects as two 32-bit ints when the cookie is 8 bytes and as raw bytes otherwise). It has no
name for kind 254, so the experimental Fast Open option goes through scapy as a raw
``(254, magic + cookie)`` tuple, like every kind our codec calls ``OptUnknown``. When scapy
*dissects*, option kinds it names but we don't (14, 15, 19, 25, 28, 29) come back converted
through lossy formats (kind 25 "Mood" unpacks with "!p"), so the emit → scapy direction draws
unknown kinds outside scapy's table; the scapy → parse direction uses every kind.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, TCPOptions, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import Packet, Raw

from stack.wire.checksum import checksum, pseudo_header
from stack.wire.errors import Malformed
from stack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    NS,
    PSH,
    RST,
    SYN,
    URG,
    OptEol,
    OptFastOpen,
    OptMss,
    OptNop,
    OptSack,
    OptSackPermitted,
    OptTimestamps,
    OptUnknown,
    OptWindowScale,
    TcpHeader,
    TcpOption,
)

SRC4 = bytes([192, 0, 2, 1])
DST4 = bytes([198, 51, 100, 7])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("fe800000000000000211223344556677")

KNOWN_KINDS = {0, 1, 2, 3, 4, 5, 8, 34}
SCAPY_NAMED_KINDS = set(TCPOptions[0])
TFO_MAGIC = b"\xf9\x89"

# ------------------------------------------------------------------------------ strategies

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
cookies = st.one_of(
    st.just(b""),
    st.integers(2, 8).flatmap(lambda k: st.binary(min_size=2 * k, max_size=2 * k)),
)


def unknown_options(kinds: list[int]) -> st.SearchStrategy[OptUnknown]:
    return st.builds(OptUnknown, st.sampled_from(kinds), st.binary(max_size=12)).filter(
        lambda o: not (o.kind == 254 and o.data[:2] == TFO_MAGIC)
    )


ALL_UNKNOWN_KINDS = [k for k in range(2, 256) if k not in KNOWN_KINDS]
UNNAMED_UNKNOWN_KINDS = [k for k in ALL_UNKNOWN_KINDS if k not in SCAPY_NAMED_KINDS]


def single_options(kinds: list[int]) -> st.SearchStrategy[TcpOption]:
    return st.one_of(
        st.just(OptNop()),
        st.builds(OptMss, u16),
        st.builds(OptWindowScale, st.integers(0, 255)),
        st.just(OptSackPermitted()),
        st.builds(OptSack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
        st.builds(OptTimestamps, u32, u32),
        st.builds(OptFastOpen, cookies, st.booleans()),
        unknown_options(kinds),
    )


def _wire_len(options: list[TcpOption]) -> int:
    return sum(o.wire_len for o in options)


@st.composite
def option_lists(draw: st.DrawFn, kinds: list[int] = ALL_UNKNOWN_KINDS) -> list[TcpOption]:
    """Up to 40 bytes of options, sometimes with an EOL somewhere (possibly followed by more)."""
    opts = draw(st.lists(single_options(kinds), max_size=8).filter(lambda o: _wire_len(o) <= 40))
    if draw(st.booleans()) and _wire_len(opts) < 40:
        opts.insert(draw(st.integers(0, len(opts))), OptEol())
    return opts


def expected_options(options: list[TcpOption]) -> list[TcpOption]:
    """What parse returns for emitted ``options``: cut after an EOL; zero padding reads as EOL."""
    for i, o in enumerate(options):
        if isinstance(o, OptEol):
            return options[: i + 1]
    if _wire_len(options) % 4:
        return [*options, OptEol()]
    return list(options)


@st.composite
def headers(draw: st.DrawFn, kinds: list[int] = ALL_UNKNOWN_KINDS) -> TcpHeader:
    return TcpHeader(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(st.integers(0, 0xFFF)),
        window=draw(u16),
        urgent=draw(u16),
        options=draw(option_lists(kinds)),
    )


families = st.sampled_from([(SRC4, DST4), (SRC6, DST6)])

# --------------------------------------------------------------------- scapy conversions


def to_scapy_option(o: TcpOption) -> tuple[Any, Any]:
    if isinstance(o, OptEol):
        return ("EOL", None)
    if isinstance(o, OptNop):
        return ("NOP", None)
    if isinstance(o, OptMss):
        return ("MSS", o.mss)
    if isinstance(o, OptWindowScale):
        return ("WScale", o.shift)
    if isinstance(o, OptSackPermitted):
        return ("SAckOK", b"")
    if isinstance(o, OptSack):
        return ("SAck", tuple(edge for block in o.blocks for edge in block))
    if isinstance(o, OptTimestamps):
        return ("Timestamp", (o.tsval, o.tsecr))
    if isinstance(o, OptFastOpen):
        if o.experimental:
            return (254, TFO_MAGIC + o.cookie)
        return ("TFO", o.cookie)
    return (o.kind, o.data)


def canonical_ours(o: TcpOption) -> tuple[int, bytes]:
    """(kind, bytes after the length byte), or (kind, b"") for EOL/NOP."""
    raw = o.encode()
    return (raw[0], raw[2:]) if raw[0] > 1 else (raw[0], b"")


def canonical_scapy(name: Any, value: Any) -> tuple[int, bytes]:
    if isinstance(name, int):
        return (name, bytes(value))
    kind = TCPOptions[1][name]
    if value is None:
        return (kind, b"")
    if isinstance(value, Packet):
        return (kind, bytes(value))
    if isinstance(value, bytes):
        return (kind, value)
    values = value if isinstance(value, tuple) else (value,)
    fmt: str = TCPOptions[0][kind][1] or ""
    if kind == 5:
        fmt += f"{len(values)}I"
    return (kind, struct.pack(fmt, *values))


def scapy_frame(h: TcpHeader, src: bytes, dst: bytes, payload: bytes) -> bytes:
    ip: Packet = (
        IP(src=_ip4(src), dst=_ip4(dst)) if len(src) == 4 else IPv6(src=_ip6(src), dst=_ip6(dst))
    )
    tcp = TCP(
        sport=h.src_port,
        dport=h.dst_port,
        seq=h.seq,
        ack=h.ack,
        reserved=h.flags >> 9,
        flags=h.flags & 0x1FF,
        window=h.window,
        urgptr=h.urgent,
        options=[to_scapy_option(o) for o in h.options],
    )
    return bytes(ip / tcp / Raw(payload))


def _ip4(a: bytes) -> str:
    return ".".join(str(b) for b in a)


def _ip6(a: bytes) -> str:
    return ":".join(a[i : i + 2].hex() for i in range(0, 16, 2))


def assert_matches_scapy(ours: TcpHeader, payload: bytes, seg: bytes, src: bytes) -> None:
    """Dissect ``seg`` (our emitted segment) with scapy and compare field by field."""
    dst = DST4 if len(src) == 4 else DST6
    frame: Packet
    if len(src) == 4:
        frame = IP(bytes(IP(src=_ip4(src), dst=_ip4(dst), proto=6) / Raw(seg)))
    else:
        frame = IPv6(bytes(IPv6(src=_ip6(src), dst=_ip6(dst), nh=6) / Raw(seg)))
    t = frame[TCP]
    assert (t.sport, t.dport, t.seq, t.ack) == (ours.src_port, ours.dst_port, ours.seq, ours.ack)
    assert (t.reserved << 9) | int(t.flags) == ours.flags
    assert (t.window, t.urgptr) == (ours.window, ours.urgent)
    assert t.dataofs * 4 == ours.header_len
    assert [canonical_scapy(n, v) for n, v in t.options] == [
        canonical_ours(o) for o in expected_options(ours.options)
    ]
    # Compare the raw bytes scapy saw, not a rebuild: another test module may have bound
    # application layers to TCP ports.
    assert (t.payload.original if t.payload else b"") == payload
    zeroed = seg[:16] + b"\x00\x00" + seg[18:]
    if isinstance(frame, IP):
        recomputed = in4_chksum(6, frame, zeroed)
    else:
        recomputed = in6_chksum(6, frame, zeroed)  # type: ignore[no-untyped-call]
    assert recomputed == t.chksum == struct.unpack_from("!H", seg, 16)[0]


# ------------------------------------------------------------------------------ round trips


@settings(max_examples=200)
@given(h=headers(), fam=families, payload=st.binary(max_size=64))
def test_round_trip(h: TcpHeader, fam: tuple[bytes, bytes], payload: bytes) -> None:
    src, dst = fam
    seg = h.to_bytes(src, dst, payload)
    assert len(seg) == h.header_len + len(payload)
    assert seg[12] >> 4 == h.header_len // 4
    parsed, pl = TcpHeader.parse(seg, src, dst)
    want = TcpHeader(
        h.src_port, h.dst_port, h.seq, h.ack, h.flags, h.window, h.urgent,
        expected_options(h.options),
    )  # fmt: skip
    assert parsed == want
    assert bytes(pl) == payload
    # Re-emitting the parsed header reproduces the bytes (EOL + padding == padding), unless
    # options followed an EOL: parse drops those as padding.
    if not any(isinstance(o, OptEol) for o in h.options[:-1]):
        assert parsed.to_bytes(src, dst, payload) == seg


@settings(max_examples=50)
@given(h=headers(), fam=families, payload=st.binary(max_size=32), pre=st.integers(0, 20))
def test_emit_in_place(h: TcpHeader, fam: tuple[bytes, bytes], payload: bytes, pre: int) -> None:
    """Inside-out build into one buffer at an offset, into a bytearray or a memoryview."""
    src, dst = fam
    hl = h.header_len
    for make in (bytearray, lambda b: memoryview(bytearray(b))):
        buf = make(b"\xaa" * pre + b"\x00" * hl + payload + b"\xbb" * 3)
        h.emit(buf, pre, src, dst, len(payload))
        assert bytes(buf[:pre]) == b"\xaa" * pre
        assert bytes(buf[pre + hl + len(payload) :]) == b"\xbb" * 3
        assert bytes(buf[pre : pre + hl + len(payload)]) == h.to_bytes(src, dst, payload)


# ------------------------------------------------------------------------ scapy cross-checks


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(h=headers(), fam=families, payload=st.binary(max_size=32))
def test_scapy_builds_we_parse(h: TcpHeader, fam: tuple[bytes, bytes], payload: bytes) -> None:
    src, dst = fam
    frame = scapy_frame(h, src, dst, payload)
    seg = frame[20:] if len(src) == 4 else frame[40:]
    parsed, pl = TcpHeader.parse(seg, src, dst)
    assert parsed.src_port == h.src_port
    assert parsed.dst_port == h.dst_port
    assert parsed.seq == h.seq
    assert parsed.ack == h.ack
    assert parsed.flags == h.flags
    assert parsed.window == h.window
    assert parsed.urgent == h.urgent
    assert parsed.options == expected_options(h.options)
    assert bytes(pl) == payload


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(h=headers(UNNAMED_UNKNOWN_KINDS), fam=families, payload=st.binary(max_size=32))
def test_we_emit_scapy_dissects(h: TcpHeader, fam: tuple[bytes, bytes], payload: bytes) -> None:
    src, dst = fam
    assert_matches_scapy(h, payload, h.to_bytes(src, dst, payload), src)


EVERY_KIND: list[list[TcpOption]] = [
    [],
    [OptEol()],
    [OptNop(), OptNop(), OptTimestamps(0xDEADBEEF, 0x01020304)],
    [OptMss(1460)],
    [OptMss(1460), OptSackPermitted(), OptTimestamps(7, 0), OptNop(), OptWindowScale(7)],
    [OptNop(), OptWindowScale(14), OptEol()],
    [OptSackPermitted()],
    [OptNop(), OptNop(), OptSack(((1, 2),))],
    [OptNop(), OptNop(), OptSack(((1, 2), (3, 4), (5, 6), (7, 8)))],
    [OptFastOpen(b"", False)],
    [OptFastOpen(b"abcd", False)],
    [OptFastOpen(bytes(range(8)), False)],  # scapy shows 8-byte cookies as two ints
    [OptFastOpen(bytes(range(16)), False)],
    [OptFastOpen(b"", True)],
    [OptFastOpen(bytes(range(16)), True)],
    [OptUnknown(254, b"\x12\x34cookie")],  # another RFC 6994 experiment
    [OptUnknown(254, b"")],
    [OptUnknown(30, b"\x00\x01\x02")],  # MPTCP
    [OptUnknown(253, b"")],
]


@pytest.mark.parametrize("options", EVERY_KIND, ids=lambda o: "+".join(type(x).__name__ for x in o))
@pytest.mark.parametrize("fam", [(SRC4, DST4), (SRC6, DST6)], ids=["v4", "v6"])
def test_scapy_every_kind(options: list[TcpOption], fam: tuple[bytes, bytes]) -> None:
    src, dst = fam
    h = TcpHeader(40000, 443, 123456, 654321, SYN | ACK | NS, 29200, 0, options)
    payload = b"hello"
    parsed, _ = TcpHeader.parse(
        (frame := scapy_frame(h, src, dst, payload))[20 if len(src) == 4 else 40 :], src, dst
    )
    assert parsed.options == expected_options(options)
    seg = h.to_bytes(src, dst, payload)
    assert seg == frame[20 if len(src) == 4 else 40 :]
    assert_matches_scapy(h, payload, seg, src)


def test_scapy_tfo_experimental_is_raw_254() -> None:
    """Scapy has no name for kind 254: it dissects our experimental TFO as (254, magic+cookie)."""
    seg = TcpHeader(1, 2, 3, 4, SYN, 5, 0, [OptFastOpen(b"\x01" * 4, True)]).to_bytes(SRC4, DST4)
    t = TCP(seg)
    assert t.options == [(254, TFO_MAGIC + b"\x01" * 4)]


# ----------------------------------------------------------------------- fast paths, details


def test_flags_constants() -> None:
    assert (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS) == (1, 2, 4, 8, 16, 32, 64, 128, 256)


def test_reserved_bits_kept() -> None:
    seg = TcpHeader(1, 2, 3, 4, 0xE00 | NS | ACK, 5).to_bytes(SRC4, DST4)
    assert seg[12:14] == b"\x5f\x10"
    assert TcpHeader.parse(seg, SRC4, DST4)[0].flags == 0xF10
    assert TCP(seg).reserved == 7


@pytest.mark.parametrize(
    "options",
    [
        [OptNop(), OptNop(), OptTimestamps(1, 2)],  # 32-byte fast path
        [OptNop(), OptNop(), OptTimestamps(1, 2), OptNop(), OptNop(), OptSack(((5, 9),))],
        [OptTimestamps(1, 2), OptNop(), OptNop()],  # 32 bytes, not the fast-path layout
        [OptMss(536)],  # 24-byte fast path
        [OptWindowScale(3), OptEol()],  # 24 bytes, not MSS
        [OptMss(1), OptSackPermitted(), OptTimestamps(2, 3), OptNop(), OptWindowScale(4)],
        [OptMss(1), OptNop(), OptWindowScale(4), OptSackPermitted(), OptTimestamps(2, 3)],
    ],
)
@pytest.mark.parametrize("payload", [b"", b"z", b"0123456789abcdef"])
def test_layouts(options: list[TcpOption], payload: bytes) -> None:
    """Each layout with payloads that put the segment below and above 32 bytes."""
    h = TcpHeader(1, 2, 3, 4, ACK, 5, 0, options)
    seg = h.to_bytes(SRC6, DST6, payload)
    parsed, pl = TcpHeader.parse(seg, SRC6, DST6)
    assert parsed == h
    assert bytes(pl) == payload


def test_payload_is_zero_copy_slice() -> None:
    data = bytearray(TcpHeader(1, 2, 3, 4, ACK, 5).to_bytes(SRC4, DST4, b"payload"))
    _, pl = TcpHeader.parse(data, SRC4, DST4)
    assert pl.obj is data
    view = memoryview(data)
    _, pl = TcpHeader.parse(view, SRC4, DST4)
    data[-1] = ord("!")
    assert bytes(pl) == b"payloa!"


def test_option_helpers() -> None:
    h = TcpHeader(
        1, 2, 3, 4, SYN, 5, 0,
        [
            OptMss(1460), OptSackPermitted(), OptTimestamps(10, 20), OptNop(),
            OptWindowScale(7), OptFastOpen(b"abcdefgh", True),
        ],
    )  # fmt: skip
    assert h.mss == 1460
    assert h.window_scale == 7
    assert h.sack_permitted is True
    assert h.sack_blocks is None
    assert h.timestamps == (10, 20)
    assert h.fast_open == b"abcdefgh"
    h2 = TcpHeader(1, 2, 3, 4, ACK, 5, 0, [OptSack(((1, 2), (3, 4))), OptFastOpen(b"", False)])
    assert (h2.mss, h2.window_scale, h2.sack_permitted, h2.timestamps) == (None, None, False, None)
    assert h2.sack_blocks == ((1, 2), (3, 4))
    assert h2.fast_open == b""
    assert TcpHeader(1, 2, 3, 4, ACK, 5).fast_open is None


def test_unchecked_parse_accepts_bad_checksum() -> None:
    seg = bytearray(TcpHeader(1, 2, 3, 4, ACK, 5).to_bytes(SRC4, DST4, b"x"))
    seg[16] ^= 0xFF
    h, pl = TcpHeader.parse(seg, SRC4, DST4, verify_checksum=False)
    assert (h.src_port, bytes(pl)) == (1, b"x")


def test_checksum_zero_result_is_sent_as_zero() -> None:
    """TCP has no "no checksum" value (unlike UDP): a computed 0x0000 is sent as is."""
    base = TcpHeader(1, 2, 3, 4, ACK, 5)
    csum = struct.unpack_from("!H", base.to_bytes(SRC4, DST4, b"\x00\x00"), 16)[0]
    # Payload word = the old checksum makes the one's-complement sum 0xFFFF: checksum 0.
    seg = base.to_bytes(SRC4, DST4, struct.pack("!H", csum))
    assert seg[16:18] == b"\x00\x00"
    TcpHeader.parse(seg, SRC4, DST4)


# -------------------------------------------------------------------------- emit refusals


@pytest.mark.parametrize(
    "options",
    [
        [OptNop()] * 41,
        [OptTimestamps(1, 2)] * 4 + [OptNop()],
        [OptSack(())],
        [OptSack(((1, 2),) * 5)],
        [OptFastOpen(b"abc", False)],
        [OptFastOpen(b"x" * 18, True)],
        [OptMss(65536)],
        [OptWindowScale(256)],
        [OptTimestamps(-1, 0)],
        [OptSack(((0, 1 << 32),))],
    ],
)
def test_emit_refuses_unencodable_options(options: list[TcpOption]) -> None:
    with pytest.raises(ValueError):
        TcpHeader(1, 2, 3, 4, ACK, 5, 0, options).to_bytes(SRC4, DST4)


@pytest.mark.parametrize(
    "h",
    [
        TcpHeader(65536, 2, 3, 4, ACK, 5),
        TcpHeader(1, 2, 1 << 32, 4, ACK, 5),
        TcpHeader(1, 2, 3, 4, 0x1000, 5),
        TcpHeader(1, 2, 3, 4, ACK, 5, 0, [OptNop(), OptNop(), OptTimestamps(1 << 32, 0)]),
    ],
)
def test_emit_refuses_out_of_range_fields(h: TcpHeader) -> None:
    with pytest.raises(ValueError):
        h.to_bytes(SRC4, DST4)


@pytest.mark.parametrize(
    "options", [[], [OptNop(), OptNop(), OptTimestamps(1, 2)], [OptMss(1460), OptEol()]]
)
@pytest.mark.parametrize(("size", "payload_len"), [(10, 0), (22, 0), (40, 0), (40, 100)])
def test_emit_refuses_short_buffer(options: list[TcpOption], size: int, payload_len: int) -> None:
    h = TcpHeader(1, 2, 3, 4, ACK, 5, 0, options)
    if size >= h.header_len + payload_len:
        return
    buf = bytearray(size)
    with pytest.raises(ValueError):
        h.emit(buf, 0, SRC4, DST4, payload_len)
    assert len(buf) == size


def test_unknown_option_can_craft_malformed() -> None:
    seg = TcpHeader(1, 2, 3, 4, SYN, 5, 0, [OptUnknown(2, b"\x05"), OptEol()]).to_bytes(SRC4, DST4)
    assert seg[20:24] == b"\x02\x03\x05\x00"
    with pytest.raises(Malformed) as e:
        TcpHeader.parse(seg, SRC4, DST4)
    assert e.value.reason == "bad-option"


# ------------------------------------------------------------------------------- malformed


def raw_segment(
    options: bytes, src: bytes = SRC4, dst: bytes = DST4, doff: int | None = None
) -> bytes:
    """A segment with verbatim option bytes (zero-padded) and a valid checksum."""
    opts = options + b"\x00" * (-len(options) & 3)
    if doff is None:
        doff = 5 + len(opts) // 4
    seg = bytearray(struct.pack("!HHIIHHHH", 1, 2, 3, 4, (doff << 12) | ACK, 5, 0, 0) + opts)
    seg += b"data"
    struct.pack_into("!H", seg, 16, checksum(seg, pseudo_header(src, dst, 6, len(seg))))
    return bytes(seg)


def reason(data: bytes, verify_checksum: bool = True) -> str:
    with pytest.raises(Malformed) as e:
        TcpHeader.parse(data, SRC4, DST4, verify_checksum)
    return e.value.reason


@pytest.mark.parametrize("n", [0, 1, 19])
def test_truncated_header(n: int) -> None:
    assert reason(raw_segment(b"")[:n]) == "truncated"


@pytest.mark.parametrize("doff", [0, 1, 4])
def test_data_offset_below_five(doff: int) -> None:
    assert reason(raw_segment(b"", doff=doff), verify_checksum=False) == "bad-length"


@pytest.mark.parametrize(
    ("options", "doff", "cut"),
    [
        (b"", 7, None),  # 24 bytes (20 + "data"), header says 28
        (b"", 15, None),
        (b"\x01\x01\x08\x0a" + bytes(8), None, 31),  # NOP,NOP,TS cut below 32 bytes
        (b"\x01" * 12, 10, None),  # 36 bytes (the 32-byte unpack path), header says 40
        (b"\x01" * 20, 15, None),
    ],
)
def test_data_offset_past_end(options: bytes, doff: int | None, cut: int | None) -> None:
    seg = raw_segment(options, doff=doff)[:cut]
    assert (seg[12] >> 4) * 4 > len(seg)
    assert reason(seg, verify_checksum=False) == "truncated"


def test_bad_checksum() -> None:
    for opts in (b"", b"\x01\x01\x08\x0a" + bytes(8), b"\x02\x04\x05\xb4"):
        for fam in ((SRC4, DST4), (SRC6, DST6)):
            seg = bytearray(raw_segment(opts, *fam))
            for i in (0, 13, len(seg) - 1):
                bad = bytearray(seg)
                bad[i] ^= 0x01
                with pytest.raises(Malformed) as e:
                    TcpHeader.parse(bad, *fam)
                assert e.value.reason == "bad-checksum"
            TcpHeader.parse(seg, *fam)
            # The pseudo-header counts: the right segment against the wrong address fails.
            with pytest.raises(Malformed):
                TcpHeader.parse(seg, fam[1], fam[0][:-1] + b"\x09")


BAD_OPTIONS = {
    "mss-3": b"\x02\x03\x05",
    "mss-5": b"\x02\x05\x05\xb4\x00",
    "ws-2": b"\x03\x02",
    "ws-4": b"\x03\x04\x07\x00",
    "sackperm-3": b"\x04\x03\x00",
    "sack-2": b"\x05\x02",
    "sack-9": b"\x05\x09" + bytes(7),
    "sack-11": b"\x05\x0b" + bytes(9),
    "sack-14": b"\x05\x0e" + bytes(12),
    "ts-8": b"\x08\x08" + bytes(6),
    "ts-11": b"\x08\x0b" + bytes(9),
    "tfo-3": b"\x22\x03\x00",
    "tfo-4": b"\x22\x04\x00\x00",
    "tfo-7": b"\x22\x07" + bytes(5),
    "tfo-20": b"\x22\x14" + bytes(18),
    "tfo254-5": b"\xfe\x05\xf9\x89\x00",
    "tfo254-6": b"\xfe\x06\xf9\x89\x00\x00",
    "tfo254-9": b"\xfe\x09\xf9\x89" + bytes(5),
    "tfo254-22": b"\xfe\x16\xf9\x89" + bytes(18),
    "len-0": b"\x1e\x00",
    "len-1": b"\x1e\x01",
    "mss-len-0": b"\x02\x00\x00\x00",
    "overrun-header": b"\x01\x01\x01\x1e\x06\x00\x00",
    "no-length-byte": b"\x01\x01\x01\x1e",
    "ts-overrun": b"\x01\x01\x08\x0a\x00\x00\x00\x00",
}


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_bad_option(name: str) -> None:
    assert reason(raw_segment(BAD_OPTIONS[name])) == "bad-option"


def test_option_overrun_into_payload_is_bad() -> None:
    """An option may not spill from the header into the payload, even if the bytes exist."""
    seg = raw_segment(b"\x01\x01\x1e\x06")  # length 6 from offset 2: ends 4 bytes into "data"
    assert len(seg) == 20 + 2 + 6
    assert reason(seg) == "bad-option"


def test_options_after_eol_are_padding() -> None:
    seg = raw_segment(b"\x01\x00\x02\x07\xff\xff\xff\xff")
    h, pl = TcpHeader.parse(seg, SRC4, DST4)
    assert h.options == [OptNop(), OptEol()]
    assert bytes(pl) == b"data"


def test_unknown_254_other_magic_and_short() -> None:
    seg = raw_segment(b"\xfe\x06\x12\x34\xab\xcd\xfe\x03\xf9\xfe\x02\x00")
    h, _ = TcpHeader.parse(seg, SRC4, DST4)
    assert h.options == [
        OptUnknown(254, b"\x12\x34\xab\xcd"),
        OptUnknown(254, b"\xf9"),
        OptUnknown(254, b""),
        OptEol(),
    ]


# ------------------------------------------------------------------------------------ fuzz


@settings(max_examples=500)
@given(data=st.binary(max_size=80), v6=st.booleans(), check=st.booleans())
def test_fuzz_only_malformed(data: bytes, v6: bool, check: bool) -> None:
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    try:
        h, _ = TcpHeader.parse(data, src, dst, check)
    except Malformed:
        return
    assert 20 <= h.header_len <= len(data)


@settings(max_examples=500)
@given(opts=st.binary(max_size=40), extra=st.binary(max_size=8), doff=st.integers(0, 15))
def test_fuzz_options_only_malformed(opts: bytes, extra: bytes, doff: int) -> None:
    """Random option bytes behind a well-formed fixed header, to reach the option walk."""
    data = struct.pack("!HHIIHHHH", 1, 2, 3, 4, doff << 12, 5, 0, 0) + opts + extra
    try:
        h, pl = TcpHeader.parse(data, SRC4, DST4, verify_checksum=False)
    except Malformed:
        return
    assert len(pl) == len(data) - doff * 4
    # Whatever parses re-emits to the same header length (options up to EOL, then padding).
    assert h.header_len <= doff * 4
