"""Evidence views: the frames behind an observation, as a pcap slice and a time-sequence plot.

An observation's evidence is a capture file, a capture-time range and the frame numbers that
show the behaviour. The report turns each distinct one into

* a **pcap slice** (``pcaps/slices/<target>-<probe>-<n>.pcapng``): the frames of the range
  and some context either side (:func:`margin`), without other probes' TCP connections, each
  commented with its frame number in the original capture (and the tester's own comment, when
  it injected the frame), so the slice opens in Wireshark without the whole probe's capture;
* the data of a **time-sequence plot** per TCP connection the evidence frames belong to -- the
  Stevens graph tcptrace draws: each segment a vertical bar from its sequence number to its
  end, the peer's cumulative ACK and the right edge of its advertised window as step lines,
  SACK blocks, retransmissions marked -- in sequence numbers relative to the sender's ISN, the
  way Wireshark numbers them;
* a packet list of the range (capped), evidence frames marked.

Plots are built from the capture itself (:func:`harness.probes.capture.read_frames`, pcap or
pcapng), never from the observation's numbers, so the picture is an independent look at the
wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.probes.capture import Frame, Packet, decode, read_frames
from stack.phy.pcapng import Direction, PcapngWriter
from stack.wire.link import LinkType

__all__ = ["Evidence", "Plot", "Row", "load", "write_slice"]

# TCP flag bits
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
MAX_ROWS = 30  # packet-list rows per evidence view
MAX_SEGMENTS = 250  # segments per plot (retransmissions and evidence frames always kept)
MAX_ACKS = 250
MAX_PLOTS = 3  # connections plotted per evidence view
MIN_MARGIN_S = 0.2  # context either side of the evidence range
MAX_MARGIN_S = 1.0
MARGIN_FRACTION = 0.25


def margin(t_start: float, t_end: float) -> float:
    """Context either side of an evidence range: a quarter of its length, between 0.2 s and
    1 s. The evidence names the frames that decide (a SYN and its SYN-ACK); the ACK, data and
    close around them make a time-sequence plot readable, and more than a second of a bulk
    transfer only makes the slice big."""
    return min(MAX_MARGIN_S, max(MIN_MARGIN_S, MARGIN_FRACTION * max(0.0, t_end - t_start)))


@dataclass
class Row:
    """One line of the packet list."""

    number: int  # 1-based frame number in the original capture
    t: float  # seconds since the start of the range
    src: str
    dst: str
    summary: str
    comment: str
    evidence: bool


@dataclass
class Segment:
    t: float
    frame: int
    lo: int  # relative sequence numbers; SYN and FIN occupy one
    hi: int
    flags: int
    payload: int
    retransmission: bool
    evidence: bool


@dataclass
class Plot:
    """One direction of one TCP connection: the sender's segments against the receiver's
    cumulative ACK and window edge (receiver's window shifted by its scale)."""

    title: str
    sender: str
    receiver: str
    t_start: float
    t_end: float
    segments: list[Segment] = field(default_factory=list)
    acks: list[tuple[float, int]] = field(default_factory=list)
    window: list[tuple[float, int]] = field(default_factory=list)
    sacks: list[tuple[float, int, int]] = field(default_factory=list)
    resets: list[tuple[float, int, str]] = field(default_factory=list)  # t, rel seq, who
    scale_known: bool = True
    dropped: int = 0  # points left out to keep the page small

    @property
    def retransmissions(self) -> int:
        return sum(s.retransmission for s in self.segments)


@dataclass
class Evidence:
    """What the report shows of one evidence group."""

    rows: list[Row]
    plots: list[Plot]
    frames_in_range: int
    base_t: float  # the capture time the view's relative times count from
    error: str = ""


def _select(frames: list[Frame], group: dict[str, Any]) -> tuple[list[int], dict[int, Packet]]:
    """The frames of an evidence view: those in the range (with :func:`margin`) and the listed
    evidence frames -- less the TCP segments of connections no evidence frame belongs to
    (probes run in parallel on one link, so a probe's capture also holds the others' streams).
    Returns their 0-based indexes and the decoded packets among them."""
    wanted = set(group["frames"])
    pad = margin(group["t_start"], group["t_end"])
    t0, t1 = group["t_start"] - pad, group["t_end"] + pad
    idx = [i for i, f in enumerate(frames) if t0 <= f.t <= t1 or i + 1 in wanted]
    packets: dict[int, Packet] = {}
    for i in idx:
        p = decode(frames[i].t, frames[i].data, i) if frames[i].linktype == 1 else None
        if p is not None:
            packets[i] = p
    if not wanted:
        return idx, packets
    ours = {_conn(p) for i, p in packets.items() if i + 1 in wanted and p.proto == 6}
    keep = [
        i for i in idx
        if i not in packets or packets[i].proto != 6 or _conn(packets[i]) in ours
    ]  # fmt: skip
    return keep, {i: packets[i] for i in keep if i in packets}


def _read(path: Path) -> list[Frame]:
    st = path.stat()
    return _read_cached(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _read_cached(path: Path, mtime_ns: int, size: int) -> list[Frame]:
    """A capture's frames, kept for the next view of the same capture (a probe's evidence
    groups share its capture; mtime and size in the key notice a rewritten file)."""
    return list(read_frames(path))


def write_slice(src: Path, dst: Path, group: dict[str, Any]) -> int:
    """The frames of ``group``'s range (with :func:`margin`) of ``src`` into the pcapng
    ``dst``; returns how many. Each frame is commented with its number in ``src``."""
    frames = _read(src)
    chosen, _ = _select(frames, group)
    dst.parent.mkdir(parents=True, exist_ok=True)
    link = frames[chosen[0]].linktype if chosen else int(LinkType.ETHERNET)
    tmp = dst.with_suffix(".tmp")
    with PcapngWriter(tmp, _linktype(link), application="tcp-hil report slice") as w:
        for i in chosen:
            f = frames[i]
            note = f"frame {i + 1} of {group['pcap']}"
            if i + 1 in group["frames"]:
                note += " (evidence)"
            if f.comment:
                note += f": {f.comment}"
            direction: Direction | None = (
                "in" if f.direction == "in" else "out" if f.direction == "out" else None
            )
            w.write(f.data, f.t_ns, link_type=_linktype(f.linktype), direction=direction,
                    comment=note)  # fmt: skip
    tmp.replace(dst)
    return len(chosen)


def _linktype(value: int) -> LinkType:
    try:
        return LinkType(value)
    except ValueError:
        return LinkType.ETHERNET


def load(run_dir: Path, group: dict[str, Any]) -> Evidence:
    """The packet list and plots of one evidence group of a report."""
    path = run_dir / group["pcap"]
    try:
        frames = _read(path)
    except (OSError, ValueError) as exc:
        return Evidence([], [], 0, float(group["t_start"]), f"cannot read {group['pcap']}: {exc}")
    wanted = set(group["frames"])
    chosen, packets = _select(frames, group)
    base_t = float(group["t_start"])  # time 0: the first evidence frame (context is negative)
    rows = _rows(frames, chosen, packets, wanted, base_t)
    conns = _connections(packets.values(), wanted)
    # SYNs (ISNs, window scale) may lie before the range: read them off the whole capture
    handshake = _handshakes(path, {c for c, _ in conns})
    plots = []
    for conn, pkts in conns[:MAX_PLOTS]:
        plots += _plots(conn, pkts, handshake.get(conn, {}), wanted, base_t)
    return Evidence(rows, plots[:MAX_PLOTS], len(chosen), base_t)


# ------------------------------------------------------------------------------ packet list


def summary(p: Packet | None) -> str:
    """One line per packet, tcpdump-like, with the fields the probes look at."""
    if p is None:
        return "(not IP)"
    if p.proto == 6:
        flags = "".join(
            ch for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."),
                               (URG, "U"), (ECE, "E"), (CWR, "W")) if p.flags & bit
        )  # fmt: skip
        text = (
            f"TCP {p.sport}>{p.dport} [{flags}] seq {p.seq} ack {p.ack} win {p.win} len {p.payload}"
        )
        opts = []
        if p.mss is not None:
            opts.append(f"mss {p.mss}")
        if p.wscale is not None:
            opts.append(f"wscale {p.wscale}")
        if p.sack_permitted:
            opts.append("sackOK")
        if p.sack:
            opts.append("sack " + " ".join(f"{a}-{b}" for a, b in p.sack))
        if p.ts is not None:
            opts.append(f"TS {p.ts[0]}/{p.ts[1]}")
        if p.tfo is not None:
            opts.append(f"tfo cookie {p.tfo.hex() or '(request)'}")
        return text + (f" <{', '.join(opts)}>" if opts else "")
    if p.proto == 44:
        return f"IPv6 fragment, {p.length} bytes"
    if p.proto in (1, 58) and p.icmp_type is None:
        return f"IPv{p.family} fragment (ICMP), {p.length} bytes"
    if p.proto in (1, 58):
        return f"ICMPv{4 if p.proto == 1 else 6} type {p.icmp_type} code {p.icmp_code}"
    if p.proto == 17:
        return f"UDP {p.sport}>{p.dport} len {p.length - 8}"
    return f"IP proto {p.proto} len {p.length}"


def _rows(
    frames: list[Frame],
    chosen: list[int],
    packets: dict[int, Packet],
    wanted: set[int],
    base_t: float,
) -> list[Row]:
    keep = chosen
    if len(chosen) > MAX_ROWS:
        # the evidence frames first, then the earliest of the rest
        ev = [i for i in chosen if i + 1 in wanted][:MAX_ROWS]
        rest = [i for i in chosen if i + 1 not in wanted][: MAX_ROWS - len(ev)]
        keep = sorted(ev + rest)
    out = []
    for i in keep:
        p = packets.get(i)
        out.append(
            Row(
                i + 1,
                frames[i].t - base_t,
                p.src if p else "",
                p.dst if p else "",
                summary(p),
                frames[i].comment,
                i + 1 in wanted,
            )
        )
    return out


# ------------------------------------------------------------------------------ connections

Endpoint = tuple[str, int]
Conn = tuple[Endpoint, Endpoint]  # sorted, so both directions map to one key


def _conn(p: Packet) -> Conn:
    a, b = (p.src, p.sport), (p.dst, p.dport)
    return (a, b) if a <= b else (b, a)


def _connections(packets: Iterable[Packet], wanted: set[int]) -> list[tuple[Conn, list[Packet]]]:
    """TCP connections in the range, those with evidence frames first (only those, when the
    evidence names frames: concurrent probes' traffic shares the capture)."""
    conns: dict[Conn, list[Packet]] = {}
    for p in packets:
        if p.proto == 6:
            conns.setdefault(_conn(p), []).append(p)
    ranked = sorted(
        conns.items(), key=lambda kv: (-sum(p.frame + 1 in wanted for p in kv[1]), kv[1][0].t)
    )
    if wanted:
        ranked = [kv for kv in ranked if any(p.frame + 1 in wanted for p in kv[1])]
    return ranked


def _handshakes(path: Path, conns: set[Conn]) -> dict[Conn, dict[Endpoint, Packet]]:
    """For each connection: each endpoint's first SYN in the whole capture."""
    if not conns:
        return {}
    st = path.stat()
    syns = _syns(path, st.st_mtime_ns, st.st_size)
    return {c: syns[c] for c in conns if c in syns}


@lru_cache(maxsize=4)
def _syns(path: Path, mtime_ns: int, size: int) -> dict[Conn, dict[Endpoint, Packet]]:
    out: dict[Conn, dict[Endpoint, Packet]] = {}
    for i, f in enumerate(_read_cached(path, mtime_ns, size)):
        # cheap pre-filter before decoding: the frame must be long enough to hold TCP
        if f.linktype != 1 or len(f.data) < 54:
            continue
        p = decode(f.t, f.data, i)
        if p is None or p.proto != 6 or not p.flags & SYN:
            continue
        out.setdefault(_conn(p), {}).setdefault((p.src, p.sport), p)
    return out


def _rel(seq: int, base: int) -> int:
    """``seq`` relative to ``base`` in 32-bit sequence space (negative before it)."""
    return ((seq - base + 2**31) % 2**32) - 2**31


def _plots(
    conn: Conn,
    pkts: list[Packet],
    syns: dict[Endpoint, Packet],
    wanted: set[int],
    base_t: float,
) -> list[Plot]:
    payload = dict.fromkeys(conn, 0)
    control = dict.fromkeys(conn, 0)  # SYNs and FINs: sequence space without data
    for p in pkts:
        payload[(p.src, p.sport)] += p.payload
        control[(p.src, p.sport)] += bool(p.flags & (SYN | FIN))
    most = max(payload.values())
    # Each direction that carries data -- the other one only when it is more than a trickle
    # (a peer's 1-byte probes are in the main plot's ACK line already).
    senders = [ep for ep in conn if payload[ep] > 0 and payload[ep] * 10 >= most]
    if not senders:
        # No data either way: the side that sent more SYNs/FINs (a target retrying its SYN),
        # on a tie the one that answered the SYN (the target, as a rule).
        synack = next(((p.src, p.sport) for p in pkts if p.has(SYN, ACK)), None)
        senders = [max(conn, key=lambda ep: (control[ep], ep == synack))]
    senders.sort(key=lambda ep: -payload[ep])
    return [_plot(conn, ep, pkts, syns, wanted, base_t) for ep in senders]


def _plot(
    conn: Conn,
    sender: Endpoint,
    pkts: list[Packet],
    syns: dict[Endpoint, Packet],
    wanted: set[int],
    base_t: float,
) -> Plot:
    receiver = conn[1] if conn[0] == sender else conn[0]
    mine = [p for p in pkts if (p.src, p.sport) == sender]
    theirs = [p for p in pkts if (p.src, p.sport) == receiver]
    syn_s, syn_r = syns.get(sender), syns.get(receiver)
    base = syn_s.seq if syn_s else (mine[0].seq if mine else theirs[0].ack if theirs else 0)
    both_scaled = bool(syn_s and syn_r and syn_s.wscale is not None and syn_r.wscale is not None)
    shift = (syn_r.wscale or 0) if both_scaled and syn_r else 0
    plot = Plot(
        f"{_ep(sender)} \u2192 {_ep(receiver)}",
        _ep(sender),
        _ep(receiver),
        min(p.t for p in pkts) - base_t,
        max(p.t for p in pkts) - base_t,
        scale_known=bool(syn_s and syn_r),
    )
    sent = _Sent()
    for p in mine:
        lo = _rel(p.seq, base)
        length = p.payload + bool(p.flags & SYN) + bool(p.flags & FIN)
        if p.flags & RST:
            plot.resets.append((p.t - base_t, lo, "sender"))
            continue
        if length == 0:
            continue
        hi = lo + length
        retx = sent.add(lo, hi)
        plot.segments.append(
            Segment(p.t - base_t, p.frame + 1, lo, hi, p.flags, p.payload, retx,
                    p.frame + 1 in wanted)
        )  # fmt: skip
    for p in theirs:
        if p.flags & RST:
            plot.resets.append((p.t - base_t, _rel(p.ack, base) if p.flags & ACK else 0, "peer"))
            continue
        if not p.flags & ACK:
            continue
        ack = _rel(p.ack, base)
        plot.acks.append((p.t - base_t, ack))
        win = p.win if p.flags & SYN else p.win << shift
        plot.window.append((p.t - base_t, ack + win))
        for a, b in p.sack:
            plot.sacks.append((p.t - base_t, _rel(a, base), _rel(b, base)))
    _thin(plot)
    return plot


class _Sent:
    """The sequence space a sender has covered, as merged intervals. A segment is a
    retransmission when it overlaps what was sent before -- not merely when it lies below the
    highest sequence number sent: the segment that fills a hole was never sent before."""

    def __init__(self) -> None:
        self.spans: list[list[int]] = []

    def add(self, lo: int, hi: int) -> bool:
        overlap = any(a < hi and lo < b for a, b in self.spans)
        merged = [lo, hi]
        rest = []
        for span in self.spans:
            if span[0] <= merged[1] and merged[0] <= span[1]:
                merged = [min(merged[0], span[0]), max(merged[1], span[1])]
            else:
                rest.append(span)
        self.spans = sorted([*rest, merged])
        return overlap


def _ep(ep: Endpoint) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _thin(plot: Plot) -> None:
    """Keep a plot's points under the caps: every retransmission and evidence segment, and an
    even sample of the rest (the shape of a bulk transfer survives, the page stays small)."""
    before = len(plot.segments) + len(plot.acks) + len(plot.window)
    if len(plot.segments) > MAX_SEGMENTS:
        must = [s for s in plot.segments if s.retransmission or s.evidence]
        rest = [s for s in plot.segments if not (s.retransmission or s.evidence)]
        room = max(0, MAX_SEGMENTS - len(must))
        step = max(1, -(-len(rest) // room)) if room else len(rest) + 1
        plot.segments = sorted(must + rest[::step], key=lambda s: s.t)
    for name in ("acks", "window"):
        pts: list[tuple[float, int]] = getattr(plot, name)
        if len(pts) > MAX_ACKS:
            step = -(-len(pts) // MAX_ACKS)
            setattr(plot, name, [*pts[:-1:step], pts[-1]])
    plot.sacks = plot.sacks[:MAX_ACKS]
    plot.dropped = before - (len(plot.segments) + len(plot.acks) + len(plot.window))
