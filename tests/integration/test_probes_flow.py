"""Ground truth for the flow probes (P1b, P2, P3, P4, P5, P6, P10).

Every expected value is derived from the case's configuration, never typed in per case: Linux's
from its sysctls and route metrics over the kernel's defaults, the reference stack's from its
profile with the case's overrides (stack/tcp/profile.py), lwIP's from the case's lwipopts over
lwIP 2.1.3's opt.h defaults. Where a stack does not do what its documentation suggests, the
model here follows the measurement and says why:

- lwIP copies what it sends into its heap (tcp_write with TCP_WRITE_FLAG_COPY allocates a
  PBUF_RAM per segment: the MSS plus 74 bytes of header room plus pbuf and heap headers).
  MEM_SIZE defaults to 1600 B, which holds two 536-byte segments or one 1000-byte one: so
  lwopt (TCP_SND_BUF 4000) keeps one segment in flight, lwbuf (TCP_SND_BUF 4288) two, and only
  a case that also raises MEM_SIZE (lwheap) reaches its send buffer's eight.
- lwIP sends at most 536 B to a peer that sent no MSS option, over IPv6 too (tcp.c: "As initial
  send MSS, we use TCP_MSS but limit it to 536"): conforming, RFC 9293 allows less.
- The reference stack sends segments up to the peer's MSS whatever MSS it advertises itself
  (locovr advertises 1000 and sends 1460), and the riot-gnrc/uip profiles assume 1220 B over
  IPv4 as well when the MSS option is missing (RFC 9293 MUST-15 says 536: they deviate; RIOT
  and uIP are IPv6-only stacks, the profile carries the value over).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from harness.probes.catalogue import PROBES
from harness.probes.observe import Value
from stack.tcp.profile import profile
from tests.integration.conftest import GroundTruth, check_evidence
from tests.integration.groundtruth import CASES, Case

pytestmark = pytest.mark.slow

PROBE_IDS = ("P1b", "P2", "P3", "P4", "P5", "P6", "P10")
OUR_MSS = 1460  # what the probes offer (harness.probes.catalogue_flow.OUR_MSS)
WIN = 65535  # the probes' window without scaling
LINUX_RMEM = 131072  # the kernel's default tcp_rmem[1] (net/ipv4/tcp.c), per namespace


@dataclass(frozen=True)
class Flow:
    """What a case's configuration implies for the flow keys."""

    initial_window: int  # bytes
    flight: float | None  # MSS; None: cwnd-limited (grows past the initial window)
    mss: int  # the MSS the flight is counted in (the target's and ours, the smaller)
    slow_start: bool
    fast: bool | None  # fast retransmit and recovery; None: never 4 segments in flight
    rcv_buffer: tuple[int, int]  # inclusive range, bytes
    default_mss: tuple[int, int]  # IPv4, IPv6: largest segment without an MSS option
    sws: bool  # receiver and sender silly-window avoidance


def _config(case: Case) -> dict[str, Any]:
    return yaml.safe_load(case.extra) or {}


def _rfc3390(mss: int) -> int:
    return min(4 * mss, max(2 * mss, 4380))


