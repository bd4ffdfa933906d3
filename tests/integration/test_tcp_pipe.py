"""Two reference stacks over the in-memory pipe with seeded 10 % loss, reordering and
duplication transfer 10 MB byte-exact in every profile (acceptance item), and over IPv6 in
both directions.

Each stack is a full :class:`Interface` on Ethernet (ARP/NDP included) with a
:class:`TcpLayer`; a :class:`FaultInjector` on one end of the :class:`PipePair` drops,
duplicates and reorders 10 % of the frames each way. Everything runs in virtual time, so the
fault pattern, and the result, is the same on every run for a given seed.

"Closed cleanly": both sockets reach CLOSED with no error (no reset, no timeout, no abort), the
receiver saw the sender's FIN after the last byte, no connection is left in either layer and
neither interface counted an internal error.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import pytest

from stack.iface import Interface, InterfaceConfig
from stack.phy.fault import FaultInjector
from stack.phy.loop import run_virtual
from stack.phy.pipe import PipePair
from stack.rand import Rng
from stack.tcp.layer import TcpLayer
from stack.tcp.profile import profile
from stack.tcp.socket import State, TcpSocket
from stack.time import SECOND, VirtualClock

SIZE = 10 * 1024 * 1024
A4, B4 = (ipaddress.ip_address(a).packed for a in ("10.0.0.1", "10.0.0.2"))
A6, B6 = (ipaddress.ip_address(a).packed for a in ("2001:db8::1", "2001:db8::2"))
PORT = 5001
LIMIT_US = 48 * 3600 * SECOND  # virtual; the slowest profile needs about half a day


@dataclass
class Result:
    data: bytes
    got: bytes
    sender: TcpSocket
    receiver: TcpSocket
    eof: bool
    a: Interface
    b: Interface
    ta: TcpLayer
    tb: TcpLayer
    faults: FaultInjector
    virtual_s: float
    wall_s: float


def transfer(profile_name: str, v6: bool = False, server_sends: bool = False) -> Result:
    """A (client, behind the faults) connects to B; ``server_sends`` picks B as the sender."""
    clock = VirtualClock()
    pa, pb = PipePair(clock, latency_us=1000)
    a = Interface(InterfaceConfig(mac=b"\x02\0\0\0\0\x0a", seed=1))
    b = Interface(InterfaceConfig(mac=b"\x02\0\0\0\0\x0b", seed=2))
    a.add_ipv4(A4, 24)
    b.add_ipv4(B4, 24)
    a.add_ipv6(A6, 64, dad=False)
    b.add_ipv6(B6, 64, dad=False)
    cfg = profile(profile_name)
    ta, tb = TcpLayer(a, cfg), TcpLayer(b, cfg)
    faults = FaultInjector(
        pa, Rng(7).fork("faults"), clock, drop=0.1, duplicate=0.1, reorder=0.1, direction="both"
    )
    data = Rng(3).bytes(SIZE)
    got = bytearray()
    pos = 0
    socks: dict[str, TcpSocket] = {}
    eof = False

    def write(s: TcpSocket) -> None:
        nonlocal pos
        if pos < SIZE:
            pos += s.send(memoryview(data)[pos : pos + 65536])
            if pos >= SIZE:
                s.shutdown()

    def read(s: TcpSocket) -> None:
        nonlocal eof
        got.extend(s.recv())
        if s.eof and not eof:
            eof = True
            s.close()

    def on_accept(s: TcpSocket) -> None:
        socks["server"] = s
        if server_sends:
            s.on_writable = write
            s.on_readable = read  # to see the client's FIN
            write(s)
        else:
            s.on_readable = read

    tb.listen(PORT, on_accept=on_accept)
    c = ta.connect(clock.now(), B6 if v6 else B4, PORT)
    socks["client"] = c
    if server_sends:
        c.on_readable = read
    else:
        c.on_connected = write
        c.on_writable = write
    t0 = time.perf_counter()
    end = run_virtual([(a, faults), (b, pb)], clock, LIMIT_US)
    wall = time.perf_counter() - t0
    sender, receiver = (socks["server"], c) if server_sends else (c, socks.get("server", c))
    return Result(data, bytes(got), sender, receiver, eof, a, b, ta, tb, faults, end / SECOND, wall)


def check(r: Result) -> None:
    assert len(r.got) == SIZE and r.got == r.data, f"received {len(r.got)} of {SIZE} bytes"
    assert r.eof
    for s in (r.sender, r.receiver):
        assert s.state is State.CLOSED and s.error is None, (s, s.error, s.stats)
    assert not r.ta.conns and not r.tb.conns
    for iface in (r.a, r.b):
        assert iface.counters["internal-error"] == 0
    # the faults really happened, in both directions
    tx, rx = r.faults.counters["tx"], r.faults.counters["rx"]
    for c in (tx, rx):
        assert c.dropped and c.duplicated and c.reordered
    assert r.sender.stats["retransmits"] > 0


@pytest.mark.parametrize("profile_name", ["full", "linux-like", "lwip-default", "riot-gnrc", "uip"])
def test_10mb_over_a_lossy_pipe(profile_name: str) -> None:
    r = transfer(profile_name)
    print(f"{profile_name}: virtual {r.virtual_s:.0f} s, wall {r.wall_s:.2f} s, {r.sender.stats}")
    check(r)


@pytest.mark.parametrize(
    "server_sends", [False, True], ids=["client-to-server", "server-to-client"]
)
def test_10mb_over_a_lossy_pipe_ipv6(server_sends: bool) -> None:
    r = transfer("full", v6=True, server_sends=server_sends)
    print(f"v6 server_sends={server_sends}: virtual {r.virtual_s:.0f} s, wall {r.wall_s:.2f} s")
    assert r.sender.v6 and r.receiver.v6
    check(r)
