"""Profiles carry the documented values; overrides are strict and say what to write."""

from __future__ import annotations

import pytest

from stack.tcp.profile import PROFILES, describe, parse_overrides, profile
from stack.time import MS, SECOND


def test_profiles_exist() -> None:
    assert set(PROFILES) == {"full", "linux-like", "lwip-default", "riot-gnrc", "uip"}


def test_lwip_default_matches_opt_h() -> None:
    p = profile("lwip-default")
    assert (p.mss, p.rcv_buf, p.snd_buf) == (536, 4 * 536, 2 * 536)
    assert p.rto.initial_us == 3 * SECOND and p.rto.tick_us == 500 * MS
    assert p.timer_tick_us == 250 * MS and not p.syn_backoff
    assert (p.syn_retries, p.data_retries) == (6, 12)
    assert not (p.window_scale or p.timestamps or p.sack)
    assert p.delayed_ack and p.delayed_ack_us == 250 * MS


def test_constrained_profiles() -> None:
    riot, uip = profile("riot-gnrc"), profile("uip")
    for p in (riot, uip):
        assert p.max_in_flight_segments == 1 and not p.delayed_ack and not p.ooo_queue
        assert p.rcv_buf == p.mss == 1220 and p.congestion_control == "none"
    assert (riot.rto.min_us, riot.rto.max_us) == (1 * SECOND, 60 * SECOND)
    assert uip.rto.initial_us == 1500 * MS and uip.timer_tick_us == 500 * MS
    assert (uip.syn_retries, uip.data_retries) == (5, 8)


def test_overrides_do_not_leak_into_the_profile() -> None:
    p = profile("full", nagle="off", **{"rto.min_us": "200000"})
    assert not p.nagle and p.rto.min_us == 200_000
    fresh = profile("full")
    assert fresh.nagle and fresh.rto.min_us == 1 * SECOND


def test_override_parsing_and_errors() -> None:
    assert parse_overrides(["nagle=off", "mss = 1000"]) == {"nagle": "off", "mss": "1000"}
    with pytest.raises(ValueError, match="write KEY=VALUE"):
        parse_overrides(["nagle"])
    with pytest.raises(ValueError, match=r"unknown TCP setting 'nagel'; settings: .*nagle"):
        profile("full", nagel="off")
    with pytest.raises(ValueError, match="takes on/off"):
        profile("full", sack="maybe")
    with pytest.raises(ValueError, match="takes a whole number"):
        profile("full", mss="big")
    with pytest.raises(ValueError, match="unknown TCP profile 'bsd'; profiles: full"):
        profile("bsd")
    assert profile("full", initial_window="none").initial_window is None
    assert profile("full", initial_window="0x4000").initial_window == 0x4000


def test_describe_is_plain_data() -> None:
    d = describe(profile("uip"))
    assert d["rto"]["tick_us"] == 500 * MS and d["mss"] == 1220


def test_docs_profile_table_matches_the_code() -> None:
    from pathlib import Path

    from stack.tcp.profile import difference_table

    doc = (Path(__file__).parents[2] / "docs" / "tcp.md").read_text()
    assert difference_table() in doc, "docs/tcp.md: paste stack.tcp.profile.difference_table()"