def expected(case: Case) -> Flow:
    cfg = _config(case)
    if case.stack == "linux":
        rmem = int(
            str(cfg.get("sysctl", {}).get("net.ipv4.tcp_rmem", f"0 {LINUX_RMEM}")).split()[1]
        )
        return Flow(
            initial_window=int(cfg.get("initcwnd", 10)) * OUR_MSS,  # TCP_INIT_CWND 10
            # cwnd grows past the initial window; how far depends on how fast the (Python)
            # chargen writes and when HyStart ends slow start: 22 to 45 MSS measured.
            flight=None,
            mss=OUR_MSS,
            slow_start=True,
            fast=True,  # 3 duplicate ACKs (no SACK offered), then PRR sends new data
            # What a non-reading socket takes before window 0: rcvbuf (tcp_rmem[1]) less the
            # skb overhead (tcp_adv_win_scale / scaling_ratio), so between half and all of it.
            rcv_buffer=(rmem // 2, rmem),
            default_mss=(536, 1220),  # TCP_MSS_DEFAULT; IPV6_MIN_MTU - 60
            sws=True,
        )
    if case.stack == "local":
        tcp = profile(cfg.get("profile", "full"), **cfg.get("tcp", {}))
        mss = min(OUR_MSS, tcp.mss)
        cap = tcp.snd_buf  # bytes it can have unacknowledged
        if tcp.max_in_flight_segments is not None:
            cap = min(cap, tcp.max_in_flight_segments * OUR_MSS)
        iw = min(tcp.initial_window or _rfc3390(OUR_MSS), cap)
        segments = WIN // OUR_MSS if cap >= WIN else cap // OUR_MSS
        return Flow(
            initial_window=iw,
            flight=None if cap >= WIN else round(cap / mss, 2),
            mss=mss,
            slow_start=tcp.congestion_control != "none" and cap > iw,
            fast=tcp.fast_retransmit if segments >= 4 else None,
            rcv_buffer=(tcp.rcv_buf, tcp.rcv_buf),
            default_mss=(tcp.default_send_mss, tcp.default_send_mss_v6),
            sws=tcp.sws_avoidance,
        )
    opts = cfg.get("lwipopts", {})
    mss = opts.get("TCP_MSS", 536)
    snd_buf = opts.get("TCP_SND_BUF", 2 * mss)
    heap_segments = opts.get("MEM_SIZE", 1600) // (mss + 112)  # see the module doc
    segments = min(snd_buf // mss, heap_segments)
    iw = min(_rfc3390(mss), segments * mss)  # LWIP_TCP_CALC_INITIAL_CWND
    return Flow(
        initial_window=iw,
        flight=float(segments),
        mss=mss,
        slow_start=segments * mss > iw,
        fast=True if segments >= 4 else None,  # 3 duplicate ACKs, TF_INFR inflation
        rcv_buffer=(opts.get("TCP_WND", 4 * mss),) * 2,
        default_mss=(min(mss, 536),) * 2,  # INITIAL_MSS
        sws=True,  # tcp_update_rcv_ann_wnd; whole segments only, split by the persist timer
    )


def _keys(gt: GroundTruth) -> set[str]:
    """The keys of the flow probes this run includes (skips when there are none)."""
    chosen = set(PROBE_IDS) & set(gt.probes)
    if not chosen:
        pytest.skip("no flow probe in TCP_HIL_GT_PROBES")
    return {k for p in chosen for k in PROBES[p].keys}


def _values(gt: GroundTruth, case: str, key: str) -> dict[str, Value]:
    return {o.family: o.value for o in gt.observations(case, key)}


def _wrong(gt: GroundTruth, case: Case, key: str, want: object, ok: bool) -> list[str]:
    if ok:
        return []
    obs = gt.observations(case.name, key)
    got = _values(gt, case.name, key)
    return [f"{key}: want {want}, got {got} ({'; '.join(o.detail for o in obs)})"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_flow_keys_equal_configuration(groundtruth: GroundTruth, case: Case) -> None:
    keys = _keys(groundtruth)
    want = expected(case)
    got = {key: _values(groundtruth, case.name, key) for key in keys}
    wrong: list[str] = []

    def check(key: str, expect: object, ok: bool) -> None:
        if key in keys:
            wrong.extend(_wrong(groundtruth, case, key, expect, ok))

    v4, v6 = want.default_mss
    if "mss_respected" in keys:
        check("mss_respected", True, got["mss_respected"] == {"ipv4": True, "ipv6": True})
        default = got["mss_default_when_absent"]
        check("mss_default_when_absent", (v4, v6), default == {"ipv4": v4, "ipv6": v6})
    if "rcv_buffer" in keys:
        lo, hi = want.rcv_buffer
        value = got["rcv_buffer"].get("")
        check("rcv_buffer", want.rcv_buffer, isinstance(value, int) and lo <= value <= hi)
        sws = {"": want.sws}
        check("sws_avoidance_receiver", sws, got["sws_avoidance_receiver"] == sws)
    if "flight_size_mss" in keys:
        value = got["flight_size_mss"].get("")
        if want.flight is None:  # above the initial window, never above ours
            low, high = want.initial_window / want.mss, round(WIN / want.mss, 2)
            ok = isinstance(value, float) and low < value <= high
            check("flight_size_mss", f"{low:.2f} < x <= {high:.2f}", ok)
        else:
            check("flight_size_mss", want.flight, value == want.flight)
    check("initial_window", want.initial_window,
          got.get("initial_window") == {"": want.initial_window})  # fmt: skip
    check("slow_start", want.slow_start, got.get("slow_start") == {"": want.slow_start})
    fast = {"": want.fast}
    check("fast_retransmit", fast, got.get("fast_retransmit") == fast)
    check("fast_recovery", fast, got.get("fast_recovery") == fast)
    sws = {"": want.sws}
    check("sws_avoidance_sender", sws, got.get("sws_avoidance_sender") == sws)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_flow_verdicts(groundtruth: GroundTruth, case: Case) -> None:
    """Nothing inconclusive; not-applicable only for loss recovery without 4 segments in flight
    (and then with the reason); deviations exactly where the RFCs say: an initial window above
    RFC 6928's, more than 536 B to an IPv4 peer without MSS option, no SWS avoidance."""
    keys = _keys(groundtruth)
    want = expected(case)
    iw10 = min(10 * want.mss, max(2 * want.mss, 14600))  # RFC 6928's bound
    for key in sorted(keys):
        for o in groundtruth.observations(case.name, key):
            assert o.verdict != "inconclusive", o
            assert o.evidence is not None and o.evidence.frames, o
            if o.verdict == "not-applicable":
                assert key in ("fast_retransmit", "fast_recovery") and want.fast is None, o
                assert "in flight" in o.detail, o
                continue
            deviates = {
                "initial_window": want.initial_window > iw10,
                "mss_default_when_absent": o.family == "ipv4" and want.default_mss[0] > 536,
                "sws_avoidance_receiver": not want.sws,
                "sws_avoidance_sender": not want.sws,
            }.get(key, False)
            assert (o.verdict == "deviates") == deviates, o


# Which frames an observation must cite, as tshark sees them.
SHOWS = {
    "mss_respected": "tcp.len > 0",
    "mss_default_when_absent": "tcp.len > 0",
    "rcv_buffer": "tcp.window_size_value == 0",
    "sws_avoidance_receiver": "tcp.len == 0 && tcp.flags.ack == 1",
    "flight_size_mss": "tcp.len > 0",
    "initial_window": "tcp.len > 0",
    "slow_start": "tcp.len > 0",
    "fast_retransmit": "tcp.len > 0",
    "fast_recovery": "tcp.len > 0",
    "sws_avoidance_sender": "tcp.len > 0",
}


@pytest.mark.parametrize("case", ["lxdef", "locsws", "lwdef", "lwheap"])
def test_flow_evidence_dissects(groundtruth: GroundTruth, case: str) -> None:
    """Every evidence pcap opens in tshark, the cited frames exist, and they show what the
    observation is about: data segments, the zero window, the duplicate ACKs of a loss."""
    keys = _keys(groundtruth)
    checked = 0
    for key in sorted(keys):
        for o in groundtruth.observations(case, key):
            shows = SHOWS[key]
            if key == "fast_retransmit" and o.value:
                shows = "tcp.analysis.duplicate_ack"
            check_evidence(groundtruth.out, o, shows)
            checked += 1
    assert checked, f"no evidence for {case}"


def test_flow_probes_are_quick(groundtruth: GroundTruth) -> None:
    """A few seconds each: the longest waits are lwIP's first RTO (P4, 3 s) and its persist
    timer (P10, 1.5 s)."""
    _keys(groundtruth)
    for case in groundtruth.results:
        for pid in set(PROBE_IDS) & set(groundtruth.probes):
            record = json.loads(
                (groundtruth.out / case / "observations" / f"{pid}.json").read_text()
            )
            assert record["error"] is None, (case, pid, record["error"])
            assert record["seconds"] <= 12, (case, pid, record["seconds"])
