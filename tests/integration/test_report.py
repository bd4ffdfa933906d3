"""The report layer on a real run: the shipped lab's three virtual targets probed by the engine
(P1, P19, P20, P23 and the retransmission / delayed-ACK probes P7*, P8), rendered into the
bundle files, and those files checked the way their readers use them -- report.json against
its published JSON Schema, junit.xml as XML with a case per probe x target, report.md for the
matrix, ``hil diff`` on itself and on a changed copy, the pcap slices with tshark, and
index.html in headless Chromium (screenshot and DOM).

The probe run is one module fixture; every test reads its directory (copies it to change it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.probes import engine, figure2
from harness.probes.capture import read_frames
from harness.probes.catalogue import PROBES
from harness.probes.observe import FEATURES
from harness.report import diff as rdiff
from harness.report import evidence, model, render
from harness.report.rfc9293 import ID_PATTERN, requirements
from harness.report.schema import schema
from tests.integration.conftest import REPO, _need_root
from tests.tshark import tshark

jsonschema = pytest.importorskip("jsonschema")

pytestmark = pytest.mark.slow

BUDGET_S = 20.0
BASE_PROBES = ["P1", "P19", "P20", "P23"]


def _probes() -> list[str]:
    extra = [p for p in PROBES if p.startswith("P7") or p == "P8"]
    return sorted(BASE_PROBES + extra, key=engine._order)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The engine on lab.yaml's targets, with run.json as ``hil run`` writes it, rendered."""
    _need_root()
    from harness.lab.load import load
    from harness.lab.virtual import VirtualLab

    lab_path = REPO / "lab.yaml"
    lab = load(lab_path)
    out = tmp_path_factory.mktemp("report-run")
    probes = _probes()
    names = [t.name for t in lab.targets]
    shutil.copyfile(lab_path, out / "lab.yaml")
    meta: dict[str, Any] = {
        "start": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "end": None,
        "complete": False,
        "host": socket.gethostname(),
        "tool_version": model.tool_version(),
        "lab_file": "lab.yaml",
        "lab_sha256": hashlib.sha256(lab_path.read_bytes()).hexdigest(),
        "targets": names,
        "probes": probes,
        "budget_s": BUDGET_S,
    }
    (out / "run.json").write_text(json.dumps(meta))
    with VirtualLab(lab, out / "logs") as vlab:
        vlab.up()
        contexts = [engine.Context.for_node(vlab.node(n), out, budget_s=BUDGET_S) for n in names]
        engine.run_all(contexts, probes)
    meta["end"], meta["complete"] = time.strftime("%Y-%m-%dT%H:%M:%S%z"), True
    (out / "run.json").write_text(json.dumps(meta))
    render.render(out)
    yield out


@pytest.fixture(scope="module")
def report(run_dir: Path) -> dict[str, Any]:
    return model.load(run_dir)


