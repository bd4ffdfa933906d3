"""TCP options and their negotiation in virtual time, written like packetdrill scripts.

MSS (RFC 9293 3.7.1, RFC 8200), window scaling and timestamps (RFC 7323), SACK-permitted
(RFC 2018), ECN (RFC 3168) and Fast Open (RFC 7413): what each profile puts in its SYN and
SYN-ACK, and what a negotiated option changes on the wire. Times are ms from the start; sequence
numbers are relative to each side's ISN (see tests/tcpscript.py). Profiles without an option
(tcp-behaviour.md §6: lwIP 2.1 defaults, RIOT gnrc_tcp and uIP send MSS only) are checked to
ignore it cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stack.tcp.profile import PROFILES, TcpConfig
from stack.tcp.socket import ESTABLISHED, TcpSocket
from stack.wire.tcp import (
    CWR,
    OptFastOpen,
    OptMss,
    OptNop,
    OptSackPermitted,
    OptTimestamps,
    OptWindowScale,
    TcpOption,
)
from tests.tcpscript import Out, Script, flags_of, flags_str

ALL = sorted(PROFILES)
CONSTRAINED = ("lwip-default", "riot-gnrc", "uip")  # MSS is the only option they send

# A SYN offering everything, as Linux sends it.
EVERYTHING: list[TcpOption] = [
    OptMss(1460),
    OptSackPermitted(),
    OptTimestamps(1000, 0),
    OptNop(),
    OptWindowScale(7),
]


def kinds(out: Out) -> set[str]:
    """The options a segment carries, by name (padding left out)."""
    names = {
        OptMss: "mss",
        OptSackPermitted: "sackOK",
        OptTimestamps: "TS",
        OptWindowScale: "wscale",
        OptFastOpen: "FO",
    }
    return {names[type(o)] for o in out.hdr.options if type(o) in names}


def our_shift(cfg: TcpConfig) -> int:
    """RFC 7323 2.3: the smallest shift that lets the 16-bit field say the whole buffer."""
    shift = 0
    while cfg.rcv_buf >> shift > 0xFFFF and shift < 14:
        shift += 1
    return shift


def passive(
    s: Script, opts: Sequence[TcpOption] = (), flags: str = "S", win: int = 65535
) -> tuple[TcpSocket, Out]:
    """Listen, take the peer's SYN at 0 ms, complete the handshake at 0 ms (the final ACK
    echoes the SYN-ACK's TSval when timestamps are on)."""
    s.listen(8080)
    s.inject(0, flags, seq=0, win=win, opts=opts)
    synack = s.expect(0, None, seq=0, ack=1)
    ts = synack.hdr.timestamps
    s.inject(0, ".", seq=1, ack=1, win=win, opts=[OptTimestamps(1000, ts[0])] if ts else [])
    return s.accept(), synack


def sent_bytes(outs: list[Out]) -> int:
    return sum(len(o.data) for o in outs)


# ---------------------------------------------------------------------- what each profile sends


@pytest.mark.parametrize("name", ALL)
def test_syn_ack_answers_only_what_was_offered_and_supported(name: str) -> None:
    s = Script(name)
    cfg = s.config
    _, synack = passive(s, EVERYTHING)
    want = {"mss"}
    if cfg.sack:
        want.add("sackOK")
    if cfg.timestamps:
        want.add("TS")
    if cfg.window_scale:
        want.add("wscale")
    assert kinds(synack) == want
    if name in CONSTRAINED:
        assert want == {"mss"}  # tcp-behaviour.md §6
    if cfg.timestamps:
        assert synack.hdr.timestamps is not None and synack.hdr.timestamps[1] == 1000
    if cfg.window_scale:
        assert synack.hdr.window_scale == our_shift(cfg)


@pytest.mark.parametrize("name", ALL)
def test_syn_ack_without_offers_carries_mss_only(name: str) -> None:
    s = Script(name)
    _, synack = passive(s, [OptMss(1460)])
    assert kinds(synack) == {"mss"}  # RFC 7323 2.2/3.2, RFC 2018 2: only in reply


