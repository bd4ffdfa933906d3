"""The lwIP target's agent (docs/agent.md), driven by the Python client against the real binary.

The target runs on a TAP in a namespace whose kernel is the tester: every connection the agent
opens, accepts, feeds or starves has a real Linux socket at the other end, created in that
namespace from this process (``in_netns``). What is asserted comes from the protocol document,
the RFCs and lwIP's documented defaults (``opt.h``), checked on the tester's side of the wire:
the bytes the tester reads, the CRC zlib computes, the errno the tester's socket gets, the
segments a packet socket sees on the TAP.
"""

from __future__ import annotations

import os
import random
import re
import select
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack.phy.netns import in_netns
from targets.agent.client import Agent, AgentError, pattern_bytes
from targets.lwip.build import PACKAGE_VERSION, Build, ensure_built
from tests.integration.conftest import Netns, need_build_tools

pytestmark = [pytest.mark.slow, pytest.mark.root]

MAC = "02:00:00:00:00:03"
V4 = "10.77.0.3"
V6 = "2001:db8:77::3"
COMMANDS = {
    "hello", "help", "info", "listen", "accept", "connect", "send", "recv", "shutdown",
    "close", "abort", "status", "setopt", "counters", "mark", "reset",
}  # fmt: skip


@pytest.fixture(scope="session")
def lwip_keepalive() -> Build:
    """keepidle/keepintvl/keepcnt exist only with LWIP_TCP_KEEPALIVE=1 (opt.h default 0)."""
    need_build_tools()
    return ensure_built({"LWIP_TCP_KEEPALIVE": 1})


@dataclass
class Target:
    proc: subprocess.Popen[bytes]
    agent: Agent
    ready_line: str
    ns: Netns

    def sock(self, family: int = socket.AF_INET) -> socket.socket:
        """A tester-side TCP socket: it lives in the tester's namespace."""
        with in_netns(self.ns.name):
            return socket.socket(family, socket.SOCK_STREAM)

    def connect(self, port: int, addr: str = V4) -> socket.socket:
        s = self.sock(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        s.settimeout(10)
        s.connect((addr, port))
        return s

    def listener(self, port: int, family: int = socket.AF_INET) -> socket.socket:
        s = self.sock(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.ns.v4 if family == socket.AF_INET else self.ns.v6, port))
        s.listen(4)
        s.settimeout(10)
        return s

    def accepted(self, port: int, addr: str = V4) -> tuple[socket.socket, int]:
        """Listen on the agent, connect from the tester, accept on the agent."""
        sid = self.agent.listen(port)
        s = self.connect(port, addr)
        cid, peer, pport = self.agent.accept(sid, 3000)
        assert (peer, pport) == s.getsockname()[:2]
        return s, cid

    def raw(self, data: bytes, timeout_s: float = 5.0) -> str:
        """Write bytes the client refuses to send (over-long, non-ASCII); return the reply
        (console lines before it, e.g. ``# mark``, are skipped as the client skips them)."""
        os.write(self.agent.wfd, data)
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.agent._readline(deadline, repr(data[:30]))
            if line.split(" ")[0] in ("ok", "err"):
                return line


