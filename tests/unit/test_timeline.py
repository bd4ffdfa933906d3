"""The timeline DSL against the reference stack in virtual time, and the tolerance models.

Scripts that must pass (handshakes with options over IPv4 and IPv6, delayed ACK on lwIP's
250 ms tick, SYN-ACK retransmission with and without back-off, FIN close, SACK remapping, an
active open by the target, a loop driven by what the target sent), scripts that must fail with
a readable diff (wrong flags, wrong window, too early, too late, never, unexpected segments),
and the tolerance models on synthetic data.
"""

from __future__ import annotations

import math
import random
import sys

import pytest

from harness.probes.timeline import (
    ANY,
    ECHO,
    Range,
    Seg,
    Timeline,
    TimelineError,
    after,
    between,
    flags_of,
    flags_str,
    matches,
)
from harness.probes.tolerance import (
    AbsPct,
    Statistical,
    Ticks,
    infer_tick,
    t_cdf,
    t_ppf,
    welch,
)
from harness.probes.wire import TARGET_MAC, VirtualWire

EXACT = AbsPct(0, 0)
ECHO_PORT, DISCARD_PORT, CHARGEN_PORT = 7, 9, 19


def here() -> int:
    """The caller's line number plus one: the line of the step the test is about to run."""
    return sys._getframe(1).f_lineno + 1


def plain_handshake(t: Timeline, mss: int = 1460, rtt_ms: float = 10) -> Seg:
    """SYN with MSS only, SYN-ACK, ACK ``rtt_ms`` later; returns the SYN-ACK."""
    t.inject(0, "S", mss=mss)
    syn_ack = t.expect(after(0), "S.", seq=0, ack=1, tolerance=EXACT)
    t.inject(after(rtt_ms), ".", ack=1)
    return syn_ack


# ------------------------------------------------------------------------- passing scripts


@pytest.mark.parametrize("profile", ["full", "linux-like"])
@pytest.mark.parametrize("family", [4, 6])
def test_handshake_with_all_options_then_echo(profile: str, family: int) -> None:
    wire = VirtualWire(profile, family=family)
    with Timeline(wire, ECHO_PORT, seed=7, tolerance=EXACT) as t:
        syn = t.inject(0, "S", win=65535, mss=1460, wscale=7, sackok=True, ts=(100, 0))
        syn_ack = t.expect(
            after(0),
            "S.",
            seq=0,
            ack=1,
            win=65535,
            mss=1460 if family == 4 else 1440,  # MTU 1500 minus 40 / 60 bytes of headers
            wscale=3,  # 256 KiB receive buffer: shift 3 (RFC 7323 2.3)
            sackok=True,
            ts=(0, 100),  # the target's first TSval is its zero; TSecr echoes our 100
        )
        t.inject(after(10), ".", ts=(110, ECHO))
        t.inject(after(0), "P.", data=b"hello", ts=(110, ECHO))
        echo = t.expect(after(0), "P.", seq=1, ack=6, data=b"hello", ts=(10, 110))
        t.inject(after(5), ".", ack=6, ts=(115, ECHO))
    # remapping: the script spoke relative numbers, the wire carried absolute ones
    assert syn.seq_raw == t.conn.isn and syn.dst_port == ECHO_PORT
    assert syn.src_port == t.conn.tester_port and 49152 <= syn.src_port <= 65535
    assert syn_ack.seq_raw == t.conn.target_isn and syn_ack.ack_raw == (t.conn.isn + 1) % 2**32
    assert syn_ack.ts_raw is not None and syn_ack.ts_raw[1] == t.conn.ts_base + 100
    assert echo.t_ms == 10.0 and echo.end == 6
    assert all(c.ok for c in t.checks) and len(t.checks) == 6


