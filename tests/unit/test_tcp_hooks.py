"""Peer hooks: how a probe makes the reference stack misbehave on purpose, and the segment log
that says what actually happened. Scripts in virtual time, as in test_tcp_data.

Full profile, the peer offers MSS 500 and no other option, handshake RTT 100 ms (RTO 1 s,
delayed ACK 40 ms).
"""

from __future__ import annotations

from stack.tcp.hooks import (
    DROP,
    Direction,
    HookResult,
    Rules,
    Segment,
    copy_segment,
    has_data,
)
from stack.tcp.socket import State, TcpSocket
from stack.time import MS
from stack.wire.tcp import ACK, RST, SYN, OptMss, OptSackPermitted, OptTimestamps
from tests.tcpscript import Script


def start() -> tuple[Script, TcpSocket]:
    s = Script("full")
    sock = s.establish(rtt_ms=100, opts=[OptMss(500)])
    sock.log = []
    return s, sock


def log_lines(sock: TcpSocket) -> list[tuple[float, str, str, int, str]]:
    """(ms, direction, flags, payload length, action) of each record."""
    assert sock.log is not None
    return [(r.time / MS, r.direction, r.flag_str(), r.length, r.action) for r in sock.log]


# ---------------------------------------------------------------------------------------------
# outbound manoeuvres


def test_drop_outbound_segment_then_the_retransmission_passes() -> None:
    s, sock = start()
    rules = Rules()
    rules.drop("out", has_data, count=1)
    sock.hook = rules
    s.run_until(200)
    sock.send(b"x" * 100)
    s.expect(1200, "P.", seq=1, length=100)  # nothing at 200: the RTO resends it
    assert log_lines(sock) == [
        (200, "out", "P.", 100, "drop"),
        (1200, "out", "P.", 100, "pass"),
    ]
    assert sock.stats["retransmits"] == 1


def test_delay_outbound_segment() -> None:
    s, sock = start()
    rules = Rules()
    rules.delay("out", has_data, 30 * MS)
    sock.hook = rules
    s.run_until(200)
    sock.send(b"x" * 100)
    s.expect(230, "P.", seq=1, length=100)
    assert log_lines(sock) == [(200, "out", "P.", 100, "delay")]  # logged when sent


def test_duplicate_outbound_segment() -> None:
    s, sock = start()
    rules = Rules()
    rules.duplicate("out", has_data, count=1)
    sock.hook = rules
    s.run_until(200)
    sock.send(b"abc")
    a = s.expect(200, "P.", seq=1, data=b"abc")
    b = s.expect(200, "P.", seq=1, data=b"abc")
    assert a.hdr.ack == b.hdr.ack and a.win == b.win
    sock.send(b"def")
    s.inject(300, ".", seq=1, ack=4)
    s.expect(300, "P.", seq=4, data=b"def")
    s.expect_nothing(310)  # count=1: only the first was doubled
    assert [line[4] for line in log_lines(sock) if line[1] == "out"] == ["dup", "pass"]


def test_rewrite_fields_and_options_checksum_recomputed() -> None:
    """A hook edits the header in place (None) or returns a rewritten copy; the checksum is
    computed after the hooks, so the peer (the script parses with checksum verification)
    sees a valid segment with the new values."""
    s = Script("full")
    sock = s.establish(rtt_ms=100, opts=[OptMss(500), OptTimestamps(5, 0)])
    assert sock.ts_ok
    sock.log = []

    def hook(now: int, direction: Direction, sock: TcpSocket | None, seg: Segment) -> HookResult:
        if direction != "out":
            return None
        if seg.payload == b"in-place":
            seg.hdr.window = 1234
            seg.hdr.options = [o for o in seg.hdr.options if not isinstance(o, OptTimestamps)]
            return None
        new = copy_segment(seg)
        new.hdr.urgent = 7
        new.hdr.options = [*new.hdr.options, OptSackPermitted()]
        return ((0, new),)

    sock.hook = hook
    s.run_until(200)
    sock.send(b"in-place")
    out = s.expect(200, "P.", seq=1, win=1234, data=b"in-place")
    assert out.hdr.timestamps is None
    s.inject(300, ".", seq=1, ack=9, opts=[s.peer_ts(6)])
    sock.send(b"copy")
    out = s.expect(300, "P.", seq=9, data=b"copy")
    assert out.hdr.urgent == 7 and out.hdr.timestamps is not None and out.hdr.sack_permitted
    assert [line[4] for line in log_lines(sock) if line[1] == "out"] == ["pass", "rewrite"]


