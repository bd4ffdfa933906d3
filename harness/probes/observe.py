"""Observations: what a probe learnt about one feature of one target, with the evidence.

Every observation has a feature key from :data:`FEATURES` (the names the reports, Figure 2
and the pytest ``needs`` marker use), a value (number, bool, string, or None when the probe could
not see it), a verdict against the standard, the RFC 9293 requirement IDs or RFC sections it
checks, a confidence (trials, and an interval for timers) and the evidence: the capture file
and the time range in it that shows the behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["conforms", "deviates", "not-applicable", "inconclusive"]
Value = int | float | bool | str | None


@dataclass(frozen=True)
class Feature:
    unit: str
    requirements: tuple[str, ...]
    text: str


# key | unit | RFC 9293 requirement IDs or RFC sections | what it means
_TABLE = """
mss_advertised | bytes | MUST-14, SHLD-5, MUST-67 | MSS option in the SYN-ACK
mss_respected | bool | MUST-14 | segments never exceed the peer's MSS
mss_default_when_absent | bytes | MUST-15 | largest segment when the peer sent no MSS
rcv_window | bytes | RFC 9293 3.8.6 | receive window advertised in the SYN-ACK
rcv_window_mss | MSS | RFC 9293 3.8.6 | receive window in units of the advertised MSS
flight_size_mss | MSS | RFC 5681 | most data in flight, in MSS
initial_window | bytes | RFC 5681 3.1, RFC 6928 | data sent before the first ACK
slow_start | bool | MUST-19 | flight grows per RTT from the initial window
fast_retransmit | bool | RFC 5681 3.2 | retransmits after 3 duplicate ACKs
fast_recovery | bool | RFC 6582 | new data during recovery
rto_initial_ms | ms | RFC 6298 2.1 | first retransmission timeout
rto_min_ms | ms | RFC 6298 2.4 | smallest RTO
rto_backoff | factor | RFC 6298 5.5, MUST-19 | RTO growth per timeout
rto_max_ms | ms | RFC 6298 2.5 | largest RTO
syn_retries | count | MUST-20 | SYN retransmissions before giving up
syn_giveup_s | s | MUST-20, MUST-21 | time from the first SYN to giving up
data_retries | count | MUST-20 | data retransmissions before giving up
karn | bool | RFC 6298 3 | no RTT samples from retransmitted segments
timer_tick_ms | ms |  | granularity of the stack's TCP timers
delayed_ack | bool | SHLD-18 | ACKs are delayed
delayed_ack_ms | ms | SHLD-18, MUST-40 | longest ACK delay (at most 500 ms)
ack_every_2nd_full | bool | SHLD-19 | an ACK at least every 2nd full segment
immediate_dupack_ooo | bool | RFC 5681 4.2 | immediate duplicate ACK for out-of-order data
nagle | bool | SHLD-7, MUST-17 | Nagle algorithm on by default
sws_avoidance_receiver | bool | MUST-39 | no small window openings
sws_avoidance_sender | bool | MUST-38 | no small segments into small windows
zero_window_probe | bool | MUST-36, MUST-37 | probes a zero window, keeps it open
zwp_first_ms | ms | SHLD-29 | time to the first zero-window probe
zwp_backoff | factor | SHLD-29 | growth of the probe interval
keepalive_default | bool | MUST-25 | keep-alive on without being asked
window_scale | bool | RFC 7323 2 | window scale option in the SYN-ACK
window_scale_shift | shift | RFC 7323 2.3 | the shift the target advertises
timestamps | bool | RFC 7323 3 | timestamps option in the SYN-ACK
sack_permitted | bool | RFC 2018 | SACK-permitted in the SYN-ACK
sack_blocks | bool | RFC 2018 4 | SACK blocks for out-of-order data
sack_recovery | bool | RFC 6675 | only holes retransmitted
ooo_queue | bool | SHLD-31 | out-of-order data queued
time_wait_s | s | MUST-13 | TIME-WAIT length
rst_challenge_ack | bool | RFC 5961 3 | in-window RST answered by a challenge ACK
syn_in_established_challenge_ack | bool | RFC 5961 4 | SYN in ESTABLISHED gets a challenge ACK
ecn | bool | RFC 3168 6.1.1, SHLD-8 | ECN negotiated (ECE in the SYN-ACK)
tfo | bool | RFC 7413 | Fast Open cookie offered
isn_predictable | bool | MUST-8, SHLD-1, MUST-9 | ISNs follow a predictable sequence
max_connections | count |  | concurrent connections to one service
icmp_echo | bool | RFC 1122 3.2.2.6, RFC 4443 4.2 | answers echo requests
udp_port_unreachable | bool | RFC 1122 4.1.3.1, RFC 4443 3.1 | port unreachable for closed UDP ports
ipv4_reassembly | bool | RFC 791, RFC 1122 3.3.2 | reassembles IPv4 fragments
ipv4_reassembly_timeout_s | s | RFC 1122 3.3.2 | IPv4 reassembly timeout
ipv6_reassembly | bool | RFC 8200 4.5 | reassembles IPv6 fragments
ttl_default | hops | RFC 1122 3.2.1.7 | IPv4 TTL of the target's packets
# more keys of the flow probes (P2-P6, P10)
rcv_buffer | bytes | RFC 9293 3.8.6 | data accepted for an application that does not read
# more keys of the timer probes (P7, P8, P11, P12, P17)
syn_backoff | factor | RFC 6298 5.5, MUST-22 | growth of the interval between SYN retransmissions
keepalive_idle_ms | ms | MUST-26, MUST-27 | idle time before the first keep-alive, as set
keepalive_interval_ms | ms | MUST-27 | interval between unanswered keep-alives, as set
keepalive_count | count | MUST-29 | unanswered keep-alives before the connection is dropped
keepalive_probe | form | SHLD-12, MAY-6 | a keep-alive's sequence number and length
# more keys of the robustness probes (P9, P15, P16, P18, P21, P22, P24, P25)
nodelay | bool | MUST-17 | the application can turn Nagle off (TCP_NODELAY)
rst_closed_port | bool | RFC 9293 3.10.7.1 | a SYN to a closed port draws the RFC form of RST
ipv4_overlap_dropped | bool | RFC 1858 3.2 | IPv4 datagram with overlapping fragments discarded
ipv6_overlap_dropped | bool | RFC 5722 4 | IPv6 datagram with overlapping fragments discarded
"""


def _features(table: str) -> dict[str, Feature]:
    out = {}
    for line in table.strip().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, unit, reqs, text = (part.strip() for part in line.split("|"))
        out[key] = Feature(unit, tuple(r.strip() for r in reqs.split(",") if r.strip()), text)
    return out


FEATURES: dict[str, Feature] = _features(_TABLE)


@dataclass(frozen=True)
class Evidence:
    pcap: str  # relative to the run's output directory
    t_start: float  # capture time (s) of the first frame that shows it
    t_end: float
    frames: tuple[int, ...] = ()  # 1-based frame numbers in the pcap (as Wireshark counts)
    note: str = ""


@dataclass(frozen=True)
class Confidence:
    trials: int = 1
    interval: tuple[float, float] | None = None  # for timers: the value's plausible range
    level: float | None = None  # e.g. 0.95 for a 95 % interval


@dataclass(frozen=True)
class Observation:
    key: str
    value: Value
    verdict: Verdict
    probe: str
    family: str = ""  # "ipv4", "ipv6" or "" when the same in both
    detail: str = ""
    confidence: Confidence = field(default_factory=Confidence)
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        if self.key not in FEATURES:
            raise ValueError(f"unknown feature key {self.key!r}; known: {', '.join(FEATURES)}")

    @property
    def unit(self) -> str:
        return FEATURES[self.key].unit

    @property
    def requirements(self) -> tuple[str, ...]:
        return FEATURES[self.key].requirements

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["unit"], out["requirements"] = self.unit, list(self.requirements)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Observation:
        ev = data.get("evidence")
        conf = data.get("confidence") or {}
        interval = conf.get("interval")
        return cls(
            data["key"],
            data["value"],
            data["verdict"],
            data["probe"],
            data.get("family", ""),
            data.get("detail", ""),
            Confidence(
                conf.get("trials", 1), tuple(interval) if interval else None, conf.get("level")
            ),
            Evidence(**{**ev, "frames": tuple(ev.get("frames", ()))}) if ev else None,
        )
