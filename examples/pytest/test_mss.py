"""MSS clamping: a target never sends a segment larger than the MSS its peer announced.

The raw peer (``peer`` fixture, the timeline DSL) opens a connection to chargen announcing a
small MSS and looks at every data segment the target sends back. RFC 9293 MUST-14/MUST-15
(3.7.1): the sender limits segments to the peer's MSS, and to 536 (IPv4) / 1220 (IPv6) when the
SYN carries none.
"""

from __future__ import annotations

import pytest

from harness.session import LabTarget, Peer


@pytest.mark.parametrize("mss", [300, 536])
def test_segments_respect_the_mss_we_announce(target: LabTarget, peer: Peer, mss: int) -> None:
    with peer.timeline("chargen", "ipv4", name=f"mss{mss}", strict=False) as t:
        syn_ack = peer.handshake(t, mss=mss, win=8 * mss)
        assert syn_ack.mss is not None, f"{target.name}: its SYN-ACK carries no MSS option"
        data = [s for s in t.collect(3000) if s.length > 0]  # what chargen sends in 3 s
        assert data, f"{target.name}: chargen sent nothing within 3 s"
        too_big = [s for s in data if s.length > mss]
        assert not too_big, f"{target.name}: {len(too_big)} segments over MSS {mss}: {too_big[0]}"


def test_advertised_mss_fits_the_link(target: LabTarget, peer: Peer) -> None:
    mtu = target.ctx.mtu
    with peer.timeline("echo", "ipv4", name="mss-adv", strict=False) as t:
        syn_ack = peer.handshake(t)
    assert syn_ack.mss is not None and syn_ack.mss <= mtu - 40, (
        f"{target.name}: advertised MSS {syn_ack.mss} on a {mtu} B link"
    )
