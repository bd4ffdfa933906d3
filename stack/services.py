"""Built-in services the local stack offers on ``hil stack serve``: the level-0 target contract.

A service spec is ``KIND:PORT[:ARG]`` (``udp-echo:7``). TCP kinds (``echo``, ``discard``,
``chargen[:N]``) arrive with the TCP layer; the parser already knows their names so that a
lab file written today keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.iface import Interface, UdpSocket

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


def start_services(iface: Interface, specs: list[ServiceSpec]) -> list[object]:
    """Open every service; TCP kinds raise until the TCP layer provides them."""
    handles: list[object] = []
    for spec in specs:
        if spec.kind == "udp-echo":
            handles.append(udp_echo(iface, spec.port))
        else:
            raise NotImplementedError(f"TCP service {spec} needs the TCP layer (not built yet)")
    return handles
