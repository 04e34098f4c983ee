"""The workflow language: its exact shape, durations, validation, and the CLI around it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from flowmail.cli import app
from flowmail.language.conditions import Compare
from flowmail.language.durations import format_duration, parse_duration
from flowmail.language.loader import WorkflowInvalid, load_workflow, load_workflows, parse_workflow
from flowmail.language.models import (
    END,
    AttributeTrigger,
    BehaviorTrigger,
    BranchStep,
    DateTrigger,
    EmailStep,
    EnrollStep,
    EventTrigger,
    ExitStep,
    ReEntryAfter,
    ScheduleTrigger,
    SplitStep,
    TagStep,
    UntagStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    step_kind,
)
from flowmail.language.schema import workflow_schema

# The example from the issue, character for character (comments included; the one
# backslash-newline only keeps the source under 100 columns).
CART_ABANDONMENT = """\
id: cart_abandonment              # required slug
name: Cart abandonment
topic: marketing                  # consent topic; default marketing
trigger:                          # one of the trigger forms below
  event: cart_abandoned
  where: {event.cart_total: {gte: 20}}     # optional condition
  hours: {start: 9, end: 21}      # optional: trigger only at these local hours
re_entry: never                   # never (default) | always | {after: 30d}
goal: {event: purchase_completed} # optional: ends the run as converted
exit_when: {event: subscription_cancelled}   # optional: ends the run as exited
steps:
  - id: wait_for_purchase
    wait_for: {event: purchase_completed, timeout: 1h}
    on_event: end                 # step id or end; default: next step
    on_timeout: reminder          # default: next step
  - id: reminder
    email: {template: cart_reminder, subject: "You left something, \
{{ contact.first_name | default: 'friend' }}"}
  - id: pause
    wait: 24h
  - id: check
    branch:
      - if: {contact.lifetime_value: {gt: 1000}}
        then: vip_offer
      - else: standard_offer
  - id: vip_offer
    email: {template: vip}
    next: end
  - id: standard_offer
    email: {template: standard}
