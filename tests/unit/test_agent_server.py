"""The agent protocol core (targets/agent/server.py) with the local backend, in virtual time.

Two reference stacks on an in-memory pipe: one runs the agent (lines are fed to the core like
a console would), the other plays the tester with the TCP user API. Everything the protocol
promises -- framing, usage errors, handles, patterns, CRC, deferred replies and timeouts -- is
checked against what the tester's stack actually saw.
"""

from __future__ import annotations

import ipaddress
import os
import random
import threading
import zlib

import pytest

from stack.iface import Interface, InterfaceConfig
from stack.phy.loop import run, run_virtual
from stack.phy.pipe import PipePair
from stack.tcp.layer import TcpLayer
from stack.tcp.socket import TcpSocket
from stack.time import MS, SECOND, VirtualClock
from targets.agent.client import pattern_bytes
from targets.agent.local import attach
from targets.agent.server import COMMANDS, MAX_LINE, Pattern

AGENT = "10.9.0.2"
TESTER = "10.9.0.1"


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


class Bench:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        a, b = PipePair(self.clock, latency_us=200)
        self.tester = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x0a", seed=1))
        self.target = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x0b", seed=2))
        self.tester.add_ipv4(ip(TESTER), 24)
        self.target.add_ipv4(ip(AGENT), 24)
        self.ttcp = TcpLayer(self.tester)
        self.atcp = TcpLayer(self.target)
        self.out: list[str] = []
        self.core = attach(self.target, self.atcp, self.clock.now, self.out.append, "full")
        self.pairs = [(self.tester, a), (self.target, b)]

    def run(self, ms: int = 50) -> None:
        run_virtual(self.pairs, self.clock, self.clock.now() + ms * MS)

    def cmd(self, line: str, max_ms: int = 20_000) -> str:
        """Send one command line and run virtual time until its reply."""
        before = len(self.out)
        self.core.feed(line.encode() + b"\n")
        waited = 0
        while len(self.out) == before and waited < max_ms:
            self.run(10)
            waited += 10
        assert len(self.out) == before + 1, f"{line!r}: replies {self.out[before:]}"
        return self.out[-1]

    def ok(self, line: str) -> list[str]:
        reply = self.cmd(line)
        assert reply.split()[0] == "ok", f"{line!r} -> {reply!r}"
        return reply.split()[1:]

    def code(self, line: str) -> str:
        reply = self.cmd(line)
        assert reply.startswith("err "), f"{line!r} -> {reply!r}"
        return reply.split()[1]


def collector(sock: TcpSocket, into: bytearray) -> None:
    def readable(s: TcpSocket) -> None:
        into.extend(s.recv())

    sock.on_readable = readable


@pytest.fixture
def bench() -> Bench:
    return Bench()


def accepted(bench: Bench, port: int = 5000) -> tuple[int, TcpSocket, bytearray]:
    sid = int(bench.ok(f"listen {port}")[0])
    sock = bench.ttcp.connect(bench.clock.now(), ip(AGENT), port)
    got = bytearray()
    collector(sock, got)
    words = bench.ok(f"accept {sid} 2000")
    assert words[1] == TESTER and int(words[2]) == sock.local_port
    return int(words[0]), sock, got


# ----------------------------------------------------------------------------- framing


def test_hello_help_and_unknown(bench: Bench) -> None:
    hello = bench.ok("hello")
    assert hello[0] == "agent=tcp-hil/1" and "stack=local" in hello
    assert set(bench.ok("help")) == set(COMMANDS)
    assert bench.code("frobnicate 1") == "unknown"
    assert bench.code("HELLO") == "unknown"


def test_framing_cr_empty_lines_and_batches(bench: Bench) -> None:
    bench.core.feed(b"\n\r\n   \nmark a\r\nmark b c\n")
    assert bench.out == ["ok a", "ok b c"]
    bench.core.feed(b"mark par")
    assert bench.out == ["ok a", "ok b c"]  # no newline yet: nothing
    bench.core.feed(b"tial\n")
    assert bench.out[-1] == "ok partial"


def test_overlong_line_is_one_usage_error_then_the_next_line_works(bench: Bench) -> None:
    bench.core.feed(b"mark " + b"x" * 300)
    bench.core.feed(b"y" * 100 + b"\nmark after\n")
    assert bench.out[0].startswith("err usage") and bench.out[1:] == ["ok after"]
    ok_line = b"mark " + b"z" * (MAX_LINE - 6)  # 254 bytes + newline = 255: allowed
    bench.core.feed(ok_line + b"\n")
    assert bench.out[-1] == "ok " + "z" * (MAX_LINE - 6)
    bench.core.feed(ok_line + b"z\n")
    assert bench.out[-1].startswith("err usage")


