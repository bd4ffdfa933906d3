"""``hil run``: the main job -- lab up, the probe catalogue on every target, lab down, a bundle.

The run directory is the unit of work. ``run.json`` is written first (what was asked: lab file
and its hash, targets, probes, budget) and finished last (end time, complete); in between,
every probe's observations land in ``<target>/observations/<probe>.json`` atomically as it
finishes (the engine's contract). So a run killed at any moment leaves a bundle that
``hil report DIR`` renders as partial, and ``hil run --resume DIR`` brings up only the targets
that still miss probes and runs only those probes: nothing finished is re-run or lost.

The lab file is copied into the bundle and a resumed run uses that copy, so the bundle always
describes what was measured even if the original file changed since.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.lab.load import LabError
from harness.lab.load import load as load_lab
from harness.lab.virtual import LabUpError, VirtualLab
from harness.probes import engine
from harness.probes.catalogue import PROBES

RUN_META = "run.json"
LAB_COPY = "lab.yaml"


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tcp-hil")
    except PackageNotFoundError:
        return "0+unknown"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: probe every target of the lab, write a report bundle",
        description="Bring the lab up, run the probe catalogue on every target in parallel, "
        "tear the lab down and write a report bundle (report.json, index.html, report.md, "
        "junit.xml, pcaps, logs).",
    )
    p.add_argument("--lab", type=Path, default=Path("lab.yaml"), help="lab file (default lab.yaml)")
    p.add_argument("--targets", default="", help="comma-separated targets (default: all)")
    p.add_argument("--probes", default="", help="comma-separated probe ids (default: all)")
    p.add_argument("--out", type=Path, default=None, help="bundle dir (default reports/<time>)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds a long probe may take")
    p.add_argument("--parallel", type=int, default=4, help="probes at a time per target")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="finish an interrupted run: only the probes missing in DIR")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="plain progress lines, no live view")
    p.set_defaults(func=cmd_run)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def missing(out: Path, targets: list[str], probes: list[str]) -> dict[str, list[str]]:
    """Target -> the probes whose observations are not in the bundle yet."""
    todo = {}
    for t in targets:
        left = [p for p in probes if not (out / t / "observations" / f"{p}.json").exists()]
        if left:
            todo[t] = left
    return todo


def _plan(args: argparse.Namespace) -> tuple[Path, dict[str, Any]] | str:
    if args.resume is not None:
        out = args.resume
        try:
            meta: dict[str, Any] = json.loads((out / RUN_META).read_text())
        except (OSError, ValueError) as exc:
            return f"{out}: not a run bundle ({RUN_META} unreadable: {exc})"
        return out, meta
    try:
        lab = load_lab(args.lab)
    except LabError as exc:
        return str(exc)
    names = [t.name for t in lab.targets]
    targets = _split(args.targets) or names
    unknown = [t for t in targets if t not in names]
    if unknown:
        return f"unknown target(s) {', '.join(unknown)}; {args.lab} has {', '.join(names)}"
    probes = _split(args.probes) or sorted(PROBES, key=engine._order)
    bad = [p for p in probes if p not in PROBES]
    if bad:
        return f"unknown probe(s) {', '.join(bad)}; probes: {', '.join(PROBES)}"
    out = args.out or Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.lab, out / LAB_COPY)
    meta = {
        "start": _now(),
        "end": None,
        "complete": False,
        "host": socket.gethostname(),
        "tool_version": tool_version(),
        "lab_file": str(args.lab),
        "lab_sha256": hashlib.sha256(args.lab.read_bytes()).hexdigest(),
        "targets": targets,
        "probes": probes,
        "budget_s": args.budget,
    }
    _write_json(out / RUN_META, meta)
    if out.parent.name == "reports" or out.parent == Path("reports"):
        _latest(out)
    return out, meta


def _latest(out: Path) -> None:
    link = out.parent / "latest"
    tmp = out.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(out.name)
        tmp.replace(link)
    except OSError:
        pass  # a filesystem without symlinks: the bundle is still where we said


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def cmd_run(args: argparse.Namespace) -> int:
    planned = _plan(args)
    if isinstance(planned, str):
        print(planned, file=sys.stderr)
        return 2
    out, meta = planned
    todo = missing(out, meta["targets"], meta["probes"])
    done_before = sum(len(meta["probes"]) for _ in meta["targets"]) - sum(map(len, todo.values()))
    if args.resume is not None:
        print(f"resuming {out}: {done_before} probe results kept, "
              f"{sum(map(len, todo.values()))} to run", flush=True)  # fmt: skip
    t0 = time.monotonic()
    status = 0
    if todo:
        try:
            lab = load_lab(out / LAB_COPY)
        except LabError as exc:
            print(exc, file=sys.stderr)
            return 2
        view = Progress(todo, quiet=args.quiet or not sys.stdout.isatty())
        try:
            with view.live(), VirtualLab(lab, out / "logs", progress=view.note) as vlab:
                vlab.up(list(todo))
                contexts = {
                    t: engine.Context.for_node(vlab.node(t), out, meta["budget_s"]) for t in todo
                }
                with ThreadPoolExecutor(max_workers=len(contexts)) as pool:
                    futures = [
                        pool.submit(engine.run_target, contexts[t], todo[t], view.done,
                                    args.parallel, view.start)
                        for t in todo
                    ]  # fmt: skip
                    for f in futures:
                        f.result()
        except (LabUpError, KeyError) as exc:
            print(exc, file=sys.stderr)
            status = 1
    left = missing(out, meta["targets"], meta["probes"])
    meta["end"] = _now()
    meta["complete"] = not left
    meta["seconds"] = round(time.monotonic() - t0, 1) + float(meta.get("seconds") or 0)
    _write_json(out / RUN_META, meta)
    rendered = render_bundle(out)
    state = "complete" if not left else f"PARTIAL ({sum(map(len, left.values()))} probes missing)"
    print(f"run {state} in {time.monotonic() - t0:.1f} s; report: {rendered}", flush=True)
    return status


def render_bundle(out: Path) -> Path:
    """Write report.json, index.html, report.md and junit.xml; returns the page's path."""
    from harness.report.render import render

    return render(out)


