"""A circuit breaker per provider: stop hammering a provider that is down.

Closed: sends go through. After ``threshold`` transient failures in a row the circuit
opens for ``cooldown``; then it is half-open and lets one probe through: a success
closes it, a failure opens it again for twice as long (up to ``max_cooldown``).
Permanent failures (a bad recipient) say nothing about the provider and are not counted.
Time is passed in, so the breaker is tested over virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(minutes=10)
    failures: int = 0
    opened_at: datetime | None = None
    current_cooldown: timedelta | None = None
    last_error: str | None = None

    def state(self, now: datetime) -> Circuit:
        if self.opened_at is None:
            return Circuit.CLOSED
        if now < self.retry_at():
            return Circuit.OPEN
        return Circuit.HALF_OPEN

    def retry_at(self) -> datetime:
        """When an open circuit lets a probe through."""
        assert self.opened_at is not None
        return self.opened_at + (self.current_cooldown or self.cooldown)

    def allows(self, now: datetime) -> bool:
        return self.state(now) != Circuit.OPEN

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.current_cooldown = None
        self.last_error = None

    def failure(self, now: datetime, error: str = "") -> bool:
        """Count a transient failure; True if this opened (or re-opened) the circuit."""
        self.last_error = error or self.last_error
        if self.opened_at is not None:  # a failed probe: open again, for longer
            if now < self.retry_at():
                return False  # a straggler from before the circuit opened
            grown = (self.current_cooldown or self.cooldown) * 2
            self.current_cooldown = min(grown, self.max_cooldown)
            self.opened_at = now
            return True
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = now
            self.current_cooldown = self.cooldown
            return True
        return False


class Breakers:
    """One breaker per provider name, made on first use."""

    def __init__(self, threshold: int = 5, cooldown: timedelta = timedelta(seconds=30)) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._breakers: dict[str, Breaker] = {}

    def __getitem__(self, provider: str) -> Breaker:
        if provider not in self._breakers:
            self._breakers[provider] = Breaker(self.threshold, self.cooldown)
        return self._breakers[provider]

    def states(self, now: datetime) -> dict[str, Circuit]:
        return {name: b.state(now) for name, b in self._breakers.items()}
