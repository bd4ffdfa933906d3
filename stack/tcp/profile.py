"""TCP profiles: named, declarative configurations of the reference stack's TCP.

The reference stack must behave like the stacks it is compared with, so that probes can be
validated against known truth. Every knob a behaviour depends on is a field of
:class:`TcpConfig`; a profile is a set of values with their sources; ``--tcp KEY=VALUE``
overrides one field. Sources are the files cited in ``shared/reference/tcp-behaviour.md`` §6
(lwIP STABLE-2_1_3, RIOT c8bd52ff, Contiki-NG 9f80681d, Linux ``include/net/tcp.h``).

Times are integer microseconds; sizes are bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

from stack.tcp.rtt import RtoConfig
from stack.time import MS, SECOND


@dataclass(slots=True)
class TcpConfig:
    # segment sizes and buffers
    mss: int = 1460  # advertised MSS; the interface lowers it to MTU - headers
    default_send_mss: int = 536  # assumed over IPv4 when the peer sends no MSS (RFC 9293 3.7.1)
    default_send_mss_v6: int = 1220  # the same over IPv6 (RFC 8200 5: 1280 - 60)
    rcv_buf: int = 256 * 1024  # receive buffer = the largest window we advertise
    snd_buf: int = 256 * 1024
    max_in_flight_segments: int | None = None  # 1 = stop-and-wait (uIP, RIOT)
    # timers
    rto: RtoConfig = field(default_factory=RtoConfig)
    timer_tick_us: int = 0  # 0: timers fire exactly; else they fire on multiples of the tick
    # Tick-driven timers fire on the k-th tick after the start (lwIP: ++rtime, then compare),
    # so in (start + d - tick, start + d]; uIP's post-decrement (timer-- == 0) fires one tick
    # later, in (start + d, start + d + tick]. This counts the extra ticks.
    timer_extra_ticks: int = 0
    syn_retries: int = 6  # R2 for SYN (RFC 9293 MUST-23 asks for >= 3 min in total)
    data_retries: int = 15  # R2 for data (Linux tcp_retries2)
    syn_backoff: bool = True  # lwIP does not back off SYN retransmissions
    user_timeout_us: int | None = None  # RFC 9293 3.8.3 USER TIMEOUT
    time_wait_us: int = 60 * SECOND  # 2 * MSL
    delayed_ack: bool = True
    delayed_ack_us: int = 40 * MS  # Linux TCP_DELACK_MIN; RFC 9293 SHLD-18 <= 500 ms
    ack_every_segments: int = 2  # ACK at least every 2nd full-sized segment (RFC 9293 SHLD-19)
    nagle: bool = True
    sws_avoidance: bool = True  # RFC 9293 3.8.6.2 sender and receiver
    sws_override_us: int = 200 * MS  # sender SWS override timer (RFC 9293 3.8.6.2.1: 0.1-1 s)
    zwp_max_us: int = 60 * SECOND
    keepalive: bool = False  # RFC 9293 MUST-24: off by default
    keepalive_idle_us: int = 7200 * SECOND
    keepalive_interval_us: int = 75 * SECOND
    keepalive_count: int = 9
    # options
    window_scale: bool = True
    timestamps: bool = True
    sack: bool = True
    ecn: bool = False  # RFC 3168 negotiation as the active opener (and as the passive one)
    ecn_server: bool = False  # only answer an ECN-setup SYN (Linux tcp_ecn=2)
    fast_open: bool = False
    # receive side
    ooo_queue: bool = True  # keep out-of-order data (uIP and RIOT drop it)
    ooo_max_holes: int = 32
    # congestion control
    congestion_control: str = "newreno"  # "newreno" or "none"
    initial_window: int | None = None  # bytes; None = RFC 5681 formula
    limited_transmit: bool = True
    fast_retransmit: bool = True  # 3 duplicate ACKs (or SACK) start loss recovery (RFC 5681)
    # security and misc
    rfc5961: bool = True  # challenge ACKs for in-window RST/SYN
    challenge_ack_per_s: int = 10
    isn: str = "rfc6528"  # "rfc6528" (keyed hash + clock) or "counter"
    listen_backlog: int = 16
    max_connections: int = 1024

    def with_overrides(self, **overrides: Any) -> TcpConfig:
        cfg = replace(self, rto=replace(self.rto))
        for key, value in overrides.items():
            set_field(cfg, key, value)
        return cfg


def _rto(**kw: int) -> RtoConfig:
    return RtoConfig(**kw)


# What RIOT gnrc_tcp and uIP share: IPv6 MSS 1220 (1280 - 60), a one-MSS window, one segment
# in flight, immediate ACKs, no options but MSS, no out-of-order queue, no congestion control
# and no fast retransmit (every loss waits for the RTO), no RFC 5961 checks, TIME-WAIT 60 s
# (RIOT 2 * 30 s MSL; uIP 120 ticks of 0.5 s).
_SINGLE_SEGMENT_STACK: dict[str, Any] = dict(
    mss=1220,
    default_send_mss=1220,
    default_send_mss_v6=1220,
    rcv_buf=1220,
    snd_buf=1220,
    max_in_flight_segments=1,
    time_wait_us=60 * SECOND,
    delayed_ack=False,
    nagle=False,
    window_scale=False,
    timestamps=False,
    sack=False,
    ooo_queue=False,
    congestion_control="none",
    fast_retransmit=False,
    limited_transmit=False,
    rfc5961=False,
)

PROFILES: dict[str, TcpConfig] = {
    # Everything on: the default peer, and the stack compared as "tcp-hil".
    "full": TcpConfig(ecn=True, fast_open=True),
    # Linux defaults (include/net/tcp.h; sysctl defaults): 200 ms RTO floor, 120 s cap,
    # delayed ACK 40 ms, initial cwnd 10 segments, ECN only when asked (tcp_ecn=2).
    "linux-like": TcpConfig(
        rto=_rto(initial_us=1 * SECOND, min_us=200 * MS, max_us=120 * SECOND),
        delayed_ack_us=40 * MS,
        initial_window=10 * 1460,
        syn_retries=6,
        data_retries=15,
        ecn_server=True,
    ),
    # lwIP 2.1 opt.h defaults: TCP_MSS 536, TCP_WND 4*MSS, TCP_SND_BUF 2*MSS, 250/500 ms timer
    # ticks, initial RTO 3 s (tcp.c:1901), no SYN back-off (tcp.c:1281), TCP_MAXRTX 12,
    # TCP_SYNMAXRTX 6, delayed ACK on the 250 ms fast timer, no WS/TS/SACK, TIME-WAIT 2*60 s.
    "lwip-default": TcpConfig(
        mss=536,
        default_send_mss=536,
        default_send_mss_v6=536,
        rcv_buf=4 * 536,
        snd_buf=2 * 536,
        # back-off: tcp_backoff[] = {1, 2, ..., 7, 7, ...} shifts, so at most x128 (tcp.c:163)
        rto=_rto(
            initial_us=3 * SECOND,
            min_us=0,
            max_us=0x7FFF * 500 * MS,
            tick_us=500 * MS,
            max_backoff=7,
        ),
        timer_tick_us=250 * MS,
        syn_retries=6,
        data_retries=12,
        syn_backoff=False,
        time_wait_us=120 * SECOND,
        delayed_ack_us=250 * MS,
        window_scale=False,
        timestamps=False,
        sack=False,
        ooo_queue=True,
        ooo_max_holes=10,
        rfc5961=True,
    ),
    # RIOT gnrc_tcp (config.h): MSS 1220, window 1 MSS, one segment in flight, no delayed ACK,
    # MSS the only option, RTO 1-60 s with G 10 ms, MSL 30 s, 120 s user-call timeout.
    "riot-gnrc": TcpConfig(
        **_SINGLE_SEGMENT_STACK,
        rto=_rto(
            initial_us=1 * SECOND, min_us=1 * SECOND, max_us=60 * SECOND, granularity_us=10 * MS
        ),
        user_timeout_us=120 * SECOND,
        syn_retries=1000,
        data_retries=1000,
    ),
    # uIP in Contiki-NG (uipopt.h, uip6.c): single-MSS window, stop-and-wait, 0.5 s periodic
    # timer, UIP_RTO 3 ticks (1.5 s), back-off << min(nrtx, 4), UIP_MAXRTX 8, UIP_MAXSYNRTX 5,
    # no delayed ACK, out-of-order data dropped, TIME-WAIT 120 ticks (60 s).
    "uip": TcpConfig(
        **_SINGLE_SEGMENT_STACK,
        rto=_rto(
            initial_us=1500 * MS, min_us=0, max_us=24 * SECOND, tick_us=500 * MS, max_backoff=4
        ),
        timer_tick_us=500 * MS,
        timer_extra_ticks=1,  # uip6.c: if(uip_connr->timer-- == 0)
        syn_retries=5,
        data_retries=8,
        isn="counter",
    ),
}


def profile(name: str, **overrides: Any) -> TcpConfig:
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown TCP profile {name!r}; profiles: {', '.join(PROFILES)}") from None
    return base.with_overrides(**overrides)


def _field_types(obj: object) -> dict[str, Any]:
    return {f.name: f.type for f in fields(obj)}  # type: ignore[arg-type]


def set_field(cfg: TcpConfig, key: str, value: Any) -> None:
    """Set ``key`` (``rto.min_us`` reaches into the RTO config), coercing strings."""
    target: object = cfg
    name = key
    if key.startswith("rto."):
        target, name = cfg.rto, key[4:]
    types = _field_types(target)
    if name not in types:
        known = sorted(_field_types(cfg)) + sorted(f"rto.{k}" for k in _field_types(cfg.rto))
        known.remove("rto")
        raise ValueError(f"unknown TCP setting {key!r}; settings: {', '.join(known)}")
    current = getattr(target, name)
    if isinstance(value, str):
        value = _coerce(key, value, current, str(types[name]))
    setattr(target, name, value)


def _coerce(key: str, text: str, current: Any, type_name: str) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"TCP setting {key} takes on/off, not {text!r}")
    if isinstance(current, int) or "int" in type_name:
        if text.lower() == "none" and "None" in type_name:
            return None
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"TCP setting {key} takes a whole number, not {text!r}") from None
    return text


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["nagle=off", "rto.min_us=200000"]`` -> dict; ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--tcp {item!r}: write KEY=VALUE, e.g. --tcp nagle=off")
        out[key.strip()] = value.strip()
    return out


def describe(cfg: TcpConfig) -> dict[str, Any]:
    """A plain dict of every value, for reports and build information."""
    return dataclasses.asdict(cfg)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level with dotted keys (``cc.initial_window``), for key=value output."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and key.endswith("_us"):
        return f"{value / SECOND:g} s" if value >= SECOND else f"{value / MS:g} ms"
    return str(value)


def difference_table() -> str:
    """The settings that differ between profiles, as a Markdown table (docs/tcp.md has it)."""
    flat = {name: flatten(describe(cfg)) for name, cfg in PROFILES.items()}
    names = list(PROFILES)
    lines = [
        "| setting | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in flat["full"]:
        values = [flat[n][key] for n in names]
        if len({repr(v) for v in values}) > 1:
            lines.append(f"| `{key}` | " + " | ".join(_fmt(key, v) for v in values) + " |")
    return "\n".join(lines)
