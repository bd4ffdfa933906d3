"""``report.json``: a probe run's output directory as one versioned, machine-readable document.

The run directory is what ``hil run`` and ``hil probe`` leave behind: ``run.json`` (what was
asked, when; absent for a bare ``hil probe`` directory), ``<target>/build.json`` and
``<target>/observations/<probe>.json`` (one per finished probe, written atomically), evidence
pcaps. :func:`build` reads nothing else, so a bundle whose run was killed renders as well as a
finished one -- marked partial, with the (target, probe) pairs it misses.

Per target, observations are grouped per feature key: one entry with the key's value, verdict,
confidence and evidence, and ``families`` when it was measured per address family. The entry's
verdict is the worst of its families' (a deviation in IPv6 is a deviation of the stack), and its
value, confidence and evidence are those of the observation that verdict came from.

RFC 9293 coverage is computed from :data:`harness.probes.observe.FEATURES`: a requirement id no
feature key names cannot be observed on the wire by this catalogue; the others are tested,
conform or deviate per target by the verdicts of the keys that name them. See docs/report.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.probes import figure2 as fig2
from harness.probes.observe import FEATURES, Observation
from harness.report.rfc9293 import ID_PATTERN, requirements

__all__ = [
    "RUN_META",
    "SCHEMA_ID",
    "VERDICT_SEVERITY",
    "build",
    "load",
    "probe_order",
    "tool_version",
]

SCHEMA_ID = "tcp-hil/report/1"
RUN_META = "run.json"  # written by ``hil run`` (harness/run.py)
LAB_COPY = "lab.yaml"
SLICES = Path("pcaps") / "slices"

# Higher is worse: the verdict a feature shows when its families (or probes) disagree.
VERDICT_SEVERITY = {"not-applicable": 0, "conforms": 1, "inconclusive": 2, "deviates": 3}
_FAMILY_ORDER = {"ipv4": 0, "ipv6": 1, "": 2}


def tool_version() -> str:
    """This package's version, or ``0+unknown`` when it runs from a tree that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tcp-hil")
    except PackageNotFoundError:
        return "0+unknown"


def probe_order(pid: str) -> tuple[int, str]:
    """Catalogue order (P1, P2, ..., P7a, P7b, ..., P10), as ``hil probe --list`` shows it."""
    m = re.match(r"\D*(\d+)", pid)
    return (int(m.group(1)) if m else 999, pid)


def load(path: Path) -> dict[str, Any]:
    """A ``report.json`` (or the directory holding one)."""
    if path.is_dir():
        path = path / "report.json"
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("schema") != SCHEMA_ID:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA_ID!r}")
    return data


# ------------------------------------------------------------------------------ reading the run


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def _records(tdir: Path) -> dict[str, dict[str, Any]]:
    """Probe id -> the engine's record of it (a file that does not parse is treated as
    missing: the engine replaces files atomically, so that only happens to a damaged copy)."""
    out = {}
    for path in (tdir / "observations").glob("*.json"):
        rec = _read_json(path)
        if isinstance(rec, dict) and isinstance(rec.get("observations"), list):
            out[str(rec.get("probe") or path.stem)] = rec
    return dict(sorted(out.items(), key=lambda kv: probe_order(kv[0])))


def _target_dirs(run_dir: Path) -> list[str]:
    return sorted(
        p.name
        for p in run_dir.iterdir()
        if p.is_dir() and ((p / "observations").is_dir() or (p / "build.json").is_file())
    )


def _run_section(
    run_dir: Path, meta: dict[str, Any], targets: list[str], records: dict[str, Any]
) -> dict[str, Any]:
    found = sorted({p for recs in records.values() for p in recs}, key=probe_order)
    probes = [str(p) for p in meta.get("probes") or found]
    missing = [[t, p] for t in targets for p in probes if p not in records.get(t, {})]
    # build.json is written as a target's probes start, each observation file as one ends
    files = [run_dir / t / "observations" / f"{p}.json" for t in targets for p in records[t]]
    files += [run_dir / t / "build.json" for t in targets]
    stamps = [f.stat().st_mtime for f in files if f.is_file()]
    lab_copy = run_dir / LAB_COPY
    lab_sha = meta.get("lab_sha256")
    if not lab_sha and lab_copy.is_file():
        lab_sha = hashlib.sha256(lab_copy.read_bytes()).hexdigest()
    lab_file = meta.get("lab_file") or (LAB_COPY if lab_copy.is_file() else None)
    start = meta.get("start") or (_iso(min(stamps)) if stamps else None)
    end = meta.get("end") if meta else (_iso(max(stamps)) if stamps else None)
    # Without run.json nobody said the run finished; "complete" then means nothing is missing
    # among the probes that did run somewhere.
    complete = bool(meta.get("complete", True) if meta else True) and not missing
    return {
        "start": start,
        "end": end,
        "complete": complete and end is not None,
        "missing": missing,
        "host": meta.get("host"),
        "tool_version": meta.get("tool_version") or tool_version(),
        "lab_file": lab_file,
        "lab_sha256": lab_sha,
        "budget_s": meta.get("budget_s"),
        "seconds": meta.get("seconds"),
        "targets": targets,
        "probes": probes,
    }


