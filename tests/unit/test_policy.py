"""The send-time policy over virtual time: suppression, consent, the cap, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from flowmail.delivery.breaker import Breaker, Circuit
from flowmail.delivery.policy import (
    Candidate,
    Defer,
    PolicyConfig,
    QuietHours,
    Recipient,
    Send,
    Skip,
    decide,
    decide_all,
)
from flowmail.delivery.ratelimit import TokenBucket

T0 = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
CONFIG = PolicyConfig()


def news(key: str = "m1", **kw: object) -> Candidate:
    values: dict[str, object] = {"to": "ana@example.com", "topic": "marketing"} | kw
    return Candidate(key, **values)  # type: ignore[arg-type]


def sends(*hours_ago: float, now: datetime = T0) -> tuple[datetime, ...]:
    return tuple(now - timedelta(hours=h) for h in hours_ago)


# --- suppression and consent --------------------------------------------------------


@pytest.mark.parametrize("reason", ["unsubscribed", "hard_bounce", "complaint", "manual"])
def test_a_suppressed_address_is_skipped_with_the_reason(reason: str) -> None:
    verdict = decide(news(), Recipient(suppression=reason), CONFIG, T0)
    assert isinstance(verdict, Skip)
    assert verdict.code == "suppressed"
    assert reason in verdict.reason


def test_transactional_email_passes_an_unsubscribe_but_not_a_bounce_or_complaint() -> None:
    receipt = news(topic="transactional")
    assert decide(receipt, Recipient(suppression="unsubscribed"), CONFIG, T0) == Send()
    for reason in ("hard_bounce", "complaint", "manual"):
        assert isinstance(decide(receipt, Recipient(suppression=reason), CONFIG, T0), Skip)


@pytest.mark.parametrize("status", ["unsubscribed", "pending"])
def test_no_consent_for_the_topic_skips(status: str) -> None:
    verdict = decide(
        news(topic="newsletter"), Recipient(consents={"newsletter": status}), CONFIG, T0
    )
    assert isinstance(verdict, Skip)
    assert verdict.code == "no_consent"
    assert "newsletter" in verdict.reason


def test_consent_for_another_topic_or_subscribed_does_not_skip() -> None:
    recipient = Recipient(consents={"newsletter": "unsubscribed", "tips": "subscribed"})
    assert decide(news(topic="tips"), recipient, CONFIG, T0) == Send()
    assert decide(news(topic="offers"), recipient, CONFIG, T0) == Send()


def test_no_address_is_skipped() -> None:
    verdict = decide(news(to=None), Recipient(), CONFIG, T0)
    assert isinstance(verdict, Skip) and verdict.code == "no_address"


def test_suppression_comes_before_the_cap() -> None:
    recipient = Recipient(suppression="complaint", recent=sends(1, 2, 3, 4, 5))
    verdict = decide(news(), recipient, CONFIG, T0)
    assert isinstance(verdict, Skip) and verdict.code == "suppressed"


# --- the frequency cap ----------------------------------------------------------------


def test_under_the_cap_sends_and_at_the_cap_defers_until_a_slot_frees() -> None:
    assert decide(news(), Recipient(recent=sends(1, 2, 3, 4)), CONFIG, T0) == Send()
    verdict = decide(news(), Recipient(recent=sends(1, 2, 3, 23, 4)), CONFIG, T0)
    assert isinstance(verdict, Defer)
    assert verdict.code == "capped"
    assert verdict.until == T0 + H  # the send 23 h ago leaves the 24 h window in 1 h


def test_the_window_is_rolling() -> None:
    old = sends(24, 25, 30, 47, 48)  # all at least 24 h ago: outside the window
    assert decide(news(), Recipient(recent=old), CONFIG, T0) == Send()
    assert isinstance(decide(news(), Recipient(recent=sends(23.9, 1, 2, 3, 4)), CONFIG, T0), Defer)


def test_over_the_cap_waits_for_enough_slots() -> None:
    recent = sends(1, 2, 3, 4, 5, 6, 7)  # 7 sent (a lower cap since): 3 must leave
    verdict = decide(news(), Recipient(recent=recent), PolicyConfig(max_daily_sends=5), T0)
    assert isinstance(verdict, Defer)
    assert verdict.until == T0 - 5 * H + 24 * H


def test_on_capped_skip() -> None:
    verdict = decide(news(on_capped="skip"), Recipient(recent=sends(1, 2, 3, 4, 5)), CONFIG, T0)
    assert isinstance(verdict, Skip) and verdict.code == "capped"


def test_transactional_is_exempt_from_the_cap() -> None:
    recent = sends(*range(1, 20))
    assert decide(news(topic="transactional"), Recipient(recent=recent), CONFIG, T0) == Send()


def test_a_cap_of_zero_means_no_cap() -> None:
    config = PolicyConfig(max_daily_sends=0)
    assert decide(news(), Recipient(recent=sends(*range(1, 20))), config, T0) == Send()


def test_priority_decides_who_gets_the_last_slots() -> None:
    low = news("low", priority=0, due=T0 - 2 * H)
    high = news("high", priority=10, due=T0 - H)
    also_high = news("high2", priority=10, due=T0)
    recipient = Recipient(recent=sends(1, 2, 3))  # 2 slots left
    verdicts = dict(
        (c.key, v) for c, v in decide_all([low, also_high, high], recipient, CONFIG, T0)
    )
    assert verdicts["high"] == Send() and verdicts["high2"] == Send()
    assert isinstance(verdicts["low"], Defer)


def test_sends_in_one_batch_count_against_the_cap() -> None:
    batch = [news(f"m{i}", due=T0 + i * timedelta(seconds=1)) for i in range(7)]
    verdicts = [v for _, v in decide_all(batch, Recipient(), CONFIG, T0)]
    assert [isinstance(v, Send) for v in verdicts] == [True] * 5 + [False] * 2
    assert all(isinstance(v, Defer) and v.until == T0 + 24 * H for v in verdicts[5:])


def test_cap_over_a_simulated_week() -> None:
    """Ten emails a day want out, every hour from 08:00; at most 5 in any 24 h go."""
    sent: list[datetime] = []
    queue = [T0.replace(hour=8) + timedelta(days=d, hours=h) for d in range(7) for h in range(10)]
    now = queue[0]
    pending = list(queue)
    while pending and now < T0 + timedelta(days=30):
        due = [t for t in pending if t <= now]
        for wanted in due:
            verdict = decide(news(due=wanted), Recipient(recent=tuple(sent)), CONFIG, now)
            if isinstance(verdict, Send):
                sent.append(now)
                pending.remove(wanted)
        later = [t for t in pending if t > now]
        frees = decide(news(), Recipient(recent=tuple(sent)), CONFIG, now)
        candidates = later + ([frees.until] if isinstance(frees, Defer) else [])
        now = min(candidates) if candidates else now
    assert not pending, "every email went out in the end (deferred, not dropped)"
    for moment in sent:
        inside = [s for s in sent if moment - 24 * H < s <= moment]
        assert len(inside) <= 5


# --- quiet hours --------------------------------------------------------------------


def test_quiet_hours_parse() -> None:
    assert QuietHours.parse("") is None
    assert QuietHours.parse("21-8") == QuietHours(time(21), time(8))
    assert QuietHours.parse(" 21:30 - 07:15 ") == QuietHours(time(21, 30), time(7, 15))
    for bad in ("21", "25-8", "8-8", "21:75-8", "nine-five"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


def quiet(text: str = "21-8", tz: str = "UTC") -> PolicyConfig:
    return PolicyConfig(quiet_hours=QuietHours.parse(text), default_timezone=tz)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)  # type: ignore[misc]


def test_quiet_hours_across_midnight_defer_to_the_end_in_the_contacts_zone() -> None:
    berlin = Recipient(timezone="Europe/Berlin")
    late = local("Europe/Berlin", 2025, 9, 1, 22, 30)
    verdict = decide(news(), berlin, quiet(), late)
    assert isinstance(verdict, Defer) and verdict.code == "quiet_hours"
    assert verdict.until == local("Europe/Berlin", 2025, 9, 2, 8, 0)
    early = local("Europe/Berlin", 2025, 9, 2, 6, 0)
    assert decide(news(), berlin, quiet(), early) == Defer(
        local("Europe/Berlin", 2025, 9, 2, 8, 0),
        "quiet_hours",
        "quiet hours 21:00-08:00 in Europe/Berlin",
    )
    assert decide(news(), berlin, quiet(), local("Europe/Berlin", 2025, 9, 2, 8, 0)) == Send()
    assert decide(news(), berlin, quiet(), local("Europe/Berlin", 2025, 9, 2, 20, 59)) == Send()


def test_quiet_hours_within_one_day_and_the_default_zone() -> None:
    config = quiet("12-14", tz="America/New_York")
    noon = local("America/New_York", 2025, 9, 1, 12, 30)
    verdict = decide(news(), Recipient(), config, noon)
    assert isinstance(verdict, Defer)
    assert verdict.until == local("America/New_York", 2025, 9, 1, 14, 0)
    assert decide(news(), Recipient(), config, local("America/New_York", 2025, 9, 1, 11)) == Send()


def test_quiet_hours_across_dst_changes() -> None:
    # spring forward in New York: 2025-03-09 02:00 -> 03:00; quiet 1:00-2:30 ends in the gap
    config = quiet("1-2:30")
    ny = Recipient(timezone="America/New_York")
    at = local("America/New_York", 2025, 3, 9, 1, 30)
    verdict = decide(news(), ny, config, at)
    assert isinstance(verdict, Defer)
    # 02:30 does not exist that night: like every local time in a gap, it shifts forward
    assert verdict.until == datetime(2025, 3, 9, 7, 30, tzinfo=UTC)  # 03:30 EDT
    # fall back in Berlin: 2025-10-26 03:00 CEST -> 02:00 CET; 21-8 lasts 12 hours that night
    berlin = Recipient(timezone="Europe/Berlin")
    late = local("Europe/Berlin", 2025, 10, 25, 23, 0)
    verdict = decide(news(), berlin, quiet(), late)
    assert isinstance(verdict, Defer)
    assert verdict.until == datetime(2025, 10, 26, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert verdict.until - late == timedelta(hours=10)


def test_transactional_ignores_quiet_hours() -> None:
    at = local("Europe/Berlin", 2025, 9, 1, 23, 0)
    receipt = news(topic="transactional")
    assert decide(receipt, Recipient(timezone="Europe/Berlin"), quiet(), at) == Send()


def test_a_cap_deferral_lands_after_quiet_hours() -> None:
    now = local("Europe/Berlin", 2025, 9, 1, 12, 0)
    recent = sends(13, 1, 2, 3, 4, now=now)  # a slot frees in 11 h: 23:00 local, quiet
    verdict = decide(news(), Recipient(timezone="Europe/Berlin", recent=recent), quiet(), now)
    assert isinstance(verdict, Defer) and verdict.code == "capped"
    assert verdict.until == local("Europe/Berlin", 2025, 9, 2, 8, 0)


# --- pacing and the breaker (pure arithmetic) ----------------------------------------


def test_token_bucket_paces_after_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: 0.0)
    waits = [bucket.reserve(1, 0.0) for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.1, 0.2, 0.3])
    assert bucket.reserve(1, 10.0) == 0.0  # refilled (to the burst, no more)
    assert TokenBucket(0).reserve(1000, 0.0) == 0.0  # 0: unlimited
    assert TokenBucket(10, 5).chunk(100) == 5


def test_breaker_opens_after_failures_probes_and_backs_off() -> None:
    breaker = Breaker(threshold=3, cooldown=timedelta(seconds=30))
    for _ in range(2):
        assert not breaker.failure(T0, "421")
    assert breaker.state(T0) == Circuit.CLOSED
    assert breaker.failure(T0, "421")
    assert breaker.state(T0 + timedelta(seconds=29)) == Circuit.OPEN
    probe = T0 + timedelta(seconds=30)
    assert breaker.state(probe) == Circuit.HALF_OPEN
    assert breaker.failure(probe, "421")  # the probe failed: open for twice as long
    assert breaker.state(probe + timedelta(seconds=59)) == Circuit.OPEN
    assert breaker.state(probe + timedelta(seconds=60)) == Circuit.HALF_OPEN
    breaker.success()
    assert breaker.state(probe + timedelta(seconds=60)) == Circuit.CLOSED
    assert breaker.failures == 0
