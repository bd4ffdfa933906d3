"""Ground truth for the robustness probes (P9, P15, P16, P18, P21, P22, P24, P25).

Every expected value is derived from the case's configuration, never typed in per case: the
reference stack's from its profile with the case's overrides (stack/tcp/profile.py), Linux's
from its sysctls and kernel defaults, lwIP's from the case's lwipopts over lwIP 2.1.3's opt.h
defaults. So a case added to groundtruth.py is checked here without a new line, and a probe
that reports what a stack *usually* does instead of what this one does fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from harness.probes.catalogue import PROBES
from harness.probes.observe import Value
from stack.tcp.profile import profile
from tests.integration.conftest import GroundTruth, check_evidence
from tests.integration.groundtruth import BUDGET_S, CASES, Case

pytestmark = pytest.mark.slow

PROBE_IDS = ("P9", "P15", "P16", "P18", "P21", "P22", "P24", "P25")
CAP = 64  # harness.probes.catalogue_robust.MAX_CONNECTIONS_CAP


def _config(case: Case) -> dict[str, Any]:
    return yaml.safe_load(case.extra) or {}


def expected(case: Case) -> dict[str, Value]:
    """key -> the value the case's configuration implies (None: the probe cannot tell)."""
    cfg = _config(case)
    if case.stack == "linux":
        sack = bool(cfg.get("sysctl", {}).get("net.ipv4.tcp_sack", 1))  # kernel default 1
        return {
            "nagle": True,  # no TCP_NODELAY on the agent's sockets
            "nodelay": True,
            "sack_blocks": sack,
            "sack_recovery": sack,  # SACK scoreboard + RACK: both holes in one round trip
            "ooo_queue": True,
            "rst_challenge_ack": True,  # RFC 5961 since 3.6
            "syn_in_established_challenge_ack": True,
            "rst_closed_port": True,
            "isn_predictable": False,  # RFC 6528 (siphash)
            "max_connections": CAP,  # only memory and backlog limit it: the search stops at 64
            "ipv4_overlap_dropped": True,  # since 4.19 (FragmentSmack)
            "ipv6_overlap_dropped": True,
        }
    if case.stack == "local":
        tcp = profile(cfg.get("profile", "full"), **cfg.get("tcp", {}))
        return {
            # The uip/riot profiles cap the flight at one MSS of *bytes*, so five one-byte
            # segments still go out at once: Nagle is judged on its own switch.
            "nagle": tcp.nagle,
            "nodelay": True,
            "sack_blocks": tcp.sack,
            "sack_recovery": tcp.sack,  # the sender uses its SACK scoreboard (RFC 6675)
            "ooo_queue": tcp.ooo_queue,
            "rst_challenge_ack": tcp.rfc5961,
            "syn_in_established_challenge_ack": tcp.rfc5961,
            "rst_closed_port": True,
            "isn_predictable": tcp.isn == "counter",
            "max_connections": min(tcp.max_connections, CAP),
            "ipv4_overlap_dropped": True,  # stack/iface/reassembly.py: overlap policy "drop"
            "ipv6_overlap_dropped": True,
        }
    opts = cfg.get("lwipopts", {})
    sack_out = bool(opts.get("LWIP_TCP_SACK_OUT", 0))
    mss = opts.get("TCP_MSS", 536)
    # Chargen can keep 7 segments of 536 B in flight only with a send buffer that large and a
    # heap that holds it (MEM_SIZE defaults to 1600 B); otherwise the recovery test cannot run.
    flight = opts.get("TCP_SND_BUF", 2 * mss) // 536 if opts.get("MEM_SIZE", 1600) > 4288 else 2
    return {
        "nagle": True,  # tcp_nagle_disable() is never called by default
        "nodelay": True,
        "sack_blocks": sack_out,  # LWIP_TCP_SACK_OUT 0 by default (opt.h)
        # lwIP's sender ignores SACK blocks: one hole per round trip.
        "sack_recovery": (False if flight >= 7 else None) if sack_out else False,
        "ooo_queue": bool(opts.get("TCP_QUEUE_OOSEQ", 1)),
        "rst_challenge_ack": True,  # tcp_in.c: exact RST resets, in-window one is ACKed
        "syn_in_established_challenge_ack": True,  # tcp_in.c: tcp_ack_now() for a SYN
        "rst_closed_port": True,
        "isn_predictable": True,  # tcp_next_iss(): 6510 + cumulative tcp_ticks
        "max_connections": opts.get("MEMP_NUM_TCP_PCB", 5),  # listeners have their own pool
        # IP_REASS_CHECK_OVERLAP drops only the overlapping fragment, not the datagram: the
        # fragment after it completes the datagram and lwIP answers.
        "ipv4_overlap_dropped": False,
        "ipv6_overlap_dropped": False,
    }


def timeout_range(case: Case) -> tuple[float, float]:
    """Where the IPv4 reassembly timeout (s) must lie for ``case``."""
    if case.stack == "linux":
        # ipfrag_time 30 s, on a timer wheel whose slots are coarse at 30 s (up to ~2 s late).
        return 30.0, 32.6
    if case.stack == "local":
        return 29.9, 30.2  # ReassemblyConfig.timeout, exact timers
    # IP_REASS_MAXAGE 15 ticks of IP_TMR_INTERVAL (1 s): freed on the tick after it reached 0.
    return 15.0, 16.2