# ------------------------------------------------------------------------------ features


def _family_entry(o: Observation, evidence_id: str | None) -> dict[str, Any]:
    return {
        "value": o.value,
        "verdict": o.verdict,
        "confidence": {
            "trials": o.confidence.trials,
            "interval": list(o.confidence.interval) if o.confidence.interval else None,
            "level": o.confidence.level,
        },
        "evidence": _evidence_json(o, evidence_id),
        "probe": o.probe,
        "detail": o.detail,
    }


def _evidence_json(o: Observation, evidence_id: str | None) -> dict[str, Any] | None:
    ev = o.evidence
    if ev is None:
        return None
    return {
        "id": evidence_id,
        "pcap": ev.pcap,
        "t_start": ev.t_start,
        "t_end": ev.t_end,
        "frames": list(ev.frames),
        "note": ev.note,
    }


def _worst(obs: Iterable[Observation]) -> Observation:
    """The observation a feature's verdict comes from: the worst verdict, then one with a
    value, then IPv4 before IPv6 before stack-wide."""
    return max(
        obs,
        key=lambda o: (
            VERDICT_SEVERITY.get(o.verdict, 2),
            o.value is not None,
            -_FAMILY_ORDER.get(o.family, 3),
        ),
    )


def _features(
    observations: list[Observation], ev_ids: dict[int, str | None]
) -> dict[str, dict[str, Any]]:
    by_key: dict[str, list[Observation]] = {}
    for o in observations:
        by_key.setdefault(o.key, []).append(o)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(by_key, key=lambda k: list(FEATURES).index(k)):
        obs = by_key[key]
        top = _worst(obs)
        entry = {
            "text": FEATURES[key].text,
            "unit": FEATURES[key].unit,
            "requirements": list(FEATURES[key].requirements),
            **_family_entry(top, ev_ids.get(id(top))),
        }
        if any(o.family for o in obs):
            per_fam: dict[str, list[Observation]] = {}
            for o in obs:
                per_fam.setdefault(o.family or "stack", []).append(o)
            order = sorted(per_fam, key=lambda f: _FAMILY_ORDER.get(f if f != "stack" else "", 3))
            fams = {f: _worst(per_fam[f]) for f in order}
            entry["families"] = {f: _family_entry(o, ev_ids.get(id(o))) for f, o in fams.items()}
        out[key] = entry
    return out


def _evidence_groups(
    target: str, observations: list[Observation]
) -> tuple[list[dict[str, Any]], dict[int, str | None]]:
    """One evidence view per distinct (pcap, range, frames) of a target: observations that
    share their evidence (P1's keys of one handshake) share the plot and the pcap slice."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    per_probe: dict[str, int] = {}
    ids: dict[int, str | None] = {}
    for o in observations:
        ev = o.evidence
        if ev is None:
            continue
        if not ev.frames and ev.t_start == 0 and ev.t_end == 0:
            ids[id(o)] = None  # the probe saw nothing to point at
            continue
        k = (ev.pcap, ev.t_start, ev.t_end, ev.frames)
        if k not in groups:
            per_probe[o.probe] = per_probe.get(o.probe, 0) + 1
            gid = f"{target}-{o.probe}-{per_probe[o.probe]}"
            groups[k] = {
                "id": gid,
                "probe": o.probe,
                "pcap": ev.pcap,
                "t_start": ev.t_start,
                "t_end": ev.t_end,
                "frames": list(ev.frames),
                "note": ev.note,
                "keys": [],
                "slice": None,
                "slice_frames": 0,
            }
        g = groups[k]
        label = o.key + (f" [{o.family}]" if o.family else "")
        if label not in g["keys"]:
            g["keys"].append(label)
        ids[id(o)] = g["id"]
    return list(groups.values()), ids


def _probe_status(rec: dict[str, Any], verdicts: Sequence[str]) -> str:
    """A probe's outcome as a test would report it (the JUnit mapping, docs/report.md)."""
    if "deviates" in verdicts:
        return "deviates"
    if rec.get("error"):
        return "error"
    if not verdicts or all(v in ("inconclusive", "not-applicable") for v in verdicts):
        return "inconclusive" if "inconclusive" in verdicts else "not-applicable"
    return "conforms"