@pytest.mark.parametrize(
    ("profile", "family", "mss", "win"),
    [
        ("lwip-default", 4, 536, 2144),  # TCP_MSS 536, TCP_WND 4 * MSS
        ("lwip-default", 6, 536, 2144),
        ("riot-gnrc", 6, 1220, 1220),  # one-MSS window
        ("uip", 4, 1220, 1220),
    ],
)
def test_embedded_profiles_answer_with_mss_only(
    profile: str, family: int, mss: int, win: int
) -> None:
    wire = VirtualWire(profile, family=family)
    with Timeline(wire, ECHO_PORT, seed=1, tolerance=EXACT) as t:
        t.inject(0, "S", mss=1460, wscale=7, sackok=True, ts=(1, 0))
        t.expect(after(0), "S.", ack=1, win=win, mss=mss, wscale=None, sackok=False, ts=None)
        t.inject(after(20), ".")
        t.inject(after(0), "P.", data=b"ping")
        t.expect(after(0), "P.", seq=1, ack=5, data=b"ping")
        t.inject(after(1), ".")


def test_lwip_delayed_ack_lands_on_the_250ms_tick() -> None:
    """lwIP acknowledges a lone segment on its next 250 ms fast-timer tick (tcp_fasttmr), so
    the ACK comes up to one tick *before* 250 ms have passed: Ticks(250, early 1, late 0)."""
    wire = VirtualWire("lwip-default")
    ticks = Ticks(250, jitter_ms=1, early_ticks=1, late_ticks=0)
    with Timeline(wire, DISCARD_PORT, seed=3, tolerance=ticks) as t:
        plain_handshake(t, mss=536, rtt_ms=100)
        rng = random.Random(5)
        acked = 1
        times: list[float] = []
        for _ in range(8):
            t.inject(after(rng.uniform(300, 700)), "P.", data=b"y" * 10)
            acked += 10
            ack = t.expect(after(250), ".", ack=acked)
            assert 0 < ack.t_ms - t.segments[-2].t_ms <= 250
            times.append(ack.t_ms)
    assert all(tm % 250 == 0 for tm in times)  # virtual time: exactly on the grid
    fit = infer_tick(times)
    assert fit.ok and fit.tick_ms == 250 and fit.residual_ms < 1e-6
    assert all(c.ok for c in t.checks)


@pytest.mark.parametrize(
    ("profile", "tolerance", "intervals"),
    [
        # RFC 6298: 1 s initial RTO, doubled on each expiry (exact under packetdrill's rule)
        ("full", AbsPct(), [1000, 2000, 4000, 8000]),
        # lwIP: 3 s, no back-off in SYN-RCVD either, counted on the 500 ms slow timer
        ("lwip-default", Ticks(500, jitter_ms=1), [3000, 3000, 3000, 3000]),
        # uIP: 1.5 s doubling, counted in 500 ms ticks, firing one tick late (timer-- == 0)
        ("uip", Ticks(500, jitter_ms=1, early_ticks=0, late_ticks=1), [1500, 3000, 6000]),
    ],
)
def test_syn_ack_retransmission_and_backoff_while_the_ack_is_withheld(
    profile: str, tolerance: AbsPct | Ticks, intervals: list[int]
) -> None:
    wire = VirtualWire(profile)
    with Timeline(wire, ECHO_PORT, seed=2, tolerance=tolerance) as t:
        t.inject(0, "S", mss=1460)
        first = t.expect(after(0), "S.", seq=0, ack=1)
        for interval in intervals:
            again = t.expect(after(interval), "S.", seq=0, ack=1, mss=first.mss)
        t.inject(after(50), ".")  # complete the handshake: the retransmissions stop
        t.expect_nothing(30_000)
    assert again.seq_raw == first.seq_raw  # the same SYN-ACK, not a new connection
    assert all(c.ok for c in t.checks)


