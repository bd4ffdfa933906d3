"""Ground truth for the handshake and ICMP probes: what they infer from the wire equals what the
target was configured with, for Linux under different sysctl sets, the reference stack in
different profiles, and lwIP with its defaults and with lwipopts overrides. Evidence pcaps
are checked with tshark."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.lab.load import parse
from harness.lab.virtual import VirtualLab
from harness.probes import engine
from harness.probes.catalogue import PROBES
from tests.integration.conftest import _need_root

pytestmark = pytest.mark.slow

HEAD = "version: 1\nname: probes\ntargets:\n"


def _target(name: str, stack: str, n: int, extra: str) -> str:
    return textwrap.indent(
        textwrap.dedent(
            f"""\
            - name: {name}
              stack: {stack}
              mac: "02:00:00:00:{n:02x}:02"
              ipv4: 10.79.{n}.2/24
              ipv6: 2001:db8:79:{n}::2/64
              tester: {{ipv4: 10.79.{n}.1/24, ipv6: "2001:db8:79:{n}::1/64"}}
            """
        )
        + textwrap.indent(textwrap.dedent(extra), "  "),
        "  ",
    )


# (name, stack, extra yaml, expected values in both families)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("lxdef", "linux", "", {"window_scale": True, "timestamps": True, "sack_permitted": True,
                            "ecn": True, "tfo": False, "ttl_default": 64,
                            "mss_advertised": (1460, 1440)}),  # MTU - 40 / MTU - 60
    ("lxoff", "linux",
     "sysctl: {net.ipv4.tcp_sack: 0, net.ipv4.tcp_timestamps: 0, net.ipv4.tcp_window_scaling: 0,"
     " net.ipv4.tcp_ecn: 0, net.ipv4.tcp_fastopen: 1027, net.ipv4.ip_default_ttl: 100}\n",
     {"window_scale": False, "timestamps": False, "sack_permitted": False, "ecn": False,
      "tfo": True, "ttl_default": 100}),
    ("lxsack", "linux", "sysctl: {net.ipv4.tcp_sack: 0}\n",
     {"window_scale": True, "timestamps": True, "sack_permitted": False}),
    ("locfull", "local", "profile: full\n",
     {"window_scale": True, "timestamps": True, "sack_permitted": True, "ecn": True,
      "tfo": True, "ttl_default": 64, "rcv_window": 65535}),
    ("loclw", "local", "profile: lwip-default\n",
     {"window_scale": False, "timestamps": False, "sack_permitted": False, "ecn": False,
      "tfo": False, "mss_advertised": 536, "rcv_window": 2144, "rcv_window_mss": 4.0}),
    ("lwdef", "lwip", "",
     {"window_scale": False, "timestamps": False, "sack_permitted": False, "ecn": False,
      "tfo": False, "ttl_default": 255, "mss_advertised": 536, "rcv_window": 2144,
      "rcv_window_mss": 4.0, "icmp_echo": True, "udp_port_unreachable": True,
      "ipv4_reassembly": True}),
    ("lwopt", "lwip",
     "lwipopts: {TCP_MSS: 1000, TCP_WND: 8000, TCP_SND_BUF: 4000, IP_DEFAULT_TTL: 77}\n",
     {"mss_advertised": 1000, "rcv_window": 8000, "rcv_window_mss": 8.0, "ttl_default": 77}),
]  # fmt: skip


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    _need_root()
    text = HEAD + "".join(
        _target(name, stack, i + 10, extra) for i, (name, stack, extra, _) in enumerate(CASES)
    )
    lab = parse(text, Path("probes.yaml"), {})
    out = tmp_path_factory.mktemp("probes")
    with VirtualLab(lab, out / "logs") as vlab:
        vlab.up()
        contexts = [engine.Context.for_node(vlab.node(c[0]), out) for c in CASES]
        results = engine.run_all(contexts, sorted(PROBES))
    return out, results


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[3]) for c in CASES])
def test_inferred_equals_configured(
    probed: tuple[Path, dict[str, Any]], name: str, expected: dict[str, Any]
) -> None:
    _, results = probed
    seen: dict[str, list[Any]] = {}
    for o in results[name]:
        seen.setdefault(o.key, []).append(o.value)
        assert o.verdict != "inconclusive", o
    for key, value in expected.items():
        if key == "ttl_default" or key.startswith("ipv4"):
            assert seen[key] == [value], (key, seen[key])
        else:  # the same in IPv4 and IPv6, or a (v4, v6) pair
            assert seen[key] == list(value if isinstance(value, tuple) else (value, value)), key


def test_observations_written_per_probe_and_evidence_dissects(
    probed: tuple[Path, dict[str, Any]],
) -> None:
    out, results = probed
    for name in results:
        assert {p.name for p in (out / name / "observations").glob("*.json")} == {
            f"{pid}.json" for pid in PROBES
        }
        assert engine.load_observations(out / name) == results[name]
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
