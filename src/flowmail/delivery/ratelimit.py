"""Pacing sends: a token bucket per provider (messages per second, with a small burst).

The bucket's arithmetic is pure (:meth:`TokenBucket.reserve` takes the monotonic time);
:meth:`TokenBucket.take` waits for the tokens on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; a rate of 0 means unlimited."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError("a rate limit cannot be negative")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def reserve(self, count: int, now: float) -> float:
        """Take ``count`` tokens (at most the burst) as of ``now``; returns the seconds to
        wait before using them (0 if they were there). Tokens may go into debt, so callers
        that reserve one after another are paced in the order they asked."""
        if self.unlimited:
            return 0.0
        wanted = min(float(count), self.burst)
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= wanted
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self, count: int = 1) -> None:
        """Wait until ``count`` messages may go."""
        delay = self.reserve(count, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)

    def chunk(self, wanted: int) -> int:
        """How many messages to hand over at once so pacing stays smooth."""
        return wanted if self.unlimited else max(1, min(wanted, int(self.burst)))


class RateLimits:
    """One bucket per provider name, made on first use."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def __getitem__(self, provider: str) -> TokenBucket:
        if provider not in self._buckets:
            self._buckets[provider] = TokenBucket(self.rate, self.burst)
        return self._buckets[provider]
