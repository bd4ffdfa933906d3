"""Bulk TCP goodput over a TAP: Linux against the local reference stack and against lwIP.

How to run (root; the first run fetches and builds lwIP from Debian's source package, cached in
``~/.cache/tcp-hil/lwip``):

    .venv/bin/python benchmarks/tcp_goodput.py [--mb 50] [--repeat 1] [--ipv6]

Everything runs in the same namespace on the same TAP, one stack at a time, in both
directions:

* Linux -> target: a Linux socket sends ``--mb`` MB to discard (port 9), half-closes and waits
  for the target's FIN;
* target -> Linux: the target's chargen (port 19, started with the byte count) sends ``--mb``
  MB and closes; Linux reads to EOF.

Stacks, like for like: ``lwip`` is the lwIP program built with TCP_MSS 1460, TCP_WND 65535,
TCP_SND_BUF 65535 and no window scaling (lwIP has no timestamps and, by default, no SACK);
``local (lwip-like)`` is ``hil stack serve`` with the same MSS, buffers/window and options
off; ``local (full)`` is the local stack's default ``full`` profile (256 KiB buffers, window
scaling, timestamps, SACK).

The clock is the capture, never a Python clock read around a send: ``dumpcap`` records the
Linux side of the TAP (96-byte snap length; kernel timestamps), and goodput = payload bytes /
(time of the sender's last new data byte or its FIN - time of its first data segment).
Retransmissions are counted from the same capture (segments ending at or below the highest
sequence already seen). ``CPU s`` is the user + system time the stack's process used during
the transfer (``/proc/<pid>/stat``; the system part includes the kernel's work on every TAP
write), and ``CPU us/seg`` that time per new data segment: where a slow stack's time goes.

Namespaces, stacks and captures are removed on exit, Ctrl-C included; a run killed with
SIGKILL leaves a ``hil-goodput-<pid>`` namespace that the next run removes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.localstack import LocalStack, serve_argv, start
from harness.probes.capture import Capture, read_pcap
from harness.vnet import TapLink, gc_stale, ip, tap_link
from targets.lwip.build import build

REPO = Path(__file__).resolve().parents[1]

GOAL_MBIT = 200.0
LINUX_V4, TARGET_V4 = "10.77.0.1", "10.77.0.2"
LINUX_V6, TARGET_V6 = "2001:db8:77::1", "2001:db8:77::2"
MAC = "02:00:00:00:00:02"

# lwIP sized for bulk transfer without window scaling. What the sizes follow from (lwIP's
# init.c sanity checks): the pool must hold a full window of full-size frames
# (PBUF_POOL_SIZE * ~1462 B >= TCP_WND), the segment pool the default send queue
# (TCP_SND_QUEUELEN = (4 * TCP_SND_BUF + MSS - 1) / MSS = 180), and the heap the send buffer.
LWIP_OPTIONS: dict[str, int | str] = {
    "TCP_MSS": 1460,
    "TCP_WND": 65535,
    "TCP_SND_BUF": 65535,
    "PBUF_POOL_SIZE": 64,
    "MEMP_NUM_TCP_SEG": 256,
    "MEM_SIZE": 256 * 1024,
}
# The local stack with the same segment size, window and options as that lwIP build.
LOCAL_LWIP_LIKE = [
    "mss=1460",
    "rcv_buf=65535",
    "snd_buf=65535",
    "window_scale=off",
    "timestamps=off",
    "sack=off",
]

CLIENT = r"""
import socket, sys, time
addr, port, mode, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for attempt in range(200):  # a stack is up when it says so; retry a refusal for 10 s anyway
    try:
        s = socket.create_connection((addr, port), timeout=300)
        break
    except ConnectionRefusedError:
        if attempt == 199:
            raise
        time.sleep(0.05)
