"""The article's workflow format translates into the workflow language."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest

from flowmail.language.article import is_article_format, translate_article
from flowmail.language.conditions import All, Compare, Engagement, History
from flowmail.language.models import (
    AttributeTrigger,
    BehaviorTrigger,
    BranchStep,
    EmailStep,
    EnrollStep,
    EventTrigger,
    ExitStep,
    HourWindow,
    ScheduleTrigger,
    TagStep,
    UntagStep,
    UpdateStep,
    WaitStep,
    WebhookStep,
    Workflow,
)

# The article's setup_welcome_series_workflow(), as a mapping.
WELCOME_SERIES_V1: dict[str, Any] = {
    "workflow_id": "welcome_series_v1",
    "name": "Welcome Series - New Subscribers",
    "description": "7-email welcome series for new subscribers",
    "trigger_config": {
        "type": "event",
        "event_type": "user_registered",
        "conditions": {"user_properties": {"subscription_source": "newsletter_signup"}},
    },
    "steps": [
        {
            "step_id": "welcome_immediate",
            "step_type": "email",
            "config": {
                "template_id": "welcome_01",
                "subject_template": "Welcome {{user.first_name}}! Let's get started",
                "content_template": "welcome_email_template.html",
                "send_immediately": True,
            },
        },
        {
            "step_id": "wait_1_day",
            "step_type": "wait",
            "config": {"type": "duration", "duration_seconds": 86400},
        },
        {
            "step_id": "educational_email_1",
            "step_type": "email",
            "config": {
                "template_id": "educational_01",
                "subject_template": "Here's how to get the most value from {{product.name}}",
                "content_template": "educational_email_template.html",
            },
        },
        {
            "step_id": "check_engagement",
            "step_type": "condition",
            "config": {
                "type": "event_history",
                "event_type": "email_opened",
                "timeframe_days": 3,
                "min_count": 1,
                "true_step": "engaged_path_email",
                "false_step": "re_engagement_email",
            },
        },
        {
            "step_id": "engaged_path_email",
            "step_type": "email",
            "config": {
                "template_id": "engaged_user",
                "subject_template": "Ready for advanced tips, {{user.first_name}}?",
                "content_template": "advanced_tips_template.html",
            },
        },
        {
            "step_id": "re_engagement_email",
            "step_type": "email",
            "config": {
                "template_id": "re_engagement",
                "subject_template": "We miss you! Here's what you might have missed",
                "content_template": "re_engagement_template.html",
            },
        },
    ],
    "is_active": True,
    "tags": ["onboarding"],
}

# The article's create_test_welcome_workflow(), as a mapping.
TEST_WELCOME: dict[str, Any] = {
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

EMAIL = {"step_id": "mail", "step_type": "email", "config": {"template_id": "t"}}


def article(
    *steps: dict[str, Any], trigger: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    return {
        "workflow_id": "wf",
        "name": "A workflow",
        "trigger_config": {"type": "event", "event_type": "user_registered"}
        if trigger is None
        else trigger,
        "steps": list(steps) or [EMAIL],
        **top,
    }


def step(step_id: str, step_type: str, **config: Any) -> dict[str, Any]:
    return {"step_id": step_id, "step_type": step_type, "config": config}


def email(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"step_id": step_id, "step_type": "email", "config": {"template_id": step_id}, **extra}


def load(raw: dict[str, Any]) -> Workflow:
    return Workflow.model_validate(translate_article(raw))


def trigger_of(trigger: dict[str, Any]) -> Any:
    return load(article(trigger=trigger)).trigger


def only_step(raw_step: dict[str, Any]) -> Any:
    return load(article(raw_step)).steps[0]


# --- the article's own examples ------------------------------------------------------


def test_welcome_series_v1() -> None:
    workflow = load(WELCOME_SERIES_V1)

    assert workflow.id == "welcome_series_v1"
    assert workflow.name == "Welcome Series - New Subscribers"
    assert workflow.description == "7-email welcome series for new subscribers"
    assert workflow.re_entry == "never"
    assert isinstance(workflow.trigger, EventTrigger)
    assert workflow.trigger.event == "user_registered"
    assert workflow.trigger.where == Compare(
        "contact.subscription_source", "eq", "newsletter_signup"
    )
    assert workflow.trigger.hours is None
    assert [s.id for s in workflow.steps] == [
        "welcome_immediate",
        "wait_1_day",
        "educational_email_1",
        "check_engagement",
        "engaged_path_email",
        "re_engagement_email",
    ]

    welcome = workflow.step("welcome_immediate")
    assert isinstance(welcome, EmailStep)
    assert welcome.email.template == "welcome_01"
    assert welcome.email.subject == "Welcome {{user.first_name}}! Let's get started"

    wait = workflow.step("wait_1_day")
    assert isinstance(wait, WaitStep)
    assert wait.wait.duration == timedelta(days=1)

    check = workflow.step("check_engagement")
    assert isinstance(check, BranchStep)
    assert check.branch[0].if_ == History("email_opened", timedelta(days=3), 1, None, None)
    assert check.branch[0].then == "engaged_path_email"
    assert check.branch[1].else_ == "re_engagement_email"

    # The fix: the engaged path no longer falls through into the re-engagement email.
    assert workflow.step("engaged_path_email").next == "end"
    assert workflow.step("re_engagement_email").next is None


def test_welcome_series_translation_is_plain_json_and_pure() -> None:
    before = copy.deepcopy(WELCOME_SERIES_V1)
    translated = translate_article(WELCOME_SERIES_V1)
    assert before == WELCOME_SERIES_V1
    assert json.loads(json.dumps(translated)) == translated
    assert "is_active" not in translated
    assert "tags" not in translated


def test_create_test_welcome_workflow() -> None:
    workflow = load(TEST_WELCOME)
    assert workflow.id == "test_welcome"
    assert isinstance(workflow.trigger, EventTrigger)
    assert workflow.trigger.event == "user_registered"
    assert workflow.trigger.where is None
    first, wait, follow_up = workflow.steps
    assert isinstance(first, EmailStep)
    assert first.email.template == "welcome_test"
    assert first.email.subject is None
    assert isinstance(wait, WaitStep)
    assert wait.wait.duration == timedelta(hours=1)
    assert isinstance(follow_up, EmailStep)
    assert all(s.next is None for s in workflow.steps)


def test_is_article_format() -> None:
    assert is_article_format(WELCOME_SERIES_V1)
    assert not is_article_format({"id": "x", "workflow_id": "x"})
    assert not is_article_format({"id": "x"})
    assert not is_article_format(["workflow_id"])
    with pytest.raises(ValueError, match="workflow_id"):
        translate_article({"id": "x"})


def test_description_is_optional() -> None:
    raw = article()
    assert "description" not in raw
    assert load(raw).description == ""


# --- triggers ------------------------------------------------------------------------


def test_event_trigger_with_user_and_event_properties() -> None:
    trigger = trigger_of(
        {
            "type": "event_based",
            "event_type": "cart_abandoned",
            "conditions": {
                "user_properties": {"plan": "pro"},
                "event_properties": {"cart_total": 50, "meta": {"a": 1}},
            },
        }
    )
    assert isinstance(trigger, EventTrigger)
    assert trigger.event == "cart_abandoned"
    assert trigger.where == All(
        (
            Compare("contact.plan", "eq", "pro"),
            Compare("event.cart_total", "eq", 50),
            Compare("event.meta", "eq", {"a": 1}),
        )
    )


def test_event_trigger_needs_event_type() -> None:
    with pytest.raises(ValueError, match="event_type"):
        translate_article(article(trigger={"type": "event"}))


@pytest.mark.parametrize(
    ("hours", "window"),
    [
        (list(range(9, 18)), HourWindow(start=9, end=18)),
        ([12, 10, 11, 11], HourWindow(start=10, end=13)),
        ([23], HourWindow(start=23, end=24)),
        (list(range(24)), HourWindow(start=0, end=24)),
        ([22, 23, 0, 1], HourWindow(start=22, end=2)),
    ],
)
def test_allowed_hours_contiguous(hours: list[int], window: HourWindow) -> None:
    trigger = trigger_of(
        {"type": "event", "event_type": "e", "conditions": {"timing": {"allowed_hours": hours}}}
    )
    assert isinstance(trigger, EventTrigger)
    assert trigger.hours == window
    assert trigger.where is None


@pytest.mark.parametrize("hours", [[9, 10, 12], [1, 3], [], [24], [True], "9-17"])
def test_allowed_hours_not_one_range(hours: Any) -> None:
    raw = article(
        trigger={
            "type": "event",
            "event_type": "e",
            "conditions": {"timing": {"allowed_hours": hours}},
        }
    )
    with pytest.raises(ValueError, match="allowed_hours"):
        translate_article(raw)


@pytest.mark.parametrize("kind", ["behavior", "behavior_based"])
def test_behavior_trigger_defaults(kind: str) -> None:
    trigger = trigger_of({"type": kind, "behavior_config": {"type": "engagement_threshold"}})
    assert isinstance(trigger, BehaviorTrigger)
    assert trigger.behavior.event == "email_opened"
    assert trigger.behavior.count == 3
    assert trigger.behavior.within == timedelta(days=7)


def test_behavior_trigger_explicit() -> None:
    config = {"type": "engagement_threshold", "threshold": 5, "timeframe_days": 14}
    raw = article(trigger={"type": "behavior", "behavior_config": config})
    assert translate_article(raw)["trigger"] == {
        "behavior": {"event": "email_opened", "count": 5, "within": "14d"}
    }
    trigger = load(raw).trigger
    assert isinstance(trigger, BehaviorTrigger)
    assert trigger.behavior.within == timedelta(days=14)


def test_behavior_trigger_unknown_type() -> None:
    raw = article(trigger={"type": "behavior", "behavior_config": {"type": "purchases"}})
    with pytest.raises(ValueError, match="purchases"):
        translate_article(raw)


@pytest.mark.parametrize("kind", ["attribute", "attribute_based"])
def test_attribute_trigger(kind: str) -> None:
    trigger = trigger_of({"type": kind, "attribute": "plan", "value": "pro"})
    assert isinstance(trigger, AttributeTrigger)
    assert trigger.attribute.name == "plan"
    assert trigger.attribute.becomes == "pro"


def test_attribute_trigger_needs_a_value() -> None:
    with pytest.raises(ValueError, match="value"):
        translate_article(article(trigger={"type": "attribute", "attribute": "plan"}))


@pytest.mark.parametrize("kind", ["time", "time_based"])
def test_time_trigger_cron(kind: str) -> None:
    raw = article(trigger={"type": kind, "cron": "0 9 * * mon"})
    assert translate_article(raw)["trigger"] == {"schedule": {"cron": "0 9 * * mon"}}


def test_time_trigger_cron_loads() -> None:
    pytest.importorskip("flowmail.engine.timing")  # the model checks cron expressions there
    trigger = load(article(trigger={"type": "time", "cron": "0 9 * * mon"})).trigger
    assert isinstance(trigger, ScheduleTrigger)
    assert trigger.schedule.cron == "0 9 * * mon"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2025-09-01T08:00:00", datetime(2025, 9, 1, 8, tzinfo=UTC)),
        (
            "2025-09-01T08:00:00-05:00",
            datetime(2025, 9, 1, 8, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
)
def test_time_trigger_at(at: str, expected: datetime) -> None:
    trigger = trigger_of({"type": "time", "at": at})
    assert isinstance(trigger, ScheduleTrigger)
    assert trigger.schedule.at == expected


@pytest.mark.parametrize(
    "config", [{"type": "time"}, {"type": "time", "cron": "* * * * *", "at": "2025-01-01"}]
)
def test_time_trigger_needs_cron_or_at(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="cron"):
        translate_article(article(trigger=config))


@pytest.mark.parametrize("config", [{"type": "webhook"}, {}])
def test_unknown_trigger_type(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="trigger_config"):
        translate_article(article(trigger=config))


def test_allow_re_entry_in_trigger_config() -> None:
    trigger = {"type": "event", "event_type": "e", "allow_re_entry": True}
    assert load(article(trigger=trigger)).re_entry == "always"


def test_allow_re_entry_at_the_top_level() -> None:
    assert load(article(allow_re_entry=True)).re_entry == "always"
    assert load(article(allow_re_entry=False)).re_entry == "never"


# --- email and wait steps --------------------------------------------------------------


def test_email_step() -> None:
    config = {
        "template_id": "cart",
        "subject_template": "You left something",
        "content_template": "cart.html",
        "content_type": "abandoned_cart",
    }
    mail = only_step(step("cart_email", "email", **config))
    assert isinstance(mail, EmailStep)
    assert mail.email.template == "cart"
    assert mail.email.subject == "You left something"
    assert mail.email.content == "abandoned_cart"


def test_email_step_subject_only_and_unknown_content_type() -> None:
    mail = only_step(step("m", "email", subject_template="Hi", content_type="newsletter"))
    assert isinstance(mail, EmailStep)
    assert mail.email.template is None
    assert mail.email.subject == "Hi"
    assert mail.email.content is None


def test_email_step_needs_something_to_send() -> None:
    with pytest.raises(ValueError, match="'blank_email'"):
        translate_article(article(step("blank_email", "email", content_template="x.html")))


@pytest.mark.parametrize(
    ("config", "duration"),
    [
        ({}, timedelta(hours=1)),
        ({"type": "duration"}, timedelta(hours=1)),
        ({"duration_seconds": 90}, timedelta(seconds=90)),
        ({"duration_seconds": 86400 * 3 + 3600}, timedelta(days=3, hours=1)),
    ],
)
def test_wait_duration(config: dict[str, Any], duration: timedelta) -> None:
    wait = only_step(step("pause", "wait", **config))
    assert isinstance(wait, WaitStep)
    assert wait.wait.duration == duration


@pytest.mark.parametrize("seconds", [0, -5, "1h", None])
def test_wait_duration_must_be_positive(seconds: Any) -> None:
    with pytest.raises(ValueError, match=r"'pause'.*duration_seconds"):
        translate_article(article(step("pause", "wait", duration_seconds=seconds)))


@pytest.mark.parametrize(
    ("target", "until"),
    [
        ("2025-12-24T18:00:00", datetime(2025, 12, 24, 18, tzinfo=UTC)),
        ("2025-12-24T18:00:00Z", datetime(2025, 12, 24, 18, tzinfo=UTC)),
        ("2025-12-24T18:00:00+01:00", datetime(2025, 12, 24, 17, tzinfo=UTC)),
    ],
)
def test_wait_until_date_time(target: str, until: datetime) -> None:
    wait = only_step(step("xmas", "wait", type="until_time", target_time=target))
    assert isinstance(wait, WaitStep)
    assert wait.wait.until == until


@pytest.mark.parametrize(("target", "clock"), [("09:30", time(9, 30)), ("7:05", time(7, 5))])
def test_wait_until_time_of_day(target: str, clock: time) -> None:
    wait = only_step(step("morning", "wait", type="until_time", target_time=target))
    assert isinstance(wait, WaitStep)
    assert wait.wait.until_time == clock
    assert wait.wait.until is None


@pytest.mark.parametrize("target", ["tomorrow", "25:00", None])
def test_wait_until_bad_target(target: Any) -> None:
    with pytest.raises(ValueError, match=r"'later'.*target_time"):
        translate_article(article(step("later", "wait", type="until_time", target_time=target)))


def test_wait_business_hours_defaults() -> None:
    wait = only_step(step("office", "wait", type="business_hours"))
    assert isinstance(wait, WaitStep)
    assert wait.wait.business_hours is not None
    assert (wait.wait.business_hours.start, wait.wait.business_hours.end) == (9, 17)
    assert wait.wait.timezone is None


def test_wait_business_hours_with_time_zone() -> None:
    config = {"business_hours": {"start": 8, "end": 18}, "timezone": "Europe/Paris"}
    wait = only_step(step("office", "wait", type="business_hours", **config))
    assert isinstance(wait, WaitStep)
    assert wait.wait.business_hours is not None
    assert (wait.wait.business_hours.start, wait.wait.business_hours.end) == (8, 18)
    assert wait.wait.timezone == "Europe/Paris"


def test_unknown_wait_type() -> None:
    with pytest.raises(ValueError, match=r"'snooze'.*forever"):
        translate_article(article(step("snooze", "wait", type="forever")))


# --- condition steps -----------------------------------------------------------------


def branch_of(config: dict[str, Any], *after: dict[str, Any]) -> BranchStep:
    workflow = load(article(step("check", "condition", **config), *after))
    check = workflow.step("check")
    assert isinstance(check, BranchStep)
    return check


@pytest.mark.parametrize(
    ("operator", "op"), [("equals", "eq"), ("greater_than", "gt"), ("in_list", "in")]
)
def test_user_attribute_condition(operator: str, op: str) -> None:
    value: Any = ["pro", "team"] if op == "in" else "pro"
    config = {
        "type": "user_attribute",
        "attribute": "plan",
        "operator": operator,
        "value": value,
        "true_step": "a",
        "false_step": "b",
    }
    translated = translate_article(
        article(step("check", "condition", **config), email("a"), email("b"))
    )
    assert translated["steps"][0]["branch"][0]["if"] == {"contact.plan": {operator: value}}
    check = branch_of(config, email("a"), email("b"))
    assert check.branch[0].if_ == Compare("contact.plan", op, value)
    assert (check.branch[0].then, check.branch[1].else_) == ("a", "b")


def test_user_attribute_condition_unknown_operator() -> None:
    config = {"type": "user_attribute", "attribute": "plan", "operator": "like", "value": "p"}
    with pytest.raises(ValueError, match=r"'check'.*like"):
        translate_article(article(step("check", "condition", **config), EMAIL))


def test_user_attribute_condition_needs_all_keys() -> None:
    config = {"type": "user_attribute", "attribute": "plan", "value": "pro"}
    with pytest.raises(ValueError, match=r"'check'.*operator"):
        translate_article(article(step("check", "condition", **config), EMAIL))


def test_event_history_condition_defaults() -> None:
    check = branch_of({"type": "event_history", "event_type": "email_clicked"}, EMAIL)
    assert check.branch[0].if_ == History("email_clicked", timedelta(days=7), 1, None, None)


def test_event_history_condition_explicit() -> None:
    config: dict[str, Any] = {"type": "event_history", "event_type": "purchase_completed"}
    config |= {"timeframe_days": 30, "min_count": 2}
    check = branch_of(config, EMAIL)
    assert check.branch[0].if_ == History("purchase_completed", timedelta(days=30), 2, None, None)


@pytest.mark.parametrize(("config", "threshold"), [({}, 0.5), ({"threshold": 0.8}, 0.8)])
def test_engagement_score_condition(config: dict[str, Any], threshold: float) -> None:
    check = branch_of({"type": "engagement_score", **config}, EMAIL)
    assert check.branch[0].if_ == Engagement("gte", threshold)


def test_missing_true_step_goes_to_the_next_step() -> None:
    check = branch_of({"type": "engagement_score", "false_step": "b"}, email("a"), email("b"))
    assert (check.branch[0].then, check.branch[1].else_) == ("a", "b")


def test_missing_false_step_goes_to_the_next_step() -> None:
    check = branch_of({"type": "engagement_score", "true_step": "b"}, email("a"), email("b"))
    assert (check.branch[0].then, check.branch[1].else_) == ("b", "a")


def test_missing_targets_of_the_last_step_end_the_run() -> None:
    workflow = load(article(EMAIL, step("check", "condition", type="engagement_score")))
    check = workflow.step("check")
    assert isinstance(check, BranchStep)
    assert (check.branch[0].then, check.branch[1].else_) == ("end", "end")


@pytest.mark.parametrize("kind", ["ab_test", None])
def test_unknown_condition_type(kind: Any) -> None:
    with pytest.raises(ValueError, match=r"'check'.*condition type"):
        translate_article(article(step("check", "condition", type=kind), EMAIL))


# --- branches never fall through into each other ---------------------------------------


def test_a_longer_branch_ends_before_the_other_target() -> None:
    config = {"type": "engagement_score", "true_step": "a1", "false_step": "b"}
    workflow = load(
        article(
            step("check", "condition", **config),
            email("a1"),
            step("a_wait", "wait", duration_seconds=60),
            email("a2"),
            email("b"),
            email("b2"),
        )
    )
    assert [s.next for s in workflow.steps] == [None, None, None, "end", None, None]


def test_a_branch_that_already_jumps_is_left_alone() -> None:
    config = {"type": "engagement_score", "true_step": "a", "false_step": "b"}
    workflow = load(
        article(
            step("check", "condition", **config),
            email("a", next_steps=["done"]),
            email("b"),
            email("done"),
        )
    )
    assert workflow.step("a").next == "done"
    assert workflow.step("b").next is None


def test_the_implicit_target_stops_before_the_explicit_one() -> None:
    config = {"type": "engagement_score", "false_step": "b"}
    workflow = load(article(step("check", "condition", **config), email("a"), email("b")))
    assert workflow.step("a").next == "end"


def test_a_branch_reaching_another_condition_is_left_alone() -> None:
    outer = {"type": "engagement_score", "true_step": "a", "false_step": "b"}
    workflow = load(
        article(
            step("check", "condition", **outer),
            email("a"),
            step("inner", "condition", type="engagement_score"),
            email("b"),
        )
    )
    assert workflow.step("a").next is None
    # The inner condition's own targets are b (next in list) for both cases.
    assert workflow.step("b").next is None


# --- action steps --------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"action": "update_attributes", "attributes": {"plan": "pro", "score": 3}},
        {"type": "set_attributes", "attributes": {"plan": "pro", "score": 3}},
    ],
)
def test_update_attributes(config: dict[str, Any]) -> None:
    update = only_step(step("upgrade", "action", **config))
    assert isinstance(update, UpdateStep)
    assert update.update == {"plan": "pro", "score": 3}


@pytest.mark.parametrize("name", ["update_attribute", "set_attribute"])
def test_update_one_attribute(name: str) -> None:
    update = only_step(step("upgrade", "action", action=name, attribute="plan", value="pro"))
    assert isinstance(update, UpdateStep)
    assert update.update == {"plan": "pro"}


def test_update_needs_attributes() -> None:
    with pytest.raises(ValueError, match=r"'upgrade'.*attribute"):
        translate_article(article(step("upgrade", "action", action="update_attribute")))


@pytest.mark.parametrize(
    ("config", "tags"),
    [
        ({"action": "add_tag", "tag": "vip"}, "vip"),
        ({"action": "tag", "tags": ["vip", "buyer"]}, ("vip", "buyer")),
    ],
)
def test_add_tag(config: dict[str, Any], tags: Any) -> None:
    tag = only_step(step("mark", "action", **config))
    assert isinstance(tag, TagStep)
    assert tag.tag == tags


@pytest.mark.parametrize("name", ["remove_tag", "untag"])
def test_remove_tag(name: str) -> None:
    untag = only_step(step("unmark", "action", action=name, tag="trial"))
    assert isinstance(untag, UntagStep)
    assert untag.untag == "trial"


def test_tag_needs_a_tag() -> None:
    with pytest.raises(ValueError, match=r"'mark'.*tag"):
        translate_article(article(step("mark", "action", action="add_tag")))


def test_webhook() -> None:
    config = {"url": "https://example.com/hook", "method": "put", "body": {"a": 1}}
    hook = only_step(step("notify", "action", action="webhook", **config))
    assert isinstance(hook, WebhookStep)
    assert hook.webhook.url == "https://example.com/hook"
    assert hook.webhook.method == "PUT"
    assert hook.webhook.body == {"a": 1}


def test_webhook_defaults_and_needs_a_url() -> None:
    hook = only_step(step("notify", "action", type="webhook", url="https://example.com"))
    assert isinstance(hook, WebhookStep)
    assert hook.webhook.method == "POST"
    with pytest.raises(ValueError, match=r"'notify'.*url"):
        translate_article(article(step("notify", "action", action="webhook")))


@pytest.mark.parametrize("name", ["enroll", "start_workflow"])
def test_enroll(name: str) -> None:
    enroll = only_step(step("handoff", "action", action=name, workflow_id="nurture"))
    assert isinstance(enroll, EnrollStep)
    assert enroll.enroll == "nurture"


def test_enroll_needs_a_workflow() -> None:
    with pytest.raises(ValueError, match=r"'handoff'.*workflow_id"):
        translate_article(article(step("handoff", "action", action="enroll")))


@pytest.mark.parametrize("name", ["exit", "end"])
def test_exit(name: str) -> None:
    leave = only_step(step("stop", "action", action=name))
    assert isinstance(leave, ExitStep)
    assert leave.exit is True


@pytest.mark.parametrize("config", [{"action": "send_sms"}, {}])
def test_unknown_action(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"'sms'.*unknown action"):
        translate_article(article(step("sms", "action", **config)))


# --- next_steps and structural errors ------------------------------------------------


def test_next_steps_becomes_next() -> None:
    workflow = load(article(email("a", next_steps=["c"]), email("b"), email("c")))
    assert workflow.step("a").next == "c"
    assert workflow.step("b").next is None


def test_more_than_one_next_step() -> None:
    with pytest.raises(ValueError, match=r"'a'.*next_steps"):
        translate_article(article(email("a", next_steps=["b", "c"]), email("b"), email("c")))


def test_unknown_target() -> None:
    with pytest.raises(ValueError, match=r"'a'.*'nowhere'"):
        translate_article(article(email("a", next_steps=["nowhere"])))
    config = {"type": "engagement_score", "true_step": "missing"}
    with pytest.raises(ValueError, match=r"'check'.*'missing'"):
        translate_article(article(step("check", "condition", **config), EMAIL))


def test_unknown_step_type() -> None:
    with pytest.raises(ValueError, match=r"'texting'.*step_type 'sms'"):
        translate_article(article(EMAIL, step("texting", "sms", text="hi")))


def test_duplicate_step_ids() -> None:
    with pytest.raises(ValueError, match=r"'a'.*more than once"):
        translate_article(article(email("a"), email("a")))


@pytest.mark.parametrize("steps", [[], None, [{"step_type": "email"}], ["a"]])
def test_bad_step_lists(steps: Any) -> None:
    raw = article()
    raw["steps"] = steps
    with pytest.raises(ValueError, match="step"):
        translate_article(raw)
