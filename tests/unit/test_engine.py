"""The journey engine: every step, trigger and rule, through the simulator and directly."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmail.engine.catalog import StaticCatalog
from flowmail.engine.decisions import (
    CallWebhook,
    EnrollContact,
    Record,
    SaveRun,
    SendEmail,
    UpdateContact,
    Warn,
)
from flowmail.engine.journeys import Context, on_enroll, on_event, on_wake
from flowmail.engine.state import Contact, Event, ListHistory, Run, RunStatus
from flowmail.language.loader import parse_workflow
from flowmail.language.models import Workflow
from flowmail.simulate import Simulation, SimulationResult

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def flow(steps: list[dict[str, Any]], **extra: Any) -> Workflow:
    raw: dict[str, Any] = {"id": "wf", "trigger": {"event": "go"}, "steps": steps}
    raw.update(extra)
    return parse_workflow(raw)


def email(step_id: str, subject: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "email": {"subject": subject}, **extra}


class Sim:
    """A small wrapper to keep the tests short."""

    def __init__(self, *workflows: Workflow, **options: Any) -> None:
        self.sim = Simulation(workflows, start=T0, **options)

    def contact(self, contact_id: str, **attributes: Any) -> Sim:
        timezone = attributes.pop("timezone", None)
        address = attributes.pop("email", f"{contact_id}@example.com")
        self.sim.add_contact(contact_id, email=address, timezone=timezone, attributes=attributes)
        return self

    def track(
        self, contact_id: str, name: str, after: timedelta = timedelta(0), **props: Any
    ) -> Sim:
        self.sim.track(contact_id, name, at=T0 + after, properties=props)
        return self

    def identify(self, contact_id: str, after: timedelta = timedelta(0), **traits: Any) -> Sim:
        self.sim.identify(contact_id, traits, at=T0 + after)
        return self

    def run(self, days: float = 10) -> SimulationResult:
        return self.sim.run(until=T0 + timedelta(days=days))


def only_run(result: SimulationResult, contact: str = "u1", workflow: str = "wf") -> Run:
    (run,) = result.runs_of(contact, workflow)
    return run


def sent(result: SimulationResult, contact: str = "u1") -> list[tuple[str, datetime, str]]:
    return [(e.step, e.at, e.subject) for e in result.emails_to(contact)]


# --- email ------------------------------------------------------------------------------


def test_email_subject_is_rendered_with_liquid() -> None:
    workflow = flow(
        [
            email(
                "hello",
                "Hi {{ contact.first_name }} ({{ user.plan | upcase }}), "
                "{{ contact.nickname | default: 'friend' }}: cart {{ event.cart_id }}",
            )
        ]
    )
    result = (
        Sim(workflow)
        .contact("u1", first_name="Ana", plan="pro")
        .track("u1", "go", cart_id="c7")
        .run()
    )
    assert sent(result) == [("hello", T0, "Hi Ana (PRO), friend: cart c7")]
    assert result.emails[0].to == "u1@example.com"
    assert result.emails[0].workflow == "wf"
    assert result.warnings == []


def test_a_missing_variable_is_a_warning_not_a_failure() -> None:
    workflow = flow([email("hello", "Hi {{ contact.first_name }}!"), email("bye", "Bye")])
    result = Sim(workflow).contact("u1").track("u1", "go").run()
    assert {step: subject for step, _, subject in sent(result)} == {"hello": "Hi !", "bye": "Bye"}
    assert only_run(result).status == RunStatus.COMPLETED
    (warning,) = result.warnings
    assert "contact.first_name" in warning.message
    assert warning.step_id == "hello"


def test_a_template_only_email_is_simulated_with_a_warning() -> None:
    workflow = flow([{"id": "promo", "email": {"template": "not_written_yet"}}])
    result = Sim(workflow).contact("u1").track("u1", "go").run()
    assert [(e.step, e.template, e.subject) for e in result.emails] == [
        ("promo", "not_written_yet", "")
    ]
    assert only_run(result).status == RunStatus.COMPLETED
    assert any("not_written_yet" in w.message for w in result.warnings)


def test_a_contact_without_an_address_gets_no_email_and_a_warning() -> None:
    workflow = flow([email("hello"), {"id": "t", "tag": "reached"}])
    result = Sim(workflow).contact("u1", email=None).track("u1", "go").run()
    assert result.emails == []
    run = only_run(result)
    assert run.status == RunStatus.COMPLETED and run.path == ["hello", "t"]
    assert any("no email address" in w.message for w in result.warnings)


# --- wait and wait_for ------------------------------------------------------------------


def test_wait_durations() -> None:
    workflow = flow(
        [
            {"id": "a", "wait": "90m"},
            email("first"),
            {"id": "b", "wait": {"duration": "1h30m"}},
            email("second"),
            {"id": "c", "wait": "1w"},
            email("third"),
        ]
    )
    result = Sim(workflow).contact("u1").track("u1", "go").run(days=20)
    assert [(step, at) for step, at, _ in sent(result)] == [
        ("first", T0 + timedelta(minutes=90)),
        ("second", T0 + timedelta(minutes=180)),
        ("third", T0 + timedelta(minutes=180) + timedelta(weeks=1)),
    ]


def test_a_waiting_run_is_waiting_at_the_end_of_the_simulation() -> None:
    workflow = flow([{"id": "pause", "wait": "30d"}, email("later")])
    result = Sim(workflow).contact("u1").track("u1", "go").run(days=2)
    run = only_run(result)
    assert run.status == RunStatus.WAITING
    assert run.wake_at == T0 + timedelta(days=30)
    assert result.emails == []


CART_STEPS: list[dict[str, Any]] = [
    {
        "id": "wait_for_purchase",
        "wait_for": {"event": "purchase_completed", "timeout": "1h", "match": ["cart_id"]},
        "on_event": "thanks",
        "on_timeout": "reminder",
    },
    email("reminder", "You left cart {{ event.cart_id }}", next="end"),
    email("thanks", "Thanks for buying cart {{ event.cart_id }}"),
]


def test_wait_for_on_event() -> None:
    result = (
        Sim(flow(CART_STEPS))
        .contact("u1")
        .track("u1", "go", cart_id="c1")
        .track("u1", "purchase_completed", timedelta(minutes=30), cart_id="c1")
        .run()
    )
    assert sent(result) == [("thanks", T0 + timedelta(minutes=30), "Thanks for buying cart c1")]
    run = only_run(result)
    assert run.path == ["wait_for_purchase", "thanks"]
    assert run.status == RunStatus.COMPLETED


def test_wait_for_on_timeout() -> None:
    result = Sim(flow(CART_STEPS)).contact("u1").track("u1", "go", cart_id="c1").run()
    assert sent(result) == [("reminder", T0 + HOUR, "You left cart c1")]
    assert only_run(result).path == ["wait_for_purchase", "reminder"]


def test_wait_for_match_ignores_other_carts() -> None:
    result = (
        Sim(flow(CART_STEPS))
        .contact("u1")
        .track("u1", "go", cart_id="c1")
        .track("u1", "purchase_completed", timedelta(minutes=10), cart_id="c2")
        .track("u1", "purchase_completed", timedelta(minutes=20))
        .run()
    )
    assert sent(result) == [("reminder", T0 + HOUR, "You left cart c1")]
    result = (
        Sim(flow(CART_STEPS))
        .contact("u1")
        .track("u1", "go", cart_id="c1")
        .track("u1", "purchase_completed", timedelta(minutes=10), cart_id="c2")
        .track("u1", "purchase_completed", timedelta(minutes=50), cart_id="c1")
        .run()
    )
    assert [step for step, _, _ in sent(result)] == ["thanks"]


def test_wait_for_where_and_an_event_after_the_timeout() -> None:
    steps: list[dict[str, Any]] = [
        {
            "id": "big_order",
            "wait_for": {"event": "order", "timeout": "2h", "where": {"event.total": {"gte": 100}}},
            "on_event": "vip",
        },
        email("regular", next="end"),
        email("vip"),
    ]
    small_then_late = (
        Sim(flow(steps))
        .contact("u1")
        .track("u1", "go")
        .track("u1", "order", HOUR, total=20)
        .track("u1", "order", 3 * HOUR, total=500)
        .run()
    )
    assert [step for step, _, _ in sent(small_then_late)] == ["regular"]
    big = Sim(flow(steps)).contact("u1").track("u1", "go").track("u1", "order", HOUR, total=100)
    assert [step for step, _, _ in sent(big.run())] == ["vip"]


def test_wait_for_defaults_to_the_next_step_both_ways() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "w", "wait_for": {"event": "click", "timeout": "1d"}},
        email("after"),
    ]
    clicked = Sim(flow(steps)).contact("u1").track("u1", "go").track("u1", "click", HOUR).run()
    assert sent(clicked) == [("after", T0 + HOUR, "Hello")]
    timed_out = Sim(flow(steps)).contact("u1").track("u1", "go").run()
    assert sent(timed_out) == [("after", T0 + DAY, "Hello")]


# --- branch and split -------------------------------------------------------------------

BRANCH_STEPS: list[dict[str, Any]] = [
    {
        "id": "check",
        "branch": [
            {"if": {"contact.lifetime_value": {"gt": 1000}}, "then": "vip"},
            {"if": {"event.source": "ads"}, "then": "ads"},
            {"else": "standard"},
        ],
    },
    email("vip", next="end"),
    email("ads", next="end"),
    email("standard"),
]


@pytest.mark.parametrize(
    ("attributes", "props", "path"),
    [
        ({"lifetime_value": 5000}, {"source": "ads"}, ["check", "vip"]),
        ({"lifetime_value": 10}, {"source": "ads"}, ["check", "ads"]),
        ({}, {"source": "newsletter"}, ["check", "standard"]),
    ],
)
def test_branch_takes_the_first_matching_case(
    attributes: dict[str, Any], props: dict[str, Any], path: list[str]
) -> None:
    result = Sim(flow(BRANCH_STEPS)).contact("u1", **attributes).track("u1", "go", **props).run()
    assert only_run(result).path == path
    assert [step for step, _, _ in sent(result)] == [path[-1]]


SPLIT_STEPS: list[dict[str, Any]] = [
    {
        "id": "ab",
        "split": [
            {"weight": 50, "then": "a"},
            {"weight": 30, "then": "b"},
            {"weight": 20, "then": "end"},
        ],
    },
    email("a", "Variant A", next="end"),
    email("b", "Variant B"),
]


def split_population(count: int, **extra: Any) -> SimulationResult:
    sim = Sim(flow(SPLIT_STEPS, **extra))
    for index in range(count):
        sim.contact(f"c{index}").track(f"c{index}", "go")
    return sim.run(days=1)


def test_split_is_roughly_proportional_over_1000_contacts() -> None:
    result = split_population(1000)
    chosen = Counter(run.variants["ab"] for run in result.runs)
    assert sum(chosen.values()) == 1000
    assert 440 <= chosen["a"] <= 560
    assert 240 <= chosen["b"] <= 360
    assert 140 <= chosen["end"] <= 260
    emails = Counter(e.step for e in result.emails)
    assert emails == {"a": chosen["a"], "b": chosen["b"]}
    for run in result.runs:
        assert run.path == ["ab"] + ([] if run.variants["ab"] == "end" else [run.variants["ab"]])


def test_split_is_deterministic_per_contact() -> None:
    first = split_population(200)
    again = split_population(200)
    assert [r.variants for r in first.runs] == [r.variants for r in again.runs]
    # the same contact gets the same variant every time it passes the split
    sim = Sim(flow(SPLIT_STEPS, re_entry="always")).contact("c1")
    for day in range(5):
        sim.track("c1", "go", day * DAY)
    runs = sim.run().runs_of("c1")
    assert len(runs) == 5
    assert len({run.variants["ab"] for run in runs}) == 1


# --- update, tag, untag, webhook, enroll, exit ---------------------------------------------


def test_update_sets_attributes_with_templates() -> None:
    workflow = flow(
        [
            {
                "id": "set",
                "update": {
                    "greeting": "Hello {{ contact.first_name }}",
                    "score": 5,
                    "last_cart": "{{ event.cart_id }}",
                    "profile": {"source": "{{ event.source | default: 'unknown' }}"},
                    "plan": "pro",
                },
            },
            {
                "id": "check",
                "branch": [{"if": {"contact.plan": "pro"}, "then": "pro"}, {"else": "end"}],
            },
            email("pro", "{{ contact.greeting }}, welcome to {{ contact.plan }}"),
        ]
    )
    result = Sim(workflow).contact("u1", first_name="Ana").track("u1", "go", cart_id="c3").run()
    assert result.contacts["u1"].attributes == {
        "first_name": "Ana",
        "greeting": "Hello Ana",
        "score": 5,
        "last_cart": "c3",
        "profile": {"source": "unknown"},
        "plan": "pro",
    }
    assert [subject for _, _, subject in sent(result)] == ["Hello Ana, welcome to pro"]


def test_tag_and_untag() -> None:
    workflow = flow(
        [
            {"id": "t1", "tag": ["vip", "new"]},
            {"id": "t2", "tag": "vip"},
            {"id": "u", "untag": ["new", "never_had"]},
        ]
    )
    result = Sim(workflow).contact("u1", tags=["old"]).track("u1", "go").run()
    assert result.contacts["u1"].attributes["tags"] == ["old", "vip"]
    assert only_run(result).path == ["t1", "t2", "u"]


def test_webhook_is_a_decision_with_a_rendered_body() -> None:
    workflow = flow(
        [
            {
                "id": "notify",
                "webhook": {
                    "url": "https://crm.example.com/hook",
                    "method": "PUT",
                    "headers": {"X-Token": "abc"},
                    "body": {"contact": "{{ contact.id }}", "cart": "{{ event.cart_id }}", "n": 2},
                },
            }
        ]
    )
    result = Sim(workflow).contact("u1").track("u1", "go", HOUR, cart_id="c9").run()
    (hook,) = result.webhooks
    assert isinstance(hook, CallWebhook)
    assert (hook.url, hook.method, hook.headers) == (
        "https://crm.example.com/hook",
        "PUT",
        {"X-Token": "abc"},
    )
    assert hook.body == {"contact": "u1", "cart": "c9", "n": 2}
    assert hook.at == T0 + HOUR and hook.step_id == "notify"
    assert hook.key and hook.run_id == only_run(result).id


def test_enroll_starts_a_run_of_another_workflow() -> None:
    first = flow([{"id": "hand_over", "enroll": "second"}, email("bye", "Bye from first")])
    second = parse_workflow(
        {
            "id": "second",
            "trigger": {"event": "never_sent"},
            "steps": [email("hi", "Hi from second, trigger {{ event.name }}")],
        }
    )
    result = Sim(first, second).contact("u1").track("u1", "go").run()
    assert only_run(result, workflow="wf").path == ["hand_over", "bye"]
    enrolled = only_run(result, workflow="second")
    assert enrolled.path == ["hi"] and enrolled.status == RunStatus.COMPLETED
    assert enrolled.trigger.name == "go"
    assert sorted(subject for _, _, subject in sent(result)) == [
        "Bye from first",
        "Hi from second, trigger go",
    ]


def test_enroll_respects_the_targets_re_entry_and_warns_on_unknown_workflows() -> None:
    first = flow([{"id": "hand_over", "enroll": "second"}], re_entry="always")
    second = parse_workflow(
        {"id": "second", "trigger": {"event": "x"}, "steps": [{"id": "p", "wait": "30d"}]}
    )
    result = Sim(first, second).contact("u1").track("u1", "go").track("u1", "go", DAY).run()
    assert len(result.runs_of("u1", "wf")) == 2
    assert len(result.runs_of("u1", "second")) == 1  # never two active runs

    lonely = flow([{"id": "hand_over", "enroll": "ghost"}])
    result = Sim(lonely).contact("u1").track("u1", "go").run()
    assert only_run(result).status == RunStatus.COMPLETED
    assert any("ghost" in w.message for w in result.warnings)


def test_exit_ends_the_run() -> None:
    workflow = flow(
        [
            {
                "id": "check",
                "branch": [
                    {"if": {"contact.unsubscribed": True}, "then": "stop"},
                    {"else": "go_on"},
                ],
            },
            {"id": "stop", "exit": True},
            email("go_on"),
        ]
    )
    result = (
        Sim(workflow)
        .contact("u1", unsubscribed=True)
        .contact("u2")
        .track("u1", "go")
        .track("u2", "go")
        .run()
    )
    stopped = only_run(result, "u1")
    assert (stopped.status, stopped.reason, stopped.path) == (
        RunStatus.EXITED,
        "exit step",
        ["check", "stop"],
    )
    assert result.emails_to("u1") == []
    assert only_run(result, "u2").path == ["check", "go_on"]


# --- triggers ---------------------------------------------------------------------------


def test_event_trigger_with_where() -> None:
    workflow = flow(
        [email("hello")], trigger={"event": "cart_abandoned", "where": {"event.total": {"gte": 20}}}
    )
    result = (
        Sim(workflow)
        .contact("small")
        .contact("big")
        .contact("other")
        .track("small", "cart_abandoned", total=19.99)
        .track("big", "cart_abandoned", total=20)
        .track("other", "cart_updated", total=500)
        .run()
    )
    assert [run.contact_id for run in result.runs] == ["big"]
    assert result.runs[0].trigger.properties == {"total": 20}


def test_behavior_trigger_enrols_on_the_nth_event_within_the_window() -> None:
    workflow = flow(
        [email("fan", "You love us")],
        trigger={"behavior": {"event": "email_opened", "count": 3, "within": "7d"}},
    )
    sim = Sim(workflow).contact("u1").contact("u2")
    for day in (0, 1, 9, 10, 11):
        sim.track("u1", "email_opened", day * DAY)
    for day in (0, 8, 16):
        sim.track("u2", "email_opened", day * DAY)
    result = sim.run(days=30)
    assert sent(result, "u1") == [("fan", T0 + 11 * DAY, "You love us")]
    assert result.runs_of("u2") == []


def test_behavior_trigger_where_filters_the_counted_events() -> None:
    workflow = flow(
        [email("big_spender")],
        trigger={
            "behavior": {
                "event": "purchase",
                "count": 2,
                "within": "30d",
                "where": {"event.total": {"gt": 100}},
            }
        },
    )
    sim = Sim(workflow).contact("u1")
    sim.track("u1", "purchase", DAY, total=500).track("u1", "purchase", 2 * DAY, total=5)
    sim.track("u1", "purchase", 3 * DAY, total=150)
    result = sim.run(days=10)
    assert [at for _, at, _ in sent(result)] == [T0 + 3 * DAY]


def test_attribute_trigger_fires_when_identify_changes_it_to_the_value() -> None:
    workflow = flow(
        [email("upgraded", "Welcome to {{ contact.plan }}")],
        trigger={"attribute": {"name": "plan", "becomes": "pro"}},
        re_entry="always",
    )
    result = (
        Sim(workflow)
        .contact("u1", plan="free")
        .contact("u2", plan="pro")
        .identify("u1", HOUR, plan="pro")
        .identify("u1", 2 * HOUR, plan="pro")  # no change: no new run
        .identify("u1", 3 * HOUR, city="Lyon")  # plan not in this call
        .identify("u1", 4 * HOUR, plan="free")
        .identify("u1", 5 * HOUR, plan="pro")
        .identify("u2", HOUR, plan="pro")  # was pro already
        .run()
    )
    assert [at for _, at, _ in sent(result, "u1")] == [T0 + HOUR, T0 + 5 * HOUR]
    assert sent(result, "u1")[0][2] == "Welcome to pro"
    assert result.runs_of("u2") == []
    assert result.contacts["u1"].attributes == {"plan": "pro", "city": "Lyon"}


def test_schedule_cron_with_where() -> None:
    workflow = flow(
        [email("digest")],
        trigger={"schedule": {"cron": "0 8 * * *", "where": {"contact.digest": True}}},
        re_entry="always",
    )
    result = Sim(workflow).contact("yes", digest=True).contact("no", digest=False).run(days=3)
    assert [at for _, at, _ in sent(result, "yes")] == [
        T0 + 23 * HOUR,
        T0 + 47 * HOUR,
        T0 + 71 * HOUR,
    ]
    assert result.emails_to("no") == []
    assert all(run.trigger.name == "schedule" for run in result.runs)


def test_schedule_at_is_a_one_off_broadcast() -> None:
    workflow = flow(
        [email("news", "Big news")],
        trigger={"schedule": {"at": "2025-09-02T15:00:00+02:00", "where": {"contact.plan": "pro"}}},
        re_entry="always",
    )
    result = (
        Sim(workflow).contact("pro1", plan="pro").contact("pro2", plan="pro").contact("free").run()
    )
    assert sorted((e.contact, e.at) for e in result.emails) == [
        ("pro1", datetime(2025, 9, 2, 13, tzinfo=UTC)),
        ("pro2", datetime(2025, 9, 2, 13, tzinfo=UTC)),
    ]


# --- re-entry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("re_entry", "hours_sent"),
    [
        ("never", [0]),
        ("always", [0, 25, 48, 49, 100]),
        # {after: 2d} counts from the start of the last run: 48h after 0, 52h after 48
        ({"after": "2d"}, [0, 48, 100]),
    ],
)
def test_re_entry(re_entry: object, hours_sent: list[int]) -> None:
    workflow = flow([email("hello")], re_entry=re_entry)
    sim = Sim(workflow).contact("u1")
    for hours in (0, 25, 48, 49, 100):
        sim.track("u1", "go", hours * HOUR)
    result = sim.run()
    assert [at for _, at, _ in sent(result)] == [T0 + h * HOUR for h in hours_sent]
    assert len(result.runs_of("u1")) == len(hours_sent)


def test_never_two_active_runs() -> None:
    workflow = flow([{"id": "pause", "wait": "2d"}, email("hello")], re_entry="always")
    sim = Sim(workflow).contact("u1")
    for hours in (0, 1, 47, 49):
        sim.track("u1", "go", hours * HOUR)
    result = sim.run()
    runs = result.runs_of("u1")
    assert [run.started_at for run in runs] == [T0, T0 + 49 * HOUR]
    assert [at for _, at, _ in sent(result)] == [T0 + 48 * HOUR, T0 + 97 * HOUR]


# --- goals and exits --------------------------------------------------------------------

GOAL_STEPS: list[dict[str, Any]] = [
    email("first"),
    {"id": "pause", "wait": "2d"},
    email("second"),
    {"id": "w", "wait_for": {"event": "reply", "timeout": "3d"}},
    email("third"),
]


def test_a_goal_event_interrupts_a_wait() -> None:
    workflow = flow(GOAL_STEPS, goal={"event": "purchase", "where": {"event.total": {"gt": 0}}})
    result = (
        Sim(workflow)
        .contact("u1")
        .track("u1", "go")
        .track("u1", "purchase", HOUR, total=0)  # does not meet the goal's where
        .track("u1", "purchase", DAY, total=10)
        .run()
    )
    run = only_run(result)
    assert run.status == RunStatus.CONVERTED
    assert run.ended_at == T0 + DAY
    assert run.reason == "goal: purchase"
    assert [step for step, _, _ in sent(result)] == ["first"]
    assert run.path == ["first", "pause"]


def test_exit_when_interrupts_a_wait_for() -> None:
    workflow = flow(GOAL_STEPS, exit_when={"event": "unsubscribed"})
    result = (
        Sim(workflow).contact("u1").track("u1", "go").track("u1", "unsubscribed", 3 * DAY).run()
    )
    run = only_run(result)
    assert (run.status, run.ended_at) == (RunStatus.EXITED, T0 + 3 * DAY)
    assert run.path == ["first", "pause", "second", "w"]
    assert [step for step, _, _ in sent(result)] == ["first", "second"]
    assert run.wake_at is None and run.waiting_for is None


def test_a_goal_on_the_contact_is_checked_on_identify_and_before_each_step() -> None:
    workflow = flow(GOAL_STEPS, goal={"contact.plan": "pro"})
    by_identify = (
        Sim(workflow).contact("u1").track("u1", "go").identify("u1", DAY, plan="pro").run()
    )
    run = only_run(by_identify)
    assert (run.status, run.ended_at) == (RunStatus.CONVERTED, T0 + DAY)
    assert [step for step, _, _ in sent(by_identify)] == ["first"]
    already = Sim(workflow).contact("u1", plan="pro").track("u1", "go").run()
    assert only_run(already).status == RunStatus.CONVERTED
    assert already.emails == []


def test_unrelated_events_do_not_end_a_run() -> None:
    workflow = flow(GOAL_STEPS, goal={"event": "purchase"}, exit_when={"event": "unsubscribed"})
    result = (
        Sim(workflow)
        .contact("u1")
        .track("u1", "go")
        .track("u1", "page_viewed", HOUR)
        .track("u1", "reply", DAY)  # not yet waited for: ignored
        .run()
    )
    run = only_run(result)
    assert run.status == RunStatus.COMPLETED
    assert [step for step, _, _ in sent(result)] == ["first", "second", "third"]


# --- holdout ----------------------------------------------------------------------------


def test_holdout_share_gets_no_emails_but_runs_the_path() -> None:
    workflow = flow(
        [email("hello"), {"id": "pause", "wait": "1d"}, email("again"), {"id": "t", "tag": "done"}],
        holdout="10%",
    )
    sim = Sim(workflow)
    for index in range(1000):
        sim.contact(f"c{index}").track(f"c{index}", "go")
    result = sim.run(days=3)
    held = {run.contact_id for run in result.runs if run.holdout}
    assert 60 <= len(held) <= 140
    assert all(run.path == ["hello", "pause", "again", "t"] for run in result.runs)
    assert all(run.status == RunStatus.COMPLETED for run in result.runs)
    receivers = {e.contact for e in result.emails}
    assert receivers.isdisjoint(held)
    assert len(receivers) == 1000 - len(held)
    assert len(result.emails) == 2 * (1000 - len(held))
    assert all(result.contacts[c].attributes["tags"] == ["done"] for c in held)
    held_records = [r for r in result.timeline if r.action == "email" and r.detail.get("held_out")]
    assert len(held_records) == 2 * len(held)


def test_no_holdout_by_default() -> None:
    sim = Sim(flow([email("hello")]))
    for index in range(200):
        sim.contact(f"c{index}").track(f"c{index}", "go")
    result = sim.run(days=1)
    assert not any(run.holdout for run in result.runs)
    assert len(result.emails) == 200


# --- purity: the engine as a function ---------------------------------------------------


def context(workflows: list[Workflow], now: datetime, history: list[Event]) -> Context:
    return Context(now, ListHistory(history), StaticCatalog(workflows))


def test_on_event_is_pure_and_repeatable() -> None:
    workflow = flow(
        [email("hello", "Hi {{ contact.first_name }}"), {"id": "pause", "wait": "1d"}, email("bye")]
    )
    contact = Contact("u1", "u1@example.com", None, {"first_name": "Ana"})
    now = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)  # far from the wall clock
    trigger = Event("u1", "go", now, {"cart_id": "c1"})
    first = on_event(contact, [], trigger, context([workflow], now, [trigger]))
    second = on_event(contact, [], trigger, context([workflow], now, [trigger]))
    assert first == second
    assert contact.attributes == {"first_name": "Ana"}

    kinds = [type(d).__name__ for d in first]
    assert kinds == ["Record", "SendEmail", "Record", "Record", "SaveRun"]
    actions = [d.action for d in first if isinstance(d, Record)]
    assert actions == ["enrolled", "email", "wait"]
    mail = next(d for d in first if isinstance(d, SendEmail))
    assert (mail.at, mail.to, mail.subject, mail.step_id) == (
        now,
        "u1@example.com",
        "Hi Ana",
        "hello",
    )
    saved = next(d for d in first if isinstance(d, SaveRun))
    assert saved.new is True
    assert saved.run.status == RunStatus.WAITING and saved.run.wake_at == now + DAY
    assert all(dataclasses.is_dataclass(d) for d in first)


def test_on_wake_continues_and_does_not_touch_its_input() -> None:
    workflow = flow([email("hello"), {"id": "pause", "wait": "1d"}, email("bye")])
    contact = Contact("u1", "u1@example.com")
    start = datetime(2001, 2, 3, tzinfo=UTC)
    trigger = Event("u1", "go", start)
    decisions = on_event(contact, [], trigger, context([workflow], start, [trigger]))
    run = next(d.run for d in decisions if isinstance(d, SaveRun))
    snapshot = run.to_dict()

    early = on_wake(contact, run, context([workflow], start + HOUR, [trigger]))
    assert early == []  # the timer is not due: nothing happens

    later = start + DAY
    woken = on_wake(contact, run, context([workflow], later, [trigger]))
    assert run.to_dict() == snapshot
    mails = [d for d in woken if isinstance(d, SendEmail)]
    assert [(m.step_id, m.at) for m in mails] == [("bye", later)]
    final = [d for d in woken if isinstance(d, SaveRun)][-1].run
    assert final.status == RunStatus.COMPLETED and final.path == ["hello", "pause", "bye"]
    assert final.id == run.id
    assert woken == on_wake(contact, run, context([workflow], later, [trigger]))
    # a stale wake for a run that already moved on does nothing
    assert on_wake(contact, final, context([workflow], later + DAY, [trigger])) == []


def test_on_event_decides_every_kind_of_side_effect_as_data() -> None:
    workflow = flow(
        [
            {"id": "set", "update": {"plan": "pro"}},
            {"id": "t", "tag": "vip"},
            {"id": "hook", "webhook": {"url": "https://x.example.com"}},
            {"id": "hand_over", "enroll": "other"},
            email("hello", "{{ contact.missing }}"),
        ]
    )
    contact = Contact("u1", "u1@example.com")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    trigger = Event("u1", "go", now)
    decisions = on_event(contact, [], trigger, context([workflow], now, [trigger]))
    types = {type(d) for d in decisions}
    assert types == {UpdateContact, CallWebhook, EnrollContact, SendEmail, Warn, Record, SaveRun}
    updates = [d.values for d in decisions if isinstance(d, UpdateContact)]
    assert updates == [{"plan": "pro"}, {"tags": ["vip"]}]
    (enrol,) = [d for d in decisions if isinstance(d, EnrollContact)]
    assert (enrol.workflow_id, enrol.trigger, enrol.at) == ("other", trigger, now)
    assert all(r.at == now for r in decisions if isinstance(r, Record))


def test_an_event_while_waiting_for_it_continues_the_given_run() -> None:
    workflow = flow(CART_STEPS)
    contact = Contact("u1", "u1@example.com")
    trigger = Event("u1", "go", T0, {"cart_id": "c1"})
    decisions = on_event(contact, [], trigger, context([workflow], T0, [trigger]))
    run = next(d.run for d in decisions if isinstance(d, SaveRun))
    assert (run.status, run.waiting_for) == (RunStatus.WAITING, "purchase_completed")

    other_cart = Event("u1", "purchase_completed", T0 + HOUR / 2, {"cart_id": "c2"})
    ignored = on_event(contact, [run], other_cart, context([workflow], other_cart.at, []))
    assert not any(isinstance(d, (SaveRun, SendEmail)) for d in ignored)

    bought = Event("u1", "purchase_completed", T0 + HOUR / 2, {"cart_id": "c1"})
    done = on_event(contact, [run], bought, context([workflow], bought.at, []))
    final = [d.run for d in done if isinstance(d, SaveRun)]
    assert len(final) == 1 and final[0].path == ["wait_for_purchase", "thanks"]
    assert [d.step_id for d in done if isinstance(d, SendEmail)] == ["thanks"]
    assert run.status == RunStatus.WAITING  # the input run is untouched


def test_on_enroll_uses_the_given_trigger() -> None:
    target = parse_workflow(
        {"id": "other", "trigger": {"event": "x"}, "steps": [email("hi", "{{ event.name }}")]}
    )
    contact = Contact("u1", "u1@example.com")
    trigger = Event("u1", "signed_up", T0)
    decisions = on_enroll(contact, [], "other", trigger, context([target], T0, []))
    (mail,) = [d for d in decisions if isinstance(d, SendEmail)]
    assert mail.subject == "signed_up"


def test_the_simulation_is_reproducible() -> None:
    def once() -> dict[str, Any]:
        workflow = flow(SPLIT_STEPS, holdout="20%")
        sim = Sim(workflow)
        for index in range(50):
            sim.contact(f"c{index}").track(f"c{index}", "go", index * timedelta(minutes=7))
        return sim.run().to_json()

    assert once() == once()
