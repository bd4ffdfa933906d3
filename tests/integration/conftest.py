"""Fixtures for tests that need root: network namespaces, TAPs, the stack as a process.

Everything created here carries the ``hilt-`` prefix and ends in the creating process's pid;
namespaces of test sessions that are gone (killed runs) are removed at session start, those of
sessions still running are left alone, and every fixture removes what it made even when the
test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.localstack import LocalStack, serve_argv, start
from harness.vnet import gc_stale
from targets.lwip.build import Build, ensure_built

PREFIX = "hilt-"
REPO = Path(__file__).resolve().parents[2]


def _need_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("integration tests need root and iproute2; CI must run them, not skip them")
        pytest.skip("needs root and iproute2 (run as root; CI always does)")


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


def _gc_leftovers() -> None:
    gc_stale(PREFIX)  # only namespaces whose owner pid has exited


def ns_name(role: str = "") -> str:
    """``hilt-[role-]<hex>-<pid>``: unique, and collectable once this process is gone."""
    return f"{PREFIX}{role + '-' if role else ''}{secrets.token_hex(3)}-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _session_gc() -> Iterator[None]:
    if os.geteuid() == 0 and shutil.which("ip"):
        _gc_leftovers()
    yield


@dataclass
class Netns:
    """A namespace holding a persistent TAP that the Linux kernel stack owns one side of."""

    name: str
    tap: str = "hiltap0"
    v4: str = "10.77.0.1"
    v6: str = "2001:db8:77::1"
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout)

    def python(self, code: str, timeout: float = 30) -> str:
        return self.run(sys.executable, "-c", code, timeout=timeout).stdout


@pytest.fixture
def netns() -> Iterator[Netns]:
    _need_root()
    ns = Netns(ns_name())
    sh("ip", "netns", "add", ns.name)
    try:
        n = ns.name
        sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", n, "tuntap", "add", "dev", ns.tap, "mode", "tap")
        sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{ns.tap}.accept_dad=0")
        sh("ip", "-n", n, "addr", "add", f"{ns.v4}/24", "dev", ns.tap)
        sh("ip", "-n", n, "addr", "add", f"{ns.v6}/64", "dev", ns.tap, "nodad")
        sh("ip", "-n", n, "link", "set", ns.tap, "up")
        yield ns
    finally:
        for p in ns.procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        sh("ip", "netns", "del", ns.name, check=False)


@dataclass
class Served(LocalStack):
    mac: str = "02:00:00:00:00:02"
    v4: str = "10.77.0.2"
    v6: str = "2001:db8:77::2"
    ll: str = "fe80::ff:fe00:2"


def start_stack(ns: Netns, *extra: str, pcap: Path | None = None) -> Served:
    argv = serve_argv(
        ns.tap,
        ns.name,
        "02:00:00:00:00:02",
        "10.77.0.2/24",
        "2001:db8:77::2/64",
        pcap=pcap,
        extra=extra,
    )
    stack = start(argv, cwd=REPO)
    ns.procs.append(stack.proc)
    return Served(stack.proc, stack.ready_line)


@pytest.fixture
def served(netns: Netns, tmp_path: Path) -> Iterator[Served]:
    s = start_stack(netns, "--udp-echo", "7", pcap=tmp_path / "stack.pcapng")
    yield s
    if s.proc.poll() is None:
        s.stop()


def need_build_tools() -> None:
    missing = [t for t in ("gcc", "apt-get") if shutil.which(t) is None]
    if shutil.which("dpkg-source") is None and os.geteuid() != 0:
        missing.append("dpkg-source (root installs it)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"building lwIP needs {', '.join(missing)}; CI must run this, not skip it")
        pytest.skip(f"building lwIP needs {', '.join(missing)}")


@pytest.fixture(scope="session")
def lwip_default() -> Build:
    need_build_tools()
    return ensure_built({})
