"""RTO back-off: unacknowledged data is retransmitted at growing intervals (RFC 6298 5.5).

The raw peer sends a segment to echo and never acknowledges the echo: the target retransmits
it. Each interval must be about twice the one before. Tick-driven stacks (lwIP: 500 ms) arm the
first timer at an arbitrary phase of their tick, so the first interval can be up to a tick short
of its nominal value (the later ones run tick to tick): doubled, that is up to two ticks.
"""

from __future__ import annotations

import itertools

from harness.session import LabTarget, Peer

TICK_MS = 500.0  # lwIP's slow timer; Linux and the reference stack are exact


def test_retransmissions_back_off(target: LabTarget, peer: Peer) -> None:
    with peer.timeline("echo", "ipv4", name="rto", strict=False) as t:
        peer.handshake(t, mss=536, win=4096)
        t.inject(None, "P.", data=b"retransmit me\n")
        first = t.next(5000, None)
        while first is not None and first.length == 0:  # the bare ACK of our data
            first = t.next(5000, None)
        assert first is not None, f"{target.name}: no echo within 5 s"
        sends = [first]
        while len(sends) < 3:  # the echo and two retransmissions, never acknowledged
            seg = t.next(30000, None)
            assert seg is not None, f"{target.name}: retransmission {len(sends)} never came"
            if seg.length and seg.seq == first.seq:
                sends.append(seg)
    g1, g2 = (b.t_ms - a.t_ms for a, b in itertools.pairwise(sends))
    assert 2 * g1 - TICK_MS <= g2 <= 2 * (g1 + TICK_MS), (
        f"{target.name}: retransmission intervals {g1:.0f} ms then {g2:.0f} ms; a doubling "
        f"back-off gives {2 * g1:.0f} ms (-{TICK_MS:g}/+{2 * TICK_MS:g} for a {TICK_MS:g} ms tick)"
    )
