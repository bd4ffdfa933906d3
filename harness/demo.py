"""``hil run`` for now: bring the local stack up in a virtual lab and show Linux talking to it.

This is the foundation's end-to-end check a user can watch: a namespace with a TAP, the
reference stack serving on it as a real process, and the Linux kernel pinging it (IPv4, IPv6,
link-local, fragmented) and exchanging UDP echoes. The probe catalogue and report replace the
body of this job in later releases; the command stays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from harness.vnet import gc_stale, tap_link

STACK_MAC = "02:00:00:00:00:02"
STACK_V4, STACK_V6, STACK_LL = "10.77.0.2", "2001:db8:77::2", "fe80::ff:fe00:2"

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


def run_demo(out_dir: Path | None = None) -> int:
    if os.geteuid() != 0:
        print("hil run: needs root (it creates a network namespace and a TAP)", file=sys.stderr)
        return 1
    stale = gc_stale()
    if stale:
        print(f"removed leftovers of an earlier run: {', '.join(stale)}")
    out = out_dir or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / "stack.pcapng"
    results: list[tuple[str, bool, str]] = []
    with tap_link("demo", ["10.77.0.1/24", "2001:db8:77::1/64"]) as link:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "stack",
                "serve",
                "--tap",
                link.tap,
                "--netns",
                link.netns,
                "--mac",
                STACK_MAC,
                "--ipv4",
                f"{STACK_V4}/24",
                "--ipv6",
                f"{STACK_V6}/64",
                "--udp-echo",
                "7",
                "--pcap",
                str(pcap),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline().strip()
            print(f"local stack: {ready}")
            if not ready.startswith("ready:"):
                print(proc.stdout.read(), file=sys.stderr)
                return 1
            checks = [
                ("ping IPv4", ["ping", "-c3", "-i0.2", "-W2", STACK_V4]),
                ("ping IPv6", ["ping", "-6", "-c3", "-i0.2", "-W2", STACK_V6]),
                (
                    "ping IPv6 link-local",
                    ["ping", "-6", "-c3", "-i0.2", "-W2", f"{STACK_LL}%{link.tap}"],
                ),
                (
                    "ping IPv4 -s 4000 (fragments)",
                    ["ping", "-c3", "-i0.2", "-W2", "-s4000", STACK_V4],
                ),
                (
                    "ping IPv6 -s 4000 (fragments)",
                    ["ping", "-6", "-c3", "-i0.2", "-W2", "-s4000", STACK_V6],
                ),
            ]
            for name, argv in checks:
                t0 = time.monotonic()
                res = link.exec(*argv)
                rtt = next(
                    (ln.split("=")[1].strip() for ln in res.stdout.splitlines() if "rtt" in ln), ""
                )
                results.append((name, res.returncode == 0, rtt or f"{time.monotonic() - t0:.1f}s"))
            for fam, addr in (("IPv4", STACK_V4), ("IPv6", STACK_V6)):
                res = link.exec(sys.executable, "-c", _UDP_CHECK, addr)
                good = res.stdout.strip() == "4"
                results.append(
                    (f"UDP echo {fam} (1..8000 B)", good, f"{res.stdout.strip() or 0}/4 byte-exact")
                )
            neigh = link.exec("ip", "neigh", "show", "dev", link.tap).stdout
            results.append(("Linux resolved the stack (ARP+NDP)", neigh.count(STACK_MAC) >= 2, ""))
        finally:
            proc.terminate()
            tail = proc.communicate(timeout=10)[0].strip()
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
