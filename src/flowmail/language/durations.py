"""Durations as users write them: ``90m``, ``1h``, ``2d``, ``1w``, ``1h30m``, ``-3d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[wdhms])+$")

DURATION_PATTERN = r"^-?(\d+(\.\d+)?[wdhms])+$"
HINT = "use a number and a unit, like 30s, 90m, 1h, 2d, 1w or 1h30m"


def parse_duration(value: object, *, signed: bool = False) -> timedelta:
    """Parse a duration string; ``signed`` allows a leading minus (offsets)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: {HINT}")
    text = value.strip().replace(" ", "")
    sign = 1
    if signed and text.startswith("-"):
        sign, text = -1, text[1:]
    elif signed and text.startswith("+"):
        text = text[1:]
    if not _WHOLE.match(text):
        raise ValueError(f"bad duration {value!r}: {HINT}")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds == 0 and not signed:
        raise ValueError(f"bad duration {value!r}: it must be longer than zero")
    return timedelta(seconds=sign * seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest string :func:`parse_duration` reads back as ``delta``."""
    total = int(delta.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    if total == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
