"""Echo integrity: what comes back is what went out, byte for byte, over both families.

Run against the shipped virtual lab (as root) with ``pytest examples/pytest``; against your own
lab with ``pytest examples/pytest --lab my-lab.yaml --target board1``.
"""

from __future__ import annotations

import itertools
import random

import pytest

from harness.session import LabTarget


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_echo_returns_1_mib_intact(target: LabTarget, family: str) -> None:
    if family not in target.addresses:
        pytest.skip(f"{target.name} has no {family} link")
    data = random.Random(7).randbytes(1 << 20)
    with target.connect("echo", family) as conn:
        for off in range(0, len(data), 64 << 10):  # write and read in turns: small targets
            chunk = data[off : off + (64 << 10)]  # hold only a window's worth
            conn.send(chunk)
            conn.expect(chunk, timeout_s=20)


def test_chargen_sends_the_rfc_864_pattern(target: LabTarget) -> None:
    with target.connect("chargen") as conn:
        got = conn.receive(74 * 4, timeout_s=5)
    assert len(got) == 74 * 4, f"{target.name}: chargen sent {len(got)} B, wanted 296"
    printable = bytes(range(0x20, 0x7F))  # RFC 864: rotating 72-character lines of these
    lines = got.split(b"\r\n")[:3]
    for a, b in itertools.pairwise(lines):
        assert len(a) == 72 and set(a) <= set(printable), a
        assert printable.index(b[0]) == (printable.index(a[0]) + 1) % len(printable), (a, b)
