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