@pytest.mark.parametrize("name", ALL)
def test_active_syn_options(name: str) -> None:
    s = Script(name)
    cfg = s.config
    s.connect(0)
    syn = s.expect(0, "SEW" if cfg.ecn else "S", seq=0)
    want = {"mss"}
    if cfg.sack:
        want.add("sackOK")
    if cfg.timestamps:
        want.add("TS")
    if cfg.window_scale:
        want.add("wscale")
    if cfg.fast_open:
        want.add("FO")
    assert kinds(syn) == want
    if name in CONSTRAINED:
        assert want == {"mss"}
    if name == "full":
        assert want == {"mss", "sackOK", "TS", "wscale", "FO"} and syn.hdr.fast_open == b""
    if cfg.timestamps:
        assert syn.hdr.timestamps is not None and syn.hdr.timestamps[1] == 0  # RFC 7323 3.2


# ---------------------------------------------------------------------- MSS


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("v6", "mtu"), [(False, 1500), (False, 1000), (True, 1500), (True, 1280)])
def test_advertised_mss_is_config_or_mtu_bound(name: str, v6: bool, mtu: int) -> None:
    """RFC 9293 3.7.1 / RFC 879: MSS = min(our limit, MTU - 40 (IPv4) or - 60 (IPv6))."""
    s = Script(name, v6=v6, mtu=mtu)
    want = min(s.config.mss, mtu - (60 if v6 else 40))
    _, synack = passive(s, [OptMss(1460)])
    assert synack.hdr.mss == want
    s2 = Script(name, v6=v6, mtu=mtu)
    s2.connect(0)
    assert s2.expect(0).hdr.mss == want


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("v6", [False, True])
def test_default_send_mss_without_the_option(name: str, v6: bool) -> None:
    """RFC 9293 3.7.1 (MUST-15): no MSS option -> 536 over IPv4, 1220 over IPv6 (RFC 8200 5,
    1280 - 60); lwIP uses its TCP_MSS 536 for both, RIOT and uIP their 1220."""
    s = Script(name, v6=v6)
    cfg = s.config
    want = cfg.default_send_mss_v6 if v6 else cfg.default_send_mss
    if name in ("full", "linux-like"):
        assert want == (1220 if v6 else 536)
    sock, _ = passive(s, [])
    sock.send(b"x" * 3000)
    s.run_until(10)
    outs = s.drain()
    assert outs and len(outs[0].data) == min(want, 3000, cfg.snd_buf)
    assert all(len(o.data) <= want for o in outs)


@pytest.mark.parametrize("name", ["full", "linux-like"])
def test_effective_send_mss_leaves_room_for_timestamps(name: str) -> None:
    """RFC 9293 3.7.1 / RFC 6691: the 12 bytes of NOP,NOP,TS come out of the peer's MSS."""
    s = Script(name)
    sock, _ = passive(s, EVERYTHING)
    sock.send(b"x" * 5000)
    s.run_until(10)
    outs = s.drain()
    assert [len(o.data) for o in outs][:2] == [1448, 1448]
    assert all(o.hdr.header_len == 32 and o.hdr.timestamps for o in outs)
    assert all(20 + o.hdr.header_len + len(o.data) <= 1500 for o in outs)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("peer_mss", [100, 1000, 9000])
def test_segments_never_exceed_the_send_mss(name: str, peer_mss: int) -> None:
    s = Script(name)
    sock, _ = passive(s, [OptMss(peer_mss)])
    limit = min(peer_mss, 1500 - 40)  # the peer's MSS, and our own MTU (RFC 9293 3.7.1)
    sent: list[Out] = []
    for i in range(10):  # keep feeding and acknowledging
        sock.send(b"y" * 4000)
        s.run_until(10 + 100 * i)
        outs = s.drain()
        sent += outs
        if outs:
            end = max(o.seq + len(o.data) for o in outs)
            s.inject(50 + 100 * i, ".", seq=1, ack=end)
    assert sent
    assert all(len(o.data) <= limit for o in sent)
    assert max(len(o.data) for o in sent) == min(limit, s.config.snd_buf)


# ---------------------------------------------------------------------- window scaling


def test_window_scale_when_both_syns_carry_it() -> None:
    s = Script("full", congestion_control="none")  # only the peer's window limits the flight
    cfg = s.config
    sock, synack = passive(s, [OptMss(1460), OptNop(), OptWindowScale(7)], win=365)
    shift = our_shift(cfg)
    assert synack.hdr.window_scale == shift == 3
    assert synack.win == min(cfg.rcv_buf, 0xFFFF)  # RFC 7323 2.2: a SYN's window is not scaled
    # the handshake's ACK said 365 << 7 = 46720 bytes = 32 segments
    sock.send(b"z" * 60_000)
    s.run_until(10)
    outs = s.drain()
    assert sent_bytes(outs) == 365 << 7
    assert all(o.win == cfg.rcv_buf >> shift for o in outs)  # our window, scaled