def test_tick_inferred_from_the_targets_own_retransmissions() -> None:
    """Ticks(None): until three target events fit a grid, a FreeBSD-suite-like 600 ms
    tolerance decides; then the window is one inferred 500 ms tick late (uIP's timer)."""
    ticks = Ticks(None, jitter_ms=1, early_ticks=0, late_ticks=1, min_events=3,
                  fallback=AbsPct(600, 12.5))  # fmt: skip
    with Timeline(VirtualWire("uip"), ECHO_PORT, seed=2, tolerance=ticks) as t:
        t.inject(0, "S", mss=1460)
        t.expect(after(0), "S.")
        t.expect(after(1500), "S.")  # at 2000: inside 600 ms of fallback
        t.expect(after(3000), "S.")  # at 5500: the same
        assert "AbsPct(600 ms" in t.checks[-1].tolerance
        t.expect(after(6000), "S.")  # at 12000: now [11499, 12001] from the 500 ms tick
        t.inject(after(10), ".")
    assert ticks.fit is not None and ticks.fit.tick_ms == 500
    check = t.checks[-2]
    assert check.ok and (check.lo_ms, check.hi_ms) == (11499, 12001)
    assert "inferred 500 ms" in check.tolerance


@pytest.mark.parametrize("profile", ["full", "lwip-default", "uip"])
def test_fin_close_through_the_echo_service(profile: str) -> None:
    wire = VirtualWire(profile, family=6)
    with Timeline(wire, ECHO_PORT, seed=4, tolerance=EXACT) as t:
        plain_handshake(t)
        t.inject(after(10), "P.", data=b"bye")
        t.expect(after(0), "P.", seq=1, ack=4, data=b"bye")
        t.inject(after(5), "F.", seq=4, ack=4)  # acknowledges the echo and closes our side
        fin = t.expect(after(0), "F.", seq=4, ack=5)  # echo closes once it has read EOF
        t.inject(after(5), ".", seq=5, ack=5)
        t.expect_nothing(10_000)
    assert fin.end == 5 and t.conn.snd_nxt == 5


def test_sack_blocks_are_relative_to_the_tester_isn() -> None:
    wire = VirtualWire("full")
    with Timeline(wire, DISCARD_PORT, seed=5, tolerance=EXACT) as t:
        t.inject(0, "S", mss=1460, sackok=True)
        t.expect(after(0), "S.", sackok=True)
        t.inject(after(10), ".")
        t.inject(after(10), ".", seq=101, data=b"b" * 100)  # a hole at 1..101
        dup = t.expect(after(0), ".", ack=1, sack=((101, 201),))  # immediate duplicate ACK
        t.inject(after(10), "P.", seq=1, data=b"a" * 100)  # fills the hole
        t.expect(after(0), ".", ack=201, sack=None)
    assert dup.sack is not None and dup.hdr.sack_blocks == (
        ((t.conn.isn + 101) % 2**32, (t.conn.isn + 201) % 2**32),
    )


def test_target_active_open_learns_its_port_and_isn() -> None:
    """The target connects to the tester (as an on-target RPC would make it): the tester's
    listening connection learns the target's ephemeral port and ISN from its SYN."""
    wire = VirtualWire("full")
    with Timeline(wire, ECHO_PORT, seed=6, tolerance=EXACT) as t:
        c = t.listen(8000)
        t.wait(5)
        wire.connect(8000)
        syn = t.expect(after(0), "SEW", seq=0, ack=ANY, conn=c)  # ECN setup SYN (RFC 3168)
        t.inject(after(20), "S.", ack=1, mss=1000, conn=c)
        t.expect(after(0), ".", seq=1, ack=1, conn=c)
    assert c.target_port == syn.src_port and c.target_isn == syn.seq_raw
    assert syn.t_ms == 5.0


def test_chargen_flow_driven_by_what_the_target_sends() -> None:
    """Control flow: acknowledge whatever arrives, by its own end sequence number, until a
    fixed amount has been received; lwIP's 2 * MSS send buffer shows as two segments per ACK."""
    wire = VirtualWire("lwip-default", services="chargen:19")
    with Timeline(wire, CHARGEN_PORT, seed=8, tolerance=Ticks(500, jitter_ms=1)) as t:
        plain_handshake(t, mss=536)
        received = 0
        while received < 10 * 536:
            seg = t.expect(after(0, 1), ANY, length=range(1, 537))
            received += seg.length
            assert seg.end == 1 + received
            if received % 1072 == 0 and received < 10 * 536:
                t.inject(after(1), ".", ack=seg.end)
        last = t.segments[-1]
    assert received == 10 * 536 and last.direction == ">"
    assert {s.length for s in t.segments if s.direction == ">" and s.length} == {536}


