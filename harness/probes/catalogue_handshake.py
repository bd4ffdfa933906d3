"""Probes read off a handshake and off IP/ICMP behaviour (P1, P2, P13, P14, P15, P19, P20, P23).

The tester's kernel opens the connections: a Linux SYN offers MSS, SACK-permitted, timestamps
and window scaling (and ECN or a Fast Open cookie request where the probe turns them on in the
tester's namespace), so what the target puts in its SYN-ACK is what it supports *and has
enabled*. Every value is read from the capture on the tester's link, never from a socket.
"""

from __future__ import annotations

import socket
import subprocess
import time

from harness.probes.capture import PROTO_ICMP, PROTO_ICMPV6, Capture, Packet
from harness.probes.engine import Context, probe
from harness.probes.observe import Evidence, Observation, Value, Verdict
from stack.wire.tcp import ACK, CWR, ECE, SYN

MSG_FASTOPEN = 0x20000000
UNUSED_UDP_PORT = 33434  # traceroute's first port: nobody serves it


def _service_port(ctx: Context) -> int:
    for kind in ("echo", "discard", "chargen"):
        if kind in ctx.services:
            return ctx.services[kind]
    raise RuntimeError("the target declares no TCP service")


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _synack(
    pkts: list[Packet], addr: str, port: int, mine: dict[str, int]
) -> tuple[Packet | None, Packet | None]:
    """Our SYN to ``addr``:``port`` and its SYN-ACK. Other probes run at the same time and
    connect to the same service, so the tester's port (``mine[addr]``) tells ours apart."""
    local = mine.get(addr)
    syn = next(
        (p for p in pkts
         if p.dst == addr and p.dport == port and p.flags & SYN and p.sport == local),
        None,
    )  # fmt: skip
    synack = next(
        (p for p in pkts
         if p.src == addr and p.sport == port and p.has(SYN, ACK) and p.dport == local),
        None,
    )  # fmt: skip
    return syn, synack


def _handshakes(ctx: Context, name: str, port: int) -> tuple[Capture, dict[str, int]]:
    """One connection from the tester's kernel per family, captured; and our port per address."""
    mine: dict[str, int] = {}
    with ctx.capture(name, f"tcp port {port}") as cap:
        for addr in ctx.addresses.values():
            with ctx.tester.connect(addr, port, timeout=5.0) as sock:
                mine[addr] = sock.getsockname()[1]
                time.sleep(0.05)
    return cap, mine


def _tester_sysctl(ctx: Context, key: str, value: str) -> str:
    ns = ["ip", "netns", "exec", ctx.tester.netns] if ctx.tester.netns else []
    old = subprocess.run([*ns, "sysctl", "-n", key], capture_output=True, text=True).stdout.strip()
    subprocess.run([*ns, "sysctl", "-qw", f"{key}={value}"], capture_output=True, check=True)
    return old


@probe(
    "P1",
    "handshake options (MSS, window, window scale, timestamps, SACK, TTL)",
    (
        "mss_advertised",
        "rcv_window",
        "rcv_window_mss",
        "window_scale",
        "window_scale_shift",
        "timestamps",
        "sack_permitted",
        "ttl_default",
    ),
)
def handshake(ctx: Context) -> list[Observation]:
    port = _service_port(ctx)
    out: list[Observation] = []
    cap, mine = _handshakes(ctx, "P1-handshake", port)
    pkts = cap.packets()
    for fam, addr in ctx.addresses.items():
        syn, sa = _synack(pkts, addr, port, mine)
        if sa is None or syn is None:
            out += [
                Observation(k, None, "inconclusive", "P1", fam, "no SYN-ACK in the capture")
                for k in handshake_keys
            ]
            continue
        ev = ctx.evidence(cap, [syn, sa], f"SYN and SYN-ACK, {fam}")
        out += _handshake_family(fam, syn, sa, ev)
    return out


