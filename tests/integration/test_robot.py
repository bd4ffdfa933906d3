"""The Robot Framework side of tcp-hil, run the way a lab engineer runs it.

* ``robot robot/`` on the shipped lab: every suite passes, and the lab is gone afterwards.
* ``rebot`` on its ``output.xml`` writes a log whose pcap links (from each test's listener
  message) point at pcap files that exist: the links survive the trip through ``output.xml``.
* ``libdoc`` builds the keyword documentation without a warning, and the committed
  ``docs/robot/TcpHil.html`` documents exactly the library's keywords, arguments and docs.
* A deliberately failing suite: each failure names the target, the step or probe, the expected
  and the observed value and a pcap that exists; the lab is torn down by the library's listener
  even though that suite has no teardown.

Each ``robot`` run is a process of its own whose namespaces carry its pid, with its own output
directory and ``TCP_HIL_RUN``, so it runs beside another test session on the same lab file (as
``hil run`` does in ``test_run.py``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from robot.api import ExecutionResult

from harness.vnet import list_netns
from tests.integration.conftest import REPO, _need_root

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "robot" / "TcpHil.html"


@dataclass
class RobotRun:
    rc: int
    out: Path
    stdout: str
    wall_s: float
    pid: int

    def tests(self) -> dict[str, Any]:
        """Full test name -> result."""
        result = ExecutionResult(str(self.out / "output.xml"))
        found: dict[str, Any] = {}

        def walk(suite: Any) -> None:
            for t in suite.tests:
                found[t.full_name] = t
            for s in suite.suites:
                walk(s)

        walk(result.suite)
        return found


def _robot(tmp: Path, *args: str, timeout: float = 600) -> RobotRun:
    out = tmp / "out"
    env = {**os.environ, "TCP_HIL_RUN": str(tmp / "run")}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot", "--outputdir", str(out), "--consolecolors", "off", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    stdout, _ = proc.communicate(timeout=timeout)
    return RobotRun(proc.returncode, out, stdout, time.monotonic() - t0, proc.pid)


def _leftovers(pid: int) -> list[str]:
    return [n for n in list_netns() if n.endswith(f"-{pid}")]


@pytest.fixture(scope="module")
def suites(tmp_path_factory: pytest.TempPathFactory) -> RobotRun:
    _need_root()
    run = _robot(tmp_path_factory.mktemp("robot"), "robot/")
    print(f"robot robot/ on lab.yaml: {run.wall_s:.1f} s wall")
    return run


def test_the_suites_pass_on_the_shipped_lab(suites: RobotRun) -> None:
    assert suites.rc == 0, suites.stdout[-4000:]
    tests = suites.tests()
    assert len(tests) >= 14
    bad = {name: f"{t.status}: {t.message}" for name, t in tests.items() if t.status != "PASS"}
    assert not bad
    assert suites.wall_s < 180, f"robot robot/ took {suites.wall_s:.0f} s (goal: under 3 min)"
    assert not _leftovers(suites.pid), "the lab outlived the robot run"


def _log_strings(log: Path) -> list[str]:
    """The texts a Robot log embeds (messages included): plain, or zlib+base64 compressed."""
    text = log.read_text()
    strings = []
    pattern = r'window\.output\["strings"\] = window\.output\["strings"\]\.concat\((\[.*?\])\);'
    for m in re.finditer(pattern, text):
        for s in json.loads(m.group(1).replace("\\x3c/", "\\u003c/")):
            strings.append(
                s[1:] if s.startswith("*") else zlib.decompress(base64.b64decode(s)).decode()
            )
    assert strings, f"no strings found in {log}; has Robot's log format changed?"
    return strings


def test_rebot_log_links_every_test_to_its_pcaps(suites: RobotRun) -> None:
    out = suites.out
    res = subprocess.run(
        [sys.executable, "-m", "robot.rebot", "--outputdir", str(out), "--output", "NONE",
         "--report", "NONE", "--log", "rebot_log.html", str(out / "output.xml")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    strings = _log_strings(out / "rebot_log.html")
    links = {h for s in strings for h in re.findall(r'href="([^"]+\.pcapng?)"', s)}
    pcapng = [h for h in links if h.endswith(".pcapng")]
    assert pcapng, "no pcap link in the log"
    for href in links:
        assert not Path(href).is_absolute(), f"{href}: links must be relative to the log"
        path = out / href
        assert path.is_file() and path.stat().st_size > 24, f"{href} does not exist or is empty"
    # Every connection test links the capture of each target it talked to.
    for target in ("linux", "local", "lwip"):
        assert any(
            "/Echo_integrity_of_1_MiB_over_IPv6/" in h and h.endswith(f"{target}.pcapng")
            for h in pcapng
        ), (target, sorted(pcapng))
    tables = [s for s in strings if "observations this test read" in s]
    assert any("sack_permitted" in s and "P1" in s for s in tables)


def _libdoc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robot.libdoc", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _keywords(html: Path) -> dict[str, tuple[Any, str]]:
    """Keyword name -> (arguments, documentation) of a libdoc HTML file; the library's own
    documentation and import arguments under ``""``."""
    found = re.search(r"^libdoc = (\{.*\});?$", html.read_text(), re.M)
    assert found, f"{html}: no libdoc data; regenerate it (robot/README.md)"
    spec = json.loads(found.group(1))
    out = {kw["name"]: (kw["args"], kw["doc"]) for kw in spec["keywords"]}
    out[""] = ([i["args"] for i in spec["inits"]], spec["doc"])
    return out


def test_libdoc_builds_cleanly_and_the_committed_doc_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "TcpHil.html"
    res = _libdoc("harness.robotlib.TcpHil", str(fresh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == "", res.stderr
    assert "[ WARN ]" not in res.stdout and "[ ERROR ]" not in res.stdout, res.stdout
    built = _keywords(fresh)
    assert {"Bring Lab Up", "Open Connection To", "Feature Should Be", "Run Probe"} <= set(built)
    committed = _keywords(DOC)
    regenerate = "regenerate: libdoc harness.robotlib.TcpHil docs/robot/TcpHil.html"
    assert sorted(committed) == sorted(built), regenerate
    for name, (args, doc) in built.items():
        assert committed[name] == (args, doc), f"{name} changed; {regenerate}"


FAILING = """\
*** Settings ***
Library    harness.robotlib.TcpHil    lab={lab}    targets=linux,lwip

