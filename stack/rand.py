"""The stack's one source of randomness, seeded.

ISNs, ephemeral ports, IPv4 identifications, fragment identifiers and fault-injection decisions
all come from an :class:`Rng` built from one seed, so a run is reproducible from the seed printed
in its report. ``fork(label)`` derives an independent, deterministic child stream, so adding a
consumer (say a second interface) does not shift the numbers every other consumer sees.
"""

from __future__ import annotations

import hashlib
import random


class Rng:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._r = random.Random(seed)

    def fork(self, label: str) -> Rng:
        digest = hashlib.sha256(f"{self.seed}/{label}".encode()).digest()
        return Rng(int.from_bytes(digest[:8], "big"))

    def u16(self) -> int:
        return self._r.getrandbits(16)

    def u32(self) -> int:
        return self._r.getrandbits(32)

    def randrange(self, start: int, stop: int) -> int:
        return self._r.randrange(start, stop)

    def random(self) -> float:
        return self._r.random()

    def bytes(self, n: int) -> bytes:
        return self._r.randbytes(n)
