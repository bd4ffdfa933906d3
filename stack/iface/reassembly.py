"""IP fragment reassembly shared by IPv4 (RFC 791/815) and IPv6 (RFC 8200 4.5).

Bounded on purpose -- a test harness faces hostile input: at most ``max_datagrams`` partial
datagrams, ``max_fragments`` per datagram and ``max_size`` bytes each; a datagram not completed
within ``timeout`` is discarded (the caller may send ICMP time-exceeded, code 1, when the first
fragment had arrived).

Overlaps are where stacks differ and where attacks live. ``overlap`` chooses the policy:

* ``"drop"`` (default): discard the whole datagram, as RFC 5722 requires for IPv6 and as
  modern stacks do for IPv4; later fragments of it are dropped too until it times out;
* ``"first"``: keep the bytes that arrived first (BSD-like);
* ``"last"``: let later bytes overwrite earlier ones (old Linux-like).

An exact duplicate (same offset, length and bytes) is not an overlap: links duplicate frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stack.time import SECOND

OverlapPolicy = Literal["drop", "first", "last"]


@dataclass(slots=True)
class ReassemblyConfig:
    timeout: int = 30 * SECOND
    max_datagrams: int = 16
    max_fragments: int = 64
    max_size: int = 65535
    overlap: OverlapPolicy = "drop"


@dataclass(slots=True)
class _Partial:
    expires_at: int
    fragments: dict[int, bytes] = field(default_factory=dict)  # offset -> data
    total: int | None = None  # known once the last fragment (MF=0) arrives
    first: bytes | None = None  # the offset-0 fragment's whole packet, for ICMP errors
    poisoned: bool = False


@dataclass(slots=True)
class ReassemblyResult:
    """What feeding a fragment produced: a whole payload, or why it was dropped."""

    payload: bytes | None = None
    dropped: str | None = None  # counter key when the fragment (or datagram) was discarded


class Reassembler:
    def __init__(self, config: ReassemblyConfig | None = None) -> None:
        self.config = config or ReassemblyConfig()
        self._partials: dict[tuple[object, ...], _Partial] = {}

    def __len__(self) -> int:
        return len(self._partials)

    def feed(
        self,
        now: int,
        key: tuple[object, ...],
        offset: int,
        more: bool,
        data: bytes,
        whole_packet: bytes | None = None,
    ) -> ReassemblyResult:
        cfg = self.config
        end = offset + len(data)
        if end > cfg.max_size:
            self._partials.pop(key, None)
            return ReassemblyResult(dropped="reasm-too-big")
        if more and len(data) % 8:
            return ReassemblyResult(dropped="reasm-bad-length")
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= cfg.max_datagrams:
                return ReassemblyResult(dropped="reasm-table-full")
            partial = self._partials[key] = _Partial(expires_at=now + cfg.timeout)
        if partial.poisoned:
            return ReassemblyResult(dropped="reasm-overlap")
        if offset == 0 and whole_packet is not None and partial.first is None:
            partial.first = whole_packet
        if not more:
            if partial.total is not None and partial.total != end:
                return self._poison(key, partial, "reasm-inconsistent-end")
            partial.total = end
        if partial.total is not None and end > partial.total:
            return self._poison(key, partial, "reasm-beyond-end")

        fragments = partial.fragments
        existing = fragments.get(offset)
        if existing is not None and existing == data:
            return ReassemblyResult(dropped="reasm-duplicate")
        for off, frag in fragments.items():
            if off < end and offset < off + len(frag):
                if cfg.overlap == "drop":
                    return self._poison(key, partial, "reasm-overlap")
                if cfg.overlap == "first":
                    data = self._trim_to_gaps(offset, data, fragments)
                    break
                # "last": later bytes win; earlier fragments are cut around the new one
                self._cut_out(fragments, offset, end)
                break
        if data:
            fragments[offset] = data
        if len(fragments) > cfg.max_fragments:
            self._partials.pop(key, None)
            return ReassemblyResult(dropped="reasm-too-many-fragments")
        return self._try_complete(key, partial)

    def _poison(self, key: tuple[object, ...], partial: _Partial, reason: str) -> ReassemblyResult:
        partial.poisoned = True
        partial.fragments.clear()
        return ReassemblyResult(dropped=reason)

    @staticmethod
    def _trim_to_gaps(offset: int, data: bytes, fragments: dict[int, bytes]) -> bytes:
        """For the "first" policy: keep only the part of ``data`` before any existing fragment.

        Fragments stay keyed by offset, so a new fragment that overlaps is split into the pieces
        that fall into holes; pieces after the first are stored directly.
        """
        end = offset + len(data)
        pieces: list[tuple[int, int]] = [(offset, end)]
        for off, frag in sorted(fragments.items()):
            f_end = off + len(frag)
            new_pieces = []
            for a, b in pieces:
                if f_end <= a or off >= b:
                    new_pieces.append((a, b))
                    continue
                if a < off:
                    new_pieces.append((a, off))
                if f_end < b:
                    new_pieces.append((f_end, b))
            pieces = new_pieces
        first = b""
        for a, b in pieces:
            chunk = data[a - offset : b - offset]
            if a == offset:
                first = chunk
            else:
                fragments[a] = chunk
        return first

    @staticmethod
    def _cut_out(fragments: dict[int, bytes], start: int, end: int) -> None:
        for off, frag in list(fragments.items()):
            f_end = off + len(frag)
            if f_end <= start or off >= end:
                continue
            del fragments[off]
            if off < start:
                fragments[off] = frag[: start - off]
            if f_end > end:
                fragments[end] = frag[end - off :]

    def _try_complete(self, key: tuple[object, ...], partial: _Partial) -> ReassemblyResult:
        if partial.total is None:
            return ReassemblyResult()
        covered = 0
        for off in sorted(partial.fragments):
            if off > covered:
                return ReassemblyResult()
            covered = max(covered, off + len(partial.fragments[off]))
        if covered < partial.total:
            return ReassemblyResult()
        buf = bytearray(partial.total)
        for off in sorted(partial.fragments):
            frag = partial.fragments[off]
            buf[off : off + len(frag)] = frag
        del self._partials[key]
        return ReassemblyResult(payload=bytes(buf))

    def expire(self, now: int) -> list[tuple[tuple[object, ...], bytes | None]]:
        """Discard datagrams past their timeout; returns (key, first fragment packet or None)."""
        expired = []
        for key, partial in list(self._partials.items()):
            if partial.expires_at <= now:
                del self._partials[key]
                expired.append((key, None if partial.poisoned else partial.first))
        return expired

    def poll_at(self) -> int | None:
        if not self._partials:
            return None
        return min(p.expires_at for p in self._partials.values())