class Progress:
    """Targets x probes with their state: a live table on a terminal, lines otherwise."""

    def __init__(self, todo: dict[str, list[str]], quiet: bool) -> None:
        self.todo = todo
        self.quiet = quiet
        self.state: dict[tuple[str, str], tuple[str, float]] = {
            (t, p): ("waiting", 0.0) for t, ps in todo.items() for p in ps
        }
        self.notes: list[str] = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def note(self, message: str) -> None:
        if self.quiet:
            print(message, flush=True)
        else:
            with self._lock:
                self.notes = [*self.notes[-3:], message]

    def start(self, target: str, pid: str) -> None:
        with self._lock:
            self.state[(target, pid)] = ("running", time.monotonic())

    def done(self, target: str, pid: str) -> None:
        with self._lock:
            started = self.state.get((target, pid), ("", time.monotonic()))[1]
            took = time.monotonic() - started
            self.state[(target, pid)] = ("done", took)
        if self.quiet:
            n = sum(s == "done" for s, _ in self.state.values())
            print(f"[{time.monotonic() - self.t0:6.1f} s] {target}: {pid} done in {took:.1f} s "
                  f"({n}/{len(self.state)})", flush=True)  # fmt: skip

    def _table(self) -> Any:
        from rich.table import Table

        probes = sorted({p for ps in self.todo.values() for p in ps}, key=engine._order)
        table = Table(title=f"hil run -- {time.monotonic() - self.t0:.0f} s", expand=False)
        table.add_column("probe")
        for t in self.todo:
            table.add_column(t)
        now = time.monotonic()
        with self._lock:
            for p in probes:
                row = [p]
                for t in self.todo:
                    state, at = self.state.get((t, p), ("", 0.0))
                    row.append(
                        {"waiting": "[dim]·[/dim]", "": ""}.get(state)
                        or (f"[yellow]{now - at:.0f} s[/yellow]" if state == "running"
                            else f"[green]{at:.1f} s[/green]")
                    )  # fmt: skip
                table.add_row(*row)
            if self.notes:
                table.caption = self.notes[-1]
        return table

    @contextmanager
    def live(self) -> Iterator[None]:
        if self.quiet:
            yield
            return
        from rich.live import Live

        class _View:
            def __init__(self, owner: Progress) -> None:
                self.owner = owner

            def __rich__(self) -> Any:
                return self.owner._table()

        with Live(_View(self), refresh_per_second=2, transient=False):
            yield
