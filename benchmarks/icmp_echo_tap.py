"""ICMP echo round trips between Linux and the reference stack over a TAP.

Runs ``hil stack serve`` in a fresh namespace and floods it with ``ping -f`` from the Linux side
(one request outstanding: each reply triggers the next request), for small and full-size
frames, IPv4 and IPv6. Prints round trips per second and ping's RTT figures, which ping takes
from kernel timestamps. Needs root.

    python benchmarks/icmp_echo_tap.py [--count 20000]
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from harness.localstack import serve_argv, start
from harness.vnet import gc_stale, tap_link


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=20000)
    args = ap.parse_args()
    gc_stale()
    rows = []
    with tap_link("bench", ["10.77.0.1/24", "2001:db8:77::1/64"]) as link:
        stack = start(
            serve_argv(
                link.tap,
                link.netns,
                "02:00:00:00:00:02",
                "10.77.0.2/24",
                "2001:db8:77::2/64",
                extra=["--no-dad"],
            )
        )
        try:
            for fam, target in (("IPv4", "10.77.0.2"), ("IPv6", "2001:db8:77::2")):
                for size in (56, 1472 if fam == "IPv4" else 1452):
                    argv = [
                        "ping",
                        "-6" if fam == "IPv6" else "-4",
                        "-q",
                        "-f",
                        "-c",
                        str(args.count),
                        "-s",
                        str(size),
                        target,
                    ]
                    t0 = time.perf_counter()
                    out = link.exec(*argv, timeout=300).stdout
                    wall = time.perf_counter() - t0
                    received = int(re.search(r"(\d+) received", out).group(1))  # type: ignore[union-attr]
                    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", out)
                    frame = size + 8 + (20 if fam == "IPv4" else 40) + 14
                    rows.append(
                        (fam, frame, received, received / wall, rtt.group(2) if rtt else "?")
                    )
        finally:
            summary = stack.stop()
    head = ("family", "frame B", "replies", "round trips/s", "frames/s", "avg RTT ms")
    print(f"{head[0]:<6} {head[1]:>8} {head[2]:>8} {head[3]:>14} {head[4]:>10} {head[5]:>11}")
    for fam, frame, received, rate, avg in rows:
        print(f"{fam:<6} {frame:>8} {received:>8} {rate:>14.0f} {2 * rate:>10.0f} {avg:>11}")
    print(f"stack: {summary.splitlines()[-1] if summary else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