def test_no_window_scale_unless_the_peer_offers_it() -> None:
    s = Script("full", congestion_control="none")
    sock, synack = passive(s, [OptMss(1460)], win=2920)
    assert synack.hdr.window_scale is None
    sock.send(b"z" * 10_000)
    s.run_until(10)
    outs = s.drain()
    assert sent_bytes(outs) == 2920  # the peer's field taken as it is
    assert all(o.win == 0xFFFF for o in outs)  # ours is not scaled either: capped at 65535


def test_active_open_without_window_scale_in_the_syn_ack() -> None:
    s = Script("full", congestion_control="none")
    sock = s.connect(0)
    assert s.expect(0, "SEW").hdr.window_scale == our_shift(s.config)
    s.inject(10, "S.", seq=0, ack=1, win=2920, opts=[OptMss(1460)])
    s.expect(10, ".", seq=1, ack=1, win=0xFFFF)
    sock.send(b"z" * 10_000)
    s.run_until(20)
    assert sent_bytes(s.drain()) == 2920


def test_syn_ack_window_is_never_scaled() -> None:
    s = Script("full", congestion_control="none")
    sock = s.connect(0)
    s.expect(0, "SEW")
    s.inject(10, "S.", seq=0, ack=1, win=2920, opts=[OptMss(1460), OptNop(), OptWindowScale(7)])
    ack = s.expect(10, ".", seq=1, ack=1)
    assert ack.win == s.config.rcv_buf >> our_shift(s.config)  # scaling on from here
    sock.send(b"z" * 2920 * 3)
    s.run_until(20)
    assert sent_bytes(s.drain()) == 2920  # not 2920 << 7
    s.inject(30, ".", seq=1, ack=2921, win=100)  # from now on scaled: 12800 bytes
    s.run_until(40)
    assert sent_bytes(s.drain()) == 2 * 2920


def test_window_scale_shift_is_clamped_to_14() -> None:
    """RFC 7323 2.3: a shift above 14 is used as 14."""
    s = Script("full", congestion_control="none")
    sock, _ = passive(s, [OptMss(1024), OptNop(), OptWindowScale(15)], win=3)
    sock.send(b"w" * 100_000)
    s.run_until(10)
    assert sent_bytes(s.drain()) == 3 << 14  # 48 segments of 1024, not 3 << 15


@pytest.mark.parametrize("name", CONSTRAINED)
def test_constrained_profiles_ignore_window_scale(name: str) -> None:
    s = Script(name)
    sock, synack = passive(s, [OptMss(1460), OptNop(), OptWindowScale(7)], win=200)
    assert synack.hdr.window_scale is None
    sock.send(b"q" * 1000)
    s.run_until(10)
    assert sent_bytes(s.drain()) == 200  # the peer's 200 is not scaled by 2^7


# ---------------------------------------------------------------------- timestamps


def test_timestamps_echo_and_tick() -> None:
    s = Script("full")
    sock, synack = passive(s, EVERYTHING)
    assert synack.hdr.timestamps is not None
    tsval0, tsecr0 = synack.hdr.timestamps
    assert tsecr0 == 1000  # RFC 7323 3.2: the SYN's TSval echoed
    s.inject(100, "P.", seq=1, ack=1, data=b"a" * 100, opts=[OptTimestamps(1100, tsval0)])
    ack = s.expect(140, ".", ack=101)  # delayed ACK
    assert ack.hdr.timestamps == (tsval0 + 140, 1100)  # 1 ms TS clock (RFC 7323 5.4: 1 ms-1 s)
    assert sock.recv() == b"a" * 100


