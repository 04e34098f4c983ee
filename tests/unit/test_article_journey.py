"""The article's journey tests, done with flowmail's simulator as a pytest Python API.

The article tests its welcome series with ``WorkflowTestFramework.simulate_user_journey``:
mocks, ``asyncio.sleep`` and the wall clock, so the wait between emails never
passes and ``emails_triggered >= 2`` cannot actually hold. Here the same workflows,
written in the article's own format, run over virtual time: the hour-long wait
passes in no time, and every email, time and run status can be asserted exactly.

This is also how users test their own journeys::

    workflow = parse_workflow({...})            # our language or the article's format
    sim = Simulation([workflow], start=...)
    sim.add_contact("u1", email="u1@example.com", attributes={...})
    sim.track("u1", "user_registered", at=...)
    result = sim.run(until=...)
    assert [e.step for e in result.emails_to("u1")] == [...]
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from test_article_format import WELCOME_SERIES_V1

from flowmail.engine.state import RunStatus
from flowmail.language.models import Workflow
from flowmail.simulate import Simulation, SimulationResult, parse_workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NO_SUBJECT = "email step has no subject"


# --- the article's workflows, in the article's format -----------------------------------


def create_test_welcome_workflow() -> dict[str, Any]:
    """The article's ``create_test_welcome_workflow()``, as a mapping."""
    return {
        "workflow_id": "test_welcome",
        "name": "Test Welcome Series",
        "description": "Test workflow for unit testing",
        "trigger_config": {"type": "event", "event_type": "user_registered"},
        "steps": [
            {
                "step_id": "welcome_email",
                "step_type": "email",
                "config": {"template_id": "welcome_test"},
            },
            {
                "step_id": "wait_period",
                "step_type": "wait",
                "config": {"type": "duration", "duration_seconds": 3600},
            },
            {
                "step_id": "follow_up_email",
                "step_type": "email",
                "config": {"template_id": "follow_up_test"},
            },
        ],
    }


def welcome_series_v1() -> dict[str, Any]:
    """The article's ``setup_welcome_series_workflow()`` workflow, as a mapping."""
    extras = ("is_active", "tags")  # the format test adds these to show they are ignored
    return {k: v for k, v in copy.deepcopy(WELCOME_SERIES_V1).items() if k not in extras}


def naive_utc(timestamp: str) -> datetime:
    """The article's timestamps have no zone; read them as UTC."""
    return datetime.fromisoformat(timestamp).replace(tzinfo=UTC)


def simulate_user_journey(journey_config: dict[str, Any]) -> SimulationResult:
    """``WorkflowTestFramework.simulate_user_journey`` with a virtual clock and no mocks."""
    workflows: list[Workflow] = [parse_workflow(raw) for raw in journey_config["workflows"]]
    events = journey_config["events"]
    start = naive_utc(events[0]["timestamp"])
    sim = Simulation(workflows, start=start)
    user_id = journey_config["user_id"]
    sim.add_contact(
        user_id,
        email=journey_config.get("email_address", f"{user_id}@example.com"),
        attributes=journey_config.get("user_properties", {}),
    )
    for event in events:
        sim.track(
            user_id,
            event["type"],
            at=naive_utc(event["timestamp"]),
            properties=event.get("properties", {}),
        )
    return sim.run(until=start + journey_config.get("run_for", timedelta(days=7)))


def test_welcome_series_completion() -> None:
    """The article's ``test_welcome_series_completion``, with assertions that can hold."""
    journey_config: dict[str, Any] = {
        "user_id": "test_user_001",
        "workflows": [create_test_welcome_workflow()],
        "events": [
            {
                "type": "user_registered",
                "timestamp": "2025-09-01T10:00:00",
                "properties": {"subscription_source": "newsletter_signup"},
            },
            {
                "type": "email_opened",
                "timestamp": "2025-09-01T10:30:00",
                "properties": {"email_id": "welcome_001"},
                "delay_seconds": 1,  # the article sleeps here; virtual time needs no sleep
            },
            {
                "type": "email_clicked",
                "timestamp": "2025-09-01T10:31:00",
                "properties": {"url": "https://example.com/getting-started"},
            },
        ],
    }

    result = simulate_user_journey(journey_config)

    # The article: emails_triggered >= 2 (welcome + follow-up). Here: exactly those two.
    emails = result.emails_to("test_user_001")
    assert len(emails) >= 2
    assert [(e.at, e.step, e.template, e.to) for e in emails] == [
        (
            datetime(2025, 9, 1, 10, tzinfo=UTC),
            "welcome_email",
            "welcome_test",
            "test_user_001@example.com",
        ),
        (
            datetime(2025, 9, 1, 11, tzinfo=UTC),
            "follow_up_email",
            "follow_up_test",
            "test_user_001@example.com",
        ),
    ]
    assert emails[1].at - emails[0].at == timedelta(seconds=3600)

    # The article: error_rate == 0 and workflow_completion_rate > 80.
    runs = result.runs_of("test_user_001", "test_welcome")
    assert len(runs) == 1
    run = runs[0]
    assert run.status == RunStatus.COMPLETED
    assert run.path == ["welcome_email", "wait_period", "follow_up_email"]
    assert run.ended_at == datetime(2025, 9, 1, 11, tzinfo=UTC)
    error_rate = sum(r.status == RunStatus.FAILED for r in result.runs) / len(result.runs) * 100
    completion_rate = (
        sum(r.status == RunStatus.COMPLETED for r in result.runs) / len(result.runs) * 100
    )
    assert error_rate == 0
    assert completion_rate > 80

    # The article's test workflow gives template ids but no subjects, and the simulator
    # has no templates: that is a warning for each email, never a failure.
    assert [(w.step_id, NO_SUBJECT in w.message) for w in result.warnings] == [
        ("welcome_email", True),
        ("follow_up_email", True),
    ]
    assert [e.subject for e in emails] == ["", ""]