@pytest.mark.parametrize("family", [4, 6])
def test_tester_answers_the_targets_arp_and_ndp(family: int) -> None:
    """The target does not know the tester's MAC: its first answer waits on ARP / neighbour
    discovery, which the tester answers without the script noticing (times stay exact)."""
    wire = VirtualWire("riot-gnrc", family=family)
    with Timeline(wire, ECHO_PORT, seed=9, tolerance=EXACT) as t:
        plain_handshake(t)
    answered = [o for o in t.link.others if "(answered)" in o.what]
    assert len(answered) == 1 and answered[0].t_us == 0
    assert t.link.sent_frames == 3  # SYN, ARP reply or NA, ACK


@pytest.mark.parametrize("family", [4, 6])
def test_tester_resolves_an_unknown_target_mac(family: int) -> None:
    wire = VirtualWire("riot-gnrc", family=family, target_mac_known=False, announce=False)
    with Timeline(wire, ECHO_PORT, seed=9, tolerance=EXACT) as t:
        plain_handshake(t)
    assert t.link.target_mac == TARGET_MAC
    assert t.link.sent_frames == 3  # ARP request or NS, SYN, ACK (the target learned from it)
    kind = "arp reply 192.0.2.2" if family == 4 else "icmpv6 type 136 2001:db8::2"
    assert any(o.what.startswith(kind) for o in t.link.others), list(t.link.others)


# ------------------------------------------------------------------------- failing scripts


def started(profile: str = "full", port: int = ECHO_PORT) -> Timeline:
    t = Timeline(VirtualWire(profile), port, seed=11)
    t.inject(0, "S", mss=1460)
    return t


def test_wrong_flags_fail_with_a_field_diff() -> None:
    t = started()
    with pytest.raises(TimelineError) as err:
        line = here()
        t.expect(after(0), "S", ack=1)
    text = str(err.value)
    assert err.value.mismatched == ("flags",)
    assert f"test_timeline.py:{line}" in text and 't.expect(after(0), "S", ack=1)' in text
    assert "!!flags    S " in text and "S." in text
    assert "> S. 0:0(0) ack 1 win 65535 <mss 1460>   <- this one" in text
    assert "< S 0:0(0) win 65535 <mss 1460>" in text


def test_wrong_window_is_marked_and_the_rest_is_not() -> None:
    t = started()
    with pytest.raises(TimelineError) as err:
        t.expect(after(0), "S.", ack=1, win=1000, mss=range(536, 1461))
    text = str(err.value)
    assert err.value.mismatched == ("win",)
    assert "!!win      1000" in text and "65535" in text
    assert "  flags    S." in text and "  mss      536..1460" in text


def test_too_early_beyond_the_tolerance() -> None:
    t = started()
    t.expect(after(0), "S.")
    with pytest.raises(TimelineError) as err:
        t.expect(after(2000), "S.")  # the first retransmission comes after 1 s, not 2 s
    text = str(err.value)
    assert err.value.mismatched == ("time",) and "too early (-1000.000 ms)" in text
    check = err.value.check
    assert check is not None and not check.ok and check.observed_ms == 1000.0
    assert (check.lo_ms, check.hi_ms) == (1750.0, 2250.0)  # 12.5 % of 2 s either side
    assert "AbsPct(4 ms, 12.5%)" in text


def test_too_late_beyond_the_tolerance() -> None:
    t = started()
    t.expect(after(0), "S.")
    with pytest.raises(TimelineError) as err:
        t.expect(after(500), "S.")
    assert err.value.mismatched == ("time",)
    assert "too late (+500.000 ms)" in str(err.value)


def test_packetdrill_default_tolerance_rejects_lwip_tick_timing() -> None:
    """The same delayed ACK that passes under Ticks(250) fails under AbsPct: lwIP answers on
    its 250 ms tick, 80 ms before the nominal 250 ms."""
    t = Timeline(VirtualWire("lwip-default"), DISCARD_PORT, seed=3)
    plain_handshake(t, mss=536, rtt_ms=100)
    t.inject(330, "P.", data=b"y" * 10)
    with pytest.raises(TimelineError) as err:
        t.expect(after(250), ".", ack=11)
    assert "too early (-80.000 ms)" in str(err.value)