@pytest.mark.parametrize(
    "line",
    [
        "hello extra",
        "listen",
        "listen 0",
        "listen 65536",
        "listen -1",
        "listen 80 x",
        "listen 5000 1 2",
        "accept",
        "accept x",
        "accept 1 -5",
        "connect 10.9.0.1",
        "connect 10.9.0.300 80",
        "connect 10.9.0.1 0",
        "connect host 80",
        "send 1",
        "send 1 x",
        "send 1 10 bogus",
        "send 1 10 hex:4",
        "send 1 10 hex:",
        "send 1 10 hex:zz",
        "send 1 10 seq 0",
        "send 1 10 seq 1 9",
        "recv 1",
        "recv 1 5 soon",
        "shutdown",
        "shutdown 1 sideways",
        "close",
        "close 1 2",
        "abort",
        "status",
        "setopt 1 nodelay",
        "setopt 1 nodelay x",
        "counters 1",
        "mark",
        "reset now",
    ],
)
def test_usage_errors(bench: Bench, line: str) -> None:
    assert bench.code(line) == "usage"


@pytest.mark.parametrize(
    "line",
    ["accept 7", "send 7 10", "recv 7 1", "shutdown 7", "close 7", "abort 7", "status 7"],
)
def test_unknown_handles(bench: Bench, line: str) -> None:
    assert bench.code(line) == "nosock"


def test_handles_are_typed_and_port_in_use(bench: Bench) -> None:
    sid = bench.ok("listen 6000")[0]
    assert bench.code("listen 6000") == "inuse"
    assert bench.code(f"send {sid} 1") == "nosock"  # a SID is not a CID
    assert bench.code(f"abort {sid}") == "nosock"
    assert bench.ok(f"close {sid}") == []
    assert bench.code(f"close {sid}") == "nosock"
    assert bench.ok("listen 6000")  # the port is free again


def test_patterns_match_the_client_at_every_offset() -> None:
    rnd = random.Random(1)
    for spec in ("seq", "zero", "hex:41", "hex:00ff10", "hex:" + "ab" * 100):
        pat = Pattern.parse(spec)
        for _ in range(50):
            off, n = rnd.randrange(0, 300_000), rnd.randrange(0, 200_000)
            assert pat.take(off, n) == pattern_bytes(spec, off, n), (spec, off, n)


# ----------------------------------------------------------------------------- data


def test_send_seq_continues_the_stream_offset_and_chunks(bench: Bench) -> None:
    cid, _sock, got = accepted(bench)
    assert bench.ok(f"send {cid} 100000") == ["100000"]
    assert bench.ok(f"send {cid} 1000 seq 7") == ["1000"]
    assert bench.ok(f"send {cid} 10 hex:4142 3") == ["10"]
    assert bench.ok(f"send {cid} 0") == ["0"]
    bench.run(500)
    want = pattern_bytes("seq", 0, 101_000) + pattern_bytes("hex:4142", 101_000, 10)
    assert bytes(got) == want
    st = dict(w.split("=") for w in bench.ok(f"status {cid}"))
    assert st["sent"] == "101010" and st["state"] == "ESTABLISHED" and st["error"] == "none"


def test_recv_counts_crc_eof_and_timeout(bench: Bench) -> None:
    cid, sock, _ = accepted(bench)
    assert bench.cmd(f"recv {cid} 1 300") == "err timeout total=0"
    data = bytes(random.Random(2).randrange(256) for _ in range(30_000))
    sock.send(data)
    assert bench.ok(f"recv {cid} 30000") == [
        "total=30000",
        f"crc32={zlib.crc32(data):08x}",
        "eof=0",
    ]
    sock.send(b"hello")
    sock.shutdown()
    reply = bench.ok(f"recv {cid} 1000000")
    assert reply == ["total=30005", f"crc32={zlib.crc32(b'hello', zlib.crc32(data)):08x}", "eof=1"]
    st = dict(w.split("=") for w in bench.ok(f"status {cid}"))
    assert st["state"] == "CLOSE-WAIT" and st["eof"] == "1" and st["received"] == "30005"


def test_commands_wait_while_one_is_pending(bench: Bench) -> None:
    cid, sock, _ = accepted(bench)
    before = len(bench.out)
    bench.core.feed(f"recv {cid} 3 5000\nmark later\n".encode())
    assert bench.out[before:] == []
    sock.send(b"abc")
    bench.run(100)
    assert bench.out[before].startswith("ok total=3") and bench.out[before + 1] == "ok later"