def test_withhold_acks() -> None:
    """Rules.withhold_acks drops our pure ACKs; data, and our own data segments, still flow."""
    s, sock = start()
    rules = Rules()
    rules.withhold_acks(count=2)
    sock.hook = rules
    s.inject(200, "P.", seq=1, ack=1, data=b"a" * 10)
    s.inject(300, "P.", seq=11, ack=1, data=b"b" * 10)
    s.expect_nothing(1000)  # the two delayed ACKs (240, 340) were withheld
    assert sock.recv() == b"a" * 10 + b"b" * 10  # the data was taken all the same
    sock.send(b"reply")  # data carries the ACK: not a pure ACK, not withheld
    s.expect(1000, "P.", seq=1, ack=21, data=b"reply")
    s.inject(1100, "P.", seq=21, ack=6, data=b"c" * 10)
    s.expect(1140, ".", ack=31)  # count used up: ACKs pass again
    drops = [line for line in log_lines(sock) if line[4] == "drop"]
    assert drops == [(240, "out", ".", 0, "drop"), (340, "out", ".", 0, "drop")]


def test_window_override_advertises_the_chosen_window() -> None:
    s, sock = start()
    sock.window_override = 100
    s.inject(200, "P.", seq=1, ack=1, data=b"a" * 10)
    s.expect(240, ".", ack=11, win=100)
    # the peer honours it: 200 bytes offered, only the 100 the window allows are taken
    s.inject(300, "P.", seq=11, ack=1, data=b"b" * 200)
    s.expect(340, ".", ack=111, win=100)
    assert sock.recv() == b"a" * 10 + b"b" * 100
    sock.window_override = 0  # takes effect with the next segment we send
    s.inject(400, "P.", seq=111, ack=1, data=b"c" * 10)  # within the 100 still offered
    s.expect(440, ".", ack=121, win=0)
    sock.window_override = None
    s.inject(500, "P.", seq=121, ack=1, data=b"d" * 10)  # into the zero window: refused
    s.expect(500, ".", ack=121, win=65535)  # answered at once, with the real window again
    s.inject(600, "P.", seq=121, ack=1, data=b"d" * 10)
    s.expect(640, ".", ack=131)
    assert sock.recv() == b"c" * 10 + b"d" * 10


def test_inject_crafted_segments_in_the_connection_sequence_space() -> None:
    s, sock = start()
    sock.send(b"x" * 100)
    s.expect(100, "P.", seq=1, length=100)
    s.inject(150, ".", seq=1, ack=101)
    s.inject(160, "P.", seq=1, ack=101, data=b"y" * 5)
    s.expect(200, ".", ack=6)
    snd_nxt, rcv_nxt, stats = sock.snd_nxt, sock.rcv_nxt, dict(sock.stats)
    now = s.clock.now()
    sock.inject(now, ACK, seq_delta=-1)  # a keep-alive look-alike: SND.NXT - 1
    sock.inject(now, ACK, payload=b"forged", window=7)
    sock.inject(now, RST | ACK, seq=sock.snd_seq + 1000)  # an out-of-window RST
    s.expect(200, ".", seq=100, ack=6, length=0)
    s.expect(200, ".", seq=101, ack=6, win=7, data=b"forged")
    s.expect(200, "R.", seq=1101, ack=6)
    # the connection's own state did not move
    assert (sock.snd_nxt, sock.rcv_nxt, sock.stats) == (snd_nxt, rcv_nxt, stats)
    assert sock.state is State.ESTABLISHED
    assert [line[4] for line in log_lines(sock)][-3:] == ["inject"] * 3


# ---------------------------------------------------------------------------------------------
# inbound manoeuvres


