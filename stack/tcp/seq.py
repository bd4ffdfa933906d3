"""32-bit TCP sequence-number arithmetic (RFC 9293 3.4), as plain functions on ints.

Sequence numbers wrap, so ``a < b`` means "b is ahead of a by less than 2**31". Plain functions
on ints are used on purpose: a wrapper class costs an allocation per segment on the hot path.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def add(a: int, n: int) -> int:
    return (a + n) & MASK


def diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    return diff(a, b) < 0


def le(a: int, b: int) -> bool:
    return diff(a, b) <= 0


def gt(a: int, b: int) -> bool:
    return diff(a, b) > 0


def ge(a: int, b: int) -> bool:
    return diff(a, b) >= 0


def in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size, the acceptability test of RFC 9293 3.10.7.4 for one octet."""
    return 0 <= diff(x, start) < size


def max_seq(a: int, b: int) -> int:
    return a if ge(a, b) else b
