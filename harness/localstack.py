"""Start the reference stack as a real process (``hil stack serve``) and wait until it is up.

One place for the command line and the readiness handshake, used by ``hil run``, the
benchmarks and the tests: the stack prints ``ready: ...`` once IPv6 DAD is done.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 15.0


@dataclass
class LocalStack:
    proc: subprocess.Popen[str]
    ready_line: str

    def stop(self) -> str:
        """SIGTERM; returns what it printed after ``ready:`` (the counter summary)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.strip()


def serve_argv(
    tap: str,
    netns: str,
    mac: str,
    ipv4: str,
    ipv6: str,
    services: str = "",
    pcap: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [sys.executable, "-m", "harness.cli", "stack", "serve", "--tap", tap, "--netns", netns]
    argv += ["--mac", mac, "--ipv4", ipv4, "--ipv6", ipv6]
    if services:
        argv += ["--services", services]
    if pcap is not None:
        argv += ["--pcap", str(pcap)]
    return argv + list(extra)


def start(argv: list[str], cwd: Path | None = None) -> LocalStack:
    """Run ``argv`` and wait for its ``ready:`` line; RuntimeError with its output otherwise."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ready:") or not line:
            break
    if not line.startswith("ready:"):
        proc.kill()
        rest = proc.communicate()[0]
        raise RuntimeError(f"the local stack did not come up: {line}{rest}")
    return LocalStack(proc, line.strip())
