"""The level-0 contract, checked from the tester's side with the kernel's sockets: RFC 862 echo
(TCP and UDP), RFC 863 discard, RFC 864 chargen. Used by ``hil lab status``, by bring-up
checks and by the tests; every check returns a :class:`Result` instead of raising, so a status
table can show all of them."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from dataclasses import dataclass

from harness.lab.virtual import Tester
from stack.services import CHARGEN


@dataclass(frozen=True)
class Result:
    service: str
    family: str
    ok: bool
    detail: str
    nbytes: int = 0
    seconds: float = 0.0

    @property
    def mbit_s(self) -> float:
        return self.nbytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


def _fam(addr: str) -> str:
    return "ipv6" if ":" in addr else "ipv4"


def echo(tester: Tester, addr: str, port: int, size: int, timeout: float = 10.0) -> Result:
    """Send ``size`` random bytes and read them back; byte-exact or it fails."""
    data = os.urandom(size)
    t0 = time.monotonic()
    try:
        with tester.connect(addr, port, timeout) as sock:
            got = bytearray()
            sent = 0
            sock.setblocking(False)
            deadline = time.monotonic() + timeout
            sel = selectors.DefaultSelector()
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while len(got) < size:
                if time.monotonic() > deadline:
                    return Result(
                        "echo", _fam(addr), False, f"timeout after {len(got)} of {size} bytes"
                    )
                for _key, ev in sel.select(0.5):
                    if ev & selectors.EVENT_WRITE and sent < size:
                        with contextlib.suppress(BlockingIOError):
                            sent += sock.send(data[sent : sent + 65536])
                        if sent >= size:
                            sel.modify(sock, selectors.EVENT_READ)
                    if ev & selectors.EVENT_READ:
                        try:
                            chunk = sock.recv(262144)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            return Result(
                                "echo", _fam(addr), False, f"closed after {len(got)} bytes"
                            )
                        got += chunk
            sel.close()
    except OSError as exc:
        return Result("echo", _fam(addr), False, f"{exc.strerror or exc}")
    took = time.monotonic() - t0
    if bytes(got) != data:
        bad = next((i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b), size)
        return Result("echo", _fam(addr), False, f"byte {bad} differs", size, took)
    return Result("echo", _fam(addr), True, f"{size} bytes byte-exact", size, took)


def discard(tester: Tester, addr: str, port: int, size: int, timeout: float = 10.0) -> Result:
    """Send ``size`` bytes and close; the target must take them all and close cleanly."""
    t0 = time.monotonic()
    try:
        with tester.connect(addr, port, timeout) as sock:
            sock.sendall(bytes(size))
            sock.shutdown(socket.SHUT_WR)
            rest = sock.recv(1)
    except OSError as exc:
        return Result("discard", _fam(addr), False, f"{exc.strerror or exc}")
    if rest:
        return Result("discard", _fam(addr), False, "the discard service sent data")
    return Result("discard", _fam(addr), True, f"{size} bytes taken", size, time.monotonic() - t0)


def chargen(tester: Tester, addr: str, port: int, size: int, timeout: float = 10.0) -> Result:
    """Read ``size`` bytes; they must be the RFC 864 pattern from its start."""
    t0 = time.monotonic()
    got = bytearray()
    try:
        with tester.connect(addr, port, timeout) as sock:
            while len(got) < size:
                chunk = sock.recv(min(262144, size - len(got)))
                if not chunk:
                    break
                got += chunk
    except OSError as exc:
        return Result("chargen", _fam(addr), False, f"{exc.strerror or exc}")
    took = time.monotonic() - t0
    reps = size // len(CHARGEN) + 1
    if len(got) < size:
        return Result("chargen", _fam(addr), False, f"closed after {len(got)} bytes")
    if bytes(got) != (CHARGEN * reps)[:size]:
        return Result("chargen", _fam(addr), False, "not the RFC 864 pattern", size, took)
    return Result("chargen", _fam(addr), True, f"{size} bytes of the RFC 864 pattern", size, took)


def udp_echo(tester: Tester, addr: str, port: int, timeout: float = 2.0) -> Result:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    payload = os.urandom(512)
    with tester.new_socket(fam, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / 4)
        for _ in range(4):  # UDP: the first datagram may wait for neighbour resolution
            sock.sendto(payload, (addr, port))
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                continue
            ok = data == payload
            return Result("udp-echo", _fam(addr), ok, "512 bytes" if ok else "wrong bytes", 512)
    return Result("udp-echo", _fam(addr), False, "no answer")


def check_all(
    tester: Tester, addresses: dict[str, str], ports: dict[str, int], size: int = 1 << 20
) -> list[Result]:
    out = []
    for addr in addresses.values():
        for kind, port in ports.items():
            if kind == "echo":
                out.append(echo(tester, addr, port, size))
            elif kind == "discard":
                out.append(discard(tester, addr, port, size))
            elif kind == "chargen":
                out.append(chargen(tester, addr, port, min(size, 1 << 16)))
            elif kind == "udp-echo":
                out.append(udp_echo(tester, addr, port))
    return out
