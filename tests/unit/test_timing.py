"""Time in the contact's zone: hour windows, business hours, times of day, dates, cron, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowmail.engine.timing import (
    date_fire_time,
    in_window,
    local_to_utc,
    next_cron,
    next_time_of_day,
    parse_moment,
    utc,
    window_open_at,
    zone,
)
from flowmail.language.loader import parse_workflow
from flowmail.language.models import HourWindow, Workflow
from flowmail.simulate import Simulation, SimulationResult

UTC_ZONE = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def workflow(steps: list[dict[str, Any]], **extra: Any) -> Workflow:
    raw: dict[str, Any] = {"id": "wf", "trigger": {"event": "go"}, "steps": steps}
    raw.update(extra)
    return parse_workflow(raw)


def simulate(
    flow: Workflow,
    events: list[tuple[str, datetime]],
    *,
    start: datetime,
    until: datetime,
    contacts: dict[str, str | None] | None = None,
    default_timezone: str = "UTC",
    attributes: dict[str, Any] | None = None,
) -> SimulationResult:
    sim = Simulation([flow], start=start, default_timezone=default_timezone)
    for contact, tz in (contacts or {"u1": None}).items():
        sim.add_contact(contact, email=f"{contact}@example.com", timezone=tz, attributes=attributes)
    for contact, moment in events:
        sim.track(contact, "go", at=moment)
    return sim.run(until=until)


# --- hour windows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "hour", "inside"),
    [
        (9, 17, 9, True),
        (9, 17, 16, True),
        (9, 17, 17, False),
        (9, 17, 8, False),
        (9, 24, 23, True),
        (0, 1, 0, True),
        (22, 6, 22, True),
        (22, 6, 23, True),
        (22, 6, 0, True),
        (22, 6, 5, True),
        (22, 6, 6, False),
        (22, 6, 21, False),
        (22, 6, 12, False),
    ],
)
def test_hour_windows_include_start_and_exclude_end(
    start: int, end: int, hour: int, inside: bool
) -> None:
    assert HourWindow(start=start, end=end).contains(hour) is inside
    moment = datetime(2025, 9, 3, hour, 30, tzinfo=NY)
    assert in_window(moment, start, end, NY) is inside
    assert in_window(moment.astimezone(UTC), start, end, NY) is inside


def test_hour_window_edges_to_the_minute() -> None:
    assert in_window(datetime(2025, 9, 3, 8, 59, 59, tzinfo=UTC), 9, 17, UTC_ZONE) is False
    assert in_window(datetime(2025, 9, 3, 9, 0, tzinfo=UTC), 9, 17, UTC_ZONE) is True
    assert in_window(datetime(2025, 9, 3, 16, 59, 59, tzinfo=UTC), 9, 17, UTC_ZONE) is True
    assert in_window(datetime(2025, 9, 3, 17, 0, tzinfo=UTC), 9, 17, UTC_ZONE) is False


def test_trigger_hours_in_the_contacts_zone() -> None:
    flow = workflow(
        [{"id": "hello", "email": {"subject": "Hi"}}],
        trigger={"event": "go", "hours": {"start": 9, "end": 21}},
        re_entry="always",
    )
    # New York is UTC-4 in September: 13:00Z is 09:00 local (in), 01:00Z is 21:00 local (out)
    events = [
        ("ny", at(2025, 9, 2, 12, 59)),
        ("ny", at(2025, 9, 2, 13, 0)),
        ("ny", at(2025, 9, 3, 1, 0)),
        ("ny", at(2025, 9, 3, 0, 59)),
        ("utc", at(2025, 9, 2, 13, 0)),
        ("utc", at(2025, 9, 2, 21, 0)),
    ]
    result = simulate(
        flow,
        events,
        start=at(2025, 9, 1),
        until=at(2025, 9, 5),
        contacts={"ny": "America/New_York", "utc": None},
    )
    assert [(e.contact, e.at) for e in result.emails] == [
        ("ny", at(2025, 9, 2, 13, 0)),
        ("utc", at(2025, 9, 2, 13, 0)),
        ("ny", at(2025, 9, 3, 0, 59)),
    ]


def test_trigger_hours_use_the_default_zone_for_contacts_without_one() -> None:
    flow = workflow(
        [{"id": "hello", "email": {"subject": "Hi"}}],
        trigger={"event": "go", "hours": {"start": 9, "end": 17}},
        re_entry="always",
    )
    events = [("u1", at(2025, 9, 2, 10, 0)), ("u1", at(2025, 9, 2, 20, 0))]
    default_utc = simulate(flow, events, start=at(2025, 9, 1), until=at(2025, 9, 5))
    assert [e.at for e in default_utc.emails] == [at(2025, 9, 2, 10, 0)]
    default_ny = simulate(
        flow,
        events,
        start=at(2025, 9, 1),
        until=at(2025, 9, 5),
        default_timezone="America/New_York",
    )
    assert [e.at for e in default_ny.emails] == [at(2025, 9, 2, 20, 0)]  # 16:00 in New York


# --- business hours ---------------------------------------------------------------------


def test_business_hours_wait_across_the_march_dst_change() -> None:
    friday_evening = datetime(2025, 3, 7, 18, 0, tzinfo=NY)  # EST, UTC-5 -> 23:00Z
    assert friday_evening.astimezone(UTC) == at(2025, 3, 7, 23, 0)
    opening = window_open_at(friday_evening.astimezone(UTC), 9, 17, WEEKDAYS, NY)
    assert opening == at(2025, 3, 10, 13, 0)  # Monday 09:00 EDT, UTC-4
    assert opening.astimezone(NY).hour == 9
    assert opening.astimezone(NY).utcoffset() == timedelta(hours=-4)


def test_business_hours_wait_step_across_dst_in_a_journey() -> None:
    flow = workflow(
        [
            {"id": "office", "wait": {"business_hours": {"start": 9, "end": 17}}},
            {"id": "hello", "email": {"subject": "Good morning"}},
        ]
    )
    result = simulate(
        flow,
        [("u1", at(2025, 3, 7, 23, 0))],
        start=at(2025, 3, 7),
        until=at(2025, 3, 12),
        contacts={"u1": "America/New_York"},
    )
    assert [e.at for e in result.emails] == [at(2025, 3, 10, 13, 0)]
    (run,) = result.runs
    assert run.path == ["office", "hello"] and run.status == "completed"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2025, 9, 3, 13, 0), at(2025, 9, 3, 13, 0)),  # Wed 09:00 EDT: inside, at once
        (at(2025, 9, 3, 20, 59), at(2025, 9, 3, 20, 59)),  # Wed 16:59: inside
        (at(2025, 9, 3, 21, 0), at(2025, 9, 4, 13, 0)),  # Wed 17:00: closed, Thu 09:00
        (at(2025, 9, 3, 12, 0), at(2025, 9, 3, 13, 0)),  # Wed 08:00: later that day
        (at(2025, 9, 6, 15, 0), at(2025, 9, 8, 13, 0)),  # Saturday: Monday
        (at(2025, 9, 5, 22, 0), at(2025, 9, 8, 13, 0)),  # Friday 18:00: Monday
    ],
)
def test_business_hours_continue_at_once_inside_else_at_next_opening(
    now: datetime, expected: datetime
) -> None:
    assert window_open_at(now, 9, 17, WEEKDAYS, NY) == expected


def test_business_hours_days_choose_the_opening_day() -> None:
    wednesday = at(2025, 9, 3, 15, 0)
    assert window_open_at(wednesday, 9, 17, ["mon"], UTC_ZONE) == at(2025, 9, 8, 9, 0)
    assert window_open_at(wednesday, 9, 17, ["wed"], UTC_ZONE) == wednesday
    assert window_open_at(wednesday, 16, 17, ["wed"], UTC_ZONE) == at(2025, 9, 3, 16, 0)


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    # 22:00-06:00 opening on Fridays: Saturday 02:00 is inside, Friday 02:00 is not
    saturday_night = at(2025, 9, 6, 2, 0)
    friday_night = at(2025, 9, 5, 2, 0)
    assert window_open_at(saturday_night, 22, 6, ["fri"], UTC_ZONE) == saturday_night
    assert window_open_at(friday_night, 22, 6, ["fri"], UTC_ZONE) == at(2025, 9, 5, 22, 0)
    assert window_open_at(at(2025, 9, 5, 23, 0), 22, 6, ["fri"], UTC_ZONE) == at(2025, 9, 5, 23, 0)
    assert window_open_at(at(2025, 9, 6, 6, 0), 22, 6, ["fri"], UTC_ZONE) == at(2025, 9, 12, 22, 0)


def test_business_hours_step_inside_the_window_continues_at_once() -> None:
    flow = workflow(
        [
            {"id": "office", "wait": {"business_hours": {"start": 9, "end": 17}}},
            {"id": "hello", "email": {"subject": "Now"}},
        ]
    )
    wednesday_ten = at(2025, 9, 3, 10, 0)
    result = simulate(flow, [("u1", wednesday_ten)], start=at(2025, 9, 1), until=at(2025, 9, 9))
    assert [e.at for e in result.emails] == [wednesday_ten]
    waits = [r for r in result.timeline if r.action == "wait"]
    assert waits and waits[0].detail.get("skipped") is True


def test_a_wait_timezone_overrides_the_contacts() -> None:
    flow = workflow(
        [
            {
                "id": "office",
                "wait": {"business_hours": {"start": 9, "end": 17}, "timezone": "Europe/Paris"},
            },
            {"id": "hello", "email": {"subject": "Bonjour"}},
        ]
    )
    result = simulate(
        flow,
        [("u1", at(2025, 9, 3, 16, 0))],  # 18:00 in Paris, noon in New York
        start=at(2025, 9, 1),
        until=at(2025, 9, 9),
        contacts={"u1": "America/New_York"},
    )
    assert [e.at for e in result.emails] == [at(2025, 9, 4, 7, 0)]  # Thursday 09:00 CEST


def test_business_hours_use_the_default_zone_for_contacts_without_one() -> None:
    flow = workflow(
        [
            {"id": "office", "wait": {"business_hours": {"start": 9, "end": 17}}},
            {"id": "hello", "email": {"subject": "Now"}},
        ]
    )
    events = [("u1", at(2025, 9, 3, 6, 0))]
    as_utc = simulate(flow, events, start=at(2025, 9, 1), until=at(2025, 9, 9))
    assert [e.at for e in as_utc.emails] == [at(2025, 9, 3, 9, 0)]
    as_paris = simulate(
        flow, events, start=at(2025, 9, 1), until=at(2025, 9, 9), default_timezone="Europe/Paris"
    )
    assert [e.at for e in as_paris.emails] == [at(2025, 9, 3, 7, 0)]
    with_own_zone = simulate(
        flow,
        events,
        start=at(2025, 9, 1),
        until=at(2025, 9, 9),
        default_timezone="Europe/Paris",
        contacts={"u1": "America/New_York"},
    )
    assert [e.at for e in with_own_zone.emails] == [at(2025, 9, 3, 13, 0)]


# --- until_time and until ---------------------------------------------------------------


def test_until_time_is_the_next_local_time_strictly_after_now() -> None:
    assert next_time_of_day(at(2025, 9, 3, 9, 0), time(10), None, UTC_ZONE) == at(2025, 9, 3, 10, 0)
    assert next_time_of_day(at(2025, 9, 3, 10, 0), time(10), None, UTC_ZONE) == at(
        2025, 9, 4, 10, 0
    )
    assert next_time_of_day(at(2025, 9, 3, 11, 0), time(10), None, UTC_ZONE) == at(
        2025, 9, 4, 10, 0
    )


def test_until_time_with_days_across_dst() -> None:
    friday_evening = at(2025, 3, 7, 23, 0)
    monday = next_time_of_day(friday_evening, time(10), ["mon"], NY)
    assert monday == at(2025, 3, 10, 14, 0)  # 10:00 EDT
    saturday = next_time_of_day(friday_evening, time(10), ["sat", "sun"], NY)
    assert saturday == at(2025, 3, 8, 15, 0)  # 10:00 EST
    sunday = next_time_of_day(at(2025, 3, 8, 16, 0), time(10), ["sat", "sun"], NY)
    assert sunday == at(2025, 3, 9, 14, 0)  # 10:00 EDT, the day the clocks change


def test_until_time_step_in_a_journey() -> None:
    flow = workflow(
        [
            {"id": "tuesday", "wait": {"until_time": "10:00", "days": ["tue"]}},
            {"id": "hello", "email": {"subject": "It is Tuesday"}},
        ]
    )
    result = simulate(
        flow,
        [("u1", at(2025, 9, 3, 12, 0))],  # Wednesday
        start=at(2025, 9, 1),
        until=at(2025, 9, 20),
        contacts={"u1": "Europe/Paris"},
    )
    assert [e.at for e in result.emails] == [at(2025, 9, 9, 8, 0)]  # Tue 10:00 CEST


def test_until_in_the_past_continues_at_once_and_in_the_future_waits() -> None:
    flow = workflow(
        [
            {"id": "past", "wait": {"until": "2025-01-01T00:00:00Z"}},
            {"id": "first", "email": {"subject": "one"}},
            {"id": "future", "wait": {"until": "2025-09-10T08:30:00+02:00"}},
            {"id": "second", "email": {"subject": "two"}},
        ]
    )
    result = simulate(
        flow, [("u1", at(2025, 9, 3, 12))], start=at(2025, 9, 1), until=at(2025, 10, 1)
    )
    assert [(e.step, e.at) for e in result.emails] == [
        ("first", at(2025, 9, 3, 12)),
        ("second", at(2025, 9, 10, 6, 30)),
    ]
    (run,) = result.runs
    assert run.path == ["past", "first", "future", "second"]


def test_a_duration_wait_is_exact_in_utc_across_dst() -> None:
    flow = workflow([{"id": "pause", "wait": "1d"}, {"id": "hello", "email": {"subject": "x"}}])
    result = simulate(
        flow,
        [("u1", at(2025, 3, 8, 15))],
        start=at(2025, 3, 1),
        until=at(2025, 3, 20),
        contacts={"u1": "America/New_York"},
    )
    assert [e.at for e in result.emails] == [at(2025, 3, 9, 15)]


# --- date triggers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        ("2025-03-20", NY, at(2025, 3, 17, 14, 0)),  # EDT
        ("2025-03-11", NY, at(2025, 3, 8, 15, 0)),  # EST: three local days before, still 10:00
        ("2025-03-12", NY, at(2025, 3, 9, 14, 0)),  # lands on the change day itself, after 2am
        ("2025-03-12T15:00:00Z", NY, at(2025, 3, 9, 14, 0)),
        ("2025-03-12T02:00:00Z", NY, at(2025, 3, 8, 15, 0)),  # 21:00 on the 11th in New York
        ("2025-03-20", PARIS, at(2025, 3, 17, 9, 0)),
        ("2025-03-20", UTC_ZONE, at(2025, 3, 17, 10, 0)),
        (date(2025, 3, 20), UTC_ZONE, at(2025, 3, 17, 10, 0)),
        ("not a date", UTC_ZONE, None),
        (None, UTC_ZONE, None),
    ],
)
def test_date_fire_time_three_days_before_at_ten(
    value: object, tz: ZoneInfo, expected: datetime | None
) -> None:
    assert date_fire_time(value, timedelta(days=-3), time(10), tz) == expected


def test_date_fire_time_without_a_time_of_day() -> None:
    # a date is local midnight; a date-time is kept as it is, shifted by the offset
    assert date_fire_time("2025-03-12", timedelta(days=-3), None, NY) == at(2025, 3, 9, 5, 0)
    assert date_fire_time("2025-03-12T12:00:00Z", timedelta(hours=-1), None, NY) == at(
        2025, 3, 12, 11, 0
    )


def test_parse_moment_reads_dates_datetimes_and_epoch_seconds() -> None:
    assert parse_moment("2025-03-12", NY) == date(2025, 3, 12)
    assert parse_moment("2025-03-12T10:00:00", NY) == datetime(2025, 3, 12, 10, tzinfo=NY)
    assert parse_moment("2025-03-12T10:00:00Z", NY) == at(2025, 3, 12, 10)
    assert parse_moment(0, NY) == at(1970, 1, 1)
    assert parse_moment(True, NY) is None
    assert parse_moment("", NY) is None
    assert parse_moment("12/03/2025", NY) is None


def test_date_trigger_in_a_journey_per_contact_zone() -> None:
    flow = workflow(
        [{"id": "reminder", "email": {"subject": "Your trial ends soon"}}],
        trigger={"date": {"attribute": "trial_ends_at", "offset": "-3d", "at": "10:00"}},
    )
    sim = Simulation([flow], start=at(2025, 3, 1))
    sim.add_contact("ny", email="ny@x.test", timezone="America/New_York")
    sim.add_contact("paris", email="p@x.test", timezone="Europe/Paris")
    sim.add_contact("nozone", email="n@x.test")
    sim.add_contact("nodate", email="d@x.test")
    sim.add_contact("past", email="old@x.test", attributes={"trial_ends_at": "2025-02-01"})
    for contact in ("ny", "paris", "nozone"):
        sim.identify(contact, {"trial_ends_at": "2025-03-12"}, at=at(2025, 3, 2))
    result = sim.run(until=at(2025, 4, 1))
    fired = {e.contact: e.at for e in result.emails}
    assert fired == {
        "ny": at(2025, 3, 9, 14, 0),  # 10:00 EDT on the day clocks change
        "paris": at(2025, 3, 9, 9, 0),  # 10:00 CET
        "nozone": at(2025, 3, 9, 10, 0),  # UTC by default
    }
    (ny_run,) = result.runs_of("ny")
    assert ny_run.trigger.name == "date"
    assert ny_run.trigger.properties["value"] == "2025-03-12"


def test_date_trigger_replans_when_the_date_changes() -> None:
    flow = workflow(
        [{"id": "reminder", "email": {"subject": "Soon"}}],
        trigger={"date": {"attribute": "renews_on", "offset": "-1d", "at": "09:00"}},
    )
    sim = Simulation([flow], start=at(2025, 5, 1))
    sim.add_contact("u1", email="u1@x.test", attributes={"renews_on": "2025-05-10"})
    sim.identify("u1", {"renews_on": "2025-05-20"}, at=at(2025, 5, 5))
    result = sim.run(until=at(2025, 6, 1))
    assert [e.at for e in result.emails] == [at(2025, 5, 19, 9, 0)]


def test_a_date_trigger_uses_the_default_zone() -> None:
    flow = workflow(
        [{"id": "reminder", "email": {"subject": "Soon"}}],
        trigger={"date": {"attribute": "renews_on", "offset": "0s", "at": "09:00"}},
    )
    sim = Simulation([flow], start=at(2025, 5, 1), default_timezone="Asia/Tokyo")
    sim.add_contact("u1", email="u1@x.test", attributes={"renews_on": "2025-05-10"})
    result = sim.run(until=at(2025, 6, 1))
    assert [e.at for e in result.emails] == [at(2025, 5, 10, 0, 0)]  # 09:00 JST


# --- cron schedules ---------------------------------------------------------------------


def test_next_cron_is_strictly_after_now_and_in_the_zone() -> None:
    assert next_cron("0 9 * * *", at(2025, 9, 1, 9, 0), UTC_ZONE) == at(2025, 9, 2, 9, 0)
    assert next_cron("0 9 * * *", at(2025, 9, 1, 8, 59), UTC_ZONE) == at(2025, 9, 1, 9, 0)
    assert next_cron("0 9 * * mon", at(2025, 3, 1), NY) == at(2025, 3, 3, 14, 0)  # EST
    assert next_cron("0 9 * * mon", at(2025, 3, 4), NY) == at(2025, 3, 10, 13, 0)  # EDT


def test_cron_schedule_ticks_in_each_contacts_zone() -> None:
    flow = workflow(
        [{"id": "digest", "email": {"subject": "Your Monday digest"}}],
        trigger={"schedule": {"cron": "0 9 * * mon"}},
        re_entry="always",
    )
    sim = Simulation([flow], start=at(2025, 3, 1), default_timezone="UTC")
    sim.add_contact("ny", email="ny@x.test", timezone="America/New_York")
    sim.add_contact("paris", email="p@x.test", timezone="Europe/Paris")
    sim.add_contact("nozone", email="n@x.test")
    result = sim.run(until=at(2025, 3, 12))
    assert sorted((e.contact, e.at) for e in result.emails) == [
        ("nozone", at(2025, 3, 3, 9, 0)),
        ("nozone", at(2025, 3, 10, 9, 0)),
        ("ny", at(2025, 3, 3, 14, 0)),  # 09:00 EST
        ("ny", at(2025, 3, 10, 13, 0)),  # 09:00 EDT: local time kept across the change
        ("paris", at(2025, 3, 3, 8, 0)),
        ("paris", at(2025, 3, 10, 8, 0)),
    ]


def test_cron_schedule_uses_a_configured_default_zone() -> None:
    flow = workflow(
        [{"id": "digest", "email": {"subject": "Daily"}}],
        trigger={"schedule": {"cron": "30 7 * * *"}},
        re_entry="always",
    )
    sim = Simulation([flow], start=at(2025, 9, 1), default_timezone="Europe/Paris")
    sim.add_contact("u1", email="u1@x.test")
    result = sim.run(until=at(2025, 9, 3))
    assert [e.at for e in result.emails] == [at(2025, 9, 1, 5, 30), at(2025, 9, 2, 5, 30)]


# --- gaps, folds and zones ---------------------------------------------------------------


def test_a_local_time_in_the_spring_gap_lands_after_the_gap() -> None:
    moment = local_to_utc(date(2025, 3, 9), time(2, 30), NY)  # 02:00-03:00 does not exist
    assert at(2025, 3, 9, 7, 0) <= moment <= at(2025, 3, 9, 7, 30)
    assert moment.astimezone(NY).utcoffset() == timedelta(hours=-4)
    assert moment.astimezone(NY).hour == 3


def test_an_ambiguous_local_time_takes_its_first_occurrence() -> None:
    moment = local_to_utc(date(2025, 11, 2), time(1, 30), NY)  # 01:00-02:00 happens twice
    assert moment == at(2025, 11, 2, 5, 30)  # the EDT one


def test_until_time_in_the_gap_still_fires_once_that_day() -> None:
    saturday = at(2025, 3, 8, 12, 0)
    fire = next_time_of_day(saturday, time(2, 30), None, NY)
    assert at(2025, 3, 9, 7, 0) <= fire <= at(2025, 3, 9, 7, 30)


def test_business_hours_opening_in_the_gap() -> None:
    saturday = at(2025, 3, 8, 12, 0)
    opening = window_open_at(saturday, 2, 5, ["sun"], NY)
    assert at(2025, 3, 9, 7, 0) <= opening <= at(2025, 3, 9, 7, 30)
    assert in_window(opening, 2, 5, NY)


def test_cron_in_the_fall_back_hour_fires_once() -> None:
    first = next_cron("30 1 * * *", at(2025, 11, 1, 12, 0), NY)
    assert first == at(2025, 11, 2, 5, 30)
    following = next_cron("30 1 * * *", first, NY)
    assert following == at(2025, 11, 3, 6, 30)  # not again at 06:30Z on the 2nd


def test_cron_in_the_spring_gap_still_fires_that_day() -> None:
    fire = next_cron("30 2 * * *", at(2025, 3, 8, 12, 0), NY)
    assert fire.date() == date(2025, 3, 9)
    assert at(2025, 3, 9, 7, 0) <= fire <= at(2025, 3, 9, 7, 30)


def test_zone_falls_back_to_the_default_then_utc() -> None:
    assert zone("Europe/Paris") == PARIS
    assert zone(None) == UTC_ZONE
    assert zone(None, "America/New_York") == NY
    assert zone("Not/AZone", "America/New_York") == NY
    assert zone("Not/AZone", "Also/Bad") == UTC_ZONE


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc(datetime(2025, 1, 1))
    assert utc(datetime(2025, 1, 1, 12, tzinfo=PARIS)) == at(2025, 1, 1, 11)
