"""The ``hil`` command line."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.demo import run_demo
from harness.lab.cli import add_parser as add_lab_parser
from harness.probes.cli import add_parser as add_probe_parser
from harness.report.diff import add_parser as add_diff_parser
from harness.report.render import add_parser as add_report_parser
from harness.run import add_parser as add_run_parser
from harness.stackserve import serve as stack_serve
from stack.services import ServiceSpec, parse_services
from stack.tcp.profile import PROFILES
from stack.wire import addr as A


def _iface_addr(text: str) -> tuple[bytes, int]:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ADDRESS/PREFIX (e.g. 10.0.0.2/24): {exc}"
        ) from None
    return iface.ip.packed, iface.network.prefixlen


def _ip(text: str) -> bytes:
    try:
        return A.ip_parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address: {exc}") from None


def _mac(text: str) -> bytes:
    try:
        return A.mac_parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _services(text: str) -> list[ServiceSpec]:
    try:
        return parse_services(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="tcp-hil: test embedded TCP/IP stacks")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="run the reference stack")
    stack_sub = stack.add_subparsers(dest="stack_command", required=True)
    serve = stack_sub.add_parser(
        "serve",
        help="run the local stack as a host on a NIC until SIGINT/SIGTERM",
        description="Run the reference stack as a host on a TAP or an existing interface.",
    )
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--tap", metavar="NAME", help="TAP device to open (created if absent)")
    where.add_argument("--iface", metavar="NAME", help="existing interface to use via AF_PACKET")
    serve.add_argument("--netns", metavar="NS", help="network namespace holding the TAP/interface")
    serve.add_argument("--mac", type=_mac, default=b"\x02\x00\x00\x00\x00\x01", help="our MAC")
    serve.add_argument("--ipv4", type=_iface_addr, action="append", default=[], metavar="A/L")
    serve.add_argument("--ipv6", type=_iface_addr, action="append", default=[], metavar="A/L")
    serve.add_argument("--gateway", type=_ip, action="append", default=[], metavar="ADDR")
    serve.add_argument("--mtu", type=int, default=1500)
    serve.add_argument("--seed", type=int, default=0, help="seed of the stack's RNG")
    serve.add_argument("--pcap", metavar="FILE", help="write every frame in and out as pcapng")
    serve.add_argument("--udp-echo", type=int, action="append", default=[], metavar="PORT")
    serve.add_argument(
        "--services",
        type=_services,
        default=[],
        metavar="LIST",
        help="services, e.g. udp-echo:7 (TCP: echo:7,discard:9,chargen:19[:N])",
    )
    serve.add_argument(
        "--no-dad", action="store_true", help="skip IPv6 duplicate address detection"
    )
    serve.add_argument(
        "--profile",
        default="full",
        choices=sorted(PROFILES),
        help="TCP profile: how the stack's TCP behaves (default full)",
    )
    serve.add_argument(
        "--tcp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one TCP setting of the profile, e.g. --tcp nagle=off",
    )
    serve.add_argument(
        "--agent",
        action="store_true",
        help="speak the agent protocol (docs/agent.md) on stdin/stdout",
    )
    serve.set_defaults(func=stack_serve)

    add_lab_parser(sub)
    add_probe_parser(sub)

    add_run_parser(sub)
    add_report_parser(sub)
    add_diff_parser(sub)
    run_p = sub.add_parser(
        "demo",
        help="a one-minute smoke test: Linux pings and echoes the reference stack on a TAP",
        description="Bring the local stack up in a namespace and show Linux talking to it.",
    )
    run_p.add_argument(
        "--out", type=Path, default=None, help="output directory (default reports/<time>)"
    )
    run_p.add_argument(
        "--lab", type=Path, default=Path("lab.yaml"), help="lab file (default lab.yaml)"
    )
    run_p.set_defaults(func=lambda a: run_demo(a.out, a.lab))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