def test_expected_segment_never_arrives() -> None:
    t = started()
    t.expect(after(0), "S.")
    t.inject(after(10), ".")
    with pytest.raises(TimelineError) as err:
        t.expect(after(100), "F.", seq=1)
    text = str(err.value)
    assert "expected segment never arrived" in text and "observed nothing" in text
    assert err.value.observed is None and err.value.check is not None
    assert "  flags    F." in text


def test_strict_mode_flags_a_segment_nobody_expected() -> None:
    t = started()
    with pytest.raises(TimelineError) as err:
        t.inject(after(10), ".")  # the SYN-ACK was never expected
    text = str(err.value)
    assert "no step expected, before this injection" in text
    assert "> S. 0:0(0) ack 1" in text


def test_non_strict_mode_queues_it_for_a_later_expect() -> None:
    t = Timeline(VirtualWire("full"), ECHO_PORT, seed=11, strict=False)
    t.inject(0, "S", mss=1460)
    t.inject(after(10), "S", seq=0, mss=1460)  # a retransmitted SYN gets a second SYN-ACK
    first = t.expect(None, "S.")
    second = t.expect(None, "S.")
    assert (first.t_ms, second.t_ms) == (0.0, 10.0)


def test_quiet_period_broken_by_a_retransmission() -> None:
    t = started()
    t.expect(after(0), "S.")
    with pytest.raises(TimelineError) as err:
        t.expect_nothing(2000)
    text = str(err.value)
    assert "during the quiet period of 2000 ms" in text and "1000.000 > S." in text


def test_injection_scheduled_in_the_past_is_reported() -> None:
    t = started()
    t.expect(after(0), "S.")
    t.inject(after(100), ".")
    with pytest.raises(TimelineError) as err:
        t.inject(50, "P.", data=b"x")  # absolute 50 ms, but the script is at 100 ms
    assert "the tester sent late" in str(err.value)


def test_finish_reports_leftovers() -> None:
    t = started()
    t.wait(1500)  # the SYN-ACK and its first retransmission arrive unexpected
    with pytest.raises(TimelineError) as err:
        t.finish()
    assert "at the end of the script (and 1 more)" in str(err.value)


# ------------------------------------------------------------------------- templates


def test_templates() -> None:
    assert matches(ANY, None) and matches(ANY, 5)
    assert matches(range(1, 10), 9) and not matches(range(1, 10), 10)
    assert matches(Range(0.5, 1.5), 1.5) and not matches(Range(0.5, 1.5), 2)
    assert matches(lambda v: v % 2 == 0, 4) and not matches(lambda v: v % 2 == 0, 3)
    assert matches(None, None) and not matches(None, 0) and not matches(5, None)
    assert matches((ANY, 100), (7, 100)) and not matches((ANY, 100), (7, 101))
    assert not matches((ANY, 100), None)
    assert matches(((1, ANY),), ((1, 2),))
    assert flags_of("S.") == flags_of(".S") and flags_str(flags_of(".S")) == "S."
    assert flags_str(flags_of("PF.")) == "FP." and flags_str(flags_of("SEW")) == "SEW"
    with pytest.raises(ValueError, match="unknown TCP flag 'X'"):
        flags_of("SX")
    assert repr(after(0, 500)) == "+0~+500" and repr(between(1, 2)) == "1~2"


# ------------------------------------------------------------------------- tolerance models


def test_abspct_is_packetdrills_rule() -> None:
    tol = AbsPct()
    assert tol.window(10, 0) == (6, 14)  # 4 ms floor
    assert tol.window(2100, 100) == (1850, 2350)  # 12.5 % of the 2 s interval
    assert AbsPct(0, 0).window(5, 0) == (5, 5)


