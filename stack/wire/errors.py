"""The one exception a codec raises on bad input."""

from __future__ import annotations


class Malformed(ValueError):
    """Raised by every ``parse`` when the bytes do not form a valid header.

    Codecs raise nothing else on hostile input (a property the fuzz tests check), so the
    interface can count and drop a frame with a single ``except Malformed``. ``reason`` is a
    short stable token (``"truncated"``, ``"bad-checksum"`` ...) used as a counter key, so
    users can see *why* frames were dropped without reading logs.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