def test_welcome_series_completion_is_repeatable() -> None:
    config: dict[str, Any] = {
        "user_id": "test_user_001",
        "workflows": [create_test_welcome_workflow()],
        "events": [{"type": "user_registered", "timestamp": "2025-09-01T10:00:00"}],
    }
    assert simulate_user_journey(config).to_json() == simulate_user_journey(config).to_json()


# --- the article's welcome_series_v1, with its fall-through bug fixed ---------------------


def run_welcome_series_v1(*, opens_welcome: bool) -> SimulationResult:
    sim = Simulation([parse_workflow(welcome_series_v1())], start=naive_utc("2025-09-01T09:00"))
    sim.add_contact(
        "user_12345",
        email="subscriber@example.com",
        timezone="Europe/Lisbon",
        attributes={"first_name": "Sam", "subscription_source": "newsletter_signup"},
    )
    sim.track(
        "user_12345",
        "user_registered",
        at=naive_utc("2025-09-01T10:00:00"),
        properties={"subscription_source": "newsletter_signup", "user_segment": "new_subscriber"},
    )
    if opens_welcome:
        sim.track(
            "user_12345",
            "email_opened",
            at=naive_utc("2025-09-01T18:00:00"),
            properties={"step": "welcome_immediate", "workflow": "welcome_series_v1"},
        )
    return sim.run(until=naive_utc("2025-09-10T00:00:00"))


STEPS_BEFORE_BRANCH = ["welcome_immediate", "wait_1_day", "educational_email_1", "check_engagement"]


def test_welcome_series_v1_engaged_contact_gets_only_the_engaged_email() -> None:
    result = run_welcome_series_v1(opens_welcome=True)
    emails = result.emails_to("user_12345")
    assert [(e.at, e.step, e.subject) for e in emails] == [
        (
            datetime(2025, 9, 1, 10, tzinfo=UTC),
            "welcome_immediate",
            "Welcome Sam! Let's get started",
        ),
        (
            datetime(2025, 9, 2, 10, tzinfo=UTC),
            "educational_email_1",
            "Here's how to get the most value from ",
        ),
        (
            datetime(2025, 9, 2, 10, tzinfo=UTC),
            "engaged_path_email",
            "Ready for advanced tips, Sam?",
        ),
    ]
    assert "re_engagement_email" not in [e.step for e in emails]  # the article sent both
    (run,) = result.runs_of("user_12345", "welcome_series_v1")
    assert run.status == RunStatus.COMPLETED
    assert run.path == [*STEPS_BEFORE_BRANCH, "engaged_path_email"]
    assert run.engaged == {"welcome_immediate": ["opened"]}
    # Only the undefined {{product.name}} is worth a warning.
    assert [(w.step_id, "product" in w.message) for w in result.warnings] == [
        ("educational_email_1", True)
    ]


def test_welcome_series_v1_unengaged_contact_gets_only_the_re_engagement_email() -> None:
    result = run_welcome_series_v1(opens_welcome=False)
    emails = result.emails_to("user_12345")
    assert [(e.at, e.step) for e in emails] == [
        (datetime(2025, 9, 1, 10, tzinfo=UTC), "welcome_immediate"),
        (datetime(2025, 9, 2, 10, tzinfo=UTC), "educational_email_1"),
        (datetime(2025, 9, 2, 10, tzinfo=UTC), "re_engagement_email"),
    ]
    assert emails[-1].subject == "We miss you! Here's what you might have missed"
    assert "engaged_path_email" not in [e.step for e in emails]
    (run,) = result.runs_of("user_12345", "welcome_series_v1")
    assert run.status == RunStatus.COMPLETED
    assert run.path == [*STEPS_BEFORE_BRANCH, "re_engagement_email"]


def test_welcome_series_v1_user_properties_are_contact_attributes() -> None:
    """The trigger's user_properties test the contact, not the registration event."""
    sim = Simulation([parse_workflow(welcome_series_v1())], start=naive_utc("2025-09-01T09:00"))
    sim.add_contact("u2", email="u2@example.com", attributes={"subscription_source": "webinar"})
    sim.track(
        "u2",
        "user_registered",
        at=naive_utc("2025-09-01T10:00:00"),
        properties={"subscription_source": "newsletter_signup"},
    )
    result = sim.run(until=naive_utc("2025-09-10T00:00:00"))
    assert result.runs == []
    assert result.emails == []


def test_the_example_json_is_the_articles_workflow() -> None:
    path = EXAMPLES / "welcome_series_article.json"
    assert json.loads(path.read_text(encoding="utf-8")) == welcome_series_v1()
