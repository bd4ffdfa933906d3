"""``hil run``: the main job on the shipped lab, and its durability.

* The README's first command -- ``hil run`` on ``lab.yaml`` -- writes the whole bundle for all
  three virtual targets within the 5-minute goal.
* ``kill -9`` in the middle of a run, then ``hil run --resume``: the run completes, and every
  probe result that was on disk before the kill is still there, byte for byte, never re-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.probes.catalogue import PROBES
from harness.vnet import list_netns
from tests.integration.conftest import REPO, _need_root

pytestmark = pytest.mark.slow

TARGETS = ("linux", "local", "lwip")


def _hil(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _results(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.glob("*/observations/*.json")}


def test_default_run_writes_the_bundle(tmp_path: Path) -> None:
    _need_root()
    out = tmp_path / "bundle"
    t0 = time.monotonic()
    res = _hil("run", "--quiet", "--out", str(out))
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(f"hil run on lab.yaml: {wall:.1f} s wall")
    assert wall <= 300, f"the default run took {wall:.0f} s (goal 300 s)"
    meta = json.loads((out / "run.json").read_text())
    assert meta["complete"] is True and meta["targets"] == list(TARGETS)
    for name in ("report.json", "index.html", "report.md", "junit.xml", "lab.yaml"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert set(report["targets"]) == set(TARGETS)
    for t in TARGETS:
        assert len(list((out / t / "observations").glob("*.json"))) == len(PROBES)
        assert (out / t / "build.json").exists()
    assert not [n for n in list_netns() if n.startswith("hil-") and n.endswith(str(os.getpid()))]


def test_kill_9_then_resume_completes_without_rerunning(tmp_path: Path) -> None:
    _need_root()
    out = tmp_path / "bundle"
    # Quick probes plus slower ones, so the kill lands with some results on disk and some not.
    slow = [p for p in ("P8", "P12", "P17") if p in PROBES]
    probes = ",".join(["P1", "P20", "P23", *slow])
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--quiet", "--out", str(out),
         "--probes", probes, "--budget", "20"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_results(out)) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run, its targets, its captures: no cleanup
    proc.wait(10)
    before = _results(out)
    total = len(TARGETS) * len(probes.split(","))
    assert 3 <= len(before) < total, f"the kill did not land mid-run ({len(before)}/{total})"
    assert json.loads((out / "run.json").read_text())["complete"] is False
    stamps = {k: (out / k).stat().st_mtime_ns for k in before}

    res = _hil("run", "--quiet", "--resume", str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{len(before)} probe results kept, {total - len(before)} to run" in res.stdout
    after = _results(out)
    assert len(after) == total
    for key, data in before.items():  # nothing finished was re-run or lost
        assert after[key] == data, key
        assert (out / key).stat().st_mtime_ns == stamps[key], key
    meta = json.loads((out / "run.json").read_text())
    assert meta["complete"] is True
    assert (out / "index.html").exists() and (out / "report.json").exists()
    # The killed run's namespaces were collected by the resumed run's bring-up.
    assert not [n for n in list_netns() if n.endswith(f"-{proc.pid}")]


LINUX_LAB = """\
version: 1
name: diff
targets:
  - name: linux
    stack: linux
    ipv4: 10.81.1.2/24
    ipv6: 2001:db8:81:1::2/64
    tester: {{ipv4: 10.81.1.1/24, ipv6: "2001:db8:81:1::1/64"}}
    sysctl: {{{sysctl}}}
"""


def test_diff_of_two_linux_runs_lists_exactly_the_changed_features(tmp_path: Path) -> None:
    """Two runs of Linux that differ in SACK and timestamps: ``hil diff`` names the SACK and
    timestamp features (and the SYN-ACK window, which timestamps change by 12 bytes of
    options per MSS) and nothing else, in both families."""
    _need_root()
    probes = "P1,P15,P19,P20,P23"
    bundles = []
    for name, sysctl in (("a", ""), ("b", "net.ipv4.tcp_sack: 0, net.ipv4.tcp_timestamps: 0")):
        lab = tmp_path / f"{name}.yaml"
        lab.write_text(LINUX_LAB.format(sysctl=sysctl))
        out = tmp_path / name
        res = _hil("run", "--quiet", "--lab", str(lab), "--probes", probes, "--out", str(out))
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        bundles.append(out)
    res = _hil("diff", str(bundles[0]), str(bundles[1]))
    lines = [ln.removeprefix("REGRESSION ") for ln in res.stdout.splitlines()]
    keys = {ln.split(":")[0].split(" ")[1] for ln in lines if ln.startswith("linux ")}
    assert keys == {"sack_permitted", "sack_blocks", "sack_recovery", "timestamps",
                    "rcv_window", "rcv_window_mss"}, res.stdout  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
