"""The virtual lab end to end, through the CLI a lab engineer uses: ``hil lab up`` on the shipped
lab, every target's services and agent from the tester's side, ``hil lab down`` leaving nothing;
a keeper killed with SIGKILL cleaned up by the next ``up``; sysctl and lwipopts overrides seen
on the wire; a native target from Debian packages only (socat), torn down by process group."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.lab import keeper, level0
from harness.lab.load import load
from harness.lab.virtual import Tester
from harness.vnet import list_netns
from tests.integration.conftest import REPO, _need_root

pytestmark = pytest.mark.slow

TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4


def hil(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


class RunningLab:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        self.lab = load(path)
        self.up_output = ""

    def up(self) -> subprocess.CompletedProcess[str]:
        res = hil("lab", "up", "--lab", str(self.path), env=self.env)
        self.up_output = res.stdout + res.stderr
        return res

    def down(self) -> subprocess.CompletedProcess[str]:
        return hil("lab", "down", "--lab", str(self.path), env=self.env)

    def state(self) -> dict[str, Any]:
        os.environ["TCP_HIL_RUN"] = self.env["TCP_HIL_RUN"]
        return keeper.control(self.lab, {"op": "state"})

    def tester(self, name: str) -> tuple[Tester, dict[str, str]]:
        t = self.state()["targets"][name]
        return Tester(t["tester_netns"], t["tester_ifname"], "x", "x"), t["addresses"]

    def agent(self, name: str) -> keeper.KeeperAgent:
        os.environ["TCP_HIL_RUN"] = self.env["TCP_HIL_RUN"]
        return keeper.KeeperAgent(self.lab, name)


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    _need_root()
    monkeypatch.setenv("TCP_HIL_RUN", str(tmp_path / "run"))
    return {**os.environ, "TCP_HIL_RUN": str(tmp_path / "run")}


def _lab(tmp_path: Path, env: dict[str, str], text: str) -> Iterator[RunningLab]:
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text))
    lab = RunningLab(path, env)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def shipped(lab_env: dict[str, str]) -> Iterator[RunningLab]:
    lab = RunningLab(REPO / "lab.yaml", lab_env)
    try:
        yield lab
    finally:
        lab.down()


def _ours(pid: int) -> list[str]:
    return [n for n in list_netns() if n.endswith(f"-{pid}")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _host_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip() for line in out.splitlines())


def test_shipped_lab_up_services_agent_down(shipped: RunningLab) -> None:
    host = _host_links()
    res = shipped.up()
    assert res.returncode == 0, shipped.up_output
    print(shipped.up_output.strip())  # the bring-up time, for the closing note
    state = shipped.state()
    assert set(state["targets"]) == {"linux", "local", "lwip"}
    assert state["errors"] == {}
    for name, t in state["targets"].items():
        tester = Tester(t["tester_netns"], t["tester_ifname"], "x", "x")
        assert set(t["addresses"]) == {"ipv4", "ipv6"}, name
        results = level0.check_all(tester, t["addresses"], t["services"], size=1 << 20)
        bad = [r for r in results if not r.ok]
        assert not bad, f"{name}: {bad}"
        echoes = [r for r in results if r.service == "echo"]
        assert len(echoes) == 2 and all(r.nbytes == 1 << 20 for r in echoes)
        hello = shipped.agent(name).hello()
        assert hello["agent"] == "tcp-hil/1" and hello["stack"] == t["stack"], hello
        conf = hil("lab", "conformance", name, "--lab", str(shipped.path), env=shipped.env)
        assert conf.returncode == 0, conf.stdout + conf.stderr  # every command, both families
        assert "FAIL" not in conf.stdout and conf.stdout.count("PASS") >= 40, conf.stdout
    assert _host_links() == host  # nothing created in (or moved into) the host's namespace
    status = hil("lab", "status", "--lab", str(shipped.path), env=shipped.env)
    assert status.returncode == 0 and "healthy" in status.stdout, status.stdout + status.stderr
    keeper_pid = state["owner"]
    pids = [p for t in state["targets"].values() for p in t["pids"]]
    assert _ours(keeper_pid) and len(pids) == 3
    down = shipped.down()
    assert down.returncode == 0, down.stderr
    assert _ours(keeper_pid) == []
    assert not any(_alive(p) for p in [keeper_pid, *pids])
    assert _host_links() == host
    assert hil("lab", "status", "--lab", str(shipped.path), env=shipped.env).returncode == 3


def test_kill_9_then_up_cleans_the_leftovers(shipped: RunningLab) -> None:
    assert shipped.up().returncode == 0, shipped.up_output
    state = shipped.state()
    old = state["owner"]
    pids = [p for t in state["targets"].values() for p in t["pids"]]
    os.kill(old, signal.SIGKILL)
    time.sleep(0.2)
    assert len(_ours(old)) == 6  # both namespaces of 3 targets are still there
    assert all(_alive(p) for p in pids)  # and the targets run on, in their own groups
    res = shipped.up()
    assert res.returncode == 0, shipped.up_output
    assert "removed leftovers" in shipped.up_output
    assert _ours(old) == []
    assert not any(_alive(p) for p in pids)
    assert shipped.state()["owner"] != old


LINUX_LAB = """\
version: 1
name: sysctl-{tag}
targets:
  - name: lx
    stack: linux
    ipv4: 10.78.1.2/24
    ipv6: 2001:db8:78:1::2/64
    tester: {{ipv4: 10.78.1.1/24, ipv6: "2001:db8:78:1::1/64"}}
    sysctl: {sysctl}
