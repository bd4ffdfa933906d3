"""Crash safety: a run killed with SIGKILL leaves a namespace; the next start removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.vnet import gc_stale, list_netns
from tests.integration.conftest import REPO, _need_root

pytestmark = pytest.mark.root


def test_gc_removes_namespaces_of_dead_owners_only() -> None:
    _need_root()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"hil-gc-{dead.pid}", f"hil-gc-{os.getpid()}"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = gc_stale()
        assert stale in removed and stale not in list_netns()
        assert live in list_netns()  # our own: still in use
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_sigkill_mid_run_then_next_start_cleans_up() -> None:
    _need_root()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "demo", "--out", "/tmp/hilt-demo-out"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    name = f"hil-demo-{proc.pid}"
    deadline = time.monotonic() + 20
    while name not in list_netns() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name in list_netns(), "the run never created its namespace"
    time.sleep(1.0)  # the stack process is up inside it
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its stack child, no cleanup possible
    proc.wait(10)
    assert name in list_netns()
    assert name in gc_stale()
    assert name not in list_netns()
    leftovers = subprocess.run(["pgrep", "-f", f"--netns {name}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_hil_demo_end_to_end(tmp_path: object) -> None:
    """``hil demo``: every check passes, the capture lands, nothing is left."""
    _need_root()
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "demo", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS") == 10 and "FAIL" not in out.stdout
    assert "TCP echo IPv4 (1 MB)" in out.stdout and "TCP echo IPv6 (1 MB)" in out.stdout
    assert "no malformed frames (tshark)" in out.stdout
    assert (tmp_path / "local.pcapng").stat().st_size > 0  # type: ignore[operator]
    assert not [n for n in list_netns() if n.startswith("hil-demo-")]
