"""The agent conformance suite: every command of docs/agent.md against a running agent.

Anyone who implements the agent (a firmware author, a new target driver) runs this to know the
harness can rely on it. Each check drives the agent through :class:`~targets.agent.client.Agent`
and verifies the effect on the network from the *tester's* side with plain kernel sockets: bytes
sent by the agent are compared byte for byte with the pattern, the CRC the agent reports is
compared with what the tester sent, a ``close`` must show up as EOF and an ``abort`` as a reset
at the tester, ``setopt read 0`` must make the tester's writes stall. Replies are checked for
form as well (codes, keys), since the harness parses them.

:func:`run` needs only an :class:`Agent` and a :class:`Tester` (how to make a socket on the
tester's side, and the addresses of both ends per family), so it works for any target the
tester can reach: a program in a namespace, the lab's targets, a board on a NIC. The CLI::

    python -m targets.agent.conformance --netns TESTER_NS --tester-ipv4 A --target-ipv4 B \\
        [--tester-ipv6 A6 --target-ipv6 B6] [--target-netns NS] -- ARGV...

starts the agent program ``ARGV`` (inside ``--target-netns`` if given), waits for its
``ready:`` line, runs the suite and prints a PASS/FAIL table; the exit status is 1 if any
check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stack.phy.netns import in_netns
from targets.agent.client import Agent, AgentError, pattern_bytes
from targets.agent.server import COMMANDS

__all__ = ["REQUIRED_COMMANDS", "Check", "Tester", "main", "run"]

REQUIRED_COMMANDS = frozenset(COMMANDS)
STATES = frozenset(
    {
        "CLOSED",
        "LISTEN",
        "SYN-SENT",
        "SYN-RECEIVED",
        "ESTABLISHED",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "CLOSE-WAIT",
        "CLOSING",
        "LAST-ACK",
        "TIME-WAIT",
        "unknown",
    }
)
NO_HANDLE = 999_999  # far above any handle a session opens (handles count up)
WAIT_S = 5.0  # how long the tester waits for an effect on the network


@dataclass(frozen=True)
class Check:
    """One verdict: ``detail`` says what was expected and what was observed."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class Tester:
    """The tester's side: kernel sockets that reach the target, and both ends' addresses.

    ``make_socket(family, type)`` returns a socket on the tester's side (e.g. created in the
    tester's namespace). A family is tested when both its addresses are given.
    """

    make_socket: Callable[[int, int], socket.socket]
    tester_ipv4: str | None = None
    target_ipv4: str | None = None
    tester_ipv6: str | None = None
    target_ipv6: str | None = None

    __test__ = False  # not a pytest class

    @classmethod
    def in_netns(cls, netns: str | None, **addrs: str | None) -> Tester:
        """Sockets made inside the named network namespace (None: this process's own)."""

        def make(family: int, kind: int) -> socket.socket:
            with in_netns(netns):
                return socket.socket(family, kind)

        return cls(make, **addrs)

    def families(self) -> list[tuple[str, int, str, str]]:
        """(label, address family, tester address, target address) of every usable family."""
        out: list[tuple[str, int, str, str]] = []
        for label, af, mine, theirs in (
            ("IPv4", socket.AF_INET, self.tester_ipv4, self.target_ipv4),
            ("IPv6", socket.AF_INET6, self.tester_ipv6, self.target_ipv6),
        ):
            if mine and theirs:
                out.append((label, af, _bare(mine), _bare(theirs)))
        return out


def _bare(addr: str) -> str:
    """An address without a /prefix, normalised (so replies compare as strings)."""
    return str(ipaddress.ip_interface(addr).ip)


class Fail(Exception):
    """A check's expectation was not met; the message is the check's detail."""


def expect(cond: bool, expected: str, observed: object) -> None:
    if not cond:
        raise Fail(f"expected {expected}; observed {observed}")


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


