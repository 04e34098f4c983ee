"""Deterministic chance for the demo: every draw is a hash of (seed, purpose, ...).

No global random state: the same seed and the same arguments give the same draw, in any
order, in any process. Membership of a contact in a segment (:func:`share`) uses a
low-discrepancy sequence instead of a hash, so that a segment of 3 % holds 3 % of the
contacts even in a demo of fifty.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

T = TypeVar("T")

# people are awake and shopping by day: relative weight of each local hour
_HOURS = (1, 0.6, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 5, 5, 4.5, 4, 4, 4, 4.5, 5, 6, 6.5, 6, 4, 2)


def unit(seed: int, *parts: object) -> float:
    """A number in [0, 1) from a hash of ``seed`` and ``parts``."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def share(seed: int, index: int, purpose: str, prime: int) -> float:
    """Where contact ``index`` falls in [0, 1) for ``purpose``: ``share(...) < 0.3`` holds
    for 30 % of any run of consecutive contacts (give or take one). Give each purpose its
    own prime: stepping by different square roots keeps memberships unrelated."""
    step = math.sqrt(prime) % 1.0
    return (index * step + unit(seed, "share", purpose)) % 1.0


def between(seed: int, low: float, high: float, *parts: object) -> float:
    return low + (high - low) * unit(seed, *parts)


def pick(seed: int, choices: Sequence[T], *parts: object) -> T:
    return choices[int(unit(seed, *parts) * len(choices))]


def weighted(seed: int, choices: Sequence[tuple[T, float]], *parts: object) -> T:
    """One of ``choices`` (value, weight), by weight."""
    target = unit(seed, *parts) * sum(w for _, w in choices)
    for value, weight in choices:
        target -= weight
        if target < 0:
            return value
    return choices[-1][0]


def moment(seed: int, start: datetime, end: datetime, zone: str, *parts: object) -> datetime:
    """A time in [start, end] on a random day, at an hour people are awake in ``zone``."""
    if end <= start:
        return start
    day = start + (end - start) * unit(seed, *parts, "day")
    tz = ZoneInfo(zone)
    local_day: date = day.astimezone(tz).date()
    hour = weighted(seed, list(enumerate(_HOURS)), *parts, "hour")
    seconds = unit(seed, *parts, "second") * 3600
    local = datetime.combine(local_day, time(hour), tzinfo=tz) + timedelta(seconds=seconds)
    found = local.astimezone(UTC)
    return found if start <= found <= end else day