def _keys(gt: GroundTruth) -> set[str]:
    """The keys of the robustness probes this run includes (skips when there are none)."""
    chosen = set(PROBE_IDS) & set(gt.probes)
    if not chosen:
        pytest.skip("no robustness probe in TCP_HIL_GT_PROBES")
    return {k for p in chosen for k in PROBES[p].keys}


def _values(gt: GroundTruth, case: str, key: str) -> dict[str, Value]:
    return {o.family: o.value for o in gt.observations(case, key)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_robust_keys_equal_configuration(groundtruth: GroundTruth, case: Case) -> None:
    keys = _keys(groundtruth)
    want = expected(case)
    families = {"ipv4_overlap_dropped": "ipv4", "ipv6_overlap_dropped": "ipv6"}
    wrong = []
    for key in sorted(keys & set(want)):
        got = _values(groundtruth, case.name, key)
        if got != {families.get(key, ""): want[key]}:
            obs = groundtruth.observations(case.name, key)
            wrong.append(f"{key}: want {want[key]}, got {got} ({obs[0].detail if obs else ''})")
    if "ipv4_reassembly_timeout_s" in keys:
        got = _values(groundtruth, case.name, "ipv4_reassembly_timeout_s")
        lo, hi = timeout_range(case)
        value = got.get("")
        if not isinstance(value, float | int) or not lo <= value <= hi:
            wrong.append(f"ipv4_reassembly_timeout_s: want {lo}..{hi} s, got {got}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_robust_verdicts(groundtruth: GroundTruth, case: Case) -> None:
    """Nothing inconclusive that the configuration decides, evidence for every observation,
    and verdicts that follow the RFCs: a predictable ISN, dropped out-of-order data, no Nagle
    by default, reassembled overlapping IPv6 fragments or a reassembly timeout outside RFC
    1122's 60-120 s deviate; RFC 793-style RST and SYN handling conforms (RFC 5961 is
    MAY-12)."""
    keys = _keys(groundtruth)
    want = expected(case)
    for key in sorted(keys):
        for o in groundtruth.observations(case.name, key):
            if key in want and want[key] is None:
                assert o.verdict == "inconclusive", o
                continue
            assert o.verdict in ("conforms", "deviates"), o
            assert o.evidence is not None and o.evidence.frames, o
            deviates = {
                "isn_predictable": o.value is True,
                "ooo_queue": o.value is False,
                "nagle": o.value is False,
                "ipv6_overlap_dropped": o.value is False,
                "ipv4_overlap_dropped": False,
                "rst_challenge_ack": False,
                "syn_in_established_challenge_ack": False,
                "ipv4_reassembly_timeout_s": not 60 <= float(o.value or 0) <= 120,
            }
            if key in deviates:
                assert (o.verdict == "deviates") == deviates[key], o


def test_robust_probes_are_quick(groundtruth: GroundTruth) -> None:
    """Each probe finishes in a few seconds; only the reassembly timer waits (up to the
    budget), and P22 waits out a silent refusal twice. P9 is left out: it queues for the
    target's agent, which the timer probes hold for as long as their timers run."""
    _keys(groundtruth)
    for case in groundtruth.results:
        for pid in set(PROBE_IDS) & set(groundtruth.probes) - {"P9"}:
            path = groundtruth.out / case / "observations" / f"{pid}.json"
            record = json.loads(path.read_text())
            limit = BUDGET_S + 8 if pid == "P24" else 15
            assert record["seconds"] <= limit, (case, pid, record["seconds"])
            assert record["error"] is None, (case, pid, record["error"])


# Which frames an observation must cite, as tshark sees them.
SHOWS = {
    "nagle": "tcp.len == 1",
    "nodelay": "tcp.len == 1",
    "sack_blocks": "tcp.flags.syn == 1 || tcp.options.sack_le",
    "sack_recovery": "tcp.len > 0 || tcp.flags.syn == 1",
    "ooo_queue": "tcp.len == 100",
    "rst_challenge_ack": "tcp.flags.reset == 1",
    "syn_in_established_challenge_ack": "tcp.flags.syn == 1",
    "rst_closed_port": "tcp.flags.reset == 1",
    "isn_predictable": "tcp.flags.syn == 1 && tcp.flags.ack == 1",
    "max_connections": "tcp.flags.syn == 1",
    "ipv4_reassembly_timeout_s": "icmp.type == 11 && icmp.code == 1",
    "ipv4_overlap_dropped": "ip.flags.mf == 1",
    "ipv6_overlap_dropped": "ipv6.fraghdr.more == 1",
}


@pytest.mark.parametrize("case", ["lxdef", "locfull", "lwdef", "lwsackh"])
def test_robust_evidence_dissects(groundtruth: GroundTruth, case: str) -> None:
    """Every evidence pcap opens in tshark, the cited frames exist, and they show what the
    observation is about (a RST, a SACK block, a Time Exceeded ...)."""
    keys = _keys(groundtruth)
    checked = 0
    for key, shows in SHOWS.items():
        if key not in keys:
            continue
        for o in groundtruth.observations(case, key):
            if o.evidence is None or not o.evidence.frames:
                continue
            check_evidence(groundtruth.out, o, shows)
            checked += 1
    assert checked, f"no evidence for {case}"