def test_shutdown_close_abort_reach_the_peer(bench: Bench) -> None:
    cid, sock, _ = accepted(bench)
    assert bench.ok(f"shutdown {cid}") == []
    bench.run(100)
    assert sock.eof and sock.state.value == "CLOSE-WAIT"
    assert bench.code(f"send {cid} 1") == "closed"
    sock.send(b"still")  # half-close: the agent still receives
    assert bench.ok(f"recv {cid} 5")[0] == "total=5"
    assert bench.ok(f"close {cid}") == []
    assert bench.code(f"status {cid}") == "nosock"
    cid2, sock2, _ = accepted(bench, 5001)
    assert bench.ok(f"abort {cid2}") == []
    bench.run(100)
    assert sock2.error == "reset"


def test_read_0_closes_the_window_and_read_1_reopens_it(bench: Bench) -> None:
    cid, sock, _ = accepted(bench)
    bench.ok(f"setopt {cid} read 0")
    sent = 0
    for _ in range(40):
        sent += sock.send(b"x" * 65536)
        bench.run(200)
    assert sock.snd_wnd == 0 and sock.unsent > 0, "the agent's window never closed"
    assert bench.cmd(f"recv {cid} 1 200") == "err timeout total=0"
    bench.ok(f"setopt {cid} read 1")
    bench.run(2000)
    assert bench.ok(f"recv {cid} {sent} 5000")[0] == f"total={sent}"


def test_setopt_options(bench: Bench) -> None:
    cid, _, _ = accepted(bench)
    sock = next(s for s in bench.atcp.sockets() if s.local_port == 5000)  # the agent's side
    bench.ok(f"setopt {cid} nodelay 1")
    assert sock.nagle is False
    bench.ok(f"setopt {cid} keepidle 1000")
    bench.ok(f"setopt {cid} keepintvl 500")
    bench.ok(f"setopt {cid} keepcnt 2")
    bench.ok(f"setopt {cid} keepalive 1")
    assert sock.keepalive and sock.cfg.keepalive_idle_us == 1 * SECOND
    assert bench.atcp.config.keepalive_idle_us != 1 * SECOND  # the layer's config is untouched
    assert bench.code(f"setopt {cid} nodelay 2") == "usage"
    assert bench.code(f"setopt {cid} keepcnt 0") == "usage"
    assert bench.code(f"setopt {cid} lingerfish 1") == "unsupported"


def test_connect_refused_and_reset(bench: Bench) -> None:
    lst = bench.ttcp.listen(7000)
    cid, laddr, lport = bench.ok(f"connect {TESTER} 7000 2000")
    assert laddr == AGENT
    peer = lst.accept()
    assert peer is not None and peer.remote_port == int(lport)
    assert bench.code(f"connect {TESTER} 7001 2000") == "refused"
    sid = bench.ok("listen 7002")[0]
    bench.ok("reset")
    bench.run(100)
    assert peer.error == "reset"
    assert bench.code(f"status {cid}") == "nosock" and bench.code(f"close {sid}") == "nosock"
    assert bench.code(f"accept {bench.ok('listen 7003')[0]} 100") == "timeout"


def test_counters_info_mark(bench: Bench) -> None:
    accepted(bench)
    kv = dict(w.split("=") for w in bench.ok("counters"))
    assert list(kv)[:3] == ["connections", "buffers", "drops"]
    assert kv["connections"] == "1" and int(kv["tcp.rx.segments"]) > 0
    info = dict(w.split("=", 1) for w in bench.ok("info"))
    assert info["profile"] == "full" and info["tcp.nagle"] == "1"
    assert bench.ok("mark step 3 begins") == ["step", "3", "begins"]


def test_loop_watch_calls_back_until_the_callback_lets_go() -> None:
    """``run(watch=...)``: the console fd of ``hil stack serve --agent`` is read by the loop."""
    iface = Interface(InterfaceConfig())
    dev, _ = PipePair(VirtualClock())
    r, w = os.pipe()
    got: list[bytes] = []
    done = threading.Event()

    def readable() -> bool:
        data = os.read(r, 100)
        got.append(data)
        if not data:
            done.set()
            return False  # EOF: stop watching, or a level-triggered fd would spin
        return True

    os.write(w, b"one\n")
    os.close(w)
    stats = run(iface, dev, stop=done.is_set, handle_signals=False, watch=[(r, readable)])
    os.close(r)
    assert got == [b"one\n", b""] and stats.wakeups <= 3
