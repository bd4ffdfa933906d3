"""``hil probe``: bring targets up, run catalogue probes on them in parallel, write observations."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.lab.load import LabError
from harness.lab.load import load as load_lab
from harness.lab.virtual import LabUpError, VirtualLab
from harness.probes import engine, figure2
from harness.probes.catalogue import PROBES
from harness.probes.observe import Observation


def add_parser(sub: Any) -> None:
    p = sub.add_parser("probe", help="run behaviour probes against lab targets")
    p.add_argument("--lab", type=Path, default=Path("lab.yaml"), help="lab file (default lab.yaml)")
    p.add_argument("--target", action="append", default=[], help="a target (default: all)")
    p.add_argument("--probe", action="append", default=[], help=f"probe ids: {', '.join(PROBES)}")
    p.add_argument(
        "--out", type=Path, default=None, help="output dir (default reports/probe-<time>)"
    )
    p.add_argument("--budget", type=float, default=60.0, help="seconds a long probe may take")
    p.add_argument(
        "--parallel", type=int, default=4, help="probes at a time per target (default 4)"
    )
    p.add_argument("--list", action="store_true", help="list the catalogue and exit")
    p.set_defaults(func=cmd_probe)


def catalogue_text() -> str:
    """The catalogue as a table: id, what it does, the feature keys it reports."""
    rows = []
    for pid in sorted(PROBES, key=engine._order):
        p = PROBES[pid]
        flag = " (runs alone)" if p.exclusive else ""
        rows.append(f"{pid:<5} {p.title}{flag}\n      keys: {', '.join(p.keys)}")
    return "\n".join(rows)


def cmd_probe(args: argparse.Namespace) -> int:
    if args.list:
        print(catalogue_text())
        return 0
    try:
        lab = load_lab(args.lab)
    except LabError as exc:
        print(exc, file=sys.stderr)
        return 2
    unknown = [p for p in args.probe if p not in PROBES]
    if unknown:
        print(
            f"unknown probe(s) {', '.join(unknown)}; probes: {', '.join(PROBES)}", file=sys.stderr
        )
        return 2
    names = args.target or [t.name for t in lab.targets]
    out = args.out or Path("reports") / time.strftime("probe-%Y%m%d-%H%M%S")
    t0 = time.monotonic()
    try:
        with VirtualLab(lab, out / "logs", progress=lambda m: print(m, flush=True)) as vlab:
            vlab.up(names)
            contexts = [engine.Context.for_node(vlab.node(n), out, args.budget) for n in names]
            results = engine.run_all(
                contexts,
                args.probe or None,
                on_done=lambda t, p: print(f"{t}: {p} done", flush=True),
                parallel=args.parallel,
            )
    except (LabUpError, KeyError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(render(results))
    figure2.write(out, names)
    print(f"observations in {out}/<target>/observations/, Figure 2 in {out}/figure2.md "
          f"({time.monotonic() - t0:.1f} s)")  # fmt: skip
    return 0


def render(results: dict[str, list[Observation]]) -> str:
    lines = []
    for target, observations in results.items():
        for o in observations:
            value = "-" if o.value is None else o.value
            fam = f" [{o.family}]" if o.family else ""
            lines.append(f"{target:<8} {o.key + fam:<32} {value!s:<10} {o.verdict:<14} {o.detail}")
    return "\n".join(lines)
