"""The pytest plugin against a real lab: fixtures, markers, JUnit properties, failure messages,
and the shipped examples.

Each case runs pytest in a subprocess (pytester) on a lab file of its own, so the plugin brings
up and tears down namespaces exactly as a user's run does; pcaps it cites are dissected by
tshark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.vnet import list_netns
from tests import tshark
from tests.integration.conftest import REPO, _need_root

pytestmark = pytest.mark.slow


def _lab(linux_sysctl: str = "{}") -> str:
    return f"""\
version: 1
name: plugin-it
targets:
  - name: linux
    stack: linux
    mac: "02:00:00:00:01:02"
    ipv4: 10.77.1.2/24
    ipv6: 2001:db8:77:1::2/64
    tester: {{ipv4: 10.77.1.1/24, ipv6: "2001:db8:77:1::1/64"}}
    services: {{echo: 7, discard: 9, chargen: 19}}
    sysctl: {linux_sysctl}
  - name: local
    stack: local
    profile: full
    mac: "02:00:00:00:00:02"
    ipv4: 10.77.0.2/24
    ipv6: 2001:db8:77::2/64
    tester: {{ipv4: 10.77.0.1/24, ipv6: "2001:db8:77::1/64"}}
    services: {{echo: 7, discard: 9, chargen: 19}}
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=300)


def _no_namespaces_left(pid_hint: str = "") -> None:
    left = [n for n in list_netns() if n.startswith("hil-linux-") or n.startswith("hil-local-")]
    assert not [n for n in left if pid_hint in n], left


FIXTURES = """
import pytest

def test_lab(lab):
    assert lab.names == ["linux", "local"] and lab.is_up

def test_fixtures(target, peer, agent, capture):
    assert target.stack == target.name  # the lab names each target after its stack
    with target.connect("echo", "ipv4") as conn:
        conn.send(b"ping over v4")
        conn.expect(b"ping over v4")
    assert agent.hello()["stack"] == target.stack
    with peer.timeline("echo", "ipv6", name="v6", strict=False) as t:
        syn_ack = peer.handshake(t, mss=1000)
    assert syn_ack.mss and syn_ack.mss <= 1440
    print("CAPTURE", target.name, capture.path)

@pytest.mark.needs("sack")
def test_needs_sack(target):
    assert target.declared()["sack_permitted"]

@pytest.mark.stack("local")
def test_local_only(target):
    assert target.stack == "local"
"""


def test_fixtures_markers_and_junit_properties(pytester: pytest.Pytester) -> None:
    _need_root()
    pytester.makefile(".yaml", lab=_lab("{net.ipv4.tcp_sack: 0}"))
    pytester.makepyfile(test_it=FIXTURES)
    res = _run(pytester, "--hil-out", "out", "--junitxml", "junit.xml", "-s")
    res.assert_outcomes(passed=5, skipped=2)
    res.stdout.fnmatch_lines_random([
        "*needs sack: linux (linux): its configuration has sack_permitted off*",
        "*linux runs linux; the test is for local*",
    ])  # fmt: skip
    found = re.findall(r"CAPTURE (\S+) (\S+)", res.stdout.str())  # after pytest's dots
    captures = {name: Path(path) for name, path in found}
    assert set(captures) == {"linux", "local"}
    for name, pcap in captures.items():
        assert pcap.is_relative_to(pytester.path / "out" / "tests"), pcap
        assert not tshark.problems(pcap), (name, tshark.problems(pcap))
        echoed = tshark.fields(pcap, "tcp.srcport", display_filter='tcp.payload == "ping over v4"')
        assert ["7"] in echoed, (name, echoed)  # the echo, seen on the wire from the target
        assert tshark.count(pcap, "ipv6 && tcp.flags.syn == 1 && tcp.options.mss_val == 1000")

    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    props = {
        c.get("name"): [(p.get("name"), p.get("value")) for p in c.iter("property")] for c in cases
    }
    assert props["test_lab"] == []  # no target, no properties
    for case in ("test_fixtures[linux]", "test_fixtures[local]", "test_local_only[local]"):
        p = dict(props[case])
        name = case.split("[")[1].rstrip("]")
        assert p["hil.target"] == name and p["hil.stack"] == name, p
        assert f'"stack": "{name}"' in p["hil.build"], p["hil.build"]
        pcaps = [Path(v) for k, v in props[case] if k == "hil.pcap"]
        assert pcaps and all(x.exists() for x in pcaps), pcaps
    assert len([k for k, _ in props["test_fixtures[local]"] if k == "hil.pcap"]) == 2  # + peer
    assert "hil.build" in dict(props["test_needs_sack[linux]"])  # a skip still says where
    _no_namespaces_left()

    res = _run(pytester, "--hil-out", "out2", "--target", "local", "-k", "fixtures")
    res.assert_outcomes(passed=1)
    assert not list((pytester.path / "out2" / "tests").glob("*linux*"))


