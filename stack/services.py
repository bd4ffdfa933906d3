"""Built-in services the local stack offers on ``hil stack serve``: the level-0 target contract.

A service spec is ``KIND:PORT[:ARG]``: ``udp-echo:7``, and over TCP ``echo:7`` (RFC 862),
``discard:9`` (RFC 863) and ``chargen:19[:N]`` (RFC 864; with N it sends N bytes and closes,
which makes bulk-transfer measurements end by themselves). Every target in a lab offers the same
three TCP services, so probes and benchmarks can treat the stacks alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.iface import Interface, UdpSocket
from stack.tcp.layer import Listener, TcpLayer
from stack.tcp.socket import TcpError, TcpSocket

UDP_KINDS = {"udp-echo"}
TCP_KINDS = {"echo", "discard", "chargen"}


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    kind: str
    port: int
    arg: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.port}" + (f":{self.arg}" if self.arg is not None else "")


def parse_services(text: str) -> list[ServiceSpec]:
    """Parse ``echo:7,discard:9,chargen:19:1000000``; raises ValueError with the fix."""
    specs: list[ServiceSpec] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        kind = parts[0]
        if kind not in UDP_KINDS | TCP_KINDS:
            known = ", ".join(sorted(UDP_KINDS | TCP_KINDS))
            raise ValueError(f"unknown service {kind!r} in {item!r}; known services: {known}")
        if len(parts) < 2 or not parts[1].isdigit() or not 0 < int(parts[1]) < 65536:
            raise ValueError(f"service {item!r} needs a port 1-65535, e.g. {kind}:7")
        arg = None
        if len(parts) == 3:
            if kind != "chargen" or not parts[2].isdigit():
                raise ValueError(
                    f"service {item!r}: only chargen takes a third field (bytes to send)"
                )
            arg = int(parts[2])
        elif len(parts) > 3:
            raise ValueError(f"service {item!r} has too many fields; use KIND:PORT[:ARG]")
        specs.append(ServiceSpec(kind, int(parts[1]), arg))
    return specs


def udp_echo(iface: Interface, port: int) -> UdpSocket:
    """RFC 862 over UDP: send every datagram back to where it came from, byte for byte."""

    def on_recv(sock: UdpSocket, data: bytes, src: tuple[bytes, int]) -> None:
        sock.sendto(data, src)

    return iface.udp_bind(port, on_recv=on_recv)


def _chargen_pattern() -> bytes:
    """RFC 864: 72-character lines of the 95 printable ASCII characters, each line starting
    one character further on, CR LF terminated. The 95 lines then repeat."""
    chars = bytes(range(32, 127))
    doubled = chars + chars
    return b"".join(doubled[i : i + 72] + b"\r\n" for i in range(95))


CHARGEN = _chargen_pattern()


class _Echo:
    """RFC 862 over TCP. What the peer sends is queued back; a full send buffer is flushed on
    ``on_writable``, so a fast sender is slowed by our window rather than losing data."""

    def __init__(self, sock: TcpSocket) -> None:
        self.pending = bytearray()
        sock.on_readable = self.readable
        sock.on_writable = self.flush

    def readable(self, sock: TcpSocket) -> None:
        self.pending += sock.recv()
        self.flush(sock)

    def flush(self, sock: TcpSocket) -> None:
        try:
            if self.pending:
                n = sock.send(self.pending)
                del self.pending[:n]
            if not self.pending and sock.eof:
                sock.close()
        except TcpError:
            self.pending.clear()


class _Discard:
    """RFC 863: read and drop; close when the peer does."""

    def __init__(self, sock: TcpSocket) -> None:
        sock.on_readable = self.readable

    def readable(self, sock: TcpSocket) -> None:
        sock.recv()
        if sock.eof:
            sock.close()


class _Chargen:
    """RFC 864: send the pattern until the peer closes, or ``limit`` bytes and close."""

    def __init__(self, sock: TcpSocket, limit: int | None) -> None:
        self.sent = 0
        self.limit = limit
        sock.on_writable = self.fill
        sock.on_readable = self.readable
        self.fill(sock)

    def readable(self, sock: TcpSocket) -> None:
        sock.recv()  # RFC 864: received data is thrown away
        if sock.eof and self.limit is None:
            sock.close()

    def fill(self, sock: TcpSocket) -> None:
        try:
            while True:
                room = sock.send_space
                if self.limit is not None:
                    room = min(room, self.limit - self.sent)
                if room <= 0:
                    break
                start = self.sent % len(CHARGEN)
                chunk = (CHARGEN[start:] + CHARGEN * (1 + room // len(CHARGEN)))[:room]
                n = sock.send(chunk)
                self.sent += n
                if n < len(chunk):
                    break
            if self.limit is not None and self.sent >= self.limit:
                sock.close()
        except TcpError:
            pass


def tcp_service(tcp: TcpLayer, spec: ServiceSpec) -> Listener:
    """Listen on ``spec.port`` and attach the service to every accepted connection."""

    def on_accept(sock: TcpSocket) -> None:
        if spec.kind == "echo":
            _Echo(sock)
        elif spec.kind == "discard":
            _Discard(sock)
        else:
            _Chargen(sock, spec.arg)

    return tcp.listen(spec.port, on_accept=on_accept)


def start_services(
    iface: Interface, specs: list[ServiceSpec], tcp: TcpLayer | None = None
) -> list[object]:
    """Open every service. TCP kinds need the interface's TCP layer (built here if not given)."""
    handles: list[object] = []
    for spec in specs:
        if spec.kind == "udp-echo":
            handles.append(udp_echo(iface, spec.port))
        else:
            if tcp is None:
                tcp = TcpLayer(iface)
            handles.append(tcp_service(tcp, spec))
    return handles
