"""Time in the contact's zone: hour windows, business hours, times of day, dates, cron.

Everything takes and returns aware UTC datetimes; local wall-clock times are
converted with zoneinfo. A local time that does not exist (the spring-forward gap)
lands just after the gap; an ambiguous one (fall-back) takes its first occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SCAN_DAYS = 8 * 7  # far enough for any weekly pattern, across DST changes


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The contact's zone, the default one when it has none or an unknown one."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
    return ZoneInfo("UTC")


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: flowmail only takes aware times")
    return moment.astimezone(UTC)


def local_to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (gaps shift forward)."""
    naive = datetime.combine(day, clock)
    aware = naive.replace(tzinfo=tz, fold=0)
    moment = aware.astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) < naive:  # inside a gap
        moment = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return moment


def in_window(moment: datetime, start: int, end: int, tz: ZoneInfo) -> bool:
    """Whether the local hour of ``moment`` is in ``[start, end)`` (wrapping past midnight)."""
    hour = moment.astimezone(tz).hour
    return start <= hour < end if start < end else (hour >= start or hour < end)


def window_open_at(
    now: datetime, start: int, end: int, days: Sequence[str], tz: ZoneInfo
) -> datetime:
    """``now`` when inside the window on an allowed day, else the window's next opening.

    ``days`` name the days on which the window opens; a window that wraps past
    midnight belongs to the day it opened on.
    """
    local = now.astimezone(tz)
    allowed = {WEEKDAYS.index(d) for d in days}
    if _inside(local, start, end, allowed):
        return now
    for offset in range(MAX_SCAN_DAYS + 1):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        opening = local_to_utc(day, _hour(start), tz)
        if opening > now:
            return opening
    raise ValueError("the window never opens: give at least one day")


def _inside(local: datetime, start: int, end: int, allowed: set[int]) -> bool:
    hour = local.hour
    if start < end:
        return local.weekday() in allowed and start <= hour < end
    if hour >= start:
        return local.weekday() in allowed
    return hour < end and (local.weekday() - 1) % 7 in allowed


def _hour(hour: int) -> time:
    return time(hour % 24)


def next_time_of_day(
    now: datetime, clock: time, days: Sequence[str] | None, tz: ZoneInfo
) -> datetime:
    """The first local ``clock`` strictly after ``now`` on one of ``days`` (any day if None)."""
    allowed = {WEEKDAYS.index(d) for d in (days or WEEKDAYS)}
    local_day = now.astimezone(tz).date()
    for offset in range(MAX_SCAN_DAYS + 1):
        day = local_day + timedelta(days=offset)
        if day.weekday() in allowed:
            moment = local_to_utc(day, clock, tz)
            if moment > now:
                return moment
    raise ValueError("no such time: give at least one day")


def parse_moment(value: object, tz: ZoneInfo) -> datetime | date | None:
    """Read an attribute holding a date or time: ISO text, a date, a datetime, or epoch seconds.

    A naive date-time is read in ``tz``. Returns None for anything else.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def date_fire_time(
    value: object, offset: timedelta, clock: time | None, tz: ZoneInfo
) -> datetime | None:
    """When a date trigger fires for an attribute value, or None if it holds no date.

    With ``clock`` the fire time is that local time on the local day of
    ``value + offset``; without it, ``value + offset`` itself (midnight local for a date).
    """
    moment = parse_moment(value, tz)
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = local_to_utc(moment, time(0), tz)
    shifted = moment.astimezone(tz) + offset
    if clock is None:
        return utc(shifted)
    return local_to_utc(shifted.date(), clock, tz)


def check_cron(expression: str) -> None:
    """Raise ValueError with a readable message when ``expression`` is not valid cron."""
    try:
        CronSim(expression, datetime(2025, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"bad cron expression {expression!r}: {exc}") from None


def next_cron(expression: str, now: datetime, tz: ZoneInfo) -> datetime:
    """The first tick of ``expression`` in local time ``tz`` strictly after ``now``."""
    local = now.astimezone(tz)
    return utc(next(iter(CronSim(expression, local))))