def _target(
    run_dir: Path, name: str, recs: dict[str, dict[str, Any]], expected: list[str]
) -> dict[str, Any]:
    build_info = _read_json(run_dir / name / "build.json")
    build_info = build_info if isinstance(build_info, dict) else {}
    observations: list[Observation] = []
    probes: dict[str, Any] = {}
    for pid, rec in recs.items():
        obs = [Observation.from_json(o) for o in rec["observations"]]
        observations += obs
        verdicts = [o.verdict for o in obs]
        probes[pid] = {
            "title": rec.get("title", ""),
            "ran": True,
            "seconds": rec.get("seconds"),
            "error": rec.get("error"),
            "status": _probe_status(rec, verdicts),
            "keys": sorted({o.key for o in obs}, key=lambda k: list(FEATURES).index(k)),
            "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        }
    for pid in expected:
        if pid not in probes:
            probes[pid] = {
                "title": _catalogue_title(pid),
                "ran": False,
                "seconds": None,
                "error": None,
                "status": "missing",
                "keys": [],
                "verdicts": {},
            }
    probes = dict(sorted(probes.items(), key=lambda kv: probe_order(kv[0])))
    groups, ev_ids = _evidence_groups(name, observations)
    stack = str(build_info.get("stack") or next((r.get("stack") for r in recs.values()), "") or "")
    return {
        "stack": stack,
        "build": build_info,
        "probes": probes,
        "features": _features(observations, ev_ids),
        "evidence": groups,
        "figure2": {
            row: cell.to_json() for row, cell in fig2.figure2(observations, build_info).items()
        },
    }


def _catalogue_title(pid: str) -> str:
    try:
        from harness.probes.catalogue import PROBES
    except Exception:  # a report renders without the probe machinery importable
        return ""
    p = PROBES.get(pid)
    return p.title if p else ""


# ------------------------------------------------------------------------------ requirements


def _requirements(targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys_of: dict[str, list[str]] = {}
    for key, feat in FEATURES.items():
        for rid in feat.requirements:
            if ID_PATTERN.match(rid):
                keys_of.setdefault(rid, []).append(key)
    out = {}
    for rid, req in requirements().items():
        keys = keys_of.get(rid, [])
        per_target: dict[str, dict[str, Any]] = {}
        for name, t in targets.items():
            seen = {k: t["features"][k]["verdict"] for k in keys if k in t["features"]}
            per_target[name] = {"status": _req_status(keys, list(seen.values())), "keys": seen}
        out[rid] = {
            "level": req.level,
            "categories": list(req.categories),
            "features": list(req.features),
            "keys": keys,
            "status": _overall([s["status"] for s in per_target.values()], bool(keys)),
            "targets": per_target,
        }
    return out


def _req_status(keys: list[str], verdicts: list[str]) -> str:
    if not keys:
        return "not observable"
    if not verdicts:
        return "not tested"
    if "deviates" in verdicts:
        return "deviates"
    if "conforms" in verdicts:
        return "conforms"
    return "tested"


def _overall(statuses: list[str], observable: bool) -> str:
    if not observable:
        return "not observable"
    for s in ("deviates", "conforms", "tested"):
        if s in statuses:
            return s
    return "not tested"


# ------------------------------------------------------------------------------ the document


def build(run_dir: Path) -> dict[str, Any]:
    """The report of ``run_dir`` as a JSON-ready dict (schema :data:`SCHEMA_ID`)."""
    meta = _read_json(run_dir / RUN_META)
    meta = meta if isinstance(meta, dict) else {}
    names = [str(t) for t in meta.get("targets") or []]
    names += [t for t in _target_dirs(run_dir) if t not in names]
    records = {t: _records(run_dir / t) for t in names}
    run = _run_section(run_dir, meta, names, records)
    targets = {t: _target(run_dir, t, records[t], run["probes"]) for t in names}
    return {
        "schema": SCHEMA_ID,
        "run": run,
        "rendered": {"at": _iso(time.time()), "tool_version": tool_version()},
        "targets": targets,
        "figure2": {t: targets[t].pop("figure2") for t in names},
        "requirements": _requirements(targets),
    }


def write(run_dir: Path, report: dict[str, Any]) -> Path:
    """``report.json``, replaced atomically (a reader never sees half a report)."""
    path = run_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    return path
