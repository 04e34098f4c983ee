"""The simulator applies the sender's policy: suppressions, consent, caps, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmail.language.loader import parse_workflow
from flowmail.simulate import SimulationResult, simulate_scenario
from flowmail.simulate.scenario import Scenario, ScenarioInvalid

START = "2025-09-01T00:00:00Z"
HOURLY = {
    "id": "hourly",
    "trigger": {"event": "tick"},
    "re_entry": "always",
    "steps": [{"id": "ping", "email": {"subject": "Ping {{ event.n }}"}}],
}


def simulate(raw: dict[str, Any]) -> SimulationResult:
    scenario = Scenario.model_validate({"start": START, **raw})
    return simulate_scenario(scenario, [parse_workflow(w) for w in raw["workflows"]])


def ticks(contact: str, count: int, every: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
    start = datetime(2025, 9, 1, 10, tzinfo=UTC)
    return [
        {"at": (start + i * every).isoformat(), "contact": contact, "name": "tick",
         "properties": {"n": i}}
        for i in range(count)
    ]  # fmt: skip


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_default_cap_defers_the_sixth_email_of_a_day() -> None:
    result = simulate(
        {"workflows": [HOURLY], "contacts": [{"id": "a", "email": "a@example.com"}],
         "events": ticks("a", 7), "until": "2025-09-03T00:00:00Z"}
    )  # fmt: skip
    times = [e.at for e in result.emails]
    assert times[:5] == [at(f"2025-09-01T{h}:00:00") for h in range(10, 15)]
    # the 6th and 7th wait until the first sends leave the rolling 24 h window
    assert times[5:] == [at("2025-09-02T10:00:00"), at("2025-09-02T11:00:00")]
    assert [e.subject for e in result.emails] == [f"Ping {n}" for n in range(7)]
    deferred = [r for r in result.timeline if r.action == "email_deferred"]
    # both wait for the slot freed at 10:00; the older takes it, the other waits again
    assert [r.detail["until"] for r in deferred] == [
        "2025-09-02T10:00:00Z", "2025-09-02T10:00:00Z", "2025-09-02T11:00:00Z",
    ]  # fmt: skip
    assert deferred[0].detail["reason"].startswith("frequency cap: 5")
    payload = result.to_json()
    assert set(payload) == {"emails", "runs", "contacts"}
    assert payload["emails"][5]["at"] == "2025-09-02T10:00:00Z"


def test_settings_change_the_cap_and_on_capped_skip_drops() -> None:
    skipping = {**HOURLY, "steps": [{"id": "ping", "email": {"subject": "P", "on_capped": "skip"}}]}
    result = simulate(
        {"workflows": [skipping], "contacts": [{"id": "a", "email": "a@example.com"}],
         "events": ticks("a", 4), "settings": {"max_daily_sends": 2}}
    )  # fmt: skip
    assert len(result.emails) == 2
    skipped = [r for r in result.timeline if r.action == "email_skipped"]
    assert len(skipped) == 2 and skipped[0].detail["code"] == "capped"
    assert sum("skipped" in w.message for w in result.warnings) == 2


def test_transactional_workflows_are_not_capped() -> None:
    receipts = {**HOURLY, "topic": "transactional"}
    result = simulate(
        {"workflows": [receipts], "contacts": [{"id": "a", "email": "a@example.com"}],
         "events": ticks("a", 8), "settings": {"max_daily_sends": 1}}
    )  # fmt: skip
    assert len(result.emails) == 8


def test_priority_decides_which_email_goes_when_the_cap_bites() -> None:
    low = {"id": "low", "trigger": {"event": "go"}, "priority": 0,
           "steps": [{"id": "m", "email": {"subject": "low"}}]}  # fmt: skip
    high = {"id": "high", "trigger": {"event": "go"}, "priority": 5,
            "steps": [{"id": "m", "email": {"subject": "high"}}]}  # fmt: skip
    result = simulate(
        {"workflows": [low, high], "contacts": [{"id": "a", "email": "a@example.com"}],
         "events": [{"at": "2025-09-01T10:00:00Z", "contact": "a", "name": "go"}],
         "settings": {"max_daily_sends": 1}}
    )  # fmt: skip
    assert [(e.subject, e.at) for e in result.emails] == [
        ("high", at("2025-09-01T10:00:00")),
        ("low", at("2025-09-02T10:00:00")),
    ]


def test_suppressions_and_consents_skip_with_reasons() -> None:
    news = {**HOURLY, "topic": "newsletter"}
    result = simulate(
        {
            "workflows": [news],
            "contacts": [{"id": "a", "email": "a@example.com"},
                         {"id": "b", "email": "B@example.com"},
                         {"id": "c", "email": "c@example.com"}],
            "events": ticks("a", 1) + ticks("b", 1) + ticks("c", 3),
            "suppressions": [{"email": "b@example.com", "reason": "complaint"}],
            "consents": [{"contact": "c", "topic": "newsletter", "status": "unsubscribed",
                          "at": "2025-09-01T11:30:00Z"}],
        }
    )  # fmt: skip
    assert [(e.contact, e.subject) for e in result.emails] == [
        ("a", "Ping 0"), ("c", "Ping 0"), ("c", "Ping 1"),
    ]  # fmt: skip
    reasons = {
        (r.contact_id, r.detail["code"]) for r in result.timeline if r.action == "email_skipped"
    }
    assert reasons == {("b", "suppressed"), ("c", "no_consent")}
    assert any("complaint" in w.message for w in result.warnings)


def test_bare_address_suppressions_are_manual() -> None:
    result = simulate(
        {"workflows": [HOURLY], "contacts": [{"id": "a", "email": "a@example.com"}],
         "events": ticks("a", 1), "suppressions": ["a@example.com"]}
    )  # fmt: skip
    assert result.emails == []
    assert "suppressed: manual" in result.warnings[0].message


def test_quiet_hours_in_the_contacts_zone_defer_to_the_morning() -> None:
    result = simulate(
        {
            "workflows": [HOURLY],
            "contacts": [{"id": "t", "email": "t@example.com", "timezone": "Asia/Tokyo"},
                         {"id": "u", "email": "u@example.com"}],
            "events": ticks("t", 1) + ticks("u", 1),  # 10:00 UTC is 19:00 in Tokyo
            "settings": {"quiet_hours": "18-8"},
        }
    )  # fmt: skip
    sent = {e.contact: e.at for e in result.emails}
    assert sent["u"] == at("2025-09-01T10:00:00")
    assert sent["t"] == at("2025-09-01T23:00:00")  # 08:00 in Tokyo
    (deferred,) = [r for r in result.timeline if r.action == "email_deferred"]
    assert deferred.detail["code"] == "quiet_hours"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        Scenario.model_validate(
            {"start": START, "workflows": [HOURLY], "settings": {"quiet_hours": "late"}}
        )
    with pytest.raises(ValueError):
        Scenario.model_validate(
            {"start": START, "workflows": [HOURLY], "suppressions": [{"email": "x@y.z",
             "reason": "bored"}]}
        )  # fmt: skip
    assert issubclass(ScenarioInvalid, ValueError)


def test_an_invalid_address_is_not_stored_and_nothing_is_sent_to_it() -> None:
    result = simulate(
        {"workflows": [HOURLY],
         "contacts": [{"id": "a", "email": "not-an-address"},
                      {"id": "b", "email": "b@example.com"}],
         "events": [{"at": "2025-09-01T09:00:00Z", "contact": "b",
                     "identify": {"email": "b@@broken"}}, *ticks("a", 1), *ticks("b", 1)]}
    )  # fmt: skip
    assert [(e.contact, e.to) for e in result.emails] == [("b", "b@example.com")]
    assert result.contacts["a"].email is None
    messages = [w.message for w in result.warnings]
    assert any("'not-an-address' is not a valid email address" in m for m in messages)
    assert any("'b@@broken'" in m for m in messages)
