"""``index.html``: the report as one self-contained page a lab engineer can open anywhere.

Everything is inline -- CSS in a ``<style>``, plots as ``<svg>`` -- and nothing needs
JavaScript: collapsed parts are ``<details>``, tooltips are SVG ``<title>`` elements. The only
links are relative ones into the bundle (pcap slices, the original captures, build files), so
the page works from a file:// URL, an archived CI artefact or a web server alike.

Sections: run summary (a PARTIAL banner when probes are missing), the regenerated Figure 2
matrix, the feature table per target, RFC 9293 coverage and the evidence views (time-sequence
plot per TCP connection, packet list, slice link). Plots are drawn from the capture files
(:mod:`harness.report.evidence`), so ``render`` needs the bundle's pcaps; without them the page
still renders, saying which capture it could not read.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.report import evidence as E
from harness.report.evidence import FIN, SYN, Plot

__all__ = ["VERDICT_COLOURS", "render", "svg_plot"]

VERDICT_COLOURS = {
    "conforms": "#1e7b34",
    "deviates": "#c62828",
    "inconclusive": "#b26a00",
    "not-applicable": "#6b7280",
}
DOT = " \u00b7 "
STATUS_CLASS = {
    "conforms": "ok",
    "deviates": "bad",
    "tested": "inc",
    "not tested": "na",
    "not observable": "na",
}

CSS = """
:root { --ok:#1e7b34; --bad:#c62828; --inc:#b26a00; --na:#6b7280; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       margin: 0; color: #1f2328; background: #fff; }
header { background: #0b3d62; color: #fff; padding: 14px 24px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .meta { font-size: 13px; opacity: .9; }
main { padding: 8px 24px 40px; max-width: 1600px; }
h2 { border-bottom: 2px solid #0b3d62; padding-bottom: 3px; margin-top: 32px; }
h3 { margin: 22px 0 8px; }
nav a { margin-right: 14px; color: #fff; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 7px; vertical-align: top; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.evl { white-space: nowrap; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.partial { background: #fff4e5; border: 2px solid var(--inc); color: #5f3b00; padding: 10px 14px;
           margin: 14px 0; font-size: 15px; }
.partial strong { color: var(--bad); font-size: 18px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px;
         white-space: nowrap; }
.v-conforms { background: var(--ok); } .v-deviates { background: var(--bad); }
.v-inconclusive { background: var(--inc); } .v-not-applicable { background: var(--na); }
tr.dev td { background: #fdecea; }
tr.inc td { background: #fff8e6; }
table.matrix { width: 100%; table-layout: fixed; }
table.matrix th:first-child { width: 130px; }
table.matrix td.dev { background: #fdecea; outline: 2px solid var(--bad); outline-offset: -2px; }
table.matrix td.inc { background: #fff8e6; }
.measured { font-weight: 600; }
.cap { color: #4b5563; font-size: 12.5px; }
.conf { color: #6b7280; font-size: 12px; font-style: italic; }
td.s-ok { background: #e6f4ea; color: var(--ok); }
td.s-bad { background: #fdecea; color: var(--bad); font-weight: 600; }
td.s-inc { background: #fff8e6; color: var(--inc); } td.s-na { color: var(--na); }
.evs { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); gap: 12px; }
.ev { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 0; }
.ev table { font-size: 12px; }
.ev h4 { margin: 2px 0 4px; }
.ev .keys { color: #4b5563; font-size: 12.5px; }
.ev svg { display: block; margin: 6px 0; max-width: 100%; height: auto; }
tr.evf td { background: #fffbd6; font-weight: 600; }
.small { font-size: 12px; color: #4b5563; }
ul.dev li { color: var(--bad); } ul.dev li code, ul.dev li b { color: #1f2328; }
.summary td, .summary th { text-align: center; }
"""


def esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def fmt_value(v: object, unit: str = "") -> str:
    if v is None:
        return "\u2013"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        v = f"{v:.6g}"
    return f"{v} {unit}" if unit and unit not in ("bool", "count") else str(v)


def badge(verdict: str) -> str:
    return f'<span class="badge v-{esc(verdict)}">{esc(verdict)}</span>'


# ------------------------------------------------------------------------------ sections


def _header(report: dict[str, Any]) -> str:
    run = report["run"]
    bits = [
        f"run {esc(run.get('start') or '?')} \u2013 {esc(run.get('end') or 'unfinished')}",
        f"host {esc(run.get('host') or '?')}",
        f"tcp-hil {esc(run.get('tool_version'))}",
    ]
    if run.get("lab_file"):
        bits.append(
            f"lab {esc(run['lab_file'])} (sha256 {esc(str(run.get('lab_sha256') or '?')[:12])})"
        )
    if run.get("budget_s") is not None:
        bits.append(f"budget {esc(run['budget_s'])} s")
    title = "tcp-hil interop report" + (" \u2014 PARTIAL" if not run["complete"] else "")
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("deviations", "Deviations"),
            ("figure2", "Figure 2"),
            ("features", "Features"),
            ("rfc9293", "RFC 9293"),
            ("evidence", "Evidence"),
        )
    )
    return (
        f"<header><h1>{esc(title)}</h1><div class='meta'>{DOT.join(bits)}</div>"
        f"<nav>{nav}</nav></header>"
    )


def _partial(report: dict[str, Any]) -> str:
    run = report["run"]
    if run["complete"]:
        return ""
    missing = run["missing"]
    total = len(run["targets"]) * len(run["probes"])
    items = ", ".join(f"{esc(t)}/{esc(p)}" for t, p in missing[:60])
    more = f" and {len(missing) - 60} more" if len(missing) > 60 else ""
    why = (
        f"{len(missing)} of {total} probe results are missing: {items}{more}."
        if missing
        else "the run did not finish (no end recorded)."
    )
    return (
        f"<div class='partial' id='partial'><strong>PARTIAL RUN</strong> \u2014 {why} "
        "Finish it with <code>hil run --resume DIR</code>.</div>"
    )


def _summary(report: dict[str, Any]) -> str:
    verdicts = ("conforms", "deviates", "inconclusive", "not-applicable")
    rows = []
    for name, t in report["targets"].items():
        counts = {v: 0 for v in verdicts}
        for f in t["features"].values():
            counts[f["verdict"]] = counts.get(f["verdict"], 0) + 1
        ran = sum(p["ran"] for p in t["probes"].values())
        cells = "".join(f"<td class='num'>{counts[v]}</td>" for v in verdicts)
        rows.append(
            f"<tr><th>{esc(name)}</th><td>{esc(t['stack'])}</td>"
            f"<td class='num'>{ran}/{len(t['probes'])}</td>{cells}</tr>"
        )
    head = "".join(f"<th>{badge(v)}</th>" for v in verdicts)
    return (
        "<h2 id='summary'>Summary</h2><table class='summary'><tr><th>target</th><th>stack</th>"
        f"<th>probes run</th>{head}</tr>{''.join(rows)}</table>"
        "<p class='small'>Counts are feature keys; a key measured per address family counts "
        "once, with its worst verdict.</p>"
    )


def _flagged(report: dict[str, Any], verdict: str) -> list[str]:
    items = []
    for name, t in report["targets"].items():
        for key, f in t["features"].items():
            for fam, o in (f.get("families") or {"": f}).items():
                if o["verdict"] != verdict:
                    continue
                label = f"{key} [{fam}]" if fam else key
                reqs = f" ({esc(', '.join(f['requirements']))})" if f["requirements"] else ""
                items.append(
                    f"<li><b>{esc(name)}</b> <code>{esc(label)}</code> = "
                    f"{esc(fmt_value(o['value'], f['unit']))}: {esc(o['detail'] or f['text'])}"
                    f"{reqs} {_ev_link(o['evidence'])}</li>"
                )
    return items


def _deviations(report: dict[str, Any]) -> str:
    dev = _flagged(report, "deviates")
    inc = _flagged(report, "inconclusive")
    out = ["<h2 id='deviations'>Deviations</h2>"]
    out.append(
        f"<ul class='dev'>{''.join(dev)}</ul>"
        if dev
        else "<p>None: every observation with a verdict conforms to the standard.</p>"
    )
    if inc:
        out.append(
            f"<details><summary>{len(inc)} inconclusive observation(s)</summary>"
            f"<ul>{''.join(inc)}</ul></details>"
        )
    return "".join(out)


def _figure2(report: dict[str, Any]) -> str:
    cols = report["figure2"]
    names = list(cols)
    if not names:
        return "<h2 id='figure2'>Figure 2</h2><p>No targets.</p>"
    rows = list(next(iter(cols.values())))
    head = "".join(
        f"<th>{esc(n)}<br><span class='small'>{esc(report['targets'][n]['stack'])}</span></th>"
        for n in names
    )
    body = []
    for row in rows:
        cells = []
        for n in names:
            c = cols[n].get(row)
            if c is None:
                cells.append("<td></td>")
                continue
            cls = (
                "dev"
                if "deviates" in c["verdicts"]
                else "inc"
                if "inconclusive" in c["verdicts"]
                else ""
            )
            keys = ", ".join(c["keys"])
            cells.append(
                f"<td class='{cls}' title='keys: {esc(keys)}'>"
                f"<div class='measured'>{esc(c['measured'])}</div>"
                f"<div class='cap'>{esc(c['capability'])}</div>"
                f"<div class='conf'>{esc(c['confidence'])}</div></td>"
            )
        body.append(f"<tr><th>{esc(row)}</th>{''.join(cells)}</tr>")
    return (
        "<h2 id='figure2'>Figure 2, regenerated by measurement</h2>"
        "<p class='small'>The table of draft-ietf-lwig-tcp-constrained-node-networks, one column "
        "per target. Each cell: <b>measured on this build</b> / capability the configuration "
        "declares / <i>confidence</i>. Red cells contain a deviation from the standard, amber "
        "ones an inconclusive measurement.</p>"
        f"<table class='matrix' id='figure2-matrix'><tr><th>Feature</th>{head}</tr>"
        f"{''.join(body)}</table>"
    )


def _conf(c: dict[str, Any]) -> str:
    bits = []
    if c.get("trials", 1) != 1:
        bits.append(f"{c['trials']} trials")
    if c.get("interval"):
        lo, hi = c["interval"]
        bits.append(f"[{lo:g}, {hi:g}]")
    if c.get("level"):
        bits.append(f"{c['level'] * 100:g} %")
    return ", ".join(bits)


def _ev_link(ev: dict[str, Any] | None) -> str:
    if not ev:
        return ""
    if ev.get("id"):
        return f"<a href='#ev-{esc(ev['id'])}'>{esc(ev['id'])}</a>"
    return f"<span class='small'>{esc(ev['pcap'])}</span>"


def _features(report: dict[str, Any]) -> str:
    out = [
        "<h2 id='features'>Features</h2>",
        "<p class='small'>Every observation, per target; keys measured per address family "
        "have a row per family. Evidence links go to the plot and the pcap slice.</p>",
    ]
    for name, t in report["targets"].items():
        rows = []
        for key, f in t["features"].items():
            fams = f.get("families") or {"": f}
            first = True
            for fam, o in fams.items():
                cls = {"deviates": "dev", "inconclusive": "inc"}.get(o["verdict"], "")
                feat = (
                    f"<td rowspan='{len(fams)}'><code>{esc(key)}</code><br>"
                    f"<span class='small'>{esc(f['text'])}</span></td>"
                    f"<td rowspan='{len(fams)}'>{esc(', '.join(f['requirements']))}</td>"
                    if first
                    else ""
                )
                first = False
                rows.append(
                    f"<tr class='{cls}'>{feat}<td>{esc(fam)}</td>"
                    f"<td class='num'>{esc(fmt_value(o['value'], f['unit']))}</td>"
                    f"<td>{badge(o['verdict'])}</td><td>{esc(_conf(o['confidence']))}</td>"
                    f"<td>{esc(o['probe'])}</td><td>{esc(o['detail'])}</td>"
                    f"<td class='evl'>{_ev_link(o['evidence'])}</td></tr>"
                )
        out.append(
            f"<h3 id='features-{esc(name)}'>{esc(name)} ({esc(t['stack'])})</h3>"
            f"{_build(name, t)}"
            "<table class='features'><tr><th>feature</th><th>checks</th><th>family</th>"
            "<th>value</th><th>verdict</th><th>confidence</th><th>probe</th><th>detail</th>"
            f"<th>evidence</th></tr>{''.join(rows)}</table>"
        )
        bad = [(p, r) for p, r in t["probes"].items() if r["status"] in ("error", "missing")]
        if bad:
            items = "".join(
                f"<li>{esc(p)} {esc(r['title'])}: "
                f"{esc(r['error'] or 'not run (missing from the bundle)')}</li>"
                for p, r in bad
            )
            out.append(f"<p class='small'>Probes without a result:</p><ul>{items}</ul>")
    return "".join(out)


def _build(name: str, t: dict[str, Any]) -> str:
    b = t["build"]
    if not b:
        return "<p class='small'>No build information.</p>"
    flat = []
    for k, v in b.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{ik}={iv}" for ik, iv in v.items())
            flat.append(f"<b>{esc(k)}</b>: {esc(inner) or '{}'}")
        else:
            flat.append(f"<b>{esc(k)}</b>: {esc(v)}")
    return (
        f"<details><summary>build information (<a href='{esc(name)}/build.json'>build.json</a>)"
        f"</summary><p class='small mono'>{'<br>'.join(flat)}</p></details>"
    )


def _requirements(report: dict[str, Any]) -> str:
    names = list(report["targets"])
    reqs = report["requirements"]
    head = "".join(f"<th>{esc(n)}</th>" for n in names)

    def row(rid: str, r: dict[str, Any]) -> str:
        cells = "".join(
            f"<td class='s-{STATUS_CLASS[r['targets'][n]['status']]}' "
            f"title='{esc(_req_keys(r['targets'][n]['keys']))}'>{esc(r['targets'][n]['status'])}"
            "</td>"
            for n in names
        )
        feats = "; ".join(r["features"])
        return (
            f"<tr><td><code>{esc(rid)}</code></td><td>{esc(r['level'])}</td>"
            f"<td>{esc(', '.join(r['categories']))}</td><td>{esc(feats)}</td>"
            f"<td>{esc(', '.join(r['keys']))}</td>{cells}</tr>"
        )

    table_head = (
        "<tr><th>id</th><th>level</th><th>category</th><th>requirement</th><th>feature keys</th>"
        f"{head}</tr>"
    )
    observable = [row(k, r) for k, r in reqs.items() if r["keys"]]
    hidden = [row(k, r) for k, r in reqs.items() if not r["keys"]]
    counts: dict[str, int] = {}
    for r in reqs.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    tally = ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items()))
    return (
        "<h2 id='rfc9293'>RFC 9293 requirement coverage</h2>"
        f"<p class='small'>{len(reqs)} requirements of RFC 9293 Appendix B: {tally}. "
        "<b>conforms</b>/<b>deviates</b>: the verdicts of the feature keys that check it; "
        "<b>tested</b>: observed but inconclusive or not applicable; <b>not tested</b>: a probe "
        "could check it but did not run; <b>not observable</b>: no probe of the catalogue "
        "checks it from the wire.</p>"
        f"<table class='reqs' id='rfc9293-table'>{table_head}{''.join(observable)}</table>"
        f"<details><summary>{len(hidden)} requirements not observable on the wire by this "
        f"catalogue</summary><table class='reqs'>{table_head}{''.join(hidden)}</table>"
        "</details>"
    )


def _req_keys(keys: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in keys.items()) or "no observation"


def _evidence(report: dict[str, Any], run_dir: Path) -> str:
    out = [
        "<h2 id='evidence'>Evidence</h2>",
        "<p class='small'>One view per distinct evidence (capture and time range). Plots are "
        "time-sequence graphs in the style of tcptrace/Wireshark's Stevens graph: sequence "
        "number (relative to the sender's ISN) against time since the first frame shown; "
        "blue bars are segments from their first to their last sequence number (red: "
        "retransmission), green the receiver's cumulative ACK, olive the right edge of its "
        "advertised window, purple SACK blocks; the shaded band is the evidence range, "
        "circles mark evidence frames. Frame numbers are the original capture's, as "
        "Wireshark counts them.</p>",
    ]
    for name, t in report["targets"].items():
        groups = t["evidence"]
        if not groups:
            continue
        out.append(f"<h3 id='evidence-{esc(name)}'>{esc(name)}</h3><div class='evs'>")
        out += [_group(g, run_dir) for g in groups]
        out.append("</div>")
    return "".join(out)


def _group(g: dict[str, Any], run_dir: Path) -> str:
    ev = E.load(run_dir, g)
    links = [f"<a href='{esc(g['pcap'])}'>{esc(g['pcap'])}</a>"]
    if g["frames"]:
        links[0] += f" frames {esc(_ranges(g['frames']))}"
    if g.get("slice"):
        links.append(
            f"slice <a href='{esc(g['slice'])}'>{esc(g['slice'])}</a> ({g['slice_frames']} frames)"
        )
    parts = [
        f"<div class='ev' id='ev-{esc(g['id'])}'><h4>{esc(g['probe'])} \u00b7 "
        f"{esc(g['note'] or g['id'])}</h4>",
        f"<div class='keys'>shows: {esc(', '.join(g['keys']))}</div>",
        f"<div class='small'>{DOT.join(links)}</div>",
    ]
    if ev.error:
        parts.append(f"<p class='small'>{esc(ev.error)}</p>")
    rel = g["t_start"] - ev.base_t
    for plot in ev.plots:
        parts.append(svg_plot(plot, (rel, rel + g["t_end"] - g["t_start"])))
    if not ev.plots and not ev.error:
        parts.append("<p class='small'>No TCP connection in this range; the packets:</p>")
    if ev.rows:
        open_ = "" if ev.plots else " open"
        more = (
            f" (showing {len(ev.rows)} of {ev.frames_in_range})"
            if ev.frames_in_range > len(ev.rows)
            else ""
        )
        rows = "".join(
            f"<tr class='{'evf' if r.evidence else ''}'><td class='num'>{r.number}</td>"
            f"<td class='num'>{r.t * 1000:.3f}</td><td>{esc(r.src)}</td><td>{esc(r.dst)}</td>"
            f"<td class='mono'>{esc(r.summary)}</td><td>{esc(r.comment)}</td></tr>"
            for r in ev.rows
        )
        parts.append(
            f"<details{open_}><summary>packets{more}</summary><table class='pkts'><tr>"
            "<th>frame</th><th>ms</th><th>source</th><th>destination</th><th>packet</th>"
            f"<th>comment</th></tr>{rows}</table></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def _ranges(frames: Iterable[int]) -> str:
    out: list[str] = []
    nums = sorted(frames)
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


# ------------------------------------------------------------------------------ SVG


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    x = first
    while x <= hi + step * 1e-9:
        ticks.append(round(x, 12))
        x += step
    return ticks


def _fmt_tick(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def svg_plot(plot: Plot, ev_range: tuple[float, float] | None = None) -> str:
    """A time-sequence (Stevens) graph of one direction of a TCP connection, as inline SVG."""
    w, h = 660, 270
    ml, mr, mt, mb = 64, 12, 44, 36
    pw, ph = w - ml - mr, h - mt - mb
    ts = [s.t for s in plot.segments] + [t for t, _ in plot.acks] + [t for t, *_ in plot.resets]
    if ev_range:
        ts += list(ev_range)
    t0, t1 = (min(ts), max(ts)) if ts else (0.0, 1.0)
    if t1 - t0 < 1e-4:
        t0, t1 = t0 - 5e-4, t1 + 5e-4
    pad_t = (t1 - t0) * 0.03
    t0, t1 = t0 - pad_t, t1 + pad_t
    ys = [s.lo for s in plot.segments] + [s.hi for s in plot.segments] + [a for _, a in plot.acks]
    ys += [a for _, a, b in plot.sacks] + [b for _, a, b in plot.sacks]
    y0 = min([0, *ys])
    yhi = max([1, *ys])
    win_max = max((e for _, e in plot.window), default=None)
    clipped = False
    if win_max is not None:
        if win_max - y0 <= 4 * max(yhi - y0, 1):
            yhi = max(yhi, win_max)
        else:
            clipped = True
    yspan = max(yhi - y0, 4)
    y1 = y0 + yspan * 1.08

    def X(t: float) -> float:
        return ml + (t - t0) / (t1 - t0) * pw

    def Y(v: float) -> float:
        return mt + ph - (min(v, y1) - y0) / (y1 - y0) * ph

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='tsg' width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' role='img' aria-label='time-sequence graph {esc(plot.title)}'>",
        f"<title>time-sequence graph: {esc(plot.title)}</title>",
        f"<rect x='{ml}' y='{mt}' width='{pw}' height='{ph}' fill='#fcfcfd' stroke='#9aa4b1'/>",
    ]
    if ev_range:
        xa, xb = X(ev_range[0]), X(ev_range[1])
        parts.append(
            f"<rect x='{xa:.1f}' y='{mt}' width='{max(xb - xa, 2):.1f}' height='{ph}' "
            "fill='#fff3b0' opacity='0.7'><title>evidence range</title></rect>"
        )
    # axes and grid
    for tv in _nice_ticks(t0 * 1000, t1 * 1000):
        x = X(tv / 1000)
        parts.append(
            f"<line x1='{x:.1f}' y1='{mt}' x2='{x:.1f}' y2='{mt + ph}' stroke='#eceff3'/>"
            f"<text x='{x:.1f}' y='{mt + ph + 14}' font-size='11' text-anchor='middle' "
            f"fill='#374151'>{_fmt_tick(tv)}</text>"
        )
    for yv in _nice_ticks(y0, y1, 5):
        y = Y(yv)
        parts.append(
            f"<line x1='{ml}' y1='{y:.1f}' x2='{ml + pw}' y2='{y:.1f}' stroke='#eceff3'/>"
            f"<text x='{ml - 5}' y='{y + 4:.1f}' font-size='11' text-anchor='end' "
            f"fill='#374151'>{_fmt_tick(yv)}</text>"
        )
    parts.append(
        f"<text x='{ml + pw / 2}' y='{h - 6}' font-size='12' text-anchor='middle' fill='#111'>"
        "time (ms) since the first evidence frame</text>"
        f"<text x='14' y='{mt + ph / 2}' font-size='12' text-anchor='middle' fill='#111' "
        f"transform='rotate(-90 14 {mt + ph / 2})'>relative sequence number</text>"
        f"<text x='{ml}' y='16' font-size='12.5' font-weight='600' fill='#111'>"
        f"{esc(plot.title)}</text>"
    )
    # window edge and ACK as step lines
    for pts, colour, label in ((plot.window, "#9a8a00", "window"), (plot.acks, "#1e8c3a", "ack")):
        if not pts:
            continue
        path = []
        prev: float | None = None
        for t, v in pts:
            if prev is not None:
                path.append(f"L{X(t):.1f},{Y(prev):.1f}")
            path.append(f"{'M' if prev is None else 'L'}{X(t):.1f},{Y(v):.1f}")
            prev = v
        path.append(f"L{X(t1):.1f},{Y(prev if prev is not None else 0):.1f}")
        dash = " stroke-dasharray='5 3'" if label == "window" and clipped else ""
        parts.append(
            f"<path d='{' '.join(path)}' fill='none' stroke='{colour}' stroke-width='1.6'"
            f"{dash}><title>{label}</title></path>"
        )
    if clipped and win_max is not None:
        parts.append(
            f"<text x='{ml + pw - 4}' y='{mt + 12}' font-size='11' text-anchor='end' "
            f"fill='#9a8a00'>window edge off scale (up to {win_max}) \u2191</text>"
        )
    for t, a, b in plot.sacks:
        parts.append(
            f"<line x1='{X(t) + 2:.1f}' y1='{Y(a):.1f}' x2='{X(t) + 2:.1f}' y2='{Y(b):.1f}' "
            f"stroke='#7e3fb0' stroke-width='2'><title>SACK {a}-{b}</title></line>"
        )
    # tooltips on every segment of a short trace; on a long one only where they matter
    tips = len(plot.segments) <= 60
    for colour, retx in (("#1f4e9c", False), ("#d62728", True)):
        bars = [s for s in plot.segments if s.retransmission == retx]
        if not bars:
            continue
        d = []
        for s in bars:
            x, ya, yb = X(s.t), Y(s.lo), Y(s.hi)
            d.append(
                f"M{x:.1f},{ya:.1f}V{min(yb, ya - 1):.1f}M{x - 3:.1f},{ya:.1f}h6"
                f"M{x - 3:.1f},{yb:.1f}h6"
            )
        parts.append(
            f"<path d='{''.join(d)}' fill='none' stroke='{colour}' "
            f"stroke-width='{2 if retx else 1.4}'/>"
        )
    for s in plot.segments:
        x, ya, yb = X(s.t), Y(s.lo), Y(s.hi)
        colour = "#d62728" if s.retransmission else "#1f4e9c"
        flags = ("SYN " if s.flags & SYN else "") + ("FIN " if s.flags & FIN else "")
        if flags:
            parts.append(
                f"<text x='{x + 4:.1f}' y='{yb - 3:.1f}' font-size='10' fill='{colour}'>"
                f"{flags.strip()}</text>"
            )
        if s.evidence:
            parts.append(
                f"<circle cx='{x:.1f}' cy='{(ya + yb) / 2:.1f}' r='6' fill='none' "
                "stroke='#e08e00' stroke-width='1.5'/>"
            )
        if tips or s.retransmission or s.evidence:
            kind = "retransmission" if s.retransmission else "segment"
            tip = f"frame {s.frame}: {flags}{kind} {s.lo}-{s.hi} ({s.payload} bytes)"
            # an invisible wide bar carries the tooltip (a 1-px line is hard to hover)
            parts.append(
                f"<rect x='{x - 3:.1f}' y='{min(ya, yb):.1f}' width='6' "
                f"height='{max(abs(ya - yb), 4):.1f}' fill='transparent'>"
                f"<title>{esc(tip)}</title></rect>"
            )
    for t, v, who in plot.resets:
        x, y = X(t), Y(v)
        parts.append(
            f"<text x='{x:.1f}' y='{y - 4:.1f}' font-size='12' font-weight='700' "
            f"text-anchor='middle' fill='#c62828'>R<title>RST from the {who}</title></text>"
        )
    # legend
    legend = [
        ("#1f4e9c", "data/SYN/FIN"),
        ("#d62728", f"retransmission ({plot.retransmissions})"),
        ("#1e8c3a", "ACK"),
        ("#9a8a00", "window edge"),
        ("#7e3fb0", "SACK"),
    ]
    lx = float(ml)
    for colour, text in legend:
        parts.append(
            f"<line x1='{lx:.0f}' y1='{mt - 10}' x2='{lx + 14:.0f}' y2='{mt - 10}' "
            f"stroke='{colour}' stroke-width='3'/><text x='{lx + 18:.0f}' y='{mt - 6}' "
            f"font-size='11' fill='#374151'>{esc(text)}</text>"
        )
        lx += 6.2 * len(text) + 30
    if plot.dropped:
        parts.append(
            f"<text x='{w - mr}' y='{h - 6}' font-size='10' text-anchor='end' fill='#6b7280'>"
            f"{plot.dropped} points left out (the slice has all)</text>"
        )
    if not plot.scale_known:
        parts.append(
            f"<text x='{ml + 4}' y='{mt + 12}' font-size='10' fill='#6b7280'>handshake not in "
            "the capture: window shown unscaled</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------ the page


def render(report: dict[str, Any], run_dir: Path) -> str:
    """The whole page for ``report`` (a :func:`harness.report.model.build` document); the
    bundle's captures are read from ``run_dir``."""
    run = report["run"]
    title = "tcp-hil report" + ("" if run["complete"] else " (PARTIAL)")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"{_header(report)}<main>{_partial(report)}{_summary(report)}{_deviations(report)}"
        f"{_figure2(report)}"
        f"{_features(report)}{_requirements(report)}{_evidence(report, run_dir)}"
        f"<p class='small'>Rendered {esc(report.get('rendered', {}).get('at', ''))} by tcp-hil "
        f"{esc(report.get('rendered', {}).get('tool_version', ''))} from report.json "
        f"(schema {esc(report['schema'])}).</p></main></body></html>\n"
    )
