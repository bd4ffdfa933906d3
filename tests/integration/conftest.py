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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.localstack import LocalStack, serve_argv, start
from harness.probes.catalogue import PROBES
from harness.probes.observe import Observation, Value
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


@dataclass
class GroundTruth:
    """The ground-truth lab's probe run: observations per case, and where the files are."""

    out: Path
    results: dict[str, list[Observation]]
    probes: list[str]
    seconds: float

    def values(self, case: str, key: str) -> dict[str, Value]:
        """family ("" / "ipv4" / "ipv6") -> value of ``key`` for ``case`` (skips if not run)."""
        if case not in self.results:
            pytest.skip(f"case {case} not in TCP_HIL_GT_CASES")
        found = {o.family: o.value for o in self.results[case] if o.key == key}
        if not found and not any(key in PROBES[p].keys for p in self.probes):
            pytest.skip(f"no probe for {key} in TCP_HIL_GT_PROBES")
        return found

    def observations(self, case: str, key: str) -> list[Observation]:
        if case not in self.results:
            pytest.skip(f"case {case} not in TCP_HIL_GT_CASES")
        return [o for o in self.results[case] if o.key == key]


@pytest.fixture(scope="session")
def groundtruth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GroundTruth]:
    """The whole catalogue on every ground-truth target in parallel (see groundtruth.py)."""
    _need_root()
    from harness.lab.load import parse
    from harness.lab.virtual import VirtualLab
    from harness.probes import engine
    from tests.integration import groundtruth as gt

    cases = gt.selected_cases()
    if any(c.stack == "lwip" for c in cases):
        need_build_tools()
    probes = gt.selected_probes(sorted(PROBES, key=engine._order))
    lab = parse(gt.lab_text(cases), Path("groundtruth.yaml"), {})
    out = tmp_path_factory.mktemp("groundtruth")
    t0 = time.monotonic()
    with VirtualLab(lab, out / "logs") as vlab:
        vlab.up()
        contexts = [
            engine.Context.for_node(vlab.node(c.name), out, budget_s=gt.BUDGET_S) for c in cases
        ]
        results = engine.run_all(contexts, probes)
    yield GroundTruth(out, results, probes, time.monotonic() - t0)


def check_evidence(out: Path, o: Observation, shows: str) -> None:
    """``o``'s evidence pcap opens in tshark, every cited frame is in it, and at least one of
    them matches the display filter ``shows`` (what the observation is about)."""
    assert o.evidence is not None and o.evidence.frames, o
    frames = ",".join(str(f) for f in o.evidence.frames)
    pcap = out / o.evidence.pcap
    for flt, whole in (
        (f"frame.number in {{{frames}}}", True),
        (f"frame.number in {{{frames}}} && ({shows})", False),
    ):
        res = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-Y", flt, "-T", "fields", "-e", "frame.number"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        if whole:
            assert len(res.stdout.split()) == len(set(o.evidence.frames)), (o, res.stdout)
        else:
            assert res.stdout.split(), f"{o.key}: no cited frame matches {shows!r}: {o}"