def test_timestamps_echo_the_oldest_unacknowledged_tsval() -> None:
    """RFC 7323 4.3: TS.Recent is updated only by a segment at or below Last.ACK.sent, so a
    delayed ACK of two segments echoes the first one's TSval."""
    s = Script("full")
    sock, synack = passive(s, EVERYTHING)
    assert synack.hdr.timestamps is not None
    tsval0 = synack.hdr.timestamps[0]
    s.inject(100, "P.", seq=1, ack=1, data=b"a" * 100, opts=[OptTimestamps(1100, tsval0)])
    s.inject(110, "P.", seq=101, ack=1, data=b"b" * 100, opts=[OptTimestamps(1110, tsval0)])
    ack = s.expect(140, ".", ack=201)
    assert ack.hdr.timestamps is not None and ack.hdr.timestamps[1] == 1100
    del sock


def test_rttm_from_the_echo_feeds_the_rto_even_for_a_retransmission() -> None:
    """RFC 7323 4: the RTT comes from TSecr, so the ACK of a retransmitted segment is a valid
    sample (Karn's ambiguity is gone) and it ends the back-off (RFC 6298 5.7 / Karn part 2).

    linux-like: RTO floor 200 ms, no sample in the handshake (its ACK echoes nothing), so the
    first RTO is the initial 1 s.
    """
    s = Script("linux-like")
    s.listen(8080)
    s.inject(0, "S", seq=0, opts=EVERYTHING)
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(0, ".", seq=1, ack=1, opts=[OptTimestamps(1000, 0)])
    sock = s.accept()
    s.run_until(100)
    sock.send(b"d" * 100)
    s.expect(100, "P.", seq=1, length=100)
    rtx = s.expect(1100, "P.", seq=1, length=100)  # initial RTO 1 s (RFC 6298 2.1)
    assert rtx.hdr.timestamps is not None
    # the ACK answers the retransmission 150 ms after it left
    s.inject(1250, ".", seq=1, ack=101, opts=[OptTimestamps(1250, rtx.hdr.timestamps[0])])
    # first sample R = 150: RTO = 150 + 4 * 75 = 450 ms (RFC 6298 2.2), above the 200 ms floor
    sock.send(b"e" * 100)
    s.expect(1250, "P.", seq=101, length=100)
    s.expect(1700, "P.", seq=101, length=100)


def test_without_timestamps_karn_ignores_the_retransmitted_segment() -> None:
    """The control for the test above: no TS, the same exchange gives no sample, so the
    backed-off 2 s RTO stays (RFC 6298 5.7, Karn)."""
    s = Script("linux-like")
    s.listen(8080)
    s.inject(0, "S", seq=0, opts=[OptMss(1460)])
    s.expect(0, "S.", seq=0, ack=1)
    s.inject(0, ".", seq=1, ack=1)  # a sample of 0 ms: RTO = max(200 ms, G)
    sock = s.accept()
    s.run_until(100)
    sock.send(b"d" * 100)
    s.expect(100, "P.", seq=1)
    s.expect(300, "P.", seq=1)  # RTO 200 ms
    s.inject(450, ".", seq=1, ack=101)
    sock.send(b"e" * 100)
    s.expect(450, "P.", seq=101)
    s.expect(850, "P.", seq=101)  # still backed off: 400 ms


def test_paws_drops_an_old_tsval_with_an_ack() -> None:
    """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is dropped and answered
    with an ACK; a RST is not subject to PAWS."""
    s = Script("full")
    sock, synack = passive(s, EVERYTHING)
    assert synack.hdr.timestamps is not None
    echo = synack.hdr.timestamps[0]
    s.inject(100, "P.", seq=1, ack=1, data=b"a" * 10, opts=[OptTimestamps(5000, echo)])
    s.expect(140, ".", ack=11)
    s.inject(200, "P.", seq=11, ack=1, data=b"b" * 10, opts=[OptTimestamps(4999, echo)])
    dup = s.expect(200, ".", ack=11)  # at once, not delayed; the data is not taken
    assert dup.hdr.timestamps is not None and dup.hdr.timestamps[1] == 5000
    assert sock.recv() == b"a" * 10 and s.tcp.counters["tcp.rx.drop.paws"] == 1
    s.inject(300, "P.", seq=11, ack=1, data=b"b" * 10, opts=[OptTimestamps(5100, echo)])
    s.expect(340, ".", ack=21)
    assert sock.recv() == b"b" * 10
    s.inject(400, "R", seq=21, opts=[OptTimestamps(1, echo)])
    assert sock.error == "reset"


