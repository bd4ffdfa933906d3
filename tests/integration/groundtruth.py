"""The ground-truth lab: targets whose configuration is known, for checking what the probes infer.

One lab with Linux under several sysctl sets (and route metrics), the reference stack in every
profile plus overrides, and lwIP with its defaults and several ``lwipopts`` variants. The
session fixture ``groundtruth`` (in conftest) brings it up once, runs the whole catalogue on
every target in parallel -- the way ``hil probe`` does -- and hands the observations to the
test modules, each of which checks the keys of its probes against :data:`CASES`' settings.

For development, ``TCP_HIL_GT_CASES=lxdef,lwdef`` and ``TCP_HIL_GT_PROBES=P7,P8`` restrict the
run (tests for cases or probes left out are skipped then; CI sets neither).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

BUDGET_S = 40.0  # per long probe; longer timers are reported as lower bounds


@dataclass(frozen=True)
class Case:
    name: str
    stack: str
    extra: str  # YAML lines for the target (sysctl, profile, tcp, lwipopts, initcwnd, ...)


CASES: list[Case] = [
    # Linux: defaults, then sysctl sets and route metrics.
    Case("lxdef", "linux", ""),
    Case("lxoff", "linux",
         "sysctl: {net.ipv4.tcp_sack: 0, net.ipv4.tcp_timestamps: 0, "
         "net.ipv4.tcp_window_scaling: 0, net.ipv4.tcp_ecn: 0, net.ipv4.tcp_fastopen: 1027, "
         "net.ipv4.ip_default_ttl: 100}\n"),
    Case("lxsack", "linux", "sysctl: {net.ipv4.tcp_sack: 0}\n"),
    Case("lxsyn", "linux",
         "sysctl: {net.ipv4.tcp_syn_retries: 2, net.ipv4.tcp_retries2: 4}\ninitcwnd: 4\n"),
    Case("lxiw", "linux", "sysctl: {net.ipv4.tcp_timestamps: 0}\ninitcwnd: 20\n"),
    Case("lxbuf", "linux",
         "sysctl: {net.ipv4.tcp_rmem: '4096 8192 8192', net.ipv4.tcp_ecn: 1}\n"),
    # The reference stack: every profile, and overrides on top of one.
    Case("locfull", "local", "profile: full\n"),
    Case("loclinux", "local", "profile: linux-like\n"),
    Case("loclw", "local", "profile: lwip-default\n"),
    Case("locriot", "local", "profile: riot-gnrc\n"),
    Case("locuip", "local", "profile: uip\n"),
    Case("locovr", "local",
         "profile: full\ntcp: {rto.initial_us: 2000000, delayed_ack_us: 100000, "
         "initial_window: 2920, time_wait_us: 5000000, sack: false, nagle: false, "
         "syn_retries: 3, mss: 1000}\n"),
    # lwIP 2.1.3: defaults, then lwipopts variants.
    Case("lwdef", "lwip", ""),
    Case("lwopt", "lwip",
         "lwipopts: {TCP_MSS: 1000, TCP_WND: 8000, TCP_SND_BUF: 4000, IP_DEFAULT_TTL: 77}\n"),
    Case("lwsack", "lwip",
         "lwipopts: {LWIP_TCP_SACK_OUT: 1, LWIP_WND_SCALE: 1, TCP_RCV_SCALE: 2, "
         "TCP_WND: 8192}\n"),
    Case("lwts", "lwip", "lwipopts: {LWIP_TCP_TIMESTAMPS: 1}\n"),
    Case("lwrtx", "lwip", "lwipopts: {TCP_MAXRTX: 4, TCP_SYNMAXRTX: 2}\n"),
    Case("lwbuf", "lwip",
         "lwipopts: {TCP_SND_BUF: 4288, TCP_SND_QUEUELEN: 32, MEMP_NUM_TCP_SEG: 32}\n"),
    # lwbuf with a heap that holds its send buffer (MEM_SIZE is 1600 B by default, so lwbuf's
    # TCP_SND_BUF cannot fill): 8 segments in flight, room for fast retransmit and recovery.
    Case("lwheap", "lwip",
         "lwipopts: {TCP_SND_BUF: 4288, TCP_SND_QUEUELEN: 32, MEMP_NUM_TCP_SEG: 32, "
         "MEM_SIZE: 16000}\n"),
    # The reference stack without silly-window avoidance: the SWS probes must see it.
    Case("locsws", "local", "profile: full\ntcp: {sws_avoidance: false}\n"),
    # lwIP that negotiates SACK (receiver side, LWIP_TCP_SACK_OUT) with lwheap's 8-segment send
    # buffer: its sender ignores SACK blocks, so SACK recovery must come out False.
    Case("lwsackh", "lwip",
         "lwipopts: {LWIP_TCP_SACK_OUT: 1, TCP_SND_BUF: 4288, TCP_SND_QUEUELEN: 32, "
         "MEMP_NUM_TCP_SEG: 32, MEM_SIZE: 16000}\n"),
    # lwIP with per-connection keep-alive timings (LWIP_TCP_KEEPALIVE): the agent can set
    # keepidle/keepintvl/keepcnt, so P12 sees lwIP's keep-alives within seconds.
    Case("lwka", "lwip", "lwipopts: {LWIP_TCP_KEEPALIVE: 1}\n"),
]  # fmt: skip

BY_NAME = {c.name: c for c in CASES}


def selected_cases() -> list[Case]:
    wanted = os.environ.get("TCP_HIL_GT_CASES")
    if not wanted:
        return CASES
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"TCP_HIL_GT_CASES: unknown cases {unknown}; known: {list(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def selected_probes(all_ids: list[str]) -> list[str]:
    wanted = os.environ.get("TCP_HIL_GT_PROBES")
    if not wanted:
        return all_ids
    return [p.strip() for p in wanted.split(",") if p.strip()]


def lab_text(cases: list[Case]) -> str:
    out = "version: 1\nname: groundtruth\ntargets:\n"
    for i, case in enumerate(cases):
        n = 10 + [c.name for c in CASES].index(case.name)
        del i
        body = textwrap.dedent(
            f"""\
            - name: {case.name}
              stack: {case.stack}
              mac: "02:00:00:00:{n:02x}:02"
              ipv4: 10.79.{n}.2/24
              ipv6: 2001:db8:79:{n}::2/64
              tester: {{ipv4: 10.79.{n}.1/24, ipv6: "2001:db8:79:{n}::1/64"}}
            """
        )
        body += textwrap.indent(case.extra, "  ")
        out += textwrap.indent(body, "  ")
    return out