PROBED = """
import pytest

@pytest.mark.needs("sack")
def test_needs_sack(target):
    pass

@pytest.mark.probe("P1")
def test_probe_marker_runs_first(target):
    assert target.known("mss_advertised"), "P1 did not run before the test"
    target.feature_should_be("sack_permitted", True)
"""


def test_prior_observations_and_the_probe_marker(pytester: pytest.Pytester) -> None:
    _need_root()
    # A real bundle, measured on a Linux with SACK off ...
    pytester.makefile(".yaml", nosack=_lab("{net.ipv4.tcp_sack: 0}"))
    bundle = pytester.path / "bundle"
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--lab", "nosack.yaml", "--targets", "linux",
         "--probes", "P1", "--out", str(bundle), "--quiet"],
        cwd=pytester.path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    # ... says SACK is absent even where the configuration now says nothing against it.
    pytester.makefile(".yaml", lab=_lab())
    pytester.makepyfile(test_it=PROBED)
    res = _run(pytester, "--hil-out", "out", "--target", "linux", "--hil-from", str(bundle))
    res.stdout.fnmatch_lines(["*needs sack: linux (linux): sack_permitted observed absent by P1*"])
    # The probe marker measured this session's Linux (SACK on): fresh results win over the bundle.
    res.assert_outcomes(passed=1, skipped=1)
    assert (pytester.path / "out" / "linux" / "observations" / "P1.json").exists()


FAILING = """
import pytest
from harness.probes.timeline import after

def test_echo_mismatch(target):
    with target.connect("echo") as conn:
        conn.send(b"ping")
        conn.expect(b"pong")

def test_timeline_mismatch(target, peer):
    with peer.timeline("echo", "ipv4", name="strict") as t:
        t.inject(0, "S", mss=1000, win=8000)
        t.expect(after(0, 1000), "S.", mss=1234)

@pytest.mark.probe("P1")
def test_feature_mismatch(target):
    target.feature_should_be("mss_advertised", 1234)
"""


def test_failures_name_target_step_values_and_pcap(pytester: pytest.Pytester) -> None:
    _need_root()
    pytester.makefile(".yaml", lab=_lab())
    pytester.makepyfile(test_it=FAILING)
    res = _run(pytester, "--hil-out", "out", "--target", "local")
    res.assert_outcomes(failed=3)
    out = str(pytester.path / "out")
    res.stdout.fnmatch_lines([
        f"E * local: expect 4 B on echo over ipv4 to [[]10.77.0.2[]]:7 (stream offset 0): "
        f"expected b'pong' (4 B), observed b'ping' (4 B within *first difference at byte 1). "
        f"Open {out}/tests/test_it.py_test_echo_mismatch[[]local[]]/local/local.pcapng",
    ])  # fmt: skip
    res.stdout.fnmatch_lines([
        "E * local (local, ipv4): step 2 (expect) at *test_it.py:*: t.expect(*mss=1234)",
        "E *!!mss *1234 *1460",
        f"E *open {out}/tests/test_it.py_test_timeline_mismatch[[]local[]]/local/pcaps/"
        "strict-ipv4.pcapng",
    ])  # fmt: skip
    res.stdout.fnmatch_lines([
        "E * local: mss_advertised (probe P1*): expected 1234 bytes, observed 1460 bytes "
        f"(conforms*). Open {out}/local/pcaps/P1*.pcap* frames *",
    ])  # fmt: skip
    res.stdout.fnmatch_lines(["*- tcp-hil -*", "target: local", f"pcap:   {out}/tests/*"])
    for line in res.outlines:
        for word in line.split():
            if word.endswith((".pcap", ".pcapng")) and word.startswith("/"):
                assert Path(word).exists(), word


def test_examples_pass_against_the_shipped_lab(tmp_path: Path) -> None:
    _need_root()
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/pytest", "-p", "no:cacheprovider", "-q", "-rs",
         "--hil-out", str(tmp_path / "out"), "--junitxml", str(tmp_path / "junit.xml")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    wall = time.monotonic() - t0
    print(f"examples/pytest on lab.yaml: {wall:.1f} s wall")
    failed = [line for line in res.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
    assert res.returncode == 0, "\n".join(failed[-40:]) or res.stdout[-4000:] + res.stderr[-2000:]
    assert " failed" not in res.stdout and "passed" in res.stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", "0")) >= 30, suite
    assert int(suite.get("skipped", "0")) <= 3, res.stdout[-2000:]