def test_every_segment_carries_timestamps_once_negotiated() -> None:
    """RFC 7323 3.2: TSopt on every non-RST segment."""
    s = Script("full")
    sock, _ = passive(s, EVERYTHING)
    sock.send(b"x" * 3000)
    s.run_until(10)
    s.inject(20, "P.", seq=1, ack=1449, data=b"y", opts=[OptTimestamps(1020, 1)])
    sock.close()
    s.run_until(3000)
    outs = s.drain()
    assert len(outs) >= 4 and all(o.hdr.timestamps is not None for o in outs)


@pytest.mark.parametrize("name", CONSTRAINED)
def test_constrained_profiles_send_no_timestamps(name: str) -> None:
    s = Script(name)
    sock, _ = passive(s, EVERYTHING)
    sock.send(b"x" * 100)
    s.run_until(10)
    (seg,) = s.drain()
    assert seg.hdr.options == [] and len(seg.data) == 100


# ---------------------------------------------------------------------- SACK


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("offer", [True, False])
def test_sack_blocks_only_when_permitted(name: str, offer: bool) -> None:
    """RFC 2018 2: SACK-permitted in the SYN-ACK only if the SYN had it, and no SACK option
    unless both agreed; an out-of-order segment gets an immediate duplicate ACK (RFC 5681
    4.2) either way."""
    s = Script(name)
    cfg = s.config
    opts: list[TcpOption] = [OptMss(1000)]
    if offer:
        opts.append(OptSackPermitted())
    sock, synack = passive(s, opts)
    agreed = offer and cfg.sack
    assert synack.hdr.sack_permitted == agreed
    s.inject(100, "P.", seq=201, ack=1, data=b"b" * 100)  # 1..200 missing
    dup = s.expect(100, ".", ack=1)
    assert dup.sack(s) == ([(201, 301)] if agreed and cfg.ooo_queue else [])
    del sock


# ---------------------------------------------------------------------- ECN (RFC 3168)


def test_ecn_client_negotiation_and_ect_on_new_data_only() -> None:
    s = Script("full", congestion_control="none")
    sock = s.connect(0)
    syn = s.expect(0, "SEW", seq=0)  # RFC 3168 6.1.1: ECN-setup SYN
    assert syn.ecn == 0  # never ECT on a SYN
    s.inject(10, "SE.", seq=0, ack=1, opts=[OptMss(1000)])  # ECN-setup SYN-ACK: ECE only
    ack = s.expect(10, ".", seq=1, ack=1)
    assert ack.ecn == 0 and sock.ecn_ok
    sock.send(b"n" * 2000)
    s.expect(10, ".", seq=1, length=1000, ecn=2)  # ECT(0) on new data
    s.expect(10, "P.", seq=1001, length=1000, ecn=2)
    s.inject(20, "P.", seq=1, ack=1001, data=b"r" * 10)  # first segment acked, with data
    s.expect(60, ".", ack=11, ecn=0)  # a pure ACK is not ECT
    rtx = s.expect(1020, "P.", seq=1001, length=1000)  # RTO 1 s from the ACK (RFC 6298 5.3)
    assert rtx.ecn == 0  # RFC 3168 6.1.5: no ECT on retransmissions


@pytest.mark.parametrize("synack_flags", ["S.", "SEW."])
def test_ecn_client_without_an_ecn_setup_syn_ack(synack_flags: str) -> None:
    """No ECE, or ECE with CWR (a reflector, RFC 3168 6.1.1): not an ECN-setup SYN-ACK."""
    s = Script("full")
    sock = s.connect(0)
    s.expect(0, "SEW")
    s.inject(10, synack_flags, seq=0, ack=1, opts=[OptMss(1000)])
    s.expect(10, ".", seq=1, ack=1)
    assert not sock.ecn_ok
    sock.send(b"n" * 10)
    s.expect(10, "P.", seq=1, ecn=0)


@pytest.mark.parametrize("name", ALL)
def test_ecn_server_negotiation(name: str) -> None:
    """RFC 3168 6.1.1: an ECN-setup SYN (ECE|CWR) gets a SYN-ACK with ECE and not CWR from a
    stack that does ECN: full, and linux-like as Linux's default tcp_ecn=2 (answer, never
    ask). lwIP, RIOT and uIP have no ECN (tcp-behaviour.md §6): a plain SYN-ACK."""
    s = Script(name)
    does_ecn = name in ("full", "linux-like")
    sock, synack = passive(s, [OptMss(1000)], flags="SEW")
    assert synack.flags == flags_str(flags_of("SE." if does_ecn else "S."))
    assert synack.ecn == 0 and sock.ecn_ok == does_ecn
    sock.send(b"n" * 10)
    s.expect(0, "P.", seq=1, ecn=2 if does_ecn else 0)