def test_ticks_window_and_inference_from_observed_events() -> None:
    assert Ticks(250, jitter_ms=2).window(550, 300) == (298, 802)
    assert Ticks(500, jitter_ms=0, early_ticks=0, late_ticks=1).window(1500, 0) == (1500, 2000)
    learner = Ticks(jitter_ms=1, min_events=4)
    assert learner.window(1000, 0) == AbsPct().window(1000, 0)  # nothing learned yet
    for tm in (500.4, 1000.0, 2499.2, 4000.9):
        learner.observe(tm)
    lo, hi = learner.window(6000, 4000)
    assert (lo, hi) == (5499, 6501) and "inferred 500 ms" in learner.describe()


def jittered(rng: random.Random, tick: float, n: int, jitter: float) -> list[float]:
    phase = rng.uniform(0, tick)
    return [phase + tick * rng.randint(1, 60) + rng.gauss(0, jitter) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_infer_tick_on_lwip_and_uip_like_data(seed: int) -> None:
    rng = random.Random(seed)
    lwip = infer_tick(jittered(rng, 250, 20, 3))
    assert lwip.ok and lwip.tick_ms == 250 and lwip.residual_ms < 6
    uip = infer_tick(jittered(rng, 500, 20, 5))
    assert uip.ok and uip.tick_ms == 500 and uip.residual_ms < 10
    fine = infer_tick([rng.uniform(0, 10_000) for _ in range(30)])
    assert not fine.ok  # no grid explains uniformly random times


def test_infer_tick_needs_two_times() -> None:
    with pytest.raises(ValueError, match="at least two"):
        infer_tick([5.0])


@pytest.mark.parametrize(
    ("p", "df", "value"),
    [(0.975, 1, 12.706), (0.975, 9, 2.262), (0.975, 30, 2.042), (0.995, 4, 4.604),
     (0.95, 20, 1.725), (0.975, math.inf, 1.960)],
)  # fmt: skip
def test_student_t_quantiles_match_the_table(p: float, df: float, value: float) -> None:
    assert t_ppf(p, df) == pytest.approx(value, abs=1e-3)
    assert t_ppf(1 - p, df) == pytest.approx(-value, abs=1e-3)
    assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, abs=1e-9)


def test_statistical_summary_and_check() -> None:
    stats = Statistical(5, 0.95).summarize([1, 2, 3, 4, 5])
    assert stats.mean == 3 and stats.stdev == pytest.approx(math.sqrt(2.5))
    assert stats.half_width == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5), abs=1e-3)
    record = Statistical(5).check("mean of 1..5", 3.0, stats)
    assert record.ok and record.observed_ms == 3
    with pytest.raises(ValueError):
        Statistical(1)


def delayed_ack_latency(profile: str, rng: random.Random) -> float:
    """One measurement: how long the target takes to acknowledge a lone small segment sent
    at a random phase of its timers."""
    t = Timeline(VirtualWire(profile), DISCARD_PORT, seed=rng.getrandbits(16), tolerance=EXACT)
    plain_handshake(t, mss=536, rtt_ms=100)
    sent = t.inject(after(rng.uniform(200, 1200)), "P.", data=b"z" * 10)
    ack = t.expect(after(0, 500), ".", ack=11, tolerance=AbsPct())
    return ack.t_ms - sent.t_ms


def test_statistical_delayed_ack_latency_per_profile() -> None:
    rng = random.Random(12)
    lwip = Statistical(12, 0.95).run(lambda: delayed_ack_latency("lwip-default", rng))
    assert min(lwip.samples) > 0 and max(lwip.samples) <= 250
    assert lwip.contains(125.0) and lwip.stdev > 20  # uniform over one 250 ms tick
    linux = Statistical(5, 0.95).run(lambda: delayed_ack_latency("linux-like", rng))
    assert (linux.ci_low, linux.ci_high) == (40.0, 40.0)  # tickless: always 40 ms
    assert welch(lwip.samples, linux.samples).p_two_sided < 0.05  # seeded: p = 0.016
    same = welch(lwip.samples[:6], lwip.samples[6:])
    assert same.p_two_sided > 0.01
