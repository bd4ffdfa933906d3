"""The Python agents as real processes in real namespaces, checked by the conformance suite.

* ``linux``: ``python -m targets.linux.agent`` in a target namespace, joined by a veth pair to a
  tester namespace whose kernel sockets run the suite; plus its level-0 services (1 MB echo
  both families, discard, chargen, UDP echo), stdin EOF and SIGTERM.
* ``local``: ``hil stack serve --agent`` on a TAP whose other side is the tester namespace.
* A negative control: the Linux agent with two faults injected must fail exactly the checks
  that look at those behaviours, so a green suite means something.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stack.phy.netns import in_netns
from stack.services import CHARGEN
from targets.agent.conformance import Check, Tester, run, started, table
from tests.integration.conftest import REPO, _need_root, ns_name, sh

pytestmark = pytest.mark.root

PY = sys.executable
LINUX_AGENT = [PY, "-m", "targets.linux.agent"]


@dataclass
class Veth:
    tester: str
    target: str
    tester_v4: str = "10.99.0.1"
    target_v4: str = "10.99.0.2"
    tester_v6: str = "fd00:99::1"
    target_v6: str = "fd00:99::2"

    def tester_api(self) -> Tester:
        return Tester.in_netns(
            self.tester,
            tester_ipv4=self.tester_v4,
            target_ipv4=self.target_v4,
            tester_ipv6=self.tester_v6,
            target_ipv6=self.target_v6,
        )

    def sock(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        with in_netns(self.tester):
            return socket.socket(family, kind)


@pytest.fixture(scope="module")
def veth() -> Iterator[Veth]:
    _need_root()
    v = Veth(ns_name("tst"), ns_name("tgt"))
    made: list[str] = []
    try:
        for ns in (v.tester, v.target):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "hv0", "netns", v.tester, "type", "veth", "peer", "name", "hv1",
           "netns", v.target)  # fmt: skip
        for ns, dev, a4, a6 in (
            (v.tester, "hv0", v.tester_v4, v.tester_v6),
            (v.target, "hv1", v.target_v4, v.target_v6),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield v
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def assert_all_pass(checks: list[Check], families: int = 2) -> None:
    assert all(c.passed for c in checks), "\n" + table(checks)
    assert sum(c.name.startswith("[IPv6]") for c in checks) >= 15 * (families - 1)
    assert len(checks) >= 9 + 15 * families


# ----------------------------------------------------------------------------- linux


@pytest.fixture(scope="module")
def linux_agent(veth: Veth) -> Iterator[None]:
    """The Linux agent for the conformance and service checks (services on default ports)."""
    with started(LINUX_AGENT, veth.target):
        yield


def test_linux_agent_conformance(veth: Veth) -> None:
    with started([*LINUX_AGENT, "--services", "echo:1007"], veth.target) as agent:
        checks = run(agent, veth.tester_api())
    assert_all_pass(checks)


def _echo(veth: Veth, family: int, addr: str, data: bytes) -> tuple[bytes, float]:
    s = veth.sock(family)
    s.settimeout(10)
    s.connect((addr, 7))
    t0 = time.monotonic()

    def writer() -> None:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    th = threading.Thread(target=writer)
    th.start()
    got = bytearray()
    while chunk := s.recv(1 << 18):
        got += chunk
    took = time.monotonic() - t0
    th.join()
    s.close()
    return bytes(got), took


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_linux_services_tcp_echo_1mb(veth: Veth, linux_agent: None, family: str) -> None:
    af = socket.AF_INET if family == "v4" else socket.AF_INET6
    addr = veth.target_v4 if family == "v4" else veth.target_v6
    data = os.urandom(1_000_000)
    got, took = _echo(veth, af, addr, data)
    assert got == data
    assert took < 1.5, f"1 MB echo took {took:.2f} s"


def test_linux_services_discard_and_chargen(veth: Veth, linux_agent: None) -> None:
    s = veth.sock(socket.AF_INET6)
    s.settimeout(10)
    s.connect((veth.target_v6, 9))
    s.sendall(os.urandom(300_000))
    s.shutdown(socket.SHUT_WR)
    assert s.recv(100) == b""  # discard sends nothing and closes after our FIN
    s.close()

    c = veth.sock(socket.AF_INET)
    c.settimeout(10)
    c.connect((veth.target_v4, 19))
    got = bytearray()
    while len(got) < 100_000:
        chunk = c.recv(65536)
        assert chunk, "chargen closed early"
        got += chunk
    c.close()
    want = CHARGEN * (len(got) // len(CHARGEN) + 1)
    assert bytes(got) == want[: len(got)]


def test_linux_services_udp_echo(veth: Veth, linux_agent: None) -> None:
    for af, addr in ((socket.AF_INET, veth.target_v4), (socket.AF_INET6, veth.target_v6)):
        u = veth.sock(af, socket.SOCK_DGRAM)
        u.settimeout(3)
        for size in (1, 512, 1472, 8000):
            payload = os.urandom(size)
            u.sendto(payload, (addr, 7))
            data, src = u.recvfrom(65535)
            assert data == payload and src[1] == 7, (af, size)
        u.close()


def _popen(argv: list[str], netns: str | None = None) -> subprocess.Popen[bytes]:
    full = ["ip", "netns", "exec", netns, *argv] if netns else argv
    return subprocess.Popen(
        full, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _ready(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(b"ready:") or not line:
            break
    assert line.startswith(b"ready:"), line
    return line.decode()


def _agent_gone_services_stay(
    proc: subprocess.Popen[bytes], veth_or_ns: Veth | TapNs, addr: str, port: int
) -> None:
    """stdin EOF: the agent ends, the echo service still answers; SIGTERM ends cleanly."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"listen 6001\n")
    proc.stdin.flush()
    assert proc.stdout.readline().startswith(b"ok ")
    proc.stdin.close()
    time.sleep(0.3)
    assert proc.poll() is None, "stdin EOF ended the program"
    af = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = veth_or_ns.sock(af)
    s.settimeout(5)
    s.connect((addr, port))
    s.sendall(b"still here")
    assert s.recv(100) == b"still here"
    s.close()
    probe = veth_or_ns.sock(af)
    probe.settimeout(5)
    assert probe.connect_ex((addr, 6001)) != 0, "the agent's listener outlived its console"
    probe.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_linux_agent_stdin_eof_and_sigterm(veth: Veth) -> None:
    proc = _popen([*LINUX_AGENT, "--services", "echo:2007"], veth.target)
    try:
        assert "echo:2007" in _ready(proc)
        _agent_gone_services_stay(proc, veth, veth.target_v6, 2007)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def test_conformance_suite_catches_a_faulty_agent(veth: Veth) -> None:
    """Negative control: abort that closes gracefully, and patterns that forget the stream
    offset. Exactly the checks that look at these must fail."""
    faulty = (
        "import sys\n"
        "from targets.agent import server\n"
        "from targets.linux import agent as la\n"
        "la.LinuxConn.abort = la.LinuxConn.close\n"
        "take = server.Pattern.take\n"
        "server.Pattern.take = lambda self, offset, n: take(self, 0, n)\n"
        "sys.exit(la.main(['--services', 'echo:3007']))\n"
    )
    with started([PY, "-c", faulty], veth.target) as agent:
        checks = run(agent, veth.tester_api())
    failed = {c.name for c in checks if not c.passed}
    want = {
        f"[{fam}] {name}"
        for fam in ("IPv4", "IPv6")
        for name in ("send: stream offset, patterns, CHUNK", "abort -> tester ECONNRESET", "reset")
    }
    # partial writes at offsets that are not a multiple of 256 may expose the offset bug in
    # the plain seq check too, depending on how much the kernel takes per write
    maybe = {f"[{fam}] send seq byte-exact" for fam in ("IPv4", "IPv6")}
    assert want <= failed <= want | maybe, "\n" + table(checks)


