"""Delayed ACK bound: a lone segment is acknowledged within 500 ms (RFC 9293 MUST-40).

Uses the timeline DSL strictly: the expectation fails with a readable diff (what came, when,
and the pcap to open) if the ACK is late or different.
"""

from __future__ import annotations

import pytest

from harness.probes.timeline import after
from harness.session import LabTarget, Peer


def test_a_lone_segment_is_acked_within_500_ms(target: LabTarget, peer: Peer) -> None:
    with peer.timeline("discard", "ipv4", name="delack") as t:
        peer.handshake(t, mss=536, win=4096)
        sent = t.inject(after(100), ".", data=b"x" * 10)  # no PSH: Linux ACKs PSH at once
        t.expect(after(0, 500), ".", ack=sent.end, length=0)


@pytest.mark.needs("delack")
@pytest.mark.probe("P8")
def test_measured_delayed_ack_is_within_the_standard(target: LabTarget) -> None:
    target.feature_should_be_within("delayed_ack_ms", 0, 500)


@pytest.mark.needs("sack")
def test_sack_is_offered_when_asked(target: LabTarget, peer: Peer) -> None:
    with peer.timeline("echo", "ipv4", name="sack", strict=False) as t:
        syn_ack = peer.handshake(t, sackok=True)
    assert syn_ack.sackok, f"{target.name}: configured with SACK but its SYN-ACK has none"


@pytest.mark.stack("lwip")
def test_lwip_advertises_its_tcp_mss(target: LabTarget, peer: Peer) -> None:
    configured = int(target.build.get("options", {}).get("TCP_MSS", 536))
    with peer.timeline("echo", "ipv4", name="lwip-mss", strict=False) as t:
        syn_ack = peer.handshake(t)
    assert syn_ack.mss == configured