"""


def raw_workflow(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "wf", "trigger": {"event": "signed_up"}, "steps": steps, **extra}


def problems_of(raw: dict[str, Any], file: str = "flows/wf.yaml") -> list[Any]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(raw, file)
    return caught.value.problems


EMAIL = {"email": {"subject": "Hello"}}
THIRTY_DAYS = timedelta(days=30)


# --- the exact shape ------------------------------------------------------------------


def test_the_issue_example_parses_into_the_model(tmp_path: Path) -> None:
    path = tmp_path / "cart.yaml"
    path.write_text(CART_ABANDONMENT, encoding="utf-8")
    workflow = load_workflow(path)

    assert (workflow.id, workflow.name, workflow.topic) == (
        "cart_abandonment",
        "Cart abandonment",
        "marketing",
    )
    trigger = workflow.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.event == "cart_abandoned"
    assert trigger.where == Compare("event.cart_total", "gte", 20)
    assert trigger.hours is not None
    assert (trigger.hours.start, trigger.hours.end) == (9, 21)
    assert workflow.re_entry == "never"
    assert workflow.goal is not None and workflow.goal.event == "purchase_completed"
    assert workflow.exit_when is not None and workflow.exit_when.event == "subscription_cancelled"
    assert workflow.holdout == 0

    kinds = [(step.id, step_kind(step)) for step in workflow.steps]
    assert kinds == [
        ("wait_for_purchase", "wait_for"),
        ("reminder", "email"),
        ("pause", "wait"),
        ("check", "branch"),
        ("vip_offer", "email"),
        ("standard_offer", "email"),
    ]
    wait_for = workflow.step("wait_for_purchase")
    assert isinstance(wait_for, WaitForStep)
    assert wait_for.wait_for.event == "purchase_completed"
    assert wait_for.wait_for.timeout == timedelta(hours=1)
    assert (wait_for.on_event, wait_for.on_timeout) == (END, "reminder")

    reminder = workflow.step("reminder")
    assert isinstance(reminder, EmailStep)
    assert reminder.email.template == "cart_reminder"
    assert reminder.email.subject == (
        "You left something, {{ contact.first_name | default: 'friend' }}"
    )
    pause = workflow.step("pause")
    assert isinstance(pause, WaitStep) and pause.wait.duration == timedelta(hours=24)

    check = workflow.step("check")
    assert isinstance(check, BranchStep)
    assert check.branch[0].if_ == Compare("contact.lifetime_value", "gt", 1000)
    assert [case.target for case in check.branch] == ["vip_offer", "standard_offer"]
    assert workflow.step("vip_offer").next == END
    assert workflow.successor("standard_offer") == END
    assert workflow.successor("reminder") == "pause"


def test_json_and_yaml_give_the_same_workflow(tmp_path: Path) -> None:
    data = yaml.safe_load(CART_ABANDONMENT)
    (tmp_path / "cart.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "cart.yaml").write_text(CART_ABANDONMENT, encoding="utf-8")
    from_json = load_workflow(tmp_path / "cart.json")
    from_yaml = load_workflow(tmp_path / "cart.yaml")
    assert from_json == from_yaml


def test_defaults() -> None:
    workflow = parse_workflow(raw_workflow([{"id": "hello", **EMAIL}]))
    assert workflow.topic == "marketing"
    assert workflow.re_entry == "never"
    assert workflow.holdout == 0
    assert workflow.goal is None and workflow.exit_when is None
    assert workflow.title == "wf"


@pytest.mark.parametrize(("written", "expected"), [("10%", 10.0), (25, 25.0), ("12.5%", 12.5)])
def test_holdout_is_a_percentage(written: object, expected: float) -> None:
    workflow = parse_workflow(raw_workflow([{"id": "a", **EMAIL}], holdout=written))
    assert workflow.holdout == expected


def test_holdout_over_100_percent_is_rejected() -> None:
    (problem,) = problems_of(raw_workflow([{"id": "a", **EMAIL}], holdout="150%"))
    assert problem.message.startswith("holdout:")


@pytest.mark.parametrize(
    ("re_entry", "expected"),
    [("never", "never"), ("always", "always"), ({"after": "30d"}, ReEntryAfter(after=THIRTY_DAYS))],
)
def test_re_entry_forms(re_entry: object, expected: object) -> None:
    workflow = parse_workflow(raw_workflow([{"id": "a", **EMAIL}], re_entry=re_entry))
    assert workflow.re_entry == expected
    if isinstance(expected, ReEntryAfter):
        assert expected.after == timedelta(days=30)


def test_re_entry_rejects_other_words() -> None:
    found = problems_of(raw_workflow([{"id": "a", **EMAIL}], re_entry="sometimes"))
    assert found and all(p.message.startswith("re_entry") for p in found)


def test_bare_condition_goal_and_event_goal_with_where() -> None:
    workflow = parse_workflow(
        raw_workflow(
            [{"id": "a", **EMAIL}],
            goal={"contact.plan": "pro"},
            exit_when={"event": "unsubscribed", "where": {"event.reason": "spam"}},
        )
    )
    assert workflow.goal is not None
    assert workflow.goal.event is None
    assert workflow.goal.where == Compare("contact.plan", "eq", "pro")
    assert workflow.exit_when is not None
    assert workflow.exit_when.event == "unsubscribed"
    assert workflow.exit_when.where == Compare("event.reason", "eq", "spam")


# --- triggers -------------------------------------------------------------------------


def test_event_trigger_without_options() -> None:
    trigger = parse_workflow(raw_workflow([{"id": "a", **EMAIL}])).trigger
    assert isinstance(trigger, EventTrigger)
    assert (trigger.event, trigger.where, trigger.hours) == ("signed_up", None, None)


def test_behavior_trigger() -> None:
    raw = raw_workflow(
        [{"id": "a", **EMAIL}],
        trigger={"behavior": {"event": "email_opened", "count": 3, "within": "7d"}},
    )
    trigger = parse_workflow(raw).trigger
    assert isinstance(trigger, BehaviorTrigger)
    assert trigger.behavior.event == "email_opened"
    assert trigger.behavior.count == 3
    assert trigger.behavior.within == timedelta(days=7)


def test_behavior_trigger_needs_a_positive_count() -> None:
    raw = raw_workflow(
        [{"id": "a", **EMAIL}],
        trigger={"behavior": {"event": "email_opened", "count": 0, "within": "7d"}},
    )
    (problem,) = problems_of(raw)
    assert "behavior.count" in problem.message


def test_attribute_trigger() -> None:
    raw = raw_workflow(
        [{"id": "a", **EMAIL}], trigger={"attribute": {"name": "plan", "becomes": "pro"}}
    )
    trigger = parse_workflow(raw).trigger
    assert isinstance(trigger, AttributeTrigger)
    assert (trigger.attribute.name, trigger.attribute.becomes) == ("plan", "pro")


def test_date_trigger() -> None:
    raw = raw_workflow(
        [{"id": "a", **EMAIL}],
        trigger={"date": {"attribute": "trial_ends_at", "offset": "-3d", "at": "10:00"}},
    )
    trigger = parse_workflow(raw).trigger
    assert isinstance(trigger, DateTrigger)
    assert trigger.date.attribute == "trial_ends_at"
    assert trigger.date.offset == timedelta(days=-3)
    assert trigger.date.at == time(10, 0)


def test_date_trigger_defaults_to_the_date_itself() -> None:
    raw = raw_workflow([{"id": "a", **EMAIL}], trigger={"date": {"attribute": "birthday"}})
    trigger = parse_workflow(raw).trigger
    assert isinstance(trigger, DateTrigger)
    assert (trigger.date.offset, trigger.date.at) == (timedelta(0), None)


def test_schedule_triggers() -> None:
    cron = parse_workflow(
        raw_workflow(
            [{"id": "a", **EMAIL}],
            trigger={"schedule": {"cron": "0 9 * * mon", "where": {"contact.plan": "pro"}}},
        )
    ).trigger
    assert isinstance(cron, ScheduleTrigger)
    assert cron.schedule.cron == "0 9 * * mon"
    assert cron.schedule.where == Compare("contact.plan", "eq", "pro")

    once = parse_workflow(
        raw_workflow([{"id": "a", **EMAIL}], trigger={"schedule": {"at": "2025-09-02T12:00:00Z"}})
    ).trigger
    assert isinstance(once, ScheduleTrigger)
    assert once.schedule.at == datetime(2025, 9, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ({"cron": "0 9 * * mon", "at": "2025-09-02T12:00:00Z"}, "exactly one of 'cron' or 'at'"),
        ({"where": {"contact.plan": "pro"}}, "exactly one of 'cron' or 'at'"),
        ({"cron": "every monday"}, "bad cron expression"),
        ({"at": "2025-09-02T12:00:00"}, "has no time zone"),
    ],
)
def test_bad_schedules(schedule: dict[str, Any], fragment: str) -> None:
    (problem,) = problems_of(raw_workflow([{"id": "a", **EMAIL}], trigger={"schedule": schedule}))
    assert fragment in problem.message
    assert problem.file == "flows/wf.yaml"


def test_a_trigger_with_two_forms_is_rejected() -> None:
    trigger = {"event": "x", "attribute": {"name": "plan", "becomes": "pro"}}
    (problem,) = problems_of(raw_workflow([{"id": "a", **EMAIL}], trigger=trigger))
    assert "a trigger needs exactly one of" in problem.message


def test_trigger_hours_must_not_be_empty() -> None:
    trigger = {"event": "x", "hours": {"start": 9, "end": 9}}
    (problem,) = problems_of(raw_workflow([{"id": "a", **EMAIL}], trigger=trigger))
    assert "trigger.hours" in problem.message


# --- steps ----------------------------------------------------------------------------

STEP_SAMPLES: list[tuple[dict[str, Any], type]] = [
    ({"email": {"subject": "Hi"}}, EmailStep),
    ({"email": {"template": "welcome"}}, EmailStep),
    ({"wait": "2d"}, WaitStep),
    ({"wait_for": {"event": "purchase", "timeout": "1h", "match": ["cart_id"]}}, WaitForStep),
    (
        {"branch": [{"if": {"contact.plan": "pro"}, "then": "end"}, {"else": "end"}]},
        BranchStep,
    ),
    ({"split": [{"weight": 50, "then": "end"}, {"weight": 50, "then": "end"}]}, SplitStep),
    ({"update": {"plan": "pro", "greeting": "hi {{ contact.first_name }}"}}, UpdateStep),
    ({"tag": "vip"}, TagStep),
    ({"tag": ["vip", "new"]}, TagStep),
    ({"untag": "new"}, UntagStep),
    ({"webhook": {"url": "https://hooks.example.com/x", "body": {"a": 1}}}, WebhookStep),
    ({"enroll": "other_workflow"}, EnrollStep),
    ({"exit": True}, ExitStep),
]


@pytest.mark.parametrize(("body", "model"), STEP_SAMPLES)
def test_every_step_kind_parses(body: dict[str, Any], model: type) -> None:
    workflow = parse_workflow(raw_workflow([{"id": "only", **body}]))
    (step,) = workflow.steps
    assert isinstance(step, model)
    assert step_kind(step) == next(iter(body))


@pytest.mark.parametrize(
    ("wait", "field", "value"),
    [
        ("2d", "duration", timedelta(days=2)),
        ({"duration": "90m"}, "duration", timedelta(minutes=90)),
        ({"until": "2025-12-24T18:00:00+01:00"}, "until", datetime(2025, 12, 24, 17, tzinfo=UTC)),
        ({"until_time": "10:00", "days": ["mon", "wed"]}, "until_time", time(10)),
        ({"business_hours": {"start": 9, "end": 17}}, "business_hours", None),
    ],
)
def test_wait_forms(wait: object, field: str, value: object) -> None:
    (step,) = parse_workflow(raw_workflow([{"id": "w", "wait": wait}])).steps
    assert isinstance(step, WaitStep)
    got = getattr(step.wait, field)
    if value is None:
        assert got.days == ("mon", "tue", "wed", "thu", "fri")
        assert (got.start, got.end) == (9, 17)
    else:
        assert got == value
    others = {"duration", "until", "until_time", "business_hours"} - {field}
    assert all(getattr(step.wait, other) is None for other in others)


def test_until_time_days_are_kept() -> None:
    (step,) = parse_workflow(
        raw_workflow([{"id": "w", "wait": {"until_time": "9:30", "days": ["fri"]}}])
    ).steps
    assert isinstance(step, WaitStep)
    assert step.wait.until_time == time(9, 30)
    assert step.wait.days == ("fri",)


def test_webhook_defaults_to_post() -> None:
    (step,) = parse_workflow(
        raw_workflow([{"id": "h", "webhook": {"url": "https://x.example.com"}}])
    ).steps
    assert isinstance(step, WebhookStep)
    assert (step.webhook.method, step.webhook.body, step.webhook.headers) == ("POST", None, {})


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"exit": False}, "exit"),
        ({"email": {}}, "an email needs a template or a subject"),
        ({"webhook": {"url": "ftp://x"}}, "webhook.url"),
        ({"wait": {"duration": "1d", "until_time": "10:00"}}, "a wait needs exactly one of"),
        ({"wait": {"duration": "1d", "days": ["mon"]}}, "'days' goes with 'until_time'"),
        ({"wait": {"until_time": "25:00"}}, "bad time of day"),
        ({"wait": {"until_time": "10:00", "days": ["funday"]}}, "wait.days.0"),
        ({"wait": {"business_hours": {"days": []}}}, "business_hours.days"),
        ({"split": [{"weight": 0, "then": "end"}]}, "split.0.weight"),
        ({"branch": []}, "branch"),
        ({"update": {}}, "update"),
    ],
)
def test_bad_step_bodies_name_the_step(body: dict[str, Any], fragment: str) -> None:
    found = problems_of(raw_workflow([{"id": "broken", **body}]))
    assert found
    assert all(p.step == "broken" and p.file == "flows/wf.yaml" for p in found)
    assert any(fragment in p.message for p in found), [p.message for p in found]


def test_steps_need_a_valid_slug_id() -> None:
    found = problems_of(raw_workflow([{"id": "Not A Slug", **EMAIL}]))
    assert any("is not a valid id" in p.message for p in found)


def test_a_workflow_needs_steps_and_an_id() -> None:
    found = problems_of({"trigger": {"event": "x"}, "steps": []})
    messages = [p.message for p in found]
    assert any(m.startswith("id:") and "required" in m for m in messages)
    assert any(m.startswith("steps:") for m in messages)


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "h", "10", "1y", "2 days", "1h-30m", "-1h", "0s", "1h 3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [3600, None, True, 1.5])
def test_durations_must_be_text(value: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


def test_signed_durations_for_offsets() -> None:
    assert parse_duration("-3d", signed=True) == timedelta(days=-3)
    assert parse_duration("+1d", signed=True) == timedelta(days=1)
    assert parse_duration("0s", signed=True) == timedelta(0)
    assert format_duration(timedelta(days=-3)) == "-3d"
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"


# --- validation a user can act on -------------------------------------------------------

VALIDATION_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], str, str]] = [
    (
        "unknown step target",
        [{"id": "hello", **EMAIL, "next": "nowhere"}],
        {},
        "hello",
        "goes to unknown step 'nowhere'",
    ),
    (
        "unknown branch target",
        [{"id": "check", "branch": [{"if": {"contact.x": 1}, "then": "vip"}, {"else": "end"}]}],
        {},
        "check",
        "goes to unknown step 'vip'",
    ),
    (
        "unknown on_timeout target",
        [{"id": "w", "wait_for": {"event": "x", "timeout": "1h"}, "on_timeout": "later"}],
        {},
        "w",
        "goes to unknown step 'later'",
    ),
    (
        "unreachable step",
        [{"id": "first", **EMAIL, "next": "end"}, {"id": "orphan", **EMAIL}],
        {},
        "orphan",
        "is unreachable",
    ),
    (
        "loop without a wait",
        [{"id": "mail", **EMAIL}, {"id": "again", "tag": "x", "next": "mail"}],
        {},
        "mail",
        "loop without a wait: mail -> again -> mail",
    ),
    (
        "branch looping onto itself",
        [{"id": "spin", "branch": [{"if": {"contact.x": 1}, "then": "spin"}, {"else": "end"}]}],
        {},
        "spin",
        "loop without a wait",
    ),
    (
        "branch without else",
        [{"id": "check", "branch": [{"if": {"contact.x": 1}, "then": "end"}]}],
        {},
        "check",
        "branch has no final 'else' case",
    ),
    (
        "else before the end",
        [{"id": "check", "branch": [{"else": "end"}, {"if": {"contact.x": 1}, "then": "end"}]}],
        {},
        "check",
        "'else' must be the last case",
    ),
    ("bad duration", [{"id": "pause", "wait": "2 fortnights"}], {}, "pause", "bad duration"),
    (
        "bad wait_for timeout",
        [{"id": "w", "wait_for": {"event": "x", "timeout": "soon"}}],
        {},
        "w",
        "wait_for.timeout: bad duration 'soon'",
    ),
    (
        "bad time zone",
        [{"id": "bh", "wait": {"business_hours": {"start": 9, "end": 17}, "timezone": "Mars/X"}}],
        {},
        "bh",
        "unknown time zone 'Mars/X'",
    ),
    (
        "unknown operator",
        [
            {
                "id": "check",
                "branch": [{"if": {"contact.age": {"about": 30}}, "then": "end"}, {"else": "end"}],
            }
        ],
        {},
        "check",
        "unknown operator 'about'",
    ),
    (
        "unknown condition key",
        [{"id": "check", "branch": [{"if": {"age": 30}, "then": "end"}, {"else": "end"}]}],
        {},
        "check",
        "unknown condition 'age'",
    ),
    (
        "unknown field",
        [{"id": "hello", **EMAIL, "colour": "red"}],
        {},
        "hello",
        "colour: unknown field",
    ),
    (
        "unknown field in a step body",
        [{"id": "hello", "email": {"subject": "x", "colour": "red"}}],
        {},
        "hello",
        "email.colour: unknown field",
    ),
    (
        "a step with two kinds",
        [{"id": "both", **EMAIL, "wait": "1d"}],
        {},
        "both",
        "a step needs exactly one of",
    ),
    ("a step with no kind", [{"id": "none"}], {}, "none", "a step needs exactly one of"),
    (
        "duplicate step ids",
        [{"id": "twice", **EMAIL}, {"id": "twice", **EMAIL}],
        {},
        "twice",
        "duplicate step id 'twice'",
    ),
    (
        "Liquid syntax error in a subject",
        [{"id": "hello", "email": {"subject": "Hi {{ contact.first_name "}}],
        {},
        "hello",
        "template error",
    ),
    (
        "unclosed Liquid tag",
        [{"id": "hello", "email": {"subject": "{% if contact.vip %}VIP"}}],
        {},
        "hello",
        "template error",
    ),
    (
        "Liquid error in an update value",
        [{"id": "set", "update": {"greeting": "{{ oops"}}],
        {},
        "set",
        "template error",
    ),
    ("'end' as a step id", [{"id": "end", **EMAIL}], {}, "end", "'end' is reserved"),
]


@pytest.mark.parametrize(
    ("steps", "extra", "step", "fragment"),
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
def test_validation_names_file_step_and_problem(
    tmp_path: Path, steps: list[dict[str, Any]], extra: dict[str, Any], step: str, fragment: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw_workflow(steps, **extra)), encoding="utf-8")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    matching = [p for p in caught.value.problems if fragment in p.message]
    assert matching, [str(p) for p in caught.value.problems]
    problem = matching[0]
    assert problem.step == step
    assert problem.file == str(path)
    assert str(problem).startswith(f"{path}: step {step}: ")
    assert str(path) in str(caught.value) and f"step {step}" in str(caught.value)


def test_workflow_level_problems_name_the_file_and_field() -> None:
    raw = raw_workflow([{"id": "a", **EMAIL}], trigger={"event": "x", "where": {"x.y": {"eq": 1}}})
    (problem,) = problems_of(raw)
    assert problem.step is None
    assert problem.file == "flows/wf.yaml"
    assert problem.message.startswith("trigger.where: unknown condition 'x.y'")
    assert str(problem).startswith("flows/wf.yaml: trigger.where")


def test_unknown_operator_in_a_trigger_lists_the_known_ones() -> None:
    raw = raw_workflow(
        [{"id": "a", **EMAIL}], trigger={"event": "x", "where": {"event.total": {"bigger": 1}}}
    )
    (problem,) = problems_of(raw)
    assert "unknown operator 'bigger'" in problem.message
    assert "starts_with" in problem.message and "not_in" in problem.message


def test_unknown_top_level_field() -> None:
    (problem,) = problems_of(raw_workflow([{"id": "a", **EMAIL}], colour="red"))
    assert problem.message == "colour: unknown field"


def test_several_problems_are_reported_together() -> None:
    found = problems_of(
        raw_workflow(
            [
                {"id": "a", **EMAIL, "next": "nowhere"},
                {"id": "b", "branch": [{"if": {"contact.x": 1}, "then": "end"}]},
            ]
        )
    )
    assert {p.step for p in found} == {"a", "b"}


@pytest.mark.parametrize(
    "steps",
    [
        [{"id": "mail", **EMAIL}, {"id": "pause", "wait": "1d", "next": "mail"}],
        [
            {"id": "mail", **EMAIL},
            {"id": "w", "wait_for": {"event": "click", "timeout": "2d"}, "on_timeout": "mail"},
        ],
        [
            {
                "id": "check",
                "branch": [{"if": {"contact.done": True}, "then": "end"}, {"else": "p"}],
            },
            {"id": "p", "wait": {"until_time": "10:00"}, "next": "check"},
        ],
    ],
    ids=["wait", "wait_for", "branch-and-wait"],
)
def test_a_loop_with_a_wait_is_fine(steps: list[dict[str, Any]]) -> None:
    workflow = parse_workflow(raw_workflow(steps))
    assert len(workflow.steps) == len(steps)


@pytest.mark.parametrize(
    "wait",
    [{"business_hours": {"start": 9, "end": 17}}, {"until": "2025-01-01T00:00:00Z"}],
    ids=["business_hours", "until"],
)
def test_a_loop_through_a_wait_that_may_not_wait_is_rejected(wait: dict[str, Any]) -> None:
    # inside business hours (or after ``until``) the wait continues at once, so the loop
    # would send the email again and again in one instant
    found = problems_of(
        raw_workflow([{"id": "mail", **EMAIL}, {"id": "office", "wait": wait, "next": "mail"}])
    )
    (problem,) = found
    assert problem.step == "mail"
    assert problem.message.startswith("loop without a wait: mail -> office -> mail")
    assert "duration, until_time or wait_for" in problem.message


def test_end_is_allowed_wherever_a_step_id_goes() -> None:
    workflow = parse_workflow(
        raw_workflow(
            [
                {"id": "a", **EMAIL, "next": "b"},
                {
                    "id": "b",
                    "wait_for": {"event": "x", "timeout": "1h"},
                    "on_event": "end",
                    "on_timeout": "c",
                },
                {"id": "c", "branch": [{"if": {"contact.x": 1}, "then": "end"}, {"else": "d"}]},
                {"id": "d", "split": [{"weight": 1, "then": "end"}, {"weight": 1, "then": "e"}]},
                {"id": "e", "branch": [{"if": {"contact.y": 1}, "then": "f"}, {"else": "end"}]},
                {"id": "f", "tag": "x", "next": "end"},
            ]
        )
    )
    b = workflow.step("b")
    assert isinstance(b, WaitForStep) and b.on_event == END
    assert workflow.step("f").next == END


def test_load_workflows_collects_problems_from_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(CART_ABANDONMENT, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw_workflow([{"id": "a", **EMAIL, "next": "zz"}])))
    also_bad = tmp_path / "also_bad.yaml"
    also_bad.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflows([good, bad, also_bad])
    files = {p.file for p in caught.value.problems}
    assert files == {str(bad), str(also_bad)}


def test_two_files_with_one_workflow_id(tmp_path: Path) -> None:
    for name in ("one.yaml", "two.yaml"):
        (tmp_path / name).write_text(CART_ABANDONMENT, encoding="utf-8")
    with pytest.raises(WorkflowInvalid, match="two workflows have the id 'cart_abandonment'"):
        load_workflows([tmp_path / "one.yaml", tmp_path / "two.yaml"])


# --- the command line -----------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "cart.yaml"
    path.write_text(CART_ABANDONMENT, encoding="utf-8")
    result = runner.invoke(app, ["workflows", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "cart_abandonment" in result.output and "6 steps" in result.output


def test_cli_validate_fails_on_any_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "cart.yaml"
    good.write_text(CART_ABANDONMENT, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw_workflow([{"id": "hello", **EMAIL, "next": "nowhere"}])))
    result = runner.invoke(app, ["workflows", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert "step hello" in result.output
    assert "goes to unknown step 'nowhere'" in result.output
    assert "bad.yaml" in result.output


def test_cli_validate_fails_on_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["workflows", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_cli_validate_json_output(tmp_path: Path) -> None:
    good = tmp_path / "cart.yaml"
    good.write_text(CART_ABANDONMENT, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw_workflow([{"id": "pause", "wait": "soon"}])))
    result = runner.invoke(app, ["workflows", "validate", "--json", str(good), str(bad)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report[0] == {"file": str(good), "ok": True, "workflow": "cart_abandonment"}
    assert report[1]["ok"] is False
    assert report[1]["problems"][0]["step"] == "pause"
    assert "bad duration" in report[1]["problems"][0]["message"]


# --- the JSON Schema --------------------------------------------------------------------


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Check ``instance`` against ``schema``: jsonschema when installed, else a small checker
    for the keywords flowmail's schema uses."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return _mini_errors(schema, schema, instance, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(instance)]


_KNOWN_KEYWORDS = {
    "$ref", "$defs", "$schema", "type", "enum", "const", "pattern", "minLength", "minimum",
    "maximum", "exclusiveMinimum", "items", "minItems", "properties", "patternProperties",
    "additionalProperties", "required", "minProperties", "maxProperties", "anyOf", "oneOf",
    "allOf", "not", "title", "description", "default", "examples", "format",
}  # fmt: skip
_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
    "boolean": bool,
    "number": (int, float),
    "integer": int,
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _mini_errors(root: dict[str, Any], node: dict[str, Any], value: Any, where: str) -> list[str]:
    unknown = set(node) - _KNOWN_KEYWORDS
    if unknown:
        raise AssertionError(f"schema keyword(s) {unknown} not supported by the test checker")
    errors: list[str] = []

    def sub(schema: dict[str, Any], item: Any, at: str) -> list[str]:
        return _mini_errors(root, schema, item, at)

    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        errors += sub(target, value, where)
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, name) for name in names):
            return [f"{where}: not of type {node['type']}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: not one of {node['enum']}")
    if "const" in node and value != node["const"]:
        errors.append(f"{where}: not {node['const']!r}")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0):
            errors.append(f"{where}: too short")
    if _is_type(value, "number"):
        if value < node.get("minimum", value) or value > node.get("maximum", value):
            errors.append(f"{where}: out of range")
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            errors.append(f"{where}: out of range")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            errors.append(f"{where}: too few items")
        for index, item in enumerate(value):
            if "items" in node:
                errors += sub(node["items"], item, f"{where}[{index}]")
    if isinstance(value, dict):
        errors += _object_errors(root, node, value, where)
    for option in node.get("allOf", []):
        errors += sub(option, value, where)
    if "anyOf" in node and all(sub(option, value, where) for option in node["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "oneOf" in node:
        passing = sum(not sub(option, value, where) for option in node["oneOf"])
        if passing != 1:
            errors.append(f"{where}: matches {passing} of oneOf")
    if "not" in node and not sub(node["not"], value, where):
        errors.append(f"{where}: matches 'not'")
    return errors


def _object_errors(
    root: dict[str, Any], node: dict[str, Any], value: dict[str, Any], where: str
) -> list[str]:
    errors = [f"{where}: missing {key}" for key in node.get("required", []) if key not in value]
    if not node.get("minProperties", 0) <= len(value) <= node.get("maxProperties", len(value)):
        errors.append(f"{where}: wrong number of properties")
    properties = node.get("properties", {})
    patterns = node.get("patternProperties", {})
    for key, item in value.items():
        schemas = [properties[key]] if key in properties else []
        schemas += [s for pattern, s in patterns.items() if re.search(pattern, key)]
        extra = node.get("additionalProperties", True)
        if not schemas and extra is False:
            errors.append(f"{where}: unexpected {key!r}")
        elif not schemas and isinstance(extra, dict):
            schemas = [extra]
        for schema in schemas:
            errors += _mini_errors(root, schema, item, f"{where}.{key}")
    return errors


@pytest.fixture(scope="module")
def printed_schema() -> dict[str, Any]:
    result = runner.invoke(app, ["workflows", "schema"])
    assert result.exit_code == 0, result.output
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_schema_is_a_json_schema(printed_schema: dict[str, Any]) -> None:
    assert printed_schema["$schema"].startswith("https://json-schema.org/")
    assert printed_schema["type"] == "object"
    assert {"id", "trigger", "steps"} <= set(printed_schema["required"])
    assert "Condition" in printed_schema["$defs"]
    assert printed_schema == workflow_schema()
    text = json.dumps(printed_schema)
    for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', text):
        assert ref in printed_schema["$defs"], ref


def test_schema_validates_the_issue_example(printed_schema: dict[str, Any]) -> None:
    assert schema_errors(printed_schema, yaml.safe_load(CART_ABANDONMENT)) == []


def test_schema_accepts_every_documented_form(printed_schema: dict[str, Any]) -> None:
    steps: list[dict[str, Any]] = [
        {"id": f"s{index}", **body} for index, (body, _) in enumerate(STEP_SAMPLES)
    ]
    steps += [
        {"id": "w1", "wait": {"duration": "90m"}},
        {"id": "w2", "wait": {"until": "2025-12-24T18:00:00Z"}},
        {"id": "w3", "wait": {"until_time": "10:00", "days": ["mon", "fri"]}},
        {"id": "w4", "wait": {"business_hours": {"start": 9, "end": 17, "days": ["mon"]}}},
    ]
    triggers: list[dict[str, Any]] = [
        {"event": "x", "where": {"event.total": {"gte": 20}}, "hours": {"start": 22, "end": 6}},
        {"behavior": {"event": "email_opened", "count": 3, "within": "7d"}},
        {"attribute": {"name": "plan", "becomes": "pro"}},
        {"date": {"attribute": "trial_ends_at", "offset": "-3d", "at": "10:00"}},
        {"schedule": {"cron": "0 9 * * mon", "where": {"contact.plan": "pro"}}},
        {"schedule": {"at": "2025-09-02T12:00:00Z"}},
    ]
    condition = {
        "all": [
            {"contact.age": {"greater_than": 17}},
            {"any": [{"user.plan": "pro"}, {"not": {"event.kind": {"in": ["a", "b"]}}}]},
            {"history": {"event": "purchase", "within": "30d", "min": 1, "max": 3}},
            {"engagement": {"gte": 0.5}},
            {"opened": "s0"},
            {"clicked": "s0"},
            {"predicate": "high_value_customer"},
            {"run.holdout": False},
        ]
    }
    for trigger in triggers:
        raw = raw_workflow(
            steps,
            trigger=trigger,
            re_entry={"after": "30d"},
            holdout="10%",
            goal={"contact.plan": "pro"},
            exit_when={"event": "unsubscribed", "where": condition},
        )
        assert schema_errors(printed_schema, raw) == [], trigger
    for re_entry in ("never", "always"):
        raw = raw_workflow(steps, re_entry=re_entry, holdout=10)
        assert schema_errors(printed_schema, raw) == []


@pytest.mark.parametrize(
    "raw",
    [
        raw_workflow([{"id": "both", **EMAIL, "wait": "1d"}]),
        raw_workflow([{"id": "a", **EMAIL, "colour": "red"}]),
        raw_workflow([{"id": "a", "wait": "soon"}]),
        raw_workflow([{"id": "a", **EMAIL}], re_entry="sometimes"),
        raw_workflow([{"id": "a", **EMAIL}], trigger={"event": "x", "where": {"age": 3}}),
        raw_workflow([{"id": "a", **EMAIL}], trigger={"event": "x", "behavior": {}}),
        raw_workflow([]),
        {"trigger": {"event": "x"}, "steps": [{"id": "a", **EMAIL}]},
    ],
    ids=[
        "two-kinds",
        "unknown-field",
        "bad-duration",
        "re-entry",
        "path",
        "trigger",
        "no-steps",
        "id",
    ],
)
def test_schema_rejects_what_the_loader_rejects(
    printed_schema: dict[str, Any], raw: dict[str, Any]
) -> None:
    assert schema_errors(printed_schema, raw)
    with pytest.raises(WorkflowInvalid):
        parse_workflow(raw)
