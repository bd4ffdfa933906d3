"""Ground truth for the handshake and ICMP probes (P1, P19, P20, P23): what they infer from the
wire equals what the target was configured with -- Linux under its sysctl sets, the reference
stack in every profile, lwIP with its defaults and lwipopts -- and the engine's files (one JSON
per probe, evidence pcaps that tshark dissects) are what a report reads.

The lab and the probe run are the session fixture ``groundtruth`` (groundtruth.py)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from harness.probes import engine, figure2
from tests.integration.conftest import GroundTruth

pytestmark = pytest.mark.slow

# Linux's MSS is the MTU minus 40 (IPv4) / 60 (IPv6) bytes of headers.
LINUX = {
    "window_scale": True,
    "timestamps": True,
    "sack_permitted": True,
    "ecn": True,
    "tfo": False,
    "ttl_default": 64,
    "mss_advertised": (1460, 1440),
}
LWIP = {
    "window_scale": False,
    "timestamps": False,
    "sack_permitted": False,
    "ecn": False,
    "tfo": False,
    "ttl_default": 255,
    "mss_advertised": 536,
    "rcv_window": 2144,
    "rcv_window_mss": 4.0,
    "icmp_echo": True,
    "udp_port_unreachable": True,
    "ipv4_reassembly": True,
}
SINGLE = {
    "window_scale": False,
    "timestamps": False,
    "sack_permitted": False,
    "ecn": False,
    "tfo": False,
    "mss_advertised": (1220, 1220),
    "rcv_window": 1220,
}

# case -> expected values (the same in IPv4 and IPv6, or an (IPv4, IPv6) pair)
EXPECTED: dict[str, dict[str, Any]] = {
    "lxdef": LINUX,
    "lxoff": {"window_scale": False, "timestamps": False, "sack_permitted": False, "ecn": False,
              "tfo": True, "ttl_default": 100},
    "lxsack": {**LINUX, "sack_permitted": False},
    "lxsyn": LINUX,
    "lxiw": {**LINUX, "timestamps": False},
    # tcp_ecn 1 also answers ECN; a 8 KiB receive buffer still advertises a scale option
    "lxbuf": {"ecn": True, "window_scale": True, "sack_permitted": True},
    "locfull": {"window_scale": True, "timestamps": True, "sack_permitted": True, "ecn": True,
                "tfo": True, "ttl_default": 64, "rcv_window": 65535, "icmp_echo": True,
                "udp_port_unreachable": True},
    "loclinux": {"window_scale": True, "timestamps": True, "sack_permitted": True, "ecn": True,
                 "tfo": False},
    "loclw": {**{k: LWIP[k] for k in ("window_scale", "timestamps", "sack_permitted", "ecn",
                                      "tfo", "mss_advertised", "rcv_window")},
              "rcv_window_mss": 4.0},
    "locriot": SINGLE,
    "locuip": SINGLE,
    "locovr": {"sack_permitted": False, "mss_advertised": 1000, "tfo": True},
    "lwdef": LWIP,
    "lwopt": {"mss_advertised": 1000, "rcv_window": 8000, "rcv_window_mss": 8.0,
              "ttl_default": 77},
    # LWIP_WND_SCALE with TCP_RCV_SCALE 2; a SYN-ACK's window is never scaled (RFC 7323 2.2)
    "lwsack": {"window_scale": True, "window_scale_shift": 2, "sack_permitted": True,
               "rcv_window": 8192, "timestamps": False},
    "lwts": {"timestamps": True, "window_scale": False, "sack_permitted": False},
    "lwrtx": LWIP,
    "lwbuf": LWIP,
}  # fmt: skip

KEYS = sorted({k for exp in EXPECTED.values() for k in exp})


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_inferred_equals_configured(groundtruth: GroundTruth, case: str) -> None:
    expected = EXPECTED[case]
    for key, value in expected.items():
        seen = groundtruth.values(case, key)
        for o in groundtruth.observations(case, key):
            assert o.verdict != "inconclusive", o
        if key == "ttl_default" or key.startswith("ipv4"):
            assert seen == {"ipv4": value}, (key, seen)
        else:
            v4, v6 = value if isinstance(value, tuple) else (value, value)
            assert seen == {"ipv4": v4, "ipv6": v6}, (key, seen)


def test_observations_written_per_probe_and_evidence_dissects(groundtruth: GroundTruth) -> None:
    out, results = groundtruth.out, groundtruth.results
    for name in results:
        assert {p.name for p in (out / name / "observations").glob("*.json")} == {
            f"{pid}.json" for pid in groundtruth.probes
        }
        assert engine.load_observations(out / name) == results[name]
    if "lwdef" not in results:
        pytest.skip("lwdef not in TCP_HIL_GT_CASES")
    # Every evidence pcap opens in tshark, and the frames an observation cites are the ones
    # showing it: for P1 a SYN and the target's SYN-ACK.
    for o in results["lwdef"]:
        if o.evidence is None or not o.evidence.frames:
            continue
        pcap = out / o.evidence.pcap
        frames = ",".join(str(f) for f in o.evidence.frames)
        res = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-Y", f"frame.number in {{{frames}}}",
             "-T", "fields", "-e", "tcp.flags.str", "-e", "icmp.type", "-e", "icmpv6.type"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        rows = res.stdout.splitlines()
        assert len(rows) == len(set(o.evidence.frames)), (o, rows)
        if o.probe == "P1":
            assert any("S" in r and "A" in r for r in rows), rows


def test_figure2_regenerated(groundtruth: GroundTruth) -> None:
    """The Figure 2 columns follow from the observations and the declared configuration: the
    draft's rows for lwIP and the single-segment stacks (tcp-behaviour.md §8), each cell with
    measured / capability / confidence, and the files `hil probe` writes."""
    names = [n for n in ("lwdef", "lwsack", "locuip", "lxoff") if n in groundtruth.results]
    if len(names) < 4:
        pytest.skip("needs lwdef, lwsack, locuip and lxoff")
    cols = figure2.write(groundtruth.out, names)
    assert (groundtruth.out / "figure2.md").read_text().count("\n| ") >= len(figure2.ROWS)
    lw, lws, uip, lx = (cols[n] for n in names)
    # Window in MSS: lwIP advertises 4 MSS, the single-segment profiles 1.
    assert lw["Win size (MSS)"].measured.startswith("Mult. (rwnd 4")
    assert uip["Win size (MSS)"].measured.startswith("1 (rwnd 1")
    # Compile-time options: off by default in lwIP, measured off; on in the lwsack build.
    assert lw["Win. Scale"].measured == "No"
    assert lw["Win. Scale"].capability == "compile-time, off: LWIP_WND_SCALE=0 (opt.h default)"
    assert lws["Win. Scale"].measured == "Yes (shift 2)"
    assert lws["Win. Scale"].capability == "compile-time, on: LWIP_WND_SCALE=1 (lwipopts.h)"
    assert lws["SACK"].measured.startswith("Yes")
    assert lw["SACK"].measured.startswith("No")
    # Linux with the options switched off by sysctl: measured off, capability says so.
    assert lx["TCP timest."].measured == "No"
    assert "net.ipv4.tcp_timestamps=0" in lx["TCP timest."].capability
    assert lx["ECN"].measured == "No"
    # Confidence: both families observed and agreeing.
    assert lw["TCP timest."].confidence.startswith("high: 2 observations, IPv4 and IPv6 agree")
    assert lw["Socket"].measured == "not observable (declared)"
    assert "raw (callback) API" in lw["Socket"].capability
