"""The TCP services of ``hil stack serve`` (RFC 862/863/864), between two reference stacks over
an in-memory pipe in virtual time."""

from __future__ import annotations

import ipaddress

import pytest

from stack.iface import Interface, InterfaceConfig
from stack.phy.loop import run_virtual
from stack.phy.pipe import PipePair
from stack.rand import Rng
from stack.services import CHARGEN, parse_services, start_services
from stack.tcp.layer import TcpLayer
from stack.tcp.socket import TcpSocket
from stack.time import SECOND, VirtualClock

SERVER = ipaddress.ip_address("10.9.0.2").packed


class Bench:
    def __init__(self, services: str) -> None:
        self.clock = VirtualClock()
        a, b = PipePair(self.clock, latency_us=500)
        self.client = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x0a", seed=1))
        self.server = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x0b", seed=2))
        self.client.add_ipv4(ipaddress.ip_address("10.9.0.1").packed, 24)
        self.server.add_ipv4(SERVER, 24)
        self.tcp = TcpLayer(self.client)
        start_services(self.server, parse_services(services))
        self.pairs = [(self.client, a), (self.server, b)]

    def run(self, seconds: int = 600) -> None:
        run_virtual(self.pairs, self.clock, seconds * SECOND)


def _collect(sock: TcpSocket, into: bytearray) -> None:
    def readable(s: TcpSocket) -> None:
        into.extend(s.recv())
        if s.eof:
            s.close()

    sock.on_readable = readable


def test_echo_returns_every_byte_and_closes_after_peer() -> None:
    bench = Bench("echo:7")
    data = Rng(5).bytes(300_000)
    got = bytearray()
    sock = bench.tcp.connect(0, SERVER, 7)
    _collect(sock, got)
    pos = 0

    def writable(s: TcpSocket) -> None:
        nonlocal pos
        if pos < len(data):
            pos += s.send(data[pos : pos + 32768])
            if pos == len(data):
                s.shutdown()

    sock.on_connected = sock.on_writable = writable
    bench.run()
    assert bytes(got) == data
    assert sock.state.value == "CLOSED" and sock.error is None


def test_discard_takes_everything_and_sends_nothing() -> None:
    bench = Bench("discard:9")
    got = bytearray()
    sock = bench.tcp.connect(0, SERVER, 9)
    _collect(sock, got)
    sock.send(b"x" * 100_000)
    sock.shutdown()
    bench.run()
    assert got == b""
    assert sock.stats["bytes_out"] >= 100_000 and sock.unacked == 0
    assert sock.state.value == "CLOSED"


@pytest.mark.parametrize("n", [1, 74, 7030, 250_001])
def test_chargen_sends_exactly_n_bytes_of_the_rfc864_pattern(n: int) -> None:
    bench = Bench(f"chargen:19:{n}")
    got = bytearray()
    sock = bench.tcp.connect(0, SERVER, 19)
    _collect(sock, got)
    bench.run()
    assert len(got) == n
    expected = (CHARGEN * (n // len(CHARGEN) + 1))[:n]
    assert bytes(got) == expected
    assert sock.state.value == "CLOSED"


def test_chargen_pattern_is_rfc864() -> None:
    lines = CHARGEN.split(b"\r\n")[:-1]
    assert len(lines) == 95 and all(len(line) == 72 for line in lines)
    assert lines[0].startswith(b' !"#$%&') and lines[1].startswith(b'!"#$%&')
    assert lines[94][0:1] == b"~" and lines[94][1:2] == b" "


def test_closed_port_is_reset() -> None:
    bench = Bench("echo:7")
    sock = bench.tcp.connect(0, SERVER, 8)
    bench.run(10)
    assert sock.error == "refused"
