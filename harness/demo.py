"""``hil run`` for now: bring the local stack up in a virtual lab and show Linux talking to it.

This is the foundation's end-to-end check a user can watch: a namespace with a TAP, the
reference stack serving on it as a real process, and the Linux kernel pinging it (IPv4, IPv6,
link-local, fragmented) and exchanging UDP echoes. The probe catalogue and report replace the
body of this job in later releases; the command stays.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from harness.labfile import Lab, LabFileError, LocalTarget, load
from harness.localstack import serve_argv, start
from harness.vnet import gc_stale, tap_link
from stack.wire import addr as A

_UDP_CHECK = r"""
import os, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
ok = 0
for size in (1, 512, 1472, 8000):
    p = os.urandom(size); s.sendto(p, (sys.argv[1], 7))
    try:
        ok += s.recvfrom(65535)[0] == p
    except TimeoutError:
        pass
print(ok)
"""

# RFC 862 echo over TCP: 1 MB out, the same 1 MB back (both directions at once), timed by the
# client only to show a rough rate; the report's measurements come from captures.
_TCP_CHECK = r"""
import os, socket, sys, threading, time
data = os.urandom(1_000_000)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
t0 = time.monotonic()
threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR))).start()
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
dt = time.monotonic() - t0
print("ok" if bytes(got) == data else f"bad {len(got)}", f"{len(data) * 8 / dt / 1e6:.0f}")
"""


def run_demo(out_dir: Path | None = None, lab_path: Path = Path("lab.yaml")) -> int:
    try:
        lab = load(lab_path)
    except LabFileError as exc:
        print(f"hil run: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("hil run: needs root (it creates a network namespace and a TAP)", file=sys.stderr)
        return 1
    stale = gc_stale()
    if stale:
        print(f"removed leftovers of an earlier run: {', '.join(stale)}")
    out = out_dir or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    rc = 0
    for target in lab.targets:
        rc |= _run_target(lab, target, out / f"{target.name}.pcapng")
    return rc


def _run_target(lab: Lab, target: LocalTarget, pcap: Path) -> int:
    stack_v4 = target.ipv4.split("/")[0]
    stack_v6 = target.ipv6.split("/")[0]
    stack_ll = A.ip_str(A.link_local_from_mac(A.mac_parse(target.mac)))
    services = ",".join(str(s) for s in target.services)
    echo = any(s.kind == "udp-echo" and s.port == 7 for s in target.services)
    results: list[tuple[str, bool, str]] = []
    print(f"target {target.name} (stack: local) from {lab.path}")
    with tap_link("demo", [target.tester_ipv4, target.tester_ipv6]) as link:
        tcp = [a for kv in target.tcp for a in ("--tcp", kv)]
        argv = serve_argv(
            link.tap,
            link.netns,
            target.mac,
            target.ipv4,
            target.ipv6,
            services,
            pcap,
            extra=["--profile", target.profile, *tcp],
        )
        try:
            stack = start(argv)
        except RuntimeError as exc:
            print(f"hil run: {exc}", file=sys.stderr)
            return 1
        print(f"local stack: {stack.ready_line}")
        try:
            checks = [
                ("ping IPv4", ["ping", "-c3", "-i0.2", "-W2", stack_v4]),
                ("ping IPv6", ["ping", "-6", "-c3", "-i0.2", "-W2", stack_v6]),
                (
                    "ping IPv6 link-local",
                    ["ping", "-6", "-c3", "-i0.2", "-W2", f"{stack_ll}%{link.tap}"],
                ),
                (
                    "ping IPv4 -s 4000 (fragments)",
                    ["ping", "-c3", "-i0.2", "-W2", "-s4000", stack_v4],
                ),
                (
                    "ping IPv6 -s 4000 (fragments)",
                    ["ping", "-6", "-c3", "-i0.2", "-W2", "-s4000", stack_v6],
                ),
            ]
            for name, argv in checks:
                t0 = time.monotonic()
                res = link.exec(*argv)
                rtt = next(
                    (ln.split("=")[1].strip() for ln in res.stdout.splitlines() if "rtt" in ln), ""
                )
                results.append((name, res.returncode == 0, rtt or f"{time.monotonic() - t0:.1f}s"))
            for fam, addr in (("IPv4", stack_v4), ("IPv6", stack_v6)) if echo else ():
                res = link.exec(sys.executable, "-c", _UDP_CHECK, addr)
                good = res.stdout.strip() == "4"
                results.append(
                    (f"UDP echo {fam} (1..8000 B)", good, f"{res.stdout.strip() or 0}/4 byte-exact")
                )
            tcp_echo = next((s.port for s in target.services if s.kind == "echo"), None)
            for fam, addr in (("IPv4", stack_v4), ("IPv6", stack_v6)) if tcp_echo else ():
                res = link.exec(sys.executable, "-c", _TCP_CHECK, addr, str(tcp_echo))
                verdict, _, rate = res.stdout.strip().partition(" ")
                results.append(
                    (
                        f"TCP echo {fam} (1 MB)",
                        verdict == "ok",
                        f"{rate} Mbit/s each way"
                        if verdict == "ok"
                        else (res.stdout + res.stderr).strip()[-80:],
                    )
                )
            neigh = link.exec("ip", "neigh", "show", "dev", link.tap).stdout
            results.append(("Linux resolved the stack (ARP+NDP)", neigh.count(target.mac) >= 2, ""))
        finally:
            tail = stack.stop()
    print()
    width = max(len(r[0]) for r in results)
    for name, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    print(f"\nstack counters: {tail}")
    if shutil.which("tshark"):
        from subprocess import run

        bad = run(
            [
                "tshark",
                "-n",
                "-r",
                str(pcap),
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
                "-Y",
                '_ws.malformed || _ws.expert.severity == "Error"',
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
        verdict = "no malformed frames (tshark)" if not bad else "tshark found problems:\n" + bad
        print(f"capture {pcap}: {verdict}")
    else:
        print(f"capture: {pcap}")
    return 0 if all(ok for _, ok, _ in results) else 1