# ----------------------------------------------------------------------------- local


@dataclass
class TapNs:
    name: str
    tap: str = "hiltap0"
    tester_v4: str = "10.77.0.1"
    target_v4: str = "10.77.0.2"
    tester_v6: str = "2001:db8:77::1"
    target_v6: str = "2001:db8:77::2"

    def sock(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        with in_netns(self.name):
            return socket.socket(family, kind)

    def serve_argv(self, *extra: str) -> list[str]:
        return [PY, "-m", "harness.cli", "stack", "serve", "--tap", self.tap, "--netns",
                self.name, "--ipv4", f"{self.target_v4}/24", "--ipv6", f"{self.target_v6}/64",
                "--no-dad", "--agent", *extra]  # fmt: skip


@pytest.fixture
def tapns() -> Iterator[TapNs]:
    _need_root()
    t = TapNs(ns_name("tap"))
    sh("ip", "netns", "add", t.name)
    try:
        n = t.name
        sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", n, "tuntap", "add", "dev", t.tap, "mode", "tap")
        sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{t.tap}.accept_dad=0")
        sh("ip", "-n", n, "addr", "add", f"{t.tester_v4}/24", "dev", t.tap)
        sh("ip", "-n", n, "addr", "add", f"{t.tester_v6}/64", "dev", t.tap, "nodad")
        sh("ip", "-n", n, "link", "set", t.tap, "up")
        yield t
    finally:
        sh("ip", "netns", "del", t.name, check=False)


def test_local_stack_agent_conformance(tapns: TapNs) -> None:
    tester = Tester.in_netns(
        tapns.name,
        tester_ipv4=tapns.tester_v4,
        target_ipv4=tapns.target_v4,
        tester_ipv6=tapns.tester_v6,
        target_ipv6=tapns.target_v6,
    )
    with started(tapns.serve_argv()) as agent:
        assert agent.hello()["stack"] == "local"
        checks = run(agent, tester)
    assert_all_pass(checks)


def test_local_stack_agent_stdin_eof_and_sigterm(tapns: TapNs) -> None:
    proc = _popen(tapns.serve_argv("--services", "echo:7"))
    try:
        assert "agent on stdin" in _ready(proc)
        _agent_gone_services_stay(proc, tapns, tapns.target_v4, 7)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