got = 0
if mode == "send":
    block = memoryview(bytes(1 << 20))
    left = total
    while left:
        n = min(left, len(block))
        s.sendall(block[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
else:
    buf = bytearray(1 << 20)
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
s.close()
print(got)
"""


@dataclass
class Flow:
    payload: int  # bytes, from the first data byte to the highest sequence reached
    seconds: float
    segments: int  # data segments carrying new data
    retransmits: int  # data segments ending at or below the highest sequence already seen


@dataclass
class Transfer:
    stack: str
    direction: str
    flow: Flow
    expected: int
    drops: int  # frames the capture lost
    cpu_s: float  # user + system CPU of the stack's process during the transfer

    @property
    def payload(self) -> int:
        return self.flow.payload

    @property
    def seconds(self) -> float:
        return self.flow.seconds

    @property
    def mbit(self) -> float:
        return self.payload * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


# ---- capture ----


@dataclass
class Segment:
    ts: float
    sport: int
    dport: int
    seq: int
    flags: int
    length: int  # payload bytes, from the IP length (the capture is truncated)


def segments(path: Path) -> Iterator[Segment]:
    for ts, frame in read_pcap(path):
        if len(frame) < 14:
            continue
        etype = struct.unpack_from("!H", frame, 12)[0]
        if etype == 0x0800:
            ihl = (frame[14] & 0x0F) * 4
            total = struct.unpack_from("!H", frame, 16)[0]
            if frame[23] != 6:
                continue
            tcp, ip_payload = 14 + ihl, total - ihl
        elif etype == 0x86DD:
            if frame[20] != 6:  # no extension headers on this path
                continue
            tcp, ip_payload = 54, struct.unpack_from("!H", frame, 18)[0]
        else:
            continue
        if len(frame) < tcp + 14:
            continue
        sport, dport, seq = struct.unpack_from("!HHI", frame, tcp)
        doff = (frame[tcp + 12] >> 4) * 4
        yield Segment(ts, sport, dport, seq, frame[tcp + 13], ip_payload - doff)


def analyse(path: Path, sender_port: int | None, receiver_port: int | None) -> Flow:
    """The data flow of the one connection in ``path``.

    The sender is recognised by its source port (chargen: 19) or by the destination port it
    sends to (discard: 9)."""
    first_ts: float | None = None
    base = 0
    high = 0  # highest sequence offset reached, relative to the first data byte
    end_ts = 0.0
    retransmits = 0
    new_segments = 0
    for seg in segments(path):
        from_sender = (sender_port is not None and seg.sport == sender_port) or (
            receiver_port is not None and seg.dport == receiver_port
        )
        if not from_sender:
            continue
        fin = bool(seg.flags & 0x01)
        if seg.length <= 0 and not fin:
            continue
        if first_ts is None:
            if seg.length <= 0:
                continue
            first_ts, base = seg.ts, seg.seq
        rel = (seg.seq - base) & 0xFFFFFFFF
        end = rel + max(seg.length, 0)
        if seg.length > 0 and end <= high:
            retransmits += 1
        elif end > high:
            high = end
            end_ts = seg.ts
            new_segments += seg.length > 0
        if fin:
            end_ts = max(end_ts, seg.ts)
    if first_ts is None:
        return Flow(0, 0.0, 0, 0)
    return Flow(high, end_ts - first_ts, new_segments, retransmits)


# ---- stacks ----


@dataclass
class Stack:
    name: str
    argv: list[str]


def stacks(link: TapLink, total: int, lwip: Path) -> list[Stack]:
    services = f"echo:7,discard:9,chargen:19:{total}"
    local = [
        ("local (lwip-like)", [a for o in LOCAL_LWIP_LIKE for a in ("--tcp", o)]),
        ("local (full)", []),
    ]
    lwip_argv = ["ip", "netns", "exec", link.netns, str(lwip), "--tap", link.tap, "--mac", MAC]
    lwip_argv += ["--ipv4", f"{TARGET_V4}/24", "--ipv6", f"{TARGET_V6}/64", "--no-dad"]
    lwip_argv += ["--chargen-bytes", str(total)]
    out = [Stack("lwip", lwip_argv)]
    for name, extra in local:
        argv = serve_argv(
            link.tap,
            link.netns,
            MAC,
            f"{TARGET_V4}/24",
            f"{TARGET_V6}/64",
            services=services,
            extra=["--no-dad", *extra],
        )
        out.append(Stack(name, argv))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (proc(5) stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_transfer(
    link: TapLink, stack: LocalStack, name: str, direction: str, total: int, target: str, pcap: Path
) -> Transfer:
    send = direction == "Linux->target"
    port = 9 if send else 19
    cpu0 = cpu_seconds(stack.proc.pid)
    cap = Capture(link.netns, link.tap, pcap, bpf="tcp port 9 or tcp port 19", snaplen=96)
    with cap:
        res = link.exec(
            sys.executable,
            "-c",
            CLIENT,
            target,
            str(port),
            "send" if send else "recv",
            str(total),
            timeout=600,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{name} {direction}: client failed:\n{res.stderr}")
    cpu = cpu_seconds(stack.proc.pid) - cpu0
    if not send and int(res.stdout.strip() or 0) != total:
        raise RuntimeError(f"{name}: chargen delivered {res.stdout.strip()} of {total} bytes")
    flow = analyse(pcap, 19 if not send else None, 9 if send else None)
    return Transfer(name, direction, flow, total, cap.drops, cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=50, help="megabytes (10^6) per transfer")
    ap.add_argument("--repeat", type=int, default=1, help="transfers per stack and direction")
    ap.add_argument("--ipv6", action="store_true", help="run over IPv6 instead of IPv4")
    ap.add_argument("--keep", type=Path, default=None, help="keep the captures in this directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("tcp_goodput: needs root (network namespaces, TAP)", file=sys.stderr)
        return 1
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop the stacks and captures
    # and delete the namespace (a shell starting us in the background leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    total = int(args.mb * 1_000_000)
    lwip = build(LWIP_OPTIONS)
    gc_stale()
    with tempfile.TemporaryDirectory(prefix="tcp-goodput-") as scratch:
        captures = args.keep or Path(scratch)
        captures.mkdir(parents=True, exist_ok=True)
        results = run_all(args, total, lwip, captures)
    report(results, args)
    return 0


def run_all(args: argparse.Namespace, total: int, lwip: Path, captures: Path) -> list[Transfer]:
    """Every stack in turn on one TAP in one namespace; the namespace goes whatever happens."""
    results: list[Transfer] = []
    target = TARGET_V6 if args.ipv6 else TARGET_V4
    n = 0
    with tap_link("goodput", [f"{LINUX_V4}/24", f"{LINUX_V6}/64"]) as link:
        for st in stacks(link, total, lwip):
            ip("-n", link.netns, "neigh", "flush", "dev", link.tap, check=False)
            proc: LocalStack = start(st.argv, cwd=REPO)
            try:
                for _ in range(args.repeat):
                    for direction in ("Linux->target", "target->Linux"):
                        n += 1
                        pcap = captures / f"{n:02d}.pcap"
                        t = run_transfer(link, proc, st.name, direction, total, target, pcap)
                        results.append(t)
                        print(
                            f"  {t.stack:<18} {t.direction:<14} {t.mbit:8.1f} Mbit/s",
                            file=sys.stderr,
                            flush=True,
                        )
            finally:
                summary = proc.stop()
            last = summary.splitlines()[-1] if summary else ""
            print(f"  {st.name}: {last}", file=sys.stderr)
    return results


def report(results: list[Transfer], args: argparse.Namespace) -> None:
    fam = "IPv6" if args.ipv6 else "IPv4"
    print(f"\nBulk TCP goodput over a TAP ({fam}), timed from the capture")
    head = (
        f"{'stack':<18} {'direction':<14} {'MB':>7} {'seconds':>8} {'Mbit/s':>8} {'rexmit':>7}"
        f" {'CPU s':>6} {'CPU us/seg':>10}"
    )
    print(head)
    print("-" * len(head))
    for t in results:
        note = "" if t.payload == t.expected else f"  (expected {t.expected} B)"
        note += f"  (capture dropped {t.drops} frames)" if t.drops else ""
        print(
            f"{t.stack:<18} {t.direction:<14} {t.payload / 1e6:7.2f} {t.seconds:8.3f} "
            f"{t.mbit:8.1f} {t.flow.retransmits:7d} {t.cpu_s:6.2f} "
            f"{t.cpu_s * 1e6 / max(t.flow.segments, 1):10.1f}{note}"
        )

    def median(stack: str, direction: str) -> float:
        vals = [t.mbit for t in results if t.stack == stack and t.direction == direction]
        return statistics.median(vals) if vals else 0.0

    print(f"\nGoal: >= {GOAL_MBIT:.0f} Mbit/s each way and >= 1.0x lwIP (medians)")
    for local in ("local (lwip-like)", "local (full)"):
        for direction in ("Linux->target", "target->Linux"):
            ours, theirs = median(local, direction), median("lwip", direction)
            ratio = ours / theirs if theirs else 0.0
            speed = "met" if ours >= GOAL_MBIT else "NOT met"
            parity = "met" if ratio >= 1.0 else "NOT met"
            print(
                f"{local:<18} {direction:<14} {ours:8.1f} Mbit/s = {ratio:5.2f}x lwIP "
                f"({theirs:.1f}): {GOAL_MBIT:.0f} Mbit/s {speed}, 1.0x lwIP {parity}"
            )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("tcp_goodput: interrupted; namespace and processes removed", file=sys.stderr)
        sys.exit(130)