def test_drop_and_delay_inbound_segments() -> None:
    s, sock = start()
    rules = Rules()
    rules.drop("in", has_data, count=1)
    rules.delay("in", has_data, 100 * MS, count=1)
    sock.hook = rules
    s.inject(200, "P.", seq=1, ack=1, data=b"a" * 10)  # dropped: never seen by the socket
    s.expect_nothing(299)
    assert sock.readable == 0
    s.inject(300, "P.", seq=1, ack=1, data=b"a" * 10)  # held for 100 ms
    s.expect_nothing(399)
    assert sock.readable == 0
    s.expect(440, ".", ack=11)  # processed at 400, delayed ACK 40 ms later
    assert log_lines(sock) == [
        (200, "in", "P.", 10, "drop"),
        (300, "in", "P.", 10, "delay"),
        (400, "in", "P.", 10, "pass"),
        (440, "out", ".", 0, "pass"),
    ]


def test_layer_hook_sees_listener_syns_and_strays() -> None:
    s = Script("full")
    s.listen(8080)
    seen: list[tuple[str, bool, int]] = []

    def hook(now: int, direction: Direction, sock: TcpSocket | None, seg: Segment) -> HookResult:
        seen.append((direction, sock is None, seg.hdr.flags))
        if direction == "in" and seg.hdr.flags & SYN and len(seen) == 1:
            return DROP  # the first SYN never reaches the listener
        return None

    s.tcp.hook = hook
    s.inject(0, "S", seq=0, opts=[OptMss(500)])
    s.expect_nothing(999)
    s.inject(1000, "S", seq=0, opts=[OptMss(500)])  # the peer's SYN retransmission
    s.expect(1000, "S.", seq=0, ack=1)
    s.inject(1000, ".", seq=1, ack=1, src_port=40001)  # a stray: no connection, no listener
    s.expect(1000, "R", seq=1)  # RST <SEQ=SEG.ACK>, RFC 9293 3.10.7.1
    assert seen[:2] == [("in", True, SYN), ("in", True, SYN)]
    assert ("out", False, SYN | ACK) in seen  # the SYN-ACK, from the new connection
    assert seen[-1] == ("in", True, ACK)  # the stray was seen too (the RST bypasses hooks)


def test_listener_hook_and_record_apply_to_every_child() -> None:
    s = Script("full")
    lst = s.listen(8080)
    rules = Rules()
    rules.delay("out", lambda seg: bool(seg.hdr.flags & SYN), 30 * MS)
    lst.hook = rules
    lst.record = True
    s.inject(0, "S", seq=0, opts=[OptMss(500)])
    s.expect(30, "S.", seq=0, ack=1)  # the child's SYN-ACK went through the listener's hook
    s.inject(130, ".", seq=1, ack=1)
    sock = s.accept()
    assert sock.hook is rules
    assert log_lines(sock) == [
        (0, "in", "S", 0, "pass"),
        (0, "out", "S.", 0, "delay"),
        (130, "in", ".", 0, "pass"),
    ]
    assert sock.log is not None and sock.log[0].seq == s.REMOTE_ISN


def test_log_records_options_and_windows() -> None:
    s = Script("full")
    sock = s.establish(rtt_ms=100, opts=[OptMss(500), OptSackPermitted()])
    sock.log = []
    s.inject(200, ".", seq=101, ack=1, data=b"z" * 100)
    s.expect(200, ".", ack=1)
    rec_in, rec_out = sock.log
    assert (rec_in.direction, rec_in.length, rec_in.window) == ("in", 100, 65535)
    assert rec_in.seq == s.REMOTE_ISN + 101 and rec_in.time == 200 * MS
    base = s.REMOTE_ISN
    assert rec_out.sack == ((base + 101, base + 201),) and rec_out.ack == base + 1


def test_a_failing_hook_passes_the_segment_unchanged() -> None:
    s, sock = start()

    def broken(now: int, direction: Direction, sock: TcpSocket | None, seg: Segment) -> HookResult:
        raise RuntimeError("probe bug")

    sock.hook = broken
    s.run_until(200)
    sock.send(b"still here")
    s.expect(200, "P.", seq=1, data=b"still here")
    assert s.iface.counters["tcp.hook-error"] == 1