def _handshake_family(fam: str, syn: Packet, sa: Packet, ev: Evidence) -> list[Observation]:
    out: list[Observation] = []

    def obs(key: str, value: Value, verdict: Verdict = "conforms", detail: str = "") -> None:
        out.append(Observation(key, value, verdict, "P1", fam, detail, evidence=ev))

    if sa.mss is not None:
        obs("mss_advertised", sa.mss, detail=f"SYN-ACK MSS {sa.mss} (we offered {syn.mss})")
    else:
        default = 536 if fam == "ipv4" else 1220
        obs("mss_advertised", None, "deviates", f"no MSS option (SHLD-5; {default} applies)")
    obs("rcv_window", sa.win, detail="window field of the SYN-ACK (never scaled, RFC 7323)")
    mss = sa.mss or (536 if fam == "ipv4" else 1220)
    obs("rcv_window_mss", round(sa.win / mss, 2), detail=f"{sa.win} / {mss}")
    obs("window_scale", sa.wscale is not None, detail=f"we offered shift {syn.wscale}")
    if sa.wscale is not None:
        bad = sa.wscale > 14
        obs("window_scale_shift", sa.wscale, "deviates" if bad else "conforms")
    else:
        obs("window_scale_shift", None, "not-applicable", "no window scale option")
    obs("timestamps", sa.ts is not None)
    if sa.ts is not None and syn.ts is not None and sa.ts[1] != syn.ts[0]:
        out[-1] = Observation(
            "timestamps", True, "deviates", "P1", fam, "TSecr does not echo our TSval",
            evidence=ev,
        )  # fmt: skip
    obs("sack_permitted", sa.sack_permitted)
    if fam == "ipv4":
        obs("ttl_default", sa.ttl, detail="IPv4 TTL of the SYN-ACK (one hop, no router)")
    return out


handshake_keys = (
    "mss_advertised",
    "rcv_window",
    "rcv_window_mss",
    "window_scale",
    "window_scale_shift",
    "timestamps",
    "sack_permitted",
)


@probe("P19", "ECN negotiation (SYN with ECE+CWR)", ("ecn",), exclusive=True)
def ecn(ctx: Context) -> list[Observation]:
    port = _service_port(ctx)
    old = _tester_sysctl(ctx, "net.ipv4.tcp_ecn", "1")  # the tester's SYN asks for ECN
    try:
        cap, mine = _handshakes(ctx, "P19-ecn", port)
    finally:
        _tester_sysctl(ctx, "net.ipv4.tcp_ecn", old or "2")
    pkts = cap.packets()
    out = []
    for fam, addr in ctx.addresses.items():
        syn, sa = _synack(pkts, addr, port, mine)
        if syn is None or sa is None:
            out.append(Observation("ecn", None, "inconclusive", "P19", fam, "no SYN-ACK"))
            continue
        ev = ctx.evidence(cap, [syn, sa], f"ECN-setup SYN and its SYN-ACK, {fam}")
        offered = syn.has(ECE, CWR)
        if not offered:
            out.append(Observation("ecn", None, "inconclusive", "P19", fam, "SYN had no ECE+CWR"))
            continue
        on = bool(sa.flags & ECE) and not sa.flags & CWR
        bad = bool(sa.flags & ECE and sa.flags & CWR)  # RFC 3168 6.1.1: never both in a SYN-ACK
        detail = "ECE in the SYN-ACK" if on else "no ECE: ECN not used (allowed)"
        out.append(
            Observation(
                "ecn", on, "deviates" if bad else "conforms", "P19", fam, detail, evidence=ev
            )
        )
    return out