*** Test Cases ***
Probe value differs
    Feature Should Be    lwip    sack_permitted    True

Echo differs
    Open Connection To    linux    echo    ipv6
    Send Data    hello
    Expect Data    hellx    timeout=1

Feature out of range
    Feature Should Be Within    linux    mss_advertised    1    100    family=ipv4

Needs SACK
    Skip Unless Target Has    lwip    sack

Impairment
    Set Link Impairment    linux    loss=5%
"""


def test_a_failing_suite_says_where_what_and_which_pcap(tmp_path: Path) -> None:
    _need_root()
    suite = tmp_path / "failing.robot"
    suite.write_text(FAILING.format(lab=REPO / "lab.yaml"))
    run = _robot(tmp_path, str(suite))
    assert run.rc == 4, run.stdout[-3000:]  # four failed tests
    tests = {name.split(".")[-1]: t for name, t in run.tests().items()}

    def pcaps_in(message: str) -> list[Path]:
        paths = [Path(p) for p in re.findall(r"(/\S+\.pcap(?:ng)?)", message)]
        assert paths, f"no pcap named in {message!r}"
        for p in paths:
            assert p.is_file(), f"{p} (named in the failure) does not exist"
        return paths

    probe = tests["Probe value differs"]
    assert probe.status == "FAIL"
    msg = probe.message
    assert msg.startswith("lwip: sack_permitted (probe P1"), msg
    assert "expected True, observed False" in msg, msg
    assert all(run.out / "hil" / "lwip" in p.parents for p in pcaps_in(msg)), msg

    echo = tests["Echo differs"]
    assert echo.status == "FAIL"
    msg = echo.message
    assert msg.startswith("linux: expect 5 B on echo over ipv6"), msg
    assert "expected b'hellx'" in msg and "observed b'hello'" in msg, msg
    assert "first difference at byte 4" in msg, msg
    (pcap,) = pcaps_in(msg)
    assert pcap == run.out / "hil" / "tests" / "Failing" / "Echo_differs" / "linux" / "linux.pcapng"

    rng = tests["Feature out of range"]
    assert rng.status == "FAIL"
    assert rng.message.startswith(
        "linux: mss_advertised (probe P1, ipv4): expected within [1, 100]"
    )
    assert "observed 1460 bytes" in rng.message, rng.message
    pcaps_in(rng.message)

    skip = tests["Needs SACK"]
    assert skip.status == "SKIP"
    assert "lwip (lwip): its configuration has sack_permitted off" in skip.message

    imp = tests["Impairment"]
    assert imp.status == "FAIL"
    assert "not available yet" in imp.message and "tc qdisc replace dev" in imp.message
    assert "netem loss 5%" in imp.message, imp.message

    # No Bring Lab Down in that suite: the library's listener took the lab down at the end.
    assert not _leftovers(run.pid), _leftovers(run.pid)
