"""Token bucket used for ICMP error rate limiting (RFC 1812 4.3.2.8, RFC 4443 2.4(f))."""

from __future__ import annotations

from stack.time import SECOND


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last: int | None = None

    def take(self, now: int) -> bool:
        if self.rate_per_s <= 0:
            return True  # limiting disabled
        if self._last is not None:
            self._tokens = min(
                self.burst, self._tokens + (now - self._last) * self.rate_per_s / SECOND
            )
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