def test_linux_like_does_not_ask_for_ecn() -> None:
    s = Script("linux-like")
    s.connect(0)
    s.expect(0, "S")


def test_ece_only_is_no_ecn_setup_syn() -> None:
    s = Script("full")
    sock, synack = passive(s, [OptMss(1000)], flags="SE")
    assert synack.flags == "S." and not sock.ecn_ok


def test_ce_is_echoed_until_cwr() -> None:
    """RFC 3168 6.1.3: after a CE-marked segment every ACK carries ECE until a CWR segment;
    a CWR segment that is itself CE-marked starts the echo again."""
    s = Script("full")
    sock, _ = passive(s, [OptMss(1000)], flags="SEW")
    s.inject(100, "P.", seq=1, ack=1, data=b"a" * 10, ecn=3)  # CE
    s.expect(140, "E.", ack=11)
    s.inject(200, "P.", seq=11, ack=1, data=b"b" * 10, ecn=2)  # ECT, not CE
    s.expect(240, "E.", ack=21)  # still echoing: no CWR yet
    s.inject(300, "PW.", seq=21, ack=1, data=b"c" * 10, ecn=2)  # CWR
    s.expect(340, ".", ack=31)
    s.inject(400, "P.", seq=31, ack=1, data=b"d" * 10, ecn=2)
    s.expect(440, ".", ack=41)
    s.inject(500, "P.", seq=41, ack=1, data=b"e" * 10, ecn=3)  # CE again
    s.expect(540, "E.", ack=51)
    s.inject(600, "PW.", seq=51, ack=1, data=b"f" * 10, ecn=3)  # CWR, but CE-marked itself
    s.expect(640, "E.", ack=61)
    assert sock.recv() == b"".join(bytes([c]) * 10 for c in b"abcdef")


