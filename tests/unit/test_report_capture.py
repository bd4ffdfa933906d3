"""The report's view of a capture, without root: ``read_frames`` on pcapng and pcap (checked
against tshark), and the evidence analysis behind the time-sequence plot and the pcap slice,
on a TCP conversation built with the stack's own codecs and written with the pcapng writer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest

from harness.probes.capture import read_frames, read_pcap
from harness.report import evidence
from harness.report.html import svg_plot
from stack.phy.pcapng import PcapngWriter
from stack.wire import addr as A
from stack.wire.ethernet import EthernetHeader
from stack.wire.ipv4 import Ipv4Header
from stack.wire.link import LinkType
from stack.wire.tcp import (
    ACK,
    FIN,
    SYN,
    OptMss,
    OptSack,
    OptSackPermitted,
    OptWindowScale,
    TcpHeader,
    TcpOption,
)

TSHARK = shutil.which("tshark")
EDITCAP = shutil.which("editcap")
needs_tshark = pytest.mark.skipif(
    (TSHARK is None or EDITCAP is None) and not os.environ.get("CI"),
    reason="tshark/editcap not installed",
)
T0 = 1_700_000_000_000_000_000  # ns
MAC_T, MAC_P = bytes.fromhex("020000000102"), bytes.fromhex("0248494c0004")
TARGET, PEER = A.ip_parse("10.77.1.2"), A.ip_parse("10.77.1.254")


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        win: int, data: bytes = b"", opts: list[TcpOption] | None = None) -> bytes:  # fmt: skip
    seg = TcpHeader(sport, dport, seq % 2**32, ack % 2**32, flags, win, 0, opts or []).to_bytes(
        src, dst, data
    )
    ip = Ipv4Header(src, dst, 6, len(seg)).to_bytes(seg)
    smac, dmac = (MAC_T, MAC_P) if src == TARGET else (MAC_P, MAC_T)
    return EthernetHeader(dmac, smac, 0x0800).to_bytes(ip)


ISN_T, ISN_P = 4_294_967_000, 1000  # the target's ISN wraps 32 bits during the transfer


def conversation() -> list[tuple[int, bytes, str]]:
    """(ms, frame, comment): a handshake with window scaling, the target sends five 100-byte
    segments, the second is lost; the peer SACKs, the target retransmits it (a retransmission)
    and a later hole is filled by new data (not a retransmission); FIN."""
    t, p = TARGET, PEER

    def d(n: int) -> int:  # the target's sequence number of data byte n
        return ISN_T + 1 + n

    rows = [
        (0, tcp(p, t, 5000, 19, ISN_P, 0, SYN, 1000, opts=[OptMss(1460), OptWindowScale(2),
                                                         OptSackPermitted()]), "SYN"),
        (1, tcp(t, p, 19, 5000, ISN_T, ISN_P + 1, SYN | ACK, 2000,
                opts=[OptMss(1460), OptWindowScale(3), OptSackPermitted()]), ""),
        (2, tcp(p, t, 5000, 19, ISN_P + 1, d(0), ACK, 1000), ""),
        (10, tcp(t, p, 19, 5000, d(0), ISN_P + 1, ACK, 2000, b"a" * 100), ""),
        (11, tcp(t, p, 19, 5000, d(100), ISN_P + 1, ACK, 2000, b"b" * 100), "dropped"),
        (12, tcp(t, p, 19, 5000, d(200), ISN_P + 1, ACK, 2000, b"c" * 100), ""),
        (13, tcp(p, t, 5000, 19, ISN_P + 1, d(100), ACK, 1000), ""),
        (14, tcp(p, t, 5000, 19, ISN_P + 1, d(100), ACK, 1000,
                 opts=[OptSack(((d(200) % 2**32, d(300) % 2**32),))]), "dup ACK with SACK"),
        (20, tcp(t, p, 19, 5000, d(100), ISN_P + 1, ACK, 2000, b"b" * 100), "retransmitted"),
        # the target skips 300-400 and sends 400-500 first, then fills 300-400: new data
        (21, tcp(t, p, 19, 5000, d(400), ISN_P + 1, ACK, 2000, b"e" * 100), ""),
        (22, tcp(t, p, 19, 5000, d(300), ISN_P + 1, ACK, 2000, b"d" * 100), ""),
        (23, tcp(p, t, 5000, 19, ISN_P + 1, d(500), ACK, 1000), ""),
        (30, tcp(t, p, 19, 5000, d(500), ISN_P + 1, FIN | ACK, 2000), ""),
        (31, tcp(p, t, 5000, 19, ISN_P + 1, d(501), ACK, 1000), ""),
    ]  # fmt: skip
    return [(ms, frame, c) for ms, frame, c in rows]


def write_conversation(path: Path) -> list[tuple[int, bytes, str]]:
    rows = conversation()
    with PcapngWriter(path) as w:
        for ms, frame, comment in rows:
            w.write(frame, T0 + ms * 1_000_000, direction="in", comment=comment or None)
        # a second link type: read_frames reports it, the analysis leaves it alone
        w.write(b"\x45" + b"\x00" * 19, T0 + 40_000_000, link_type=LinkType.RAW_IP)
    return rows


def test_read_frames_pcapng(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    rows = write_conversation(path)
    frames = list(read_frames(path))
    assert len(frames) == len(rows) + 1
    for f, (ms, frame, comment) in zip(frames, rows, strict=False):
        assert f.data == frame and f.t_ns == T0 + ms * 1_000_000 and f.linktype == 1
        assert f.comment == comment and f.direction == "in"
        assert f.t == f.t_ns / 1e9
    assert frames[-1].linktype == int(LinkType.RAW_IP) and frames[-1].direction == ""


def test_read_frames_stops_at_a_truncated_block(tmp_path: Path) -> None:
    """A capture killed mid-write: every whole frame, nothing invented."""
    path = tmp_path / "c.pcapng"
    write_conversation(path)
    whole = list(read_frames(path))
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    assert [f.data for f in read_frames(path)] == [f.data for f in whole[:-1]]


def test_read_frames_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"not a capture at all, really")
    with pytest.raises(ValueError):
        list(read_frames(path))


@needs_tshark
@pytest.mark.parametrize("fmt", ["pcapng", "pcap", "nsecpcap"])
def test_read_frames_agrees_with_tshark(tmp_path: Path, fmt: str) -> None:
    """tshark's own writer (editcap) in each format, read by us and by tshark."""
    assert TSHARK is not None and EDITCAP is not None
    src = tmp_path / "c.pcapng"
    write_conversation(src)
    path = tmp_path / f"c.{fmt}"
    # pcap holds one link type: drop the RAW_IP frame (frame 15) for the pcap formats
    drop = [] if fmt == "pcapng" else ["15"]
    subprocess.run([EDITCAP, "-F", fmt, str(src), str(path), *drop], check=True, timeout=60)
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=|", "-e", "frame.len",
         "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    frames = list(read_frames(path))
    assert len(frames) == len(out)
    for f, line in zip(frames, out, strict=True):
        length, epoch = line.split("|")
        assert len(f.data) == int(length)
        assert Decimal(f.t_ns) / 10**9 == Decimal(epoch)
    if fmt != "pcapng":  # the pcap reader the probes use sees the same
        assert [(t, d) for t, d in read_pcap(path)] == [(f.t, f.data) for f in frames]