@pytest.fixture
def start(netns: Netns) -> Iterator[Callable[..., Target]]:
    procs: list[subprocess.Popen[bytes]] = []

    def _start(binary: Path, *extra: str) -> Target:
        argv = ["ip", "netns", "exec", netns.name, str(binary), "--tap", netns.tap]
        argv += ["--mac", MAC, "--ipv4", f"{V4}/24", "--ipv6", f"{V6}/64", "--no-dad"]
        proc = subprocess.Popen(
            [*argv, "--agent", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdin is not None
        agent = Agent(proc.stdout.fileno(), proc.stdin.fileno())
        agent.hello()  # the ready line comes first: the loop prints it before reading stdin
        ready = [line for line in agent.console if line.startswith("ready:")]
        assert ready, list(agent.console)
        return Target(proc, agent, ready[0], netns)

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
    for proc in procs:
        # An lwIP assertion aborts the process (SIGABRT); a clean run ends on our SIGTERM.
        assert proc.returncode == 0, f"target exited with {proc.returncode}"


def _code(a: Agent, line: str) -> str:
    """The error code the agent answers ``line`` with (``ok`` fails the test)."""
    return _err(lambda: a.command(line)).code


def _err(fn: Callable[[], object]) -> AgentError:
    with pytest.raises(AgentError) as info:
        fn()
    return info.value


def _wait_state(a: Agent, cid: int, state: str, timeout_s: float = 5) -> dict[str, str]:
    """The status once the connection is in ``state`` (the tester's segments take a moment)."""
    deadline = time.monotonic() + timeout_s
    while (status := a.status(cid))["state"] != state and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["state"] == state, status
    return status


def _read_exactly(s: socket.socket, n: int, out: bytearray) -> None:
    while len(out) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        out.extend(chunk)


# ---- identification, errors, robustness ----


def test_hello_help_info_counters_mark(start: Callable[..., Target], lwip_default: Build) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    hello = a.hello()
    assert hello["agent"] == "tcp-hil/1" and hello["stack"] == "lwip"
    assert PACKAGE_VERSION.startswith(hello["version"])  # 2.1.3 from 2.1.3+dfsg1-2
    assert hello["build"] == lwip_default.directory.name  # the cache key is the build hash
    assert a.help() == COMMANDS
    info = a.info()
    # lwIP 2.1 opt.h defaults: MSS 536, window 4 * MSS, send buffer 2 * MSS, no window
    # scaling, timestamps, SACK or keep-alive tuning; 12 retransmissions, 6 for SYN.
    assert info["TCP_MSS"] == "536" and info["TCP_WND"] == str(4 * 536)
    assert info["TCP_SND_BUF"] == str(2 * 536) and info["TCP_SND_QUEUELEN"] == "8"
    for name, value in {
        "TCP_QUEUE_OOSEQ": "1", "LWIP_WND_SCALE": "0", "TCP_RCV_SCALE": "0",
        "LWIP_TCP_TIMESTAMPS": "0", "LWIP_TCP_KEEPALIVE": "0", "LWIP_TCP_SACK_OUT": "0",
        "TCP_MAXRTX": "12", "TCP_SYNMAXRTX": "6", "MEMP_NUM_TCP_PCB": "5", "TCP_TTL": "255",
        "IP_DEFAULT_TTL": "255", "TCP_TMR_INTERVAL": "250",
    }.items():  # fmt: skip
        assert info[name] == value, name
    assert info["build"] == hello["build"]
    counters = a.counters()
    assert counters["connections"] == 0 and counters["buffers"] == 0
    assert {"drops", "time_wait", "tcp_drop", "frames_in"} <= counters.keys()
    assert a.mark("probe 7 starts here") == "probe 7 starts here"
    assert any(line.endswith(" probe 7 starts here") for line in a.console if "# mark" in line)
    assert "agent tcp-hil/1" in t.ready_line and "services echo:7, discard:9, chargen:19" in (
        t.ready_line
    )


def test_errors_by_code(start: Callable[..., Target], lwip_default: Build) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    assert _code(a, "frobnicate 1 2") == "unknown"
    usage = [
        "listen", "listen 0", "listen 70000", "listen -1", "listen 5000 1 2", "listen x",
        "accept", "accept one", "connect 10.77.0.1", "connect nowhere 80",
        "connect 10.77.0.1 0", "send 1", "send x 10", "recv 1", "setopt 1 nodelay",
        "status", "close", "abort", "shutdown", "hello there", "a b c d e f g h i",
    ]  # fmt: skip
    for line in usage:
        assert _code(a, line) == "usage", line
    for line in ("status 9", "close 9", "abort 9", "send 9 10", "recv 9 1 10", "accept 9 10"):
        assert _code(a, line) == "nosock", line
    sid = a.listen(5100)
    assert _err(lambda: a.listen(5100)).code == "inuse"
    assert _err(lambda: a.listen(7)).code == "inuse"  # the echo service holds port 7
    # A SID is not a CID: connection commands refuse it, close accepts it.
    for line in (f"send {sid} 1", f"recv {sid} 1 10", f"abort {sid}", f"setopt {sid} read 0"):
        assert _code(a, line) == "nosock", line
    s, cid = t.accepted(5101)
    for line in (
        f"send {cid} 10 hex:4", f"send {cid} 10 hex:zz", f"send {cid} 10 hex:", f"send {cid} 1 x",
        f"send {cid} 10 seq 0", f"setopt {cid} nodelay 2", f"setopt {cid} colour 1",
        f"shutdown {cid} both", f"accept {cid}",
    ):  # fmt: skip
        code = _code(a, line)
        assert code == ("nosock" if line.startswith("accept") else "usage"), line
    # keepidle and friends need LWIP_TCP_KEEPALIVE, which opt.h leaves off.
    assert _err(lambda: a.setopt(cid, "keepidle", 1000)).code == "unsupported"
    a.setopt(cid, "keepalive", 1)
    a.shutdown(cid, "wr")
    assert _err(lambda: a.send(cid, 10)).code == "closed"
    a.close(sid)
    a.close(cid)
    s.close()
    assert _err(lambda: a.status(cid)).code == "nosock"  # close freed the CID


def test_framing_and_garbage_leave_the_agent_answering(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    # A line is at most 255 bytes with its newline: 254 is a command, 255 is too long.
    assert t.raw(b"mark " + b"x" * 249 + b"\n") == "ok " + "x" * 249
    assert t.raw(b"mark " + b"x" * 250 + b"\n") == "err usage line too long"
    assert t.raw(b"hello" + b" " * 2000 + b"\nmark after\n") == "err usage line too long"
    assert t.raw(b"") == "ok after"  # the line after the long one is a command again
    assert t.raw(b"\n\r\n   \nmark crlf\r\n") == "ok crlf"  # empty lines get no reply
    rng = random.Random(2024)
    for _ in range(300):
        line = bytes(
            rng.choice([b for b in range(256) if b != 10]) for _ in range(rng.randint(1, 80))
        )
        words = [w for w in re.split(rb"[ \t]+", line.rstrip(b"\r")) if w]
        if not words or words[0].decode("latin-1") in COMMANDS:
            continue
        assert t.raw(line + b"\n").startswith("err unknown "), line
    # Real commands with garbage arguments: every one gets exactly one reply.
    for _ in range(300):
        cmd = rng.choice(["listen", "status", "setopt", "shutdown", "close", "abort", "send"])
        args = bytes(rng.choice(b"0123456789 x:-\x00\xff") for _ in range(rng.randint(0, 30)))
        reply = t.raw(cmd.encode() + b" " + args + b"\n")
        assert reply.split(" ")[0] in ("ok", "err"), (cmd, args, reply)
    a.reset()
    assert a.hello()["stack"] == "lwip"
    assert t.proc.poll() is None


# ---- data: accept, connect, send, recv ----


@pytest.mark.parametrize("addr", [V4, V6])
def test_accept_then_recv_crc_and_send_1mb_seq(
    start: Callable[..., Target], lwip_default: Build, addr: str
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    s, cid = t.accepted(5000, addr)
    payload = random.Random(7).randbytes(200_000)
    s.sendall(payload)
    got = a.recv(cid, len(payload), 10_000)
    assert got.total == len(payload) and not got.eof
    assert got.crc32 == zlib.crc32(payload)
    # A running CRC over everything consumed: a second batch extends the first.
    s.sendall(b"tail")
    got = a.recv(cid, len(payload) + 4, 5000)
    assert got.crc32 == zlib.crc32(payload + b"tail") and got.total == len(payload) + 4

    n = 1_000_000
    received = bytearray()
    reader = threading.Thread(target=_read_exactly, args=(s, n, received))
    reader.start()
    assert a.send(cid, n, timeout_s=60) == n
    reader.join(60)
    assert bytes(received) == pattern_bytes("seq", 0, n)
    status = a.status(cid)
    assert status["state"] == "ESTABLISHED" and status["sent"] == str(n)
    assert status["received"] == str(len(payload) + 4) and status["error"] == "none"
    s.close()
    assert a.recv(cid, 10**9, 5000).eof  # the tester's FIN ends a recv early
    assert a.status(cid)["state"] == "CLOSE-WAIT"
    a.close(cid)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_connect_out_patterns_continue_and_shutdown(
    start: Callable[..., Target], lwip_default: Build, family: int
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    ls = t.listener(6000, family)
    server = t.ns.v4 if family == socket.AF_INET else t.ns.v6
    cid, laddr, lport = a.connect(server, 6000)
    s, peer = ls.accept()
    assert peer[:2] == (laddr, lport) and laddr == (V4 if family == socket.AF_INET else V6)
    assert a.status(cid)["state"] == "ESTABLISHED"
    # The pattern offset counts every byte sent on the connection, whatever the pattern.
    sends = [(100, "seq"), (100, "seq"), (2, "hex:414243"), (4, "hex:414243"), (5, "zero")]
    expected = b""
    offset = 0
    for n, pattern in sends:
        assert a.send(cid, n, pattern) == n
        expected += pattern_bytes(pattern, offset, n)
        offset += n
    assert expected[200:206] == b"CABCAB"  # hex:414243 starts at offset 200, i.e. at 200 % 3
    a.shutdown(cid, "wr")
    got = bytearray()
    s.settimeout(5)
    _read_exactly(s, len(expected) + 1, got)  # stops at the agent's FIN
    assert bytes(got) == expected
    _wait_state(a, cid, "FIN-WAIT-2")  # once the tester's ACK of the FIN is in
    s.sendall(b"bye")
    s.close()
    r = a.recv(cid, 3, 5000)
    assert (r.total, r.crc32, r.eof) == (3, zlib.crc32(b"bye"), True)
    # Both FINs exchanged, ours first: lwIP holds the pcb in TIME-WAIT.
    assert a.status(cid) == {
        "state": "TIME-WAIT", "sent": str(offset), "received": "3", "eof": "1",
        "error": "none", "held": "0",
    }  # fmt: skip
    a.close(cid)
    ls.close()


def test_chunked_send_nodelay_makes_one_segment_per_chunk(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    with in_netns(t.ns.name):
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.bind((t.ns.tap, 0))
    try:
        s, cid = t.accepted(5200)
        lport = s.getpeername()[1]

        def segments() -> list[int]:
            """Payload sizes of the agent's segments captured so far."""
            sizes = []
            while select.select([cap], [], [], 0.3)[0]:
                frame = cap.recv(4096)
                ip = frame[14:]
                if ip[9] != 6 or socket.inet_ntoa(ip[12:16]) != V4:
                    continue
                tcp = ip[(ip[0] & 15) * 4 :]
                if struct.unpack_from("!H", tcp, 0)[0] != lport:
                    continue
                total = struct.unpack_from("!H", ip, 2)[0]
                size = total - (ip[0] & 15) * 4 - (tcp[12] >> 4) * 4
                if size:
                    sizes.append(size)
            return sizes

        segments()  # the handshake
        a.setopt(cid, "nodelay", 1)
        assert a.send(cid, 20, "hex:41", 1) == 20
        got = bytearray()
        _read_exactly(s, 20, got)
        assert bytes(got) == b"A" * 20
        assert segments() == [1] * 20  # RFC 9293 3.7.4: no Nagle, every write goes out
        # With Nagle, the writes after the first wait behind the unacknowledged byte.
        a.setopt(cid, "nodelay", 0)
        assert a.send(cid, 20, "hex:42", 1) == 20
        got.clear()
        _read_exactly(s, 20, got)
        assert bytes(got) == b"B" * 20
        with_nagle = segments()
        assert sum(with_nagle) == 20 and len(with_nagle) < 10, with_nagle
        a.close(cid)
        s.close()
    finally:
        cap.close()


def test_read_0_closes_the_window_and_read_1_reopens_it(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    window = int(a.info()["TCP_WND"])
    s, cid = t.accepted(5300)
    a.setopt(cid, "read", 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    s.setblocking(False)
    data = random.Random(3).randbytes(200_000)
    sent = 0
    stalled_since = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sent += s.send(data[sent : sent + 1024])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.02)
    assert stalled_since is not None, "the tester never blocked: the window did not close"
    assert sent < 100_000
    status = a.status(cid)
    # Nothing consumed; lwIP's whole receive window sits in the held pbufs.
    assert status["received"] == "0" and status["held"] == str(window), status
    assert a.counters()["buffers"] > 0
    assert _err(lambda: a.recv(cid, 1, 300)).code == "timeout"
    a.setopt(cid, "read", 1)
    s.setblocking(True)
    s.sendall(data[sent:])
    got = a.recv(cid, len(data), 20_000)
    assert got.total == len(data) and got.crc32 == zlib.crc32(data)
    assert a.counters()["buffers"] == 0
    a.close(cid)
    s.close()


# ---- ends of connections ----


def test_abort_resets_the_tester_and_peer_reset_is_reported(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    s, cid = t.accepted(5400)
    assert a.counters()["connections"] == 1
    a.abort(cid)
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    assert _err(lambda: a.status(cid)).code == "nosock"
    assert a.counters()["connections"] == 0

    # The tester resets (SO_LINGER 0): lwIP frees the pcb, the CID stays until close.
    sid = a.listen(5401)
    s = t.connect(5401)
    cid, _, _ = a.accept(sid)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    assert _err(lambda: a.recv(cid, 1, 3000)).code == "reset"
    assert a.status(cid) == {
        "state": "CLOSED", "sent": "0", "received": "0", "eof": "0", "error": "reset",
        "held": "0",
    }  # fmt: skip
    assert _err(lambda: a.send(cid, 1)).code == "reset"
    a.close(cid)

    # After `shutdown rd`, data that still arrives is answered with RST (lwIP, like Linux).
    sid = a.listen(5403)
    s = t.connect(5403)
    cid, _, _ = a.accept(sid)
    a.shutdown(cid, "rd")
    s.sendall(b"late")
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    assert _wait_state(a, cid, "CLOSED")["error"] == "reset"
    a.close(cid)
    s.close()

    # A reset while a send waits for room ends the send with what the stack took.
    sid = a.listen(5402)
    s = t.connect(5402)
    cid, _, _ = a.accept(sid)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    threading.Timer(0.5, s.close).start()
    e = _err(lambda: a.send(cid, 10_000_000, timeout_s=10))
    assert e.code == "reset" and e.text.startswith("sent="), e
    assert 0 < int(e.text[5:]) < 10_000_000
    a.close(cid)


def test_passive_close_states_and_close_sid(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    sid = a.listen(5500)
    s = t.connect(5500)
    cid, _, _ = a.accept(sid)
    s.shutdown(socket.SHUT_WR)
    r = a.recv(cid, 1, 3000)
    assert r.eof and r.total == 0
    assert a.status(cid)["state"] == "CLOSE-WAIT"
    a.shutdown(cid)  # FIN; the tester's ACK ends the connection (LAST-ACK -> CLOSED)
    assert s.recv(10) == b""
    status = _wait_state(a, cid, "CLOSED")
    assert status["state"] == "CLOSED" and status["error"] == "none" and status["eof"] == "1"
    a.close(cid)
    s.close()
    a.close(sid)  # no listener: later connections are refused
    with pytest.raises(ConnectionRefusedError):
        t.connect(5500)


def test_refused_unreachable_and_timeouts(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    a = t.agent
    assert _err(lambda: a.connect(t.ns.v4, 6100)).code == "refused"  # RST answers the SYN
    assert _err(lambda: a.connect(t.ns.v6, 6100)).code == "refused"
    # lwIP 2.1 sends to any address through its default netif (ip4_route/ip6_route), so it
    # never says "no route": an off-link address without a gateway is a SYN that never leaves.
    assert _err(lambda: a.connect("192.0.2.1", 80, 300)).code == "timeout"
    began = time.monotonic()
    assert _err(lambda: a.connect("10.77.0.99", 80, 600)).code == "timeout"  # nobody ARPs
    assert 0.5 < time.monotonic() - began < 3
    sid = a.listen(6101)
    began = time.monotonic()
    assert _err(lambda: a.accept(sid, 400)).code == "timeout"
    assert 0.35 < time.monotonic() - began < 2
    s = t.connect(6101)
    cid, _, _ = a.accept(sid, 0)  # already queued: TIMEOUT_MS 0 still finds it
    e = _err(lambda: a.recv(cid, 5, 300))
    assert e.code == "timeout" and e.text == "total=0"
    s.sendall(b"abc")
    e = _err(lambda: a.recv(cid, 5, 300))
    assert e.code == "timeout" and e.text == "total=3"
    assert a.counters()["connections"] == 1
    a.reset()
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    assert a.counters()["connections"] == 0


def test_keepalive_drops_a_silent_peer(start: Callable[..., Target], lwip_keepalive: Build) -> None:
    t = start(lwip_keepalive.binary)
    a = t.agent
    assert a.info()["LWIP_TCP_KEEPALIVE"] == "1"
    s, cid = t.accepted(5600)
    a.setopt(cid, "keepalive", 1)
    a.setopt(cid, "keepidle", 500)
    a.setopt(cid, "keepintvl", 200)
    a.setopt(cid, "keepcnt", 2)
    assert _err(lambda: a.setopt(cid, "keepcnt", 0)).code == "usage"
    # The tester goes silent: its side of the TAP is down, so the probes get no answer.
    t.ns.run("ip", "link", "set", t.ns.tap, "down")
    assert _wait_state(a, cid, "CLOSED", 8)["error"] == "timeout"
    s.close()


def test_send_to_a_peer_that_stops_reading_times_out(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    """`send` has no TIMEOUT_MS; the agent gives up after 20 s in which the stack took nothing,
    so a stuck peer cannot wedge the agent (its stdin is not read while a command is pending)."""
    t = start(lwip_default.binary)
    a = t.agent
    sid = a.listen(5700)
    s = t.sock()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((V4, 5700))
    cid, _, _ = a.accept(sid)
    began = time.monotonic()
    e = _err(lambda: a.send(cid, 5_000_000, timeout_s=40))
    assert e.code == "timeout" and e.text.startswith("sent="), e
    assert 20 <= time.monotonic() - began < 30
    sent = int(e.text[5:])
    assert 0 < sent < 5_000_000
    assert a.status(cid)["sent"] == str(sent)
    got = bytearray()
    _read_exactly(s, sent, got)
    assert bytes(got) == pattern_bytes("seq", 0, sent)
    assert a.send(cid, 1000) == 1000  # the stream goes on where it stopped
    _read_exactly(s, sent + 1000, got)
    assert bytes(got) == pattern_bytes("seq", 0, sent + 1000)
    a.close(cid)
    s.close()


# ---- the services and the console ----


def test_service_ports_move_or_turn_off(start: Callable[..., Target], lwip_default: Build) -> None:
    t = start(
        lwip_default.binary, "--echo", "7007", "--discard", "0", "--chargen", "1919",
        "--chargen-bytes", "1000",
    )  # fmt: skip
    assert "services echo:7007, chargen:1919:1000;" in t.ready_line
    s = t.connect(7007)
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
    s.close()
    for port in (7, 9):
        with pytest.raises(ConnectionRefusedError):
            t.connect(port)
    s = t.connect(1919)
    got = bytearray()
    _read_exactly(s, 2000, got)
    assert len(got) == 1000 and got.startswith(b' !"#')
    s.close()
    sid = t.agent.listen(9)  # port 9 is free now
    t.agent.close(sid)


def test_stdin_eof_keeps_the_target_serving(
    start: Callable[..., Target], lwip_default: Build
) -> None:
    t = start(lwip_default.binary)
    assert t.proc.stdin is not None
    t.proc.stdin.close()
    time.sleep(0.3)
    assert t.proc.poll() is None
    s = t.connect(7)
    s.sendall(b"still here")
    assert s.recv(100) == b"still here"
    s.close()