@probe("P20", "TCP Fast Open cookie request", ("tfo",))
def fast_open(ctx: Context) -> list[Observation]:
    port = _service_port(ctx)
    out = []
    mine: dict[str, int] = {}
    with ctx.capture("P20-tfo", f"tcp port {port}") as cap:
        for addr in ctx.addresses.values():
            sock = ctx.tester.new_socket(_family(addr))
            sock.setblocking(False)
            try:
                # No cookie cached yet: the kernel sends a SYN with an empty Fast Open option
                # (a cookie request) and the data after the handshake.
                sock.sendto(b"x", MSG_FASTOPEN, (addr, port))
            except BlockingIOError:
                pass  # the SYN is out; the handshake completes on its own
            finally:
                mine[addr] = sock.getsockname()[1]
                time.sleep(0.2)
                sock.close()
    pkts = cap.packets()
    for fam, addr in ctx.addresses.items():
        syn, sa = _synack(pkts, addr, port, mine)
        if syn is None or sa is None or syn.tfo is None:
            why = "no SYN-ACK" if sa is None else "our SYN carried no cookie request"
            out.append(Observation("tfo", None, "inconclusive", "P20", fam, why))
            continue
        ev = ctx.evidence(cap, [syn, sa], f"cookie request and SYN-ACK, {fam}")
        got = bool(sa.tfo)
        detail = f"cookie of {len(sa.tfo or b'')} bytes" if got else "no cookie (TFO off)"
        out.append(Observation("tfo", got, "conforms", "P20", fam, detail, evidence=ev))
    return out


@probe(
    "P23",
    "ICMP echo, UDP port unreachable, fragment reassembly",
    ("icmp_echo", "udp_port_unreachable", "ipv4_reassembly", "ipv6_reassembly"),
)
def icmp_udp(ctx: Context) -> list[Observation]:
    out: list[Observation] = []
    ns = ["ip", "netns", "exec", ctx.tester.netns] if ctx.tester.netns else []
    with ctx.capture("P23-icmp-udp", "icmp or icmp6 or udp or (ip[6:2] & 0x1fff != 0)") as cap:
        for fam, addr in ctx.addresses.items():
            v = "-6" if fam == "ipv6" else "-4"
            for size in ("56", "3000"):  # 3000: fragmented on a 1500-byte link
                subprocess.run(
                    [*ns, "ping", v, "-n", "-c", "2", "-i", "0.2", "-W", "1", "-s", size, addr],
                    capture_output=True,
                    timeout=10,
                )
            with ctx.tester.new_socket(_family(addr), socket.SOCK_DGRAM) as udp:
                udp.sendto(b"tcp-hil probe", (addr, UNUSED_UDP_PORT))
                time.sleep(0.3)
    pkts = cap.packets()
    for fam, addr in ctx.addresses.items():
        icmp = PROTO_ICMP if fam == "ipv4" else PROTO_ICMPV6
        echo_reply = 0 if fam == "ipv4" else 129
        replies = [
            p for p in pkts if p.src == addr and p.proto == icmp and p.icmp_type == echo_reply
        ]
        small = [p for p in replies if p.length < 1000]
        # A 3000-byte echo is answered only if the target reassembled the request; the answer
        # is fragmented again (IPv4: a first fragment with the ICMP header, IPv6: proto 44).
        big = [
            p for p in pkts
            if p.src == addr and ((p in replies and p.length >= 1000) or p.proto == 44)
        ]  # fmt: skip
        ev = ctx.evidence(cap, replies[:4], f"echo replies, {fam}")
        out.append(
            Observation("icmp_echo", bool(small), "conforms" if small else "deviates", "P23", fam,
                        f"{len(small)} replies to 2 requests", evidence=ev)
        )  # fmt: skip
        reassembled = bool(big)
        key = "ipv4_reassembly" if fam == "ipv4" else "ipv6_reassembly"
        out.append(
            Observation(key, reassembled, "conforms", "P23", fam,
                        "answered a 3000-byte echo" if reassembled else "no answer to 3000 bytes",
                        evidence=ev)
        )  # fmt: skip
        unreach = (3, 3) if fam == "ipv4" else (1, 4)
        errs = [
            p for p in pkts
            if p.src == addr and p.proto == icmp and (p.icmp_type, p.icmp_code) == unreach
        ]  # fmt: skip
        out.append(
            Observation("udp_port_unreachable", bool(errs), "conforms" if errs else "deviates",
                        "P23", fam, f"ICMP {unreach[0]}/{unreach[1]} for UDP port {UNUSED_UDP_PORT}"
                        if errs else "no port unreachable (SHOULD, RFC 1122 4.1.3.1)",
                        evidence=ctx.evidence(cap, errs[:1], f"port unreachable, {fam}"))
        )  # fmt: skip
    return out