"""


def _tcp_info_options(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("B", info, 5)[0]  # tcpi_options


@pytest.mark.parametrize(
    ("sysctl", "expect_off"),
    [
        ("{}", 0),
        ("{net.ipv4.tcp_timestamps: 0}", TCPI_OPT_TIMESTAMPS),
        ("{net.ipv4.tcp_sack: 0, net.ipv4.tcp_window_scaling: 0}", TCPI_OPT_SACK | TCPI_OPT_WSCALE),
    ],
)
def test_linux_sysctl_overrides_show_on_the_wire(
    tmp_path: Path, lab_env: dict[str, str], sysctl: str, expect_off: int
) -> None:
    text = LINUX_LAB.format(tag=abs(hash(sysctl)) % 1000, sysctl=sysctl)
    for lab in _lab(tmp_path, lab_env, text):
        assert lab.up().returncode == 0, lab.up_output
        tester, addrs = lab.tester("lx")
        for addr in addrs.values():
            with tester.connect(addr, 7) as sock:
                opts = _tcp_info_options(sock)  # what the SYN/SYN-ACK exchange negotiated
            all3 = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
            assert opts & all3 == all3 & ~expect_off, (addr, opts)
        info = lab.agent("lx").info()
        if "tcp_timestamps" in sysctl:
            assert info.get("net.ipv4.tcp_timestamps") == "0", info


def test_lwipopts_override_shows_on_the_wire(tmp_path: Path, lab_env: dict[str, str]) -> None:
    text = """\
    version: 1
    name: lwipopts
    targets:
      - name: lw
        stack: lwip
        mac: "02:00:00:00:05:02"
        ipv4: 10.78.5.2/24
        ipv6: 2001:db8:78:5::2/64
        tester: {ipv4: 10.78.5.1/24, ipv6: "2001:db8:78:5::1/64"}
        lwipopts: {TCP_MSS: 1000, TCP_WND: 8000, TCP_SND_BUF: 4000}
    """
    for lab in _lab(tmp_path, lab_env, text):
        assert lab.up().returncode == 0, lab.up_output
        tester, addrs = lab.tester("lw")
        for addr in addrs.values():
            with tester.connect(addr, 7) as sock:
                # Linux's send MSS is the peer's advertised MSS (no timestamps with lwIP).
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1000
        info = lab.agent("lw").info()
        assert info["TCP_MSS"] == "1000" and info["TCP_WND"] == "8000", info


def test_native_target_socat_process_group(tmp_path: Path, lab_env: dict[str, str]) -> None:
    """socat (Debian's package) as a bring-your-own binary over kernel sockets: the argv template
    fills the ports, the services answer, and ``down`` ends every forked child."""
    script = (
        "socat TCP6-LISTEN:{echo},ipv6only=0,reuseaddr,fork EXEC:cat & "
        "socat -u TCP6-LISTEN:{discard},ipv6only=0,reuseaddr,fork OPEN:/dev/null & wait"
    )
    text = f"""\
    version: 1
    name: native
    targets:
      - name: nat
        stack: native
        link: {{virtual: {{kind: veth}}}}
        ipv4: 10.78.6.2/24
        ipv6: 2001:db8:78:6::2/64
        tester: {{ipv4: 10.78.6.1/24, ipv6: "2001:db8:78:6::1/64"}}
        services: {{echo: 7007, discard: 9009, chargen: null}}
        argv: [sh, -c, "{script}"]
    """
    for lab in _lab(tmp_path, lab_env, text):
        assert lab.up().returncode == 0, lab.up_output
        state = lab.state()["targets"]["nat"]
        tester, addrs = lab.tester("nat")
        results = level0.check_all(tester, addrs, state["services"], size=1 << 20)
        assert [r for r in results if not r.ok] == [] and len(results) == 4
        netns = state["netns"]
        inside = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        pids = [int(p) for p in inside.stdout.split()]
        assert len(pids) >= 3  # sh and two socats (plus forked children while connected)
        assert lab.down().returncode == 0
        assert not any(_alive(p) for p in pids)
        assert netns not in list_netns()


def test_native_target_on_a_tap(tmp_path: Path, lab_env: dict[str, str]) -> None:
    """A userspace stack binary (our lwIP program, built from Debian's lwIP source package) as a
    native target: ``{tap}``, ``{mac}`` and the addresses reach its argv, ``ready`` matches its
    console, and its services answer through the TAP."""
    from targets.lwip.build import build

    binary = build({})
    text = f"""\
    version: 1
    name: native-tap
    targets:
      - name: nt
        stack: native
        mac: "02:00:00:00:07:02"
        ipv4: 10.78.7.2/24
        ipv6: 2001:db8:78:7::2/64
        tester: {{ipv4: 10.78.7.1/24, ipv6: "2001:db8:78:7::1/64"}}
        argv: ["{binary}", --tap, "{{tap}}", --mac, "{{mac}}",
               --ipv4, "{{ipv4}}", --ipv6, "{{ipv6}}"]
        ready: "^ready:"
    """
    for lab in _lab(tmp_path, lab_env, text):
        assert lab.up().returncode == 0, lab.up_output
        state = lab.state()["targets"]["nt"]
        assert state["build"]["binary_sha256"] and state["build"]["argv"][2] == "tap0"
        tester, addrs = lab.tester("nt")
        results = level0.check_all(tester, addrs, state["services"], size=1 << 20)
        assert all(r.ok for r in results) and len(results) == 6, results
