"""Render a run directory into its bundle files: report.json, index.html, report.md, junit.xml.

:func:`render` is what ``hil run`` calls when it finishes (or is interrupted) and what
``hil report DIR`` runs: it rebuilds ``report.json`` from the observations on disk -- the
engine's per-probe files are the source of truth, so a bundle left by a killed run renders,
marked PARTIAL -- writes the evidence pcap slices, then the page, the Markdown and the JUnit
file. A directory that holds only a ``report.json`` (observations pruned, or a report copied
out of CI) is re-rendered from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from harness.report import evidence, html, junit, markdown, model

__all__ = ["add_parser", "render", "write_slices"]


def _has_run(run_dir: Path) -> bool:
    return (run_dir / model.RUN_META).is_file() or any(run_dir.glob("*/observations/*.json"))


def write_slices(run_dir: Path, report: dict[str, Any]) -> None:
    """``pcaps/slices/<target>-<probe>-<n>.pcapng`` for every evidence group whose capture is
    in the bundle; records each slice's path (relative to ``run_dir``) in the report."""
    slices = run_dir / model.SLICES
    if slices.is_dir():  # a re-render numbers groups afresh: no stale slice may survive
        shutil.rmtree(slices)
    for t in report["targets"].values():
        for g in t["evidence"]:
            src = run_dir / g["pcap"]
            g["slice"], g["slice_frames"] = None, 0
            if not src.is_file():
                continue
            rel = model.SLICES / f"{g['id']}.pcapng"
            try:
                g["slice_frames"] = evidence.write_slice(src, run_dir / rel, g)
            except (OSError, ValueError):
                continue  # an unreadable capture: the page says so in the evidence view
            g["slice"] = rel.as_posix()


def render(run_dir: Path, *, from_json: bool = False) -> Path:
    """Write the bundle files of ``run_dir``; returns the path of ``index.html``."""
    if from_json or not _has_run(run_dir):
        report = model.load(run_dir / "report.json")
    else:
        report = model.build(run_dir)
        write_slices(run_dir, report)
        model.write(run_dir, report)
    page = run_dir / "index.html"
    _write_text(page, html.render(report, run_dir))
    _write_text(run_dir / "report.md", markdown.render(report))
    _write_text(run_dir / "junit.xml", junit.render(report))
    return page


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="render a run bundle (report.json, index.html, report.md, junit.xml)",
        description="Render the bundle of a run directory -- finished or interrupted -- from "
        "its observations; a directory with only report.json is re-rendered from it.",
    )
    p.add_argument("dir", type=Path, help="the run directory (e.g. reports/latest)")
    p.add_argument("--from-json", action="store_true", help="render from report.json as is")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        print(f"{args.dir}: not a directory", file=sys.stderr)
        return 2
    try:
        page = render(args.dir, from_json=args.from_json)
    except (OSError, ValueError) as exc:
        print(f"{args.dir}: {exc}", file=sys.stderr)
        return 2
    report = model.load(args.dir / "report.json")
    state = "complete" if report["run"]["complete"] else "PARTIAL"
    print(f"{state} report: {page}")
    return 0