def test_ece_reduces_cwnd_once_per_window_and_sets_cwr() -> None:
    """RFC 3168 6.1.2: on ECE, ssthresh = max(FlightSize / 2, 2 * SMSS) and cwnd = ssthresh, at
    most once per window of data; the next new data segment carries CWR."""
    s = Script("full")
    sock, _ = passive(s, [OptMss(1000)], flags="SEW")
    smss = 1000
    iw = min(4 * smss, max(2 * smss, 4380))  # RFC 5681 3.1: 4000 bytes
    sock.send(b"x" * 20_000)
    s.run_until(10)
    first = s.drain()
    assert sent_bytes(first) == iw and not any(o.hdr.flags & CWR for o in first)
    s.inject(50, "E.", seq=1, ack=1001)  # ECE on the ACK of the first segment
    assert sock.cc.cwnd == max(iw // 2, 2 * smss) == 2000
    assert s.drain() == []  # 3000 in flight > cwnd: nothing to send
    s.inject(60, "E.", seq=1, ack=2001)  # the same window: no second reduction
    assert sock.cc.cwnd == 2000
    s.inject(70, "E.", seq=1, ack=3001)
    nxt = s.drain()
    assert nxt and nxt[0].seq == iw + 1 and nxt[0].hdr.flags & CWR  # CWR on new data
    assert not any(o.hdr.flags & CWR for o in nxt[1:])  # once
    assert s.tcp.counters["tcp.ecn.ece-reaction"] == 1
    # an ECE for data sent after the reduction is a new window: react again
    end = max(o.seq + len(o.data) for o in nxt)
    s.inject(80, "E.", seq=1, ack=end)
    assert s.tcp.counters["tcp.ecn.ece-reaction"] == 2


# ---------------------------------------------------------------------- TCP Fast Open (RFC 7413)


def test_tfo_client_requests_caches_and_uses_a_cookie() -> None:
    s = Script("full")
    s.connect(0)
    syn = s.expect(0, "SEW", seq=0)
    assert syn.hdr.fast_open == b"" and not syn.data  # 4.1.1: an empty option asks
    s.inject(10, "S.", seq=0, ack=1, opts=[OptMss(1460), OptFastOpen(b"COOKIE42")])
    s.expect(10, ".", seq=1, ack=1)
    assert s.tcp.tfo_cache[s.remote] == b"COOKIE42"
    # a new connection to the same server: data in the SYN with the cookie (4.1.2)
    s.next_connection()
    sock = s.connect(1000, data=b"GET /")
    syn2 = s.expect(1000, "SEW", seq=0, data=b"GET /")
    assert syn2.hdr.fast_open == b"COOKIE42"
    s.inject(1010, "S.", seq=0, ack=6, opts=[OptMss(1460)])  # the server took the data
    s.expect(1010, ".", seq=6, ack=1)
    assert sock.state is ESTABLISHED
    s.expect_nothing(20_000)  # nothing to send again


def test_tfo_client_resends_data_the_server_did_not_take() -> None:
    s = Script("full")
    s.tcp.tfo_cache[s.remote] = b"STALE123"
    sock = s.connect(0, data=b"hello")
    s.expect(0, "SEW", seq=0, data=b"hello")
    # 4.1.3: only the SYN acknowledged, and a fresh cookie
    s.inject(10, "S.", seq=0, ack=1, opts=[OptMss(1460), OptFastOpen(b"FRESH456")])
    s.expect(10, "P.", seq=1, ack=1, data=b"hello")  # sent again right after the handshake
    assert sock.state is ESTABLISHED and s.tcp.tfo_cache[s.remote] == b"FRESH456"
    s.inject(20, ".", seq=1, ack=6)
    s.expect_nothing(10_000)


def test_tfo_server_gives_a_cookie_on_request() -> None:
    s = Script("full")
    _, synack = passive(s, [OptMss(1460), OptFastOpen(b"")])
    cookie = synack.hdr.fast_open
    assert cookie == s.tcp.tfo_cookie(s.remote)
    assert cookie is not None and 4 <= len(cookie) <= 16  # 4.1.1
    assert Script("full", seed=9).tcp.tfo_cookie(s.remote) != cookie  # keyed by a secret


def test_tfo_server_accepts_data_with_a_valid_cookie() -> None:
    s = Script("full")
    s.listen(8080)
    good = s.tcp.tfo_cookie(s.remote)
    s.inject(0, "S", seq=0, data=b"query", opts=[OptMss(1460), OptFastOpen(good)])
    synack = s.expect(0, "S.", seq=0, ack=6)  # 4.2.2: the SYN's data acknowledged at once
    assert synack.hdr.fast_open is None
    s.inject(10, ".", seq=6, ack=1)
    sock = s.accept()
    assert sock.recv() == b"query" and s.tcp.counters["tcp.tfo.accepted"] == 1


def test_tfo_server_rejects_data_with_a_bad_cookie() -> None:
    s = Script("full")
    s.listen(8080)
    good = s.tcp.tfo_cookie(s.remote)
    bad = bytes(b ^ 1 for b in good)
    s.inject(0, "S", seq=0, data=b"query", opts=[OptMss(1460), OptFastOpen(bad)])
    synack = s.expect(0, "S.", seq=0, ack=1)  # only the SYN
    assert synack.hdr.fast_open == good  # and a valid cookie for next time
    s.inject(10, "P.", seq=1, ack=1, data=b"query")  # the client sends it again
    sock = s.accept()
    assert sock.recv() == b"query"
    assert s.tcp.counters["tcp.tfo.bad-cookie"] == 1 and s.tcp.counters["tcp.tfo.accepted"] == 0


@pytest.mark.parametrize("name", ["linux-like", *CONSTRAINED])
def test_no_tfo_ignores_syn_data_and_cookie(name: str) -> None:
    """Without Fast Open the SYN's data is not acknowledged (RFC 9293 3.10.7.2 allows it to be
    queued, these stacks drop it) and the option is not answered; the client sends it again."""
    s = Script(name)
    s.listen(8080)
    s.inject(0, "S", seq=0, data=b"query", opts=[OptMss(1000), OptFastOpen(b"12345678")])
    synack = s.expect(0, "S.", seq=0, ack=1)
    assert synack.hdr.fast_open is None
    s.inject(10, "P.", seq=1, ack=1, data=b"query")
    assert s.accept().recv() == b"query"
