"""100k random and mutated TCP segments at a listening and an established socket.

The acceptance criterion: no exception escapes (the interface counts one as
``internal-error``, so that counter must stay 0), every connection's state stays consistent
(sequence variables ordered, buffers within their bounds), and memory stays bounded (buffers,
out-of-order blocks, connection table and listener queues never exceed their configured limits,
so the bytes the layer holds stay under connections x (receive + send buffer + window)).
"""

from __future__ import annotations

import random

from stack.tcp.socket import CLOSED, TcpSocket
from stack.wire.tcp import (
    OptFastOpen,
    OptMss,
    OptNop,
    OptSack,
    OptSackPermitted,
    OptTimestamps,
    OptUnknown,
    OptWindowScale,
    TcpOption,
)
from tests.tcpscript import Script

N_SEGMENTS = 100_000
PORT = 8080


def _options(r: random.Random, isn: int) -> list[TcpOption]:
    pool: list[TcpOption] = [
        OptMss(r.choice([0, 1, 48, 536, 1460, 65535])),
        OptWindowScale(r.choice([0, 7, 14, 15, 255])),
        OptSackPermitted(),
        OptTimestamps(r.getrandbits(32), r.getrandbits(32)),
        OptNop(),
        OptFastOpen(r.choice([b"", b"\x01" * 8, r.randbytes(4)])),
        OptSack(
            tuple(
                (
                    (isn + r.randrange(-5000, 200_000)) & 0xFFFFFFFF,
                    (isn + r.randrange(-5000, 200_000)) & 0xFFFFFFFF,
                )
                for _ in range(r.randrange(1, 4))
            )
        ),
        OptUnknown(r.randrange(9, 253), r.randbytes(r.randrange(0, 6))),
    ]
    opts: list[TcpOption] = []
    length = 0
    for o in r.sample(pool, r.randrange(0, 4)):
        w = o.wire_len
        if length + w <= 40:
            opts.append(o)
            length += w
    return opts


def _check(sock: TcpSocket) -> None:
    cfg = sock.cfg
    assert sock.snd_una <= sock.snd_nxt <= sock.snd_max or sock.state is CLOSED, sock
    assert len(sock._rbuf) <= cfg.rcv_buf, sock
    assert len(sock._sbuf) <= cfg.snd_buf + 1, sock
    assert len(sock._ooo) <= cfg.ooo_max_holes, sock
    assert sock._ooo.bytes <= cfg.rcv_buf + 65535 << 1, sock
    assert sock.rcv_adv >= sock.rcv_nxt or sock.state is CLOSED, sock
    assert len(sock.scoreboard.ranges) <= 4 * 64, sock


def _establish(s: Script, port: int) -> TcpSocket:
    """A fresh connection from remote port ``port`` (the script learns the new local ISN)."""
    s.drain()
    s.REMOTE_PORT = port
    s.local_isn = None
    s.local_port = PORT
    return s.handshake_passive(s.now_ms, win=65535, opts=[OptMss(1460), OptSackPermitted()])


def test_100k_random_segments_never_break_the_stack() -> None:
    r = random.Random(2026)
    s = Script("full", challenge_ack_per_s=1000, max_connections=64)
    s.listen(PORT, backlog=16)
    stray_listener = s.tcp.listen(PORT + 1, backlog=8)
    next_port = 40000
    est = _establish(s, next_port)
    est.send(b"y" * 20_000)  # something in flight, so ACK processing has work to do
    t = 1.0
    held_peak = 0  # bytes the TCP layer holds in buffers: bounded by the configured limits
    established = 1
    for i in range(N_SEGMENTS):
        t += r.choice([0.0, 0.0, 0.01, 0.5, 5.0])
        if est.state is CLOSED or est.state.value == "TIME-WAIT":
            next_port += 1
            s.run_until(t)
            est = _establish(s, next_port)
            est.send(r.randbytes(r.randrange(0, 50_000)))
            established += 1
        flags = r.choice(["S", "S.", ".", ".", "P.", "P.", "F.", "R", "R.", "SF", "FP.", "", "SR."])
        data = r.randbytes(r.choice([0, 0, 1, 100, 1460, r.randrange(0, 3000)]))
        if r.random() < 0.6:  # aimed at the established connection's windows
            rel_rcv = (est.rcv_seq - Script.REMOTE_ISN) & 0xFFFFFFFF
            rel_una = (est._seq(max(est.snd_una, 0)) - (s.local_isn or 0)) & 0xFFFFFFFF
            seq = rel_rcv + r.choice([0, 0, 0, 1, -1, 1460, r.randrange(-70_000, 70_000)])
            ack = rel_una + r.choice([0, 0, 1460, 2920, -1, r.randrange(-100_000, 100_000)])
            if flags.startswith("R") and r.random() < 0.9:
                flags = "."  # exact resets would end the connection too often
            s.inject(
                t,
                flags,
                seq=seq,
                ack=ack,
                win=r.choice([0, 1, 100, 65535, 65535, r.randrange(0, 65536)]),
                data=data,
                opts=_options(r, est.rcv_seq),
                ecn=r.randrange(0, 4),
                bad_checksum=r.random() < 0.02,
            )
        else:  # strays and SYN floods: to a listener, to a closed port
            s.inject(
                t,
                flags,
                seq=r.getrandbits(32),
                ack=r.getrandbits(32),
                win=r.randrange(0, 65536),
                data=data,
                opts=_options(r, r.getrandbits(32)),
                absolute=True,
                bad_checksum=r.random() < 0.02,
                src_port=r.randrange(1, 65536),
                dst_port=r.choice([PORT + 1, PORT + 1, PORT + 2]),
            )
        if r.random() < 0.05 and est.readable:
            est.recv()
        if r.random() < 0.01 and est.send_space:
            est.send(r.randbytes(r.randrange(1, 5000)))
        if i % 1000 == 0:
            s.drain()
            for sock in s.tcp.sockets():
                _check(sock)
            assert len(s.tcp.conns) <= 64
            assert len(stray_listener.queue) + len(stray_listener.embryonic) <= 8
            assert not s.tcp._held  # no hook, so nothing may be parked
            held = sum(len(k._rbuf) + len(k._sbuf) + k._ooo.bytes for k in s.tcp.sockets())
            held_peak = max(held_peak, held)
            while stray_listener.accept() is not None:
                pass
    s.run_until(t + 600_000)  # let every timer run out
    c = s.iface.counters
    assert c["internal-error"] == 0
    assert c["tcp.hook-error"] == 0
    assert c["rx.malformed.tcp.bad-checksum"] > 0  # the bad ones were caught
    # the run reached the interesting paths, so a pass means something
    assert established > 10 and c["tcp.challenge-ack"] > 100 and c["tcp.rx.ooo"] > 100
    assert held_peak <= 64 * (256 * 1024 * 2 + 65535), f"{held_peak} bytes held"
    for sock in s.tcp.sockets():
        _check(sock)
