"""``hil stack serve``: the reference stack as a host on a TAP or an interface, until a signal.

With ``--agent`` the process also speaks the agent protocol (docs/agent.md) on stdin/stdout,
which makes it the ``local`` target of a lab. The agent core is attached to the stack as one of
the interface's pollers (``targets.agent.local``); this module only moves bytes: stdin is a
watched fd of the event loop whose lines go to the core, replies go to stdout. At stdin EOF the
agent stops and the stack keeps serving, like every other target does.
"""

from __future__ import annotations

import argparse
import os
import select
import sys

from stack.iface import Interface, InterfaceConfig
from stack.phy import AfPacketDevice, PcapDevice, PcapngWriter, TapDevice
from stack.phy.base import Device
from stack.phy.loop import run
from stack.services import ServiceSpec, start_services
from stack.tcp.layer import TcpLayer
from stack.tcp.profile import parse_overrides, profile
from stack.time import MonotonicClock
from stack.wire import addr as A
from targets.agent.local import attach
from targets.agent.server import AgentCore

__all__ = ["serve"]


def _pollable(fd: int) -> bool:
    """Whether epoll can watch ``fd`` (it refuses regular files and /dev/null)."""
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
    except OSError:
        return False
    finally:
        ep.close()
    return True


class _Console:
    """stdin -> agent core, core -> stdout. Writes go straight to fd 1, unbuffered, so a
    reply is never stuck behind Python's buffering while the client waits for it."""

    def __init__(self) -> None:
        self.core: AgentCore | None = None
        self.open = True

    def emit(self, line: str) -> None:
        if not self.open:
            return
        sys.stdout.flush()  # keep the order with print()ed console lines
        data = (line + "\n").encode("ascii", "replace")
        try:
            while data:
                data = data[os.write(1, data) :]
        except OSError:  # the console reader went away: the agent goes quiet, the stack serves
            self.open = False

    def on_stdin(self) -> bool:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:  # nobody will talk to the agent again: its sockets go, services stay
            self.open = False
            if self.core is not None:
                self.core.close_all()
            return False
        if self.core is not None and self.open:
            self.core.feed(data)
        return True


def serve(args: argparse.Namespace) -> int:
    clock = MonotonicClock()
    config = InterfaceConfig(mac=args.mac, mtu=args.mtu, seed=args.seed)
    if args.no_dad:
        config.dad_transmits = 0
    services = list(args.services) + [ServiceSpec("udp-echo", p) for p in args.udp_echo]
    iface = Interface(config)
    for addr, plen in args.ipv4:
        iface.add_ipv4(addr, plen)
    for addr, plen in args.ipv6:
        iface.add_ipv6(addr, plen)
    for gw in args.gateway:
        iface.set_gateway(gw)
    try:
        tcp_config = profile(args.profile, **parse_overrides(args.tcp))
    except ValueError as exc:
        print(f"hil stack serve: {exc}", file=sys.stderr)
        return 2
    tcp = TcpLayer(iface, tcp_config)
    start_services(iface, services, tcp)

    console = _Console()
    agent = bool(getattr(args, "agent", False))
    if agent:
        if not _pollable(0):
            print(
                "hil stack serve: --agent needs stdin to be a pipe, socket or tty", file=sys.stderr
            )
            return 2
        console.core = attach(
            iface,
            tcp,
            clock.now,
            console.emit,
            profile=args.profile,
            overrides=list(args.tcp),
            log=lambda text: print(text, file=sys.stderr, flush=True),
        )

    device: Device
    try:
        if args.tap:
            device = TapDevice(args.tap, netns=args.netns, create=True, mtu=args.mtu)
        else:
            device = AfPacketDevice(args.iface, netns=args.netns)
    except OSError as exc:
        where = f"TAP {args.tap}" if args.tap else f"interface {args.iface}"
        ns = f" in netns {args.netns}" if args.netns else ""
        print(f"hil stack serve: cannot open {where}{ns}: {exc}", file=sys.stderr)
        return 1
    writer = None
    if args.pcap:
        writer = PcapngWriter(args.pcap, device.link_type)
        device = PcapDevice(device, writer)

    announced = False

    def should_stop() -> bool:
        nonlocal announced
        if not announced and not any(a.state == "tentative" for a in iface.ipv6):
            announced = True
            held = [f"{A.ip_str(a.addr)}/{a.prefix_len}" for a in iface.ipv4]
            held += [f"{A.ip_str(a.addr)}/{a.prefix_len} ({a.state})" for a in iface.ipv6]
            svc = ", ".join(str(s) for s in services) or "none"
            print(
                f"ready: mac {A.mac_str(iface.mac)}; addresses {', '.join(held)}; services {svc}; "
                f"tcp profile {args.profile}"
                + (f" ({', '.join(args.tcp)})" if args.tcp else "")
                + ("; agent on stdin" if agent else ""),
                flush=True,
            )
        return False

    try:
        run(
            iface,
            device,
            clock,
            stop=should_stop,
            watch=[(0, console.on_stdin)] if agent else [],
        )  # returns on SIGINT/SIGTERM
    finally:
        device.close()
        if writer is not None:
            writer.close()
    c = iface.counters
    print(
        f"frames in {c['rx.frames']}, out {c['tx.frames']}, malformed dropped {c['rx.malformed']}, "
        f"other drops {c['rx.drop']}, internal errors {c['internal-error']}, "
        f"tcp segments in {c['tcp.rx.segments']}, out {c['tcp.tx.segments']}, "
        f"retransmitted {c['tcp.tx.retransmit']}, connections {c['tcp.established']}",
        flush=True,
    )
    return 0