def _observations(run_dir: Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(target, key, family) -> the engine's observations, straight from its files."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for path in run_dir.glob("*/observations/*.json"):
        rec = json.loads(path.read_text())
        for o in rec["observations"]:
            out.setdefault((rec["target"], o["key"], o["family"] or "stack"), []).append(o)
    return out


# ------------------------------------------------------------------------------ report.json


def test_report_json_validates_against_published_schema(run_dir: Path) -> None:
    data = json.loads((run_dir / "report.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)
    assert data["schema"] == "tcp-hil/report/1"
    run = data["run"]
    assert run["complete"] is True and run["missing"] == []
    assert run["targets"] == ["linux", "local", "lwip"]
    assert run["probes"] == _probes()
    assert run["lab_sha256"] == hashlib.sha256((REPO / "lab.yaml").read_bytes()).hexdigest()


def test_schema_rejects_a_broken_report(report: dict[str, Any]) -> None:
    """The schema is a contract that can fail: a bad verdict or a missing field is caught."""
    bad = copy.deepcopy(report)
    feature = next(iter(bad["targets"]["linux"]["features"].values()))
    feature["verdict"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema(), cls=jsonschema.Draft202012Validator)
    bad = copy.deepcopy(report)
    del bad["run"]["complete"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema(), cls=jsonschema.Draft202012Validator)


def test_features_carry_every_observation(run_dir: Path, report: dict[str, Any]) -> None:
    """Each (target, key, family) the engine recorded is in the report with its value and
    verdict (the worst one when two probes saw the same key), and build.json is attached."""
    seen = _observations(run_dir)
    assert seen, "the run produced no observations"
    severity = model.VERDICT_SEVERITY
    for (target, key, fam), obs in seen.items():
        feature = report["targets"][target]["features"][key]
        entry = feature["families"][fam] if "families" in feature else feature
        worst = max(severity[o["verdict"]] for o in obs)
        assert severity[entry["verdict"]] == worst, (target, key, fam)
        assert entry["value"] in [o["value"] for o in obs], (target, key, fam)
        assert feature["unit"] == FEATURES[key].unit
    for name, t in report["targets"].items():
        assert t["build"] == json.loads((run_dir / name / "build.json").read_text())
        assert t["stack"] == name  # lab.yaml names each target after its stack


def test_figure2_matches_the_probe_module(run_dir: Path, report: dict[str, Any]) -> None:
    cols = figure2.write(run_dir, report["run"]["targets"])
    for name, col in cols.items():
        want = json.loads(json.dumps({row: c.to_json() for row, c in col.items()}))
        assert report["figure2"][name] == want


def test_requirement_table_and_coverage(report: dict[str, Any]) -> None:
    table = requirements()
    assert len(table) > 100  # RFC 9293 Appendix B: 126 rows, some ids on several rows
    assert table["MUST-15"].features == (
        "IPv4 Send-MSS default is 536",
        "IPv6 Send-MSS default is 1220",
    )
    # every requirement id a feature key cites is in the RFC's table
    cited = {r for f in FEATURES.values() for r in f.requirements if ID_PATTERN.match(r)}
    assert cited <= set(table), sorted(cited - set(table))
    reqs = report["requirements"]
    assert set(reqs) == set(table)
    # MSS (MUST-14) is checked by P1 on every target: decided there
    for st in reqs["MUST-14"]["targets"].values():
        assert st["status"] in ("conforms", "deviates"), st
    # urgent data has no key: not observable
    assert reqs["MUST-30"]["status"] == "not observable" and reqs["MUST-30"]["keys"] == []
    # statuses follow the verdicts of the keys
    for rid, r in reqs.items():
        for t, st in r["targets"].items():
            verdicts = set(st["keys"].values())
            if "deviates" in verdicts:
                assert st["status"] == "deviates", (rid, t)
            elif not r["keys"]:
                assert st["status"] == "not observable"
            elif not verdicts:
                assert st["status"] == "not tested"


# ------------------------------------------------------------------------------ junit.xml


def test_junit_has_a_case_per_probe_and_target(run_dir: Path, report: dict[str, Any]) -> None:
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.tag == "testsuites"
    cases = {
        (suite.get("name", "").removeprefix("tcp-hil."), (case.get("name") or "").split()[0])
        for suite in root.iter("testsuite")
        for case in suite.iter("testcase")
    }
    expected = {(t, p) for t in report["run"]["targets"] for p in report["run"]["probes"]}
    assert cases == expected
    n_cases = sum(1 for _ in root.iter("testcase"))
    assert int(root.get("tests", -1)) == n_cases == len(expected)
    for suite in root.iter("testsuite"):
        kids = list(suite.iter("testcase"))
        assert int(suite.get("tests", -1)) == len(kids)
        for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            assert int(suite.get(attr, -1)) == sum(c.find(tag) is not None for c in kids)
        target = suite.get("name", "").removeprefix("tcp-hil.")
        for case in kids:
            pid = (case.get("name") or "").split()[0]
            status = report["targets"][target]["probes"][pid]["status"]
            assert (case.find("failure") is not None) == (status == "deviates"), (target, pid)
            assert (case.find("error") is not None) == (status in ("error", "missing"))
            float(case.get("time", "x"))


# ------------------------------------------------------------------------------ report.md


def test_markdown_has_matrix_and_deviations(run_dir: Path, report: dict[str, Any]) -> None:
    md = (run_dir / "report.md").read_text()
    assert "| Feature | linux | local | lwip |" in md
    for row, _ in figure2.ROWS:
        assert f"| {row} |" in md
    assert "PARTIAL" not in md
    assert "## Deviations" in md
    for name, t in report["targets"].items():
        for key, f in t["features"].items():
            for fam, o in (f.get("families") or {"": f}).items():
                if o["verdict"] == "deviates":
                    assert f"**{name}** `{key}`" + (f" [{fam}]" if fam else "") in md


# ------------------------------------------------------------------------------ diff


def test_diff_with_itself_is_empty(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rdiff.diff(model.load(run_dir), model.load(run_dir)) == []
    assert rdiff.main([str(run_dir), str(run_dir)]) == 0
    assert "no changes" in capsys.readouterr().out


def test_diff_lists_changes_and_fails_on_regressions(
    report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy.deepcopy(report)
    feats = new["targets"]["linux"]["features"]
    feats["sack_permitted"]["families"]["ipv4"]["value"] = False  # a value change, no verdict
    gone = "timestamps"
    del feats[gone]  # a feature that disappeared: regression
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report))
    b.write_text(json.dumps(new))
    changes = rdiff.diff(report, new)
    got = {(c.target, c.key, c.family, c.kind, c.regression) for c in changes}
    assert ("linux", "sack_permitted", "ipv4", "changed", False) in got
    assert {("linux", gone, f, "removed", True) for f in ("ipv4", "ipv6")} <= got
    assert len(changes) == 3
    assert rdiff.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION linux timestamps [ipv4]" in out and "3 change(s), 2 regression(s)" in out

    # a verdict getting worse is a regression; one getting better is not
    worse = copy.deepcopy(report)
    worse["targets"]["lwip"]["features"]["ecn"]["families"]["ipv6"]["verdict"] = "deviates"
    (c,) = rdiff.diff(report, worse)
    assert (c.key, c.family, c.old_verdict, c.new_verdict, c.regression) == (
        "ecn", "ipv6", "conforms", "deviates", True,
    )  # fmt: skip
    (c,) = rdiff.diff(worse, report)
    assert not c.regression
    b.write_text(json.dumps(worse))
    assert rdiff.main([str(b), str(a)]) == 0


# ------------------------------------------------------------------------------ partial runs


def test_partial_bundle_is_marked(run_dir: Path, tmp_path: Path) -> None:
    part = tmp_path / "partial"
    shutil.copytree(run_dir, part, ignore=shutil.ignore_patterns("slices"))
    (part / "lwip" / "observations" / "P20.json").unlink()
    meta = json.loads((part / "run.json").read_text())
    meta["end"], meta["complete"] = None, False
    (part / "run.json").write_text(json.dumps(meta))
    render.render(part)
    data = model.load(part)
    jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)
    assert data["run"]["complete"] is False
    assert data["run"]["missing"] == [["lwip", "P20"]]
    assert "PARTIAL" in (part / "index.html").read_text()
    assert (part / "report.md").read_text().startswith("# tcp-hil interop report -- PARTIAL")
    root = ET.parse(part / "junit.xml").getroot()
    missing = [
        c for c in root.iter("testcase")
        if c.get("classname") == "tcp-hil.lwip" and (c.get("name") or "").startswith("P20 ")
    ]  # fmt: skip
    assert len(missing) == 1
    err = missing[0].find("error")
    assert err is not None and err.get("type") == "missing"


# ------------------------------------------------------------------------------ evidence


def test_slices_hold_the_evidence_frames(run_dir: Path, report: dict[str, Any]) -> None:
    groups = [g for t in report["targets"].values() for g in t["evidence"]]
    assert groups
    for g in groups:
        assert g["slice"] == f"pcaps/slices/{g['id']}.pcapng"
        path = run_dir / g["slice"]
        frames = list(read_frames(path))
        assert len(frames) == g["slice_frames"] > 0
        # each evidence frame is in the slice, byte for byte, at its original time
        original = list(read_frames(run_dir / g["pcap"]))
        by_comment = {f.comment.split(" ")[1]: f for f in frames}
        for n in g["frames"]:
            got = by_comment[str(n)]
            assert got.data == original[n - 1].data and got.t_ns == original[n - 1].t_ns
            assert "(evidence)" in got.comment
    # tshark reads a slice as we do: frame count and comments
    g = groups[0]
    res = subprocess.run(
        [tshark(), "-n", "-r", str(run_dir / g["slice"]), "-T", "fields", "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = res.stdout.splitlines()
    assert len(lines) == g["slice_frames"]
    assert sum("(evidence)" in line for line in lines) == len(g["frames"])


def test_plots_count_the_retransmissions_the_probe_reported(
    run_dir: Path, report: dict[str, Any]
) -> None:
    """The Stevens graph is drawn from the capture alone; where P7a counted the target's SYN
    retransmissions, the plot of that evidence shows as many red bars."""
    checked = 0
    for name, t in report["targets"].items():
        f = t["features"].get("syn_retries")
        if not f or "P7a" not in report["run"]["probes"]:
            continue
        for fam, o in (f.get("families") or {"": f}).items():
            if not isinstance(o["value"], int) or not o["evidence"] or not o["evidence"]["id"]:
                continue
            g = next(g for g in t["evidence"] if g["id"] == o["evidence"]["id"])
            view = evidence.load(run_dir, g)
            assert view.plots, (name, fam)
            assert view.plots[0].retransmissions == o["value"], (name, fam, view.plots[0].title)
            checked += 1
    if not checked:
        pytest.skip("no syn_retries observation with evidence in this run")


# ------------------------------------------------------------------------------ the page


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.refs.append((tag, k, v))


def test_page_is_self_contained(run_dir: Path) -> None:
    """No external assets, no scripts; every link points into the bundle at a file that
    exists or at an anchor of the page."""
    text = (run_dir / "index.html").read_text()
    parser = _Refs()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    ids = set(re.findall(r"id='([^']+)'", text))
    assert parser.refs
    for tag, attr, ref in parser.refs:
        assert attr == "href" and tag == "a", (tag, attr, ref)
        assert "://" not in ref and not ref.startswith("//"), ref
        if ref.startswith("#"):
            assert ref[1:] in ids, ref
        else:
            assert (run_dir / ref).is_file(), ref
    assert len(text) < 3_000_000  # reasonable: plots are capped


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (hil.sh installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _browser(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _png_rows(data: bytes) -> tuple[int, int, Iterator[bytes]]:
    """Width, height and the unfiltered rows (8-bit RGB/RGBA) of a PNG, decoded lazily."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    off, idat, w, h, bpp = 8, [], 0, 0, 0
    while off < len(data):
        n, typ = struct.unpack_from(">I4s", data, off)
        body = data[off + 8 : off + 8 + n]
        off += 12 + n
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack_from(">IIBB", body)
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp

    def rows() -> Iterator[bytes]:
        prev = bytearray(stride)
        for y in range(h):
            i = y * (stride + 1)
            kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                if kind == 1:
                    line[x] = (line[x] + a) & 255
                elif kind == 2:
                    line[x] = (line[x] + b) & 255
                elif kind == 3:
                    line[x] = (line[x] + (a + b) // 2) & 255
                elif kind == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    line[x] = (line[x] + pred) & 255
            yield bytes(line) if bpp == 3 else bytes(line[j] for j in range(stride) if j % 4 != 3)
            prev = line

    return w, h, rows()


HEADER_BLUE = bytes((0x0B, 0x3D, 0x62))
PLOT_BG = bytes((0xFC, 0xFC, 0xFD))
BADGE_GREEN = bytes((0x1E, 0x7B, 0x34))


def test_page_in_headless_chromium(run_dir: Path) -> None:
    """Debian's chromium renders index.html: the DOM has the matrix and time-sequence plots,
    the console stays silent, the screenshot is a real page (header, matrix, verdict badges),
    and a taller screenshot shows a plot's drawing area."""
    page = (run_dir / "index.html").resolve().as_uri()
    dom = _browser("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="figure2-matrix"' in dom.stdout and "<svg" in dom.stdout
    assert re.search(r"<svg[^>]*class=\"tsg\"", dom.stdout)
    assert "CONSOLE" not in dom.stderr, [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]

    shot = run_dir / "screenshot.png"
    res = _browser(f"--screenshot={shot}", "--window-size=1400,3000", page)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert "CONSOLE" not in res.stderr
    data = shot.read_bytes()
    w, h, rows = _png_rows(data)
    assert (w, h) == (1400, 3000)
    assert len(data) > 50_000  # a page of tables and text, not a blank canvas
    colours: set[bytes] = set()
    header = badge = False
    for y, row in enumerate(rows):
        if y % 4:
            continue
        colours.update(row[i : i + 3] for i in range(0, len(row), 12))
        header = header or (y < 60 and HEADER_BLUE * 20 in row)
        badge = badge or BADGE_GREEN * 6 in row
    assert header and badge
    assert len(colours) > 50

    # the evidence section lies further down: a tall window at half scale finds a plot
    tall = run_dir / "screenshot-tall.png"
    res = _browser(f"--screenshot={tall}", "--force-device-scale-factor=0.5",
                   "--window-size=1400,40000", page)  # fmt: skip
    assert res.returncode == 0 and tall.is_file(), res.stderr[-2000:]
    _, _, rows = _png_rows(tall.read_bytes())
    assert any(PLOT_BG * 60 in row for row in rows), "no time-sequence plot area rendered"