def test_evidence_plot_of_a_conversation(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    write_conversation(path)
    group = {
        "id": "t-P0-1", "probe": "P0", "pcap": "c.pcapng",
        "t_start": (T0 + 10_000_000) / 1e9, "t_end": (T0 + 20_000_000) / 1e9,
        "frames": [9], "note": "", "keys": [],
    }  # fmt: skip
    view = evidence.load(tmp_path, group)
    assert not view.error
    (plot,) = view.plots  # the peer sent no data: one direction
    assert plot.sender == "10.77.1.2:19" and plot.scale_known
    # sequence numbers relative to the target's ISN across the 32-bit wrap
    los = [s.lo for s in plot.segments]
    assert los == [0, 1, 101, 201, 101, 401, 301, 501]
    assert [s.retransmission for s in plot.segments] == [
        False, False, False, False, True, False, False, False,
    ]  # fmt: skip
    assert plot.retransmissions == 1
    assert [s.evidence for s in plot.segments].count(True) == 1
    # ACK line and window edge: the peer's window 1000 scaled by its shift 2
    assert plot.acks[0][0] == pytest.approx(-0.008, abs=1e-6)
    assert [a for _, a in plot.acks] == [1, 101, 101, 501, 502]
    assert [e - a for (_, a), (_, e) in zip(plot.acks, plot.window, strict=True)] == [4000] * 5
    ((t_sack, *block),) = plot.sacks
    assert t_sack == pytest.approx(0.004, abs=1e-6) and block == [201, 301]
    # the packet list, times relative to the first evidence frame, comments kept
    assert [r.number for r in view.rows][:3] == [1, 2, 3]
    (retx,) = [r for r in view.rows if r.evidence]
    assert retx.number == 9 and retx.comment == "retransmitted"
    assert retx.t == pytest.approx(0.010, abs=1e-6)  # 10 ms after the range's start
    # the SVG is well-formed XML with one red (retransmission) path
    svg = svg_plot(plot, (0.0, 0.01))
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    red = [el for el in root.iter() if el.get("stroke") == "#d62728" and el.tag.endswith("path")]
    assert len(red) == 1


def test_slice_holds_the_range_and_says_where_frames_came_from(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    rows = write_conversation(path)
    group = {
        "pcap": "c.pcapng",
        "t_start": (T0 + 10_000_000) / 1e9,
        "t_end": (T0 + 20_000_000) / 1e9,
        "frames": [9],
    }
    dst = tmp_path / "pcaps" / "slices" / "t-P0-1.pcapng"
    n = evidence.write_slice(path, dst, group)
    frames = list(read_frames(dst))
    # 0.2 s of context either side covers the whole 40 ms conversation
    assert n == len(frames) == len(rows) + 1
    assert frames[8].comment == "frame 9 of c.pcapng (evidence): retransmitted"
    assert frames[0].comment == "frame 1 of c.pcapng: SYN"
    assert [f.data for f in frames[: len(rows)]] == [r[1] for r in rows]
    assert frames[-1].linktype == int(LinkType.RAW_IP)
