"""The whole probe catalogue on the default lab's three targets in parallel: wall time, and the
error of every inferred timer against the value the target is configured with.

How to run (root; the first run builds lwIP from Debian's source package):

    .venv/bin/python benchmarks/probe_catalogue.py [--lab lab.yaml] [--budget 60] [--out DIR]

This is what ``hil probe`` does (bring the lab up, every target's probes up to four at a time,
targets in parallel); the goal is a full catalogue in at most 5 minutes. Wall time counts
from the start of bring-up to the last probe's observations on disk, and per probe the slowest
target's time is listed, so the long poles are visible.

Timer error: for each timer key the probes report, the configured value comes from the
target's declared configuration -- the reference stack's profile (``build.json`` holds every
value), lwIP 2.1.3's opt.h defaults and lwipopts (tcp-behaviour.md §6: 3 s initial RTO, 250 ms
fast timer, 2 x 60 s TIME-WAIT, ...), Linux's constants (include/net/tcp.h: 1 s initial RTO,
200 ms floor, 60 s TIME-WAIT). The error is inferred - configured, and whether the configured
value lies inside the observation's confidence interval. Timers cut by the budget are lower
bounds and are listed as such, not as errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.lab.load import load
from harness.lab.virtual import VirtualLab
from harness.probes import engine, figure2
from harness.probes.catalogue import PROBES
from harness.probes.observe import Observation

Configured = dict[str, float | tuple[float, float]]

LINUX: Configured = {
    "rto_initial_ms": 1000.0,
    "rto_min_ms": 200.0,
    "time_wait_s": 60.0,
    "delayed_ack_ms": (40.0, 200.0),  # TCP_DELACK_MIN .. TCP_DELACK_MAX
}
LWIP: Configured = {
    "rto_initial_ms": 3000.0,
    "timer_tick_ms": (250.0, 500.0),  # fast and slow timers
    "delayed_ack_ms": (0.0, 250.0),  # until the next 250 ms fast-timer tick
    "time_wait_s": 120.0,
    "zwp_first_ms": 1500.0,  # tcp_persist_backoff[0] = 3 slow ticks
}


def configured(build: dict[str, Any]) -> dict[str, float | tuple[float, float]]:
    """Timer key -> the configured value (or range) for a target's build information."""
    stack = build.get("stack")
    if stack == "linux":
        return dict(LINUX)
    if stack == "lwip":
        return dict(LWIP)
    if stack == "local":
        tcp = build.get("tcp", {})
        rto = tcp.get("rto", {})
        out: dict[str, float | tuple[float, float]] = {
            "rto_initial_ms": rto.get("initial_us", 0) / 1000,
            "time_wait_s": tcp.get("time_wait_us", 0) / 1e6,
        }
        if rto.get("min_us"):
            out["rto_min_ms"] = rto["min_us"] / 1000
        if tcp.get("delayed_ack"):
            out["delayed_ack_ms"] = tcp.get("delayed_ack_us", 0) / 1000
        if tcp.get("timer_tick_us"):
            out["timer_tick_ms"] = tcp["timer_tick_us"] / 1000
        return out
    return {}


def timer_errors(name: str, obs: list[Observation], build: dict[str, Any]) -> list[str]:
    rows = []
    for key, want in configured(build).items():
        for o in (o for o in obs if o.key == key):
            if not isinstance(o.value, int | float) or isinstance(o.value, bool):
                rows.append(f"  {name:<7} {key:<16} {'-':>10} {_fmt(want):>12}   ({o.verdict})")
                continue
            value = float(o.value)
            lo, hi = want if isinstance(want, tuple) else (want, want)
            err = 0.0 if lo <= value <= hi else (value - hi if value > hi else value - lo)
            cut = "budget" in o.detail
            iv = o.confidence.interval
            inside = iv is not None and iv[0] <= hi and lo <= iv[1]
            note = "lower bound (cut by the budget)" if cut else (
                f"interval {iv[0]:g}-{iv[1]:g} {'covers' if inside else 'MISSES'} it"
                if iv else ""
            )  # fmt: skip
            rel = f"{100 * err / hi:+.1f}%" if hi else ""
            rows.append(
                f"  {name:<7} {key:<16} {value:>10g} {_fmt(want):>12} {err:>+9.1f} {rel:>7}  {note}"
            )
    return rows


def _fmt(v: float | tuple[float, float]) -> str:
    return f"{v[0]:g}-{v[1]:g}" if isinstance(v, tuple) else f"{v:g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lab", type=Path, default=Path("lab.yaml"))
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--parallel", type=int, default=4, help="probes at a time per target")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tcp-hil-bench-catalogue"))
    args = ap.parse_args()
    lab = load(args.lab)
    t0 = time.monotonic()
    with VirtualLab(lab, args.out / "logs") as vlab:
        vlab.up()
        up_s = time.monotonic() - t0
        contexts = [engine.Context.for_node(n, args.out, args.budget) for n in vlab.nodes.values()]
        results = engine.run_all(contexts, None, parallel=args.parallel)
    wall = time.monotonic() - t0
    names = list(results)
    figure2.write(args.out, names)
    print(f"catalogue: {len(PROBES)} probes x {len(names)} targets ({', '.join(names)}), "
          f"budget {args.budget:g} s, {args.parallel} probes at a time per target")  # fmt: skip
    print(f"lab up {up_s:.1f} s; wall time up to the last observation {wall:.1f} s "
          f"(goal <= 300 s)")  # fmt: skip
    print("slowest probes (seconds, slowest target):")
    per_probe: dict[str, tuple[float, str]] = {}
    for name in names:
        for path in (args.out / name / "observations").glob("*.json"):
            rec = json.loads(path.read_text())
            if rec["seconds"] > per_probe.get(rec["probe"], (0.0, ""))[0]:
                per_probe[rec["probe"]] = (rec["seconds"], name)
    for pid, (sec, name) in sorted(per_probe.items(), key=lambda kv: -kv[1][0])[:10]:
        print(f"  {pid:<5} {sec:7.1f}  {name}")
    inconclusive = sum(o.verdict == "inconclusive" for obs in results.values() for o in obs)
    total = sum(len(obs) for obs in results.values())
    print(f"observations: {total}, inconclusive: {inconclusive}")
    print("timer inference error (inferred - configured):")
    print(
        f"  {'target':<7} {'key':<16} {'inferred':>10} {'configured':>12} {'error':>9} {'rel':>7}"
    )
    for name, ctx in zip(names, contexts, strict=True):
        for row in timer_errors(name, results[name], ctx.build):
            print(row)
    print(f"Figure 2: {args.out / 'figure2.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