class _Reader(threading.Thread):
    """Reads a tester socket in the background (so a large agent ``send`` cannot deadlock on
    a tester that is not reading) until ``n`` bytes, EOF, an error or the timeout."""

    def __init__(self, sock: socket.socket, n: int, timeout_s: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.n = n
        self.timeout_s = timeout_s
        self.data = bytearray()
        self.eof = False
        self.error: str | None = None
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        self.sock.setblocking(True)
        try:
            while len(self.data) < self.n:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = "timeout"
                    return
                self.sock.settimeout(min(left, 1.0))
                try:
                    chunk = self.sock.recv(min(self.n - len(self.data), 1 << 18))
                except TimeoutError:
                    continue
                if not chunk:
                    self.eof = True
                    return
                self.data += chunk
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def result(self) -> bytes:
        self.join(self.timeout_s + 2)
        return bytes(self.data)


def _first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at byte {i}: expected {y:#04x}, got {x:#04x}"
    return f"length {len(a)} instead of {len(b)}"


class _Suite:
    def __init__(self, agent: Agent, tester: Tester, port_base: int) -> None:
        self.agent = agent
        self.tester = tester
        self.port = port_base
        self.checks: list[Check] = []
        self.sockets: list[socket.socket] = []

    # -- plumbing --------------------------------------------------------------------------

    def check(self, name: str, body: Callable[[], str]) -> None:
        try:
            detail = body()
            passed = True
        except Fail as exc:
            passed, detail = False, str(exc)
        except AgentError as exc:
            passed, detail = False, f"agent: {exc.command!r} -> {exc.code} {exc.text}".strip()
        except Exception as exc:
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.close()
            self.sockets.clear()
        self.checks.append(Check(name, passed, detail))
        # every check starts from a clean agent; a broken reset shows in its own check
        with contextlib.suppress(AgentError):
            self.agent.reset()

    def next_port(self) -> int:
        self.port += 1
        return self.port

    def sock(self, af: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        s = self.tester.make_socket(af, kind)
        self.sockets.append(s)
        return s

    def err(self, line: str, code: str, timeout_s: float | None = None) -> str:
        """Run ``line``; it must fail with ``code``. Returns the reply's text."""
        try:
            words = self.agent.command(line, timeout_s)
        except AgentError as exc:
            expect(exc.code == code, f"{line!r} -> err {code}", f"err {exc.code} {exc.text}")
            return exc.text
        raise Fail(f"expected {line!r} -> err {code}; observed ok {' '.join(words)}")

    def pair(self, af: int, target: str, sndbuf: int | None = None) -> tuple[int, socket.socket]:
        """An agent-accepted connection from a tester socket: (cid, tester socket)."""
        port = self.next_port()
        sid = self.agent.listen(port)
        t = self.sock(af)
        if sndbuf is not None:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        t.setblocking(False)
        t.connect_ex((target, port))
        cid, addr, cport = self.agent.accept(sid, 5000)
        _wait_connected(t)
        mine = t.getsockname()
        expect(
            _same_ip(addr, mine[0]) and cport == mine[1],
            f"accept to report the tester's {mine[0]} {mine[1]}",
            f"{addr} {cport}",
        )
        t.setblocking(True)
        t.settimeout(WAIT_S)
        return cid, t

    # -- protocol-level checks -------------------------------------------------------------

    def protocol(self) -> None:
        a = self.agent

        def hello() -> str:
            info = a.hello()  # raises on another major version
            expect("stack" in info and "version" in info, "stack= and version=", info)
            return " ".join(f"{k}={v}" for k, v in info.items())

        def help_() -> str:
            have = a.help()
            missing = REQUIRED_COMMANDS - have
            expect(not missing, "every command of the spec", f"missing {sorted(missing)}")
            return " ".join(sorted(have))

        def info() -> str:
            words = a.command("info")
            bad = [w for w in words if "=" not in w]
            expect(not bad, "only key=value words", bad)
            return f"{len(words)} keys"

        def unknown() -> str:
            self.err("frobnicate 1 2", "unknown")
            return "frobnicate -> err unknown"

        def usage() -> str:
            lines = [
                "listen",
                "listen abc",
                "listen 70000",
                "accept",
                "accept abc",
                "connect",
                "connect 10.0.0.300 80",
                "connect not-an-address 80",
                "connect 10.0.0.1 abc",
                "send",
                "send 1",
                "recv",
                "recv 1",
                "status",
                "setopt 1 nodelay",
                "close",
                "abort",
            ]
            for line in lines:
                self.err(line, "usage")
            return f"{len(lines)} malformed commands -> err usage"

        def nosock() -> str:
            h = NO_HANDLE
            lines = [
                f"status {h}",
                f"close {h}",
                f"abort {h}",
                f"send {h} 1",
                f"recv {h} 1 100",
                f"accept {h} 100",
                f"shutdown {h}",
                f"setopt {h} nodelay 1",
            ]
            for line in lines:
                self.err(line, "nosock")
            return f"{len(lines)} commands on handle {h} -> err nosock"

        def framing() -> str:
            a.write_raw(b"\n")  # an empty line gets no reply ...
            got = a.mark("after-empty")  # ... so this reply is the mark's
            expect(got == "after-empty", "no reply to an empty line", f"mark -> {got!r}")
            words = a.command("mark crlf\r")
            expect(words == ["crlf"], "CR before LF ignored", words)
            return "empty line ignored, CRLF accepted"

        def mark() -> str:
            got = a.mark("conformance 42 x=y")
            expect(got == "conformance 42 x=y", "the text echoed", got)
            return got

        def counters() -> str:
            words = a.command("counters")
            kv = dict(w.split("=", 1) for w in words if "=" in w)
            for key in ("connections", "buffers", "drops"):
                expect(kv.get(key, "").isdigit(), f"{key}=N", kv.get(key))
            return " ".join(words[:3])

        self.check("hello", hello)
        self.check("help lists the required commands", help_)
        self.check("info", info)
        self.check("err unknown", unknown)
        self.check("err usage", usage)
        self.check("err nosock", nosock)
        self.check("framing: empty line, CRLF", framing)
        self.check("mark", mark)
        self.check("counters", counters)

    # -- per-family checks -----------------------------------------------------------------

    def family(self, label: str, af: int, tester_ip: str, target_ip: str) -> None:
        a = self.agent

        def listen_accept() -> str:
            cid, t = self.pair(af, target_ip)
            st = a.status(cid)
            expect(st.get("state") in ("ESTABLISHED", "unknown"), "state=ESTABLISHED", st)
            return f"accepted cid {cid} from {t.getsockname()[0]}"

        def inuse() -> str:
            port = self.next_port()
            a.listen(port)
            self.err(f"listen {port}", "inuse")
            return f"second listen {port} -> err inuse"

        def connect() -> str:
            lst = self.sock(af)
            lst.bind((tester_ip, 0))
            lst.listen(4)
            port = lst.getsockname()[1]
            cid, laddr, lport = a.connect(tester_ip, port, 5000)
            lst.settimeout(WAIT_S)
            peer, addr = lst.accept()
            self.sockets.append(peer)
            expect(
                _same_ip(laddr, addr[0]) and lport == addr[1],
                f"connect to report the local end the tester sees ({addr[0]} {addr[1]})",
                f"{laddr} {lport}",
            )
            expect(_same_ip(laddr, target_ip), f"local address {target_ip}", laddr)
            return f"cid {cid} from {laddr} {lport}"

        def send_seq() -> str:
            cid, t = self.pair(af, target_ip)
            n = 200_000
            reader = _Reader(t, n)
            got_n = a.send(cid, n)
            data = reader.result()
            expect(got_n == n, f"ok {n}", got_n)
            want = pattern_bytes("seq", 0, n)
            expect(data == want, f"{n} bytes of seq", _first_difference(data, want))
            return f"{n} bytes byte-exact"

        def send_offsets() -> str:
            cid, t = self.pair(af, target_ip)
            plan = [(1000, "seq", None), (777, "seq", 100), (37, "hex:a55a01", 8), (10, "zero", 1)]
            total = sum(n for n, _, _ in plan)
            reader = _Reader(t, total)
            want = b""
            for n, pattern, chunk in plan:
                expect(a.send(cid, n, pattern, chunk) == n, f"ok {n}", "another count")
                want += pattern_bytes(pattern, len(want), n)
            data = reader.result()
            expect(data == want, "patterns at the stream offset", _first_difference(data, want))
            return "seq continues across sends; CHUNK and hex:/zero patterns byte-exact"

        def recv_crc() -> str:
            cid, t = self.pair(af, target_ip)
            data = os.urandom(50_000)
            t.sendall(data)
            got = a.recv(cid, len(data), 5000)
            want = zlib.crc32(data)
            expect(got.total == len(data), f"total={len(data)}", got.total)
            expect(got.crc32 == want, f"crc32={want:08x}", f"{got.crc32:08x}")
            expect(not got.eof, "eof=0", "eof=1")
            st = a.status(cid)
            expect(st.get("received") == str(len(data)), f"received={len(data)}", st)
            return f"total={got.total} crc32={got.crc32:08x}"

        def peer_fin() -> str:
            cid, t = self.pair(af, target_ip)
            t.sendall(b"last words")
            t.shutdown(socket.SHUT_WR)
            got = a.recv(cid, 1_000_000, 5000)
            expect(got.eof and got.total == 10, "total=10 eof=1", got)
            st = a.status(cid)
            expect(st.get("eof") == "1", "status eof=1", st)
            expect(st.get("state") in ("CLOSE-WAIT", "unknown"), "state=CLOSE-WAIT", st)
            return "recv returns at the FIN with eof=1; CLOSE-WAIT"

        def shutdown_wr() -> str:
            cid, t = self.pair(af, target_ip)
            a.shutdown(cid)
            expect(t.recv(10) == b"", "EOF at the tester", "data")
            t.sendall(b"half-open")
            got = a.recv(cid, 9, 5000)
            expect(got.total == 9, "the agent still receives (total=9)", got)
            self.err(f"send {cid} 1", "closed")
            return "tester saw FIN; half-close receives; send -> err closed"

        def close() -> str:
            cid, t = self.pair(af, target_ip)
            a.close(cid)
            expect(t.recv(10) == b"", "EOF at the tester", "data")
            self.err(f"status {cid}", "nosock")
            return "tester saw FIN; the cid is gone"

        def abort() -> str:
            cid, t = self.pair(af, target_ip)
            a.abort(cid)
            try:
                got = t.recv(10)
            except ConnectionResetError:
                self.err(f"status {cid}", "nosock")
                return "tester saw ECONNRESET; the cid is gone"
            raise Fail(f"expected ECONNRESET at the tester; observed recv -> {got!r}")

        def peer_reset() -> str:
            cid, t = self.pair(af, target_ip)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.close()
            deadline = time.monotonic() + WAIT_S
            st = a.status(cid)
            while st.get("error") != "reset" and time.monotonic() < deadline:
                time.sleep(0.05)
                st = a.status(cid)
            expect(st.get("error") == "reset", "error=reset after the tester's RST", st)
            expect(st.get("state") in ("CLOSED", "unknown"), "state=CLOSED", st)
            self.err(f"send {cid} 1", "reset")
            return "status error=reset state=" + st.get("state", "?") + "; send -> err reset"

        def status_counts() -> str:
            cid, t = self.pair(af, target_ip)
            reader = _Reader(t, 1234)
            a.send(cid, 1234)
            reader.result()
            t.sendall(b"x" * 321)
            a.recv(cid, 321)
            st = a.status(cid)
            want = {"sent": "1234", "received": "321", "eof": "0", "error": "none"}
            for k, v in want.items():
                expect(st.get(k) == v, f"{k}={v}", st)
            expect(st.get("state") in STATES, "an RFC 9293 state name", st.get("state"))
            return " ".join(f"{k}={v}" for k, v in st.items())

        def options() -> str:
            cid, t = self.pair(af, target_ip)
            seen = []
            for name, value in (
                ("nodelay", 1),
                ("keepalive", 1),
                ("keepidle", 1000),
                ("keepintvl", 1000),
                ("keepcnt", 3),
                ("nodelay", 0),
                ("keepalive", 0),
            ):
                try:
                    a.setopt(cid, name, value)
                    seen.append(f"{name}={value}")
                except AgentError as exc:
                    expect(exc.code == "unsupported", f"ok or unsupported for {name}", exc.code)
                    seen.append(f"{name} unsupported")
            self.err(f"setopt {cid} nodelay x", "usage")
            if "nodelay=1" in seen:
                a.setopt(cid, "nodelay", 1)
            reader = _Reader(t, 10)
            a.send(cid, 10, "hex:41", 1)
            expect(reader.result() == b"A" * 10, "10 bytes 'A' written one by one", "other")
            return ", ".join(dict.fromkeys(seen))

        def read_window() -> str:
            cid, t = self.pair(af, target_ip, sndbuf=16384)
            a.setopt(cid, "read", 0)
            before = int(a.status(cid)["received"])
            t.setblocking(False)
            block = os.urandom(65536)
            sent = 0
            crc = 0
            deadline = time.monotonic() + 20
            while True:
                try:
                    n = t.send(block)
                    crc = zlib.crc32(block[:n], crc)
                    sent += n
                except BlockingIOError:
                    if not select.select([], [t], [], 1.0)[1]:
                        break  # no room for a second: the agent's window is shut
                expect(sent < 64 << 20, "the tester's writes to stall", f"{sent} bytes taken")
                expect(time.monotonic() < deadline, "a stall within 20 s", f"{sent} bytes")
            after = int(a.status(cid)["received"])
            expect(after == before, "no data consumed while read 0", f"received {after}")
            a.setopt(cid, "read", 1)
            ready = select.select([], [t], [], WAIT_S)[1]
            expect(bool(ready), "the window to reopen after read 1", "tester still blocked")
            t.setblocking(True)
            tail = b"end"
            t.sendall(tail)
            crc = zlib.crc32(tail, crc)
            sent += len(tail)
            got = a.recv(cid, sent, 10_000)
            expect(got.total == sent, f"total={sent}", got.total)
            expect(got.crc32 == crc, f"crc32={crc:08x}", f"{got.crc32:08x}")
            return f"stalled after {sent - len(tail)} bytes; all consumed after read 1"

        def refused() -> str:
            probe = self.sock(af)
            probe.bind((tester_ip, 0))
            port = probe.getsockname()[1]  # bound, never listening: the tester answers RST
            self.err(f"connect {tester_ip} {port} 3000", "refused", WAIT_S + 3)
            return f"connect to closed port {port} -> err refused"

        def timeouts() -> str:
            sid = a.listen(self.next_port())
            t0 = time.monotonic()
            self.err(f"accept {sid} 300", "timeout")
            took = time.monotonic() - t0
            expect(0.25 <= took < 3, "accept to time out after ~300 ms", f"{took:.2f} s")
            cid, _ = self.pair(af, target_ip)
            text = self.err(f"recv {cid} 1 300", "timeout")
            expect("total=0" in text.split(), "err timeout total=0", text)
            return f"accept timed out in {took:.2f} s; recv -> err timeout {text}"

        def reset() -> str:
            cid, t = self.pair(af, target_ip)
            port = self.next_port()
            sid = a.listen(port)
            a.reset()
            try:
                got = t.recv(10)
                raise Fail(f"expected ECONNRESET at the tester; observed recv -> {got!r}")
            except ConnectionResetError:
                pass
            self.err(f"status {cid}", "nosock")
            self.err(f"close {sid}", "nosock")
            probe = self.sock(af)
            probe.settimeout(WAIT_S)
            err = probe.connect_ex((target_ip, port))
            expect(err != 0, "the listener closed by reset", "connect succeeded")
            return "connections reset, listeners closed, handles freed"

        def close_listener() -> str:
            port = self.next_port()
            sid = a.listen(port)
            a.close(sid)
            probe = self.sock(af)
            probe.settimeout(WAIT_S)
            err = probe.connect_ex((target_ip, port))
            expect(err != 0, "connect refused after close SID", "connect succeeded")
            return f"close {sid} stopped listening ({os.strerror(err)})"

        for name, body in (
            ("listen + accept", listen_accept),
            ("listen on a used port -> err inuse", inuse),
            ("connect to a tester listener", connect),
            ("send seq byte-exact", send_seq),
            ("send: stream offset, patterns, CHUNK", send_offsets),
            ("recv: total and crc32", recv_crc),
            ("recv: peer FIN -> eof=1", peer_fin),
            ("shutdown wr -> tester EOF", shutdown_wr),
            ("close -> tester EOF", close),
            ("abort -> tester ECONNRESET", abort),
            ("peer RST -> status error=reset", peer_reset),
            ("status counts", status_counts),
            ("setopt nodelay/keepalive", options),
            ("setopt read 0 closes the window, read 1 reopens it", read_window),
            ("connect to a closed port -> err refused", refused),
            ("accept/recv -> err timeout", timeouts),
            ("reset", reset),
            ("close SID", close_listener),
        ):
            self.check(f"[{label}] {name}", body)


def _wait_connected(s: socket.socket, timeout_s: float = WAIT_S) -> None:
    _, w, _ = select.select([], [s], [], timeout_s)
    expect(bool(w), "the tester's connect to complete", "still connecting")
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    expect(err == 0, "the tester's connect to succeed", os.strerror(err))


def run(agent: Agent, tester: Tester, port_base: int = 5100) -> list[Check]:
    """Run every check; agent listeners use ports above ``port_base``."""
    suite = _Suite(agent, tester, port_base)
    suite.protocol()
    for label, af, mine, theirs in tester.families():
        suite.family(label, af, mine, theirs)
    return suite.checks


def table(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(not c.passed for c in checks)
    lines.append(f"{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)


@contextlib.contextmanager
def started(
    argv: list[str], target_netns: str | None = None, ready: str | None = r"^ready:"
) -> Iterator[Agent]:
    """Start an agent program and yield its client; stop it afterwards."""
    from targets.base import Placement, ProcessDriver

    with tempfile.TemporaryDirectory(prefix="hil-conformance-") as tmp:
        driver = ProcessDriver(
            Placement(target_netns, "", Path(tmp)), argv=argv, ready=ready, with_agent=True
        )
        driver.start()
        try:
            agent = driver.agent()
            assert agent is not None
            yield agent
        finally:
            driver.stop()


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    program: list[str] = []
    if "--" in args_in:
        i = args_in.index("--")
        args_in, program = args_in[:i], args_in[i + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m targets.agent.conformance",
        description="Run the agent conformance suite against an agent program.",
        epilog="Everything after -- is the agent program's command line.",
    )
    parser.add_argument("--netns", help="the tester's network namespace (default: this one)")
    parser.add_argument("--target-netns", help="run the program inside this namespace")
    parser.add_argument("--tester-ipv4")
    parser.add_argument("--target-ipv4")
    parser.add_argument("--tester-ipv6")
    parser.add_argument("--target-ipv6")
    parser.add_argument("--port-base", type=int, default=5100)
    parser.add_argument("--ready", default=r"^ready:", help="regex of the program's ready line")
    args = parser.parse_args(args_in)
    if not program:
        parser.error("give the agent program after --, e.g. -- python -m targets.linux.agent")
    tester = Tester.in_netns(
        args.netns,
        tester_ipv4=args.tester_ipv4,
        target_ipv4=args.target_ipv4,
        tester_ipv6=args.tester_ipv6,
        target_ipv6=args.target_ipv6,
    )
    if not tester.families():
        parser.error("give --tester-ipv4/--target-ipv4 and/or --tester-ipv6/--target-ipv6")
    with started(program, args.target_netns, args.ready or None) as agent:
        checks = run(agent, tester, args.port_base)
    print(table(checks))
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
