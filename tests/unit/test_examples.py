"""The bundled examples: every workflow validates and every scenario shows what it claims.

Each scenario in ``examples/`` is run through the simulator exactly as a user would
run it (``simulate_file``), and the tests pin down the behaviour its comments
describe: who gets which email, when (in UTC and in the contact's own zone), with
which rendered subject, and how each run ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from flowmail.cli import app
from flowmail.engine.state import Run, RunStatus
from flowmail.language.loader import load_workflow, parse_workflow
from flowmail.simulate import SimulationResult, simulate_file, simulate_scenario
from flowmail.simulate.scenario import load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = sorted(EXAMPLES.glob("*.scenario.yaml"))
WORKFLOW_FILES = sorted(
    [p for p in EXAMPLES.glob("*.yaml") if not p.name.endswith(".scenario.yaml")]
    + list(EXAMPLES.glob("*.json"))
)
EXPECTED_EXAMPLES = {
    "welcome_series",
    "cart_abandonment",
    "trial_ending",
    "re_engagement",
    "post_purchase",
}


# --- helpers -------------------------------------------------------------------------


@cache
def simulate(name: str) -> SimulationResult:
    """The result of ``examples/<name>.scenario.yaml`` (run once per test session)."""
    return simulate_file(EXAMPLES / f"{name}.scenario.yaml")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def sent(result: SimulationResult, contact: str) -> list[tuple[datetime, str, str]]:
    """(time, step, subject) of every email to ``contact``, in order."""
    return [(e.at, e.step, e.subject) for e in result.emails_to(contact)]


def only_run(result: SimulationResult, contact: str, workflow: str) -> Run:
    runs = result.runs_of(contact, workflow)
    assert len(runs) == 1, f"{contact} has {len(runs)} runs of {workflow}"
    return runs[0]


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


# --- every example ---------------------------------------------------------------------


def test_each_example_has_a_workflow_and_a_scenario() -> None:
    assert {p.name.removesuffix(".scenario.yaml") for p in SCENARIOS} == EXPECTED_EXAMPLES
    stems = {p.stem for p in WORKFLOW_FILES}
    assert stems == EXPECTED_EXAMPLES | {"welcome_series_article"}
    for scenario in SCENARIOS:
        raw = yaml.safe_load(scenario.read_text(encoding="utf-8"))
        assert raw["workflows"] == [scenario.name.replace(".scenario.yaml", ".yaml")]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_file_loads(path: Path) -> None:
    workflow = load_workflow(path)
    assert workflow.id
    assert workflow.name


def test_workflows_validate_on_the_command_line() -> None:
    result = CliRunner().invoke(app, ["workflows", "validate", *map(str, WORKFLOW_FILES)])
    assert result.exit_code == 0, result.output
    for path in WORKFLOW_FILES:
        assert f"✓ {path}" in result.stdout


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_is_deterministic_and_clean(path: Path) -> None:
    first, second = simulate_file(path), simulate_file(path)
    assert first.to_json() == second.to_json()
    assert json.dumps(first.to_json(), sort_keys=True) == json.dumps(
        second.to_json(), sort_keys=True
    )
    assert first.warnings == []
    assert first.emails, "an example that sends nothing shows nothing"
    assert all(run.status.ended for run in first.runs), "every run finishes before `until`"


def test_simulate_cli_prints_the_json_result() -> None:
    scenario = EXAMPLES / "welcome_series.scenario.yaml"
    result = CliRunner().invoke(app, ["simulate", str(scenario), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert list(printed) == ["emails", "runs", "contacts"]
    assert printed == simulate_file(scenario).to_json()
    assert printed["emails"][0] == {
        "at": "2025-09-01T10:00:00Z",
        "contact": "ana",
        "to": "ana@example.com",
        "workflow": "welcome_series",
        "step": "welcome_immediate",
        "subject": "Welcome Ana! Let's get started",
    }


def test_simulate_cli_timeline() -> None:
    result = CliRunner().invoke(app, ["simulate", str(EXAMPLES / "welcome_series.scenario.yaml")])
    assert result.exit_code == 0, result.output
    assert "6 email(s)" in result.stdout
    assert "Ready for advanced tips, Ana?" in result.stdout


# --- welcome series ----------------------------------------------------------------------

WELCOME_PATH = ["welcome_immediate", "wait_1_day", "educational_email_1", "check_engagement"]
EDUCATIONAL = "Here's how to get the most value from flowmail"


def test_welcome_engaged_contact_gets_the_engaged_path_only() -> None:
    result = simulate("welcome_series")
    assert sent(result, "ana") == [
        (utc("2025-09-01T10:00:00Z"), "welcome_immediate", "Welcome Ana! Let's get started"),
        (utc("2025-09-02T10:00:00Z"), "educational_email_1", EDUCATIONAL),
        (utc("2025-09-02T10:00:00Z"), "engaged_path_email", "Ready for advanced tips, Ana?"),
    ]
    run = only_run(result, "ana", "welcome_series")
    assert run.status == RunStatus.COMPLETED
    assert run.path == [*WELCOME_PATH, "engaged_path_email"]
    assert run.engaged == {"welcome_immediate": ["opened"]}


def test_welcome_unengaged_contact_gets_the_re_engagement_email() -> None:
    result = simulate("welcome_series")
    assert sent(result, "ben") == [
        (utc("2025-09-01T11:00:00Z"), "welcome_immediate", "Welcome Ben! Let's get started"),
        (utc("2025-09-02T11:00:00Z"), "educational_email_1", EDUCATIONAL),
        (
            utc("2025-09-02T11:00:00Z"),
            "re_engagement_email",
            "We miss you! Here's what you might have missed",
        ),
    ]
    run = only_run(result, "ben", "welcome_series")
    assert run.status == RunStatus.COMPLETED
    assert run.path == [*WELCOME_PATH, "re_engagement_email"]


def test_welcome_trigger_condition_keeps_other_sign_ups_out() -> None:
    result = simulate("welcome_series")
    assert result.runs_of("cleo") == []
    assert result.emails_to("cleo") == []
    assert [e.to for e in result.emails] == [
        "ana@example.com",
        "ben@example.com",
        "ana@example.com",
        "ana@example.com",
        "ben@example.com",
        "ben@example.com",
    ]


def test_welcome_article_json_is_the_same_journey() -> None:
    """The article's welcome_series_v1, loaded from JSON, behaves like our YAML version."""
    ours = load_workflow(EXAMPLES / "welcome_series.yaml")
    article = load_workflow(EXAMPLES / "welcome_series_article.json")
    assert article.id == "welcome_series_v1"
    assert [s.id for s in article.steps] == [s.id for s in ours.steps]
    assert article.trigger == ours.trigger
    assert article.step("check_engagement") == ours.step("check_engagement")
    assert article.step("engaged_path_email").next == "end"

    scenario, _ = load_scenario(EXAMPLES / "welcome_series.scenario.yaml")
    result = simulate_scenario(scenario, [article])
    assert [(e.contact, e.step) for e in result.emails] == [
        (e.contact, e.step) for e in simulate("welcome_series").emails
    ]
    # The article's educational subject uses {{product.name}}, which nobody defines:
    # a warning for each contact, and the subject renders with an empty name.
    assert [(w.step_id, "product" in w.message) for w in result.warnings] == [
        ("educational_email_1", True),
        ("educational_email_1", True),
    ]
    educational = [e.subject for e in result.emails if e.step == "educational_email_1"]
    assert educational == ["Here's how to get the most value from "] * 2


# --- cart abandonment --------------------------------------------------------------------


def test_cart_bought_within_the_hour_converts_without_email() -> None:
    result = simulate("cart_abandonment")
    run = only_run(result, "dana", "cart_abandonment")
    assert run.status == RunStatus.CONVERTED
    assert run.path == ["wait_for_purchase"]
    assert run.ended_at == utc("2025-09-02T09:40:00Z")
    assert result.emails_to("dana") == []


def test_cart_below_the_threshold_or_outside_hours_is_not_enrolled() -> None:
    result = simulate("cart_abandonment")
    assert result.runs_of("fay") == []  # cart_total 12.50 < 20
    assert result.runs_of("hana") == []  # 23:15 in Tokyo, outside 08:00-22:00
    assert local(utc("2025-09-02T14:15:00Z"), "Asia/Tokyo").hour == 23


def test_cart_vip_gets_reminder_then_vip_offer() -> None:
    result = simulate("cart_abandonment")
    assert sent(result, "gus") == [
        (utc("2025-09-02T17:00:00Z"), "reminder", "You left something, Gus"),
        (
            utc("2025-09-03T17:00:00Z"),
            "vip_offer",
            "Gus, your cart is waiting - with free express shipping",
        ),
    ]
    run = only_run(result, "gus", "cart_abandonment")
    assert run.status == RunStatus.COMPLETED
    assert run.path == ["wait_for_purchase", "reminder", "pause", "check_value", "vip_offer"]


ELI_EMAILS = [
    (utc("2025-09-02T15:00:00Z"), "reminder", "You left something, Eli"),
    (
        utc("2025-09-03T15:00:00Z"),
        "standard_offer",
        "Still thinking it over? Your cart of $45 is saved",
    ),
]
ELI_PATH = ["wait_for_purchase", "reminder", "pause", "check_value", "standard_offer"]


def test_cart_purchase_of_another_cart_still_gets_the_reminder() -> None:
    result = simulate("cart_abandonment")
    assert sent(result, "eli") == ELI_EMAILS
    run = only_run(result, "eli", "cart_abandonment")
    assert run.status == RunStatus.COMPLETED
    assert run.path == ELI_PATH


def test_cart_match_ignores_another_cart_when_there_is_no_goal() -> None:
    """wait_for's match works on its own; only the workflow goal short-circuits it."""
    raw = yaml.safe_load((EXAMPLES / "cart_abandonment.yaml").read_text(encoding="utf-8"))
    del raw["goal"]
    workflow = parse_workflow(raw, "cart_abandonment.yaml without its goal")
    scenario, _ = load_scenario(EXAMPLES / "cart_abandonment.scenario.yaml")
    result = simulate_scenario(scenario, [workflow])
    assert sent(result, "eli") == ELI_EMAILS
    assert only_run(result, "eli", "cart_abandonment").path == ELI_PATH
    dana = only_run(result, "dana", "cart_abandonment")
    assert (dana.status, dana.path) == (RunStatus.COMPLETED, ["wait_for_purchase"])
    assert result.emails_to("dana") == []


# --- trial ending ----------------------------------------------------------------------

THREE_DAYS = "{name}, your {plan} trial ends in 3 days"
TRIAL_PATH = ["three_days_left", "wait_a_day_and_a_half", "wait_until_ten", "last_day"]
LAST_DAY = "Last day of your trial, {name} - keep your projects"


@pytest.mark.parametrize(
    ("contact", "zone", "name", "plan"),
    [
        ("ivy", "America/New_York", "Ivy", "Pro"),
        ("jun", "Asia/Tokyo", "Jun", "Team"),
    ],
)
def test_trial_reminders_at_ten_local(contact: str, zone: str, name: str, plan: str) -> None:
    result = simulate("trial_ending")
    emails = result.emails_to(contact)
    assert [(e.step, e.subject) for e in emails] == [
        ("three_days_left", THREE_DAYS.format(name=name, plan=plan)),
        ("last_day", LAST_DAY.format(name=name)),
    ]
    local_times = [local(e.at, zone) for e in emails]
    assert [(t.date().isoformat(), t.time()) for t in local_times] == [
        ("2025-09-02", time(10)),
        ("2025-09-04", time(10)),
    ]
    run = only_run(result, contact, "trial_ending")
    assert run.status == RunStatus.COMPLETED
    assert run.path == TRIAL_PATH


def test_trial_same_day_is_different_instants_per_zone() -> None:
    result = simulate("trial_ending")
    first = {e.contact: e.at for e in result.emails if e.step == "three_days_left"}
    assert first == {
        "jun": utc("2025-09-02T01:00:00Z"),  # 10:00 in Tokyo
        "kai": utc("2025-09-02T10:00:00Z"),  # 10:00 in UTC, the workspace default
        "ivy": utc("2025-09-02T14:00:00Z"),  # 10:00 in New York
        "lea": utc("2025-09-09T08:00:00Z"),  # 10:00 in Berlin, after her extension
        "noa": utc("2025-11-01T14:00:00Z"),  # 10:00 in New York (EDT)
    }


def test_trial_subscription_exits_before_the_last_reminder() -> None:
    result = simulate("trial_ending")
    assert sent(result, "kai") == [
        (utc("2025-09-02T10:00:00Z"), "three_days_left", "Kai, your Pro trial ends in 3 days"),
    ]
    run = only_run(result, "kai", "trial_ending")
    assert run.status == RunStatus.EXITED
    assert run.reason == "exit_when: subscription_started"
    assert run.path == TRIAL_PATH[:2]
    assert run.ended_at == utc("2025-09-03T08:00:00Z")


def test_trial_extension_moves_the_reminders() -> None:
    result = simulate("trial_ending")
    assert [(local(e.at, "Europe/Berlin"), e.step) for e in result.emails_to("lea")] == [
        (datetime(2025, 9, 9, 10, tzinfo=ZoneInfo("Europe/Berlin")), "three_days_left"),
        (datetime(2025, 9, 11, 10, tzinfo=ZoneInfo("Europe/Berlin")), "last_day"),
    ]
    assert result.contacts["lea"].attributes["trial_ends_at"] == "2025-09-12"
    assert len(result.runs_of("lea")) == 1


def test_trial_reminders_stay_at_ten_local_across_the_end_of_dst() -> None:
    result = simulate("trial_ending")
    emails = result.emails_to("noa")
    assert [(e.at, e.step) for e in emails] == [
        (utc("2025-11-01T14:00:00Z"), "three_days_left"),  # 10:00 EDT (UTC-4)
        (utc("2025-11-03T15:00:00Z"), "last_day"),  # 10:00 EST (UTC-5), DST ended on 2 Nov
    ]
    new_york = ZoneInfo("America/New_York")
    assert [local(e.at, "America/New_York") for e in emails] == [
        datetime(2025, 11, 1, 10, tzinfo=new_york),
        datetime(2025, 11, 3, 10, tzinfo=new_york),
    ]
    assert only_run(result, "noa", "trial_ending").path == TRIAL_PATH


def test_trial_without_an_end_date_is_not_enrolled() -> None:
    result = simulate("trial_ending")
    assert result.runs_of("max") == []


# --- re-engagement -------------------------------------------------------------------

RE_ENGAGEMENT_STEPS = ["tag_re_engaged", "untag_dormant", "note_date", "next_morning"]


def test_re_engagement_high_score_gets_the_vip_invite_at_nine_local() -> None:
    result = simulate("re_engagement")
    run = only_run(result, "olga", "re_engagement")  # the fourth open starts nothing
    assert run.started_at == utc("2025-09-02T18:00:00Z")  # the third open
    assert run.status == RunStatus.COMPLETED
    assert run.path == [*RE_ENGAGEMENT_STEPS, "check_score", "vip_invite"]
    assert sent(result, "olga") == [
        (
            utc("2025-09-03T07:00:00Z"),
            "vip_invite",
            "Olga, you're one of our most engaged readers",
        )
    ]
    assert local(result.emails_to("olga")[0].at, "Europe/Madrid").time() == time(9)


def test_re_engagement_lower_score_gets_the_digest_offer() -> None:
    result = simulate("re_engagement")
    run = only_run(result, "pete", "re_engagement")
    assert run.started_at == utc("2025-09-07T15:00:00Z")  # 08:00 in Los Angeles
    assert run.path == [*RE_ENGAGEMENT_STEPS, "check_score", "digest_offer"]
    assert sent(result, "pete") == [
        (
            utc("2025-09-07T16:00:00Z"),
            "digest_offer",
            "Good to see you again, Pete - want a weekly digest?",
        )
    ]
    assert local(result.emails_to("pete")[0].at, "America/Los_Angeles").time() == time(9)


def test_re_engagement_tags_and_updates_the_contact() -> None:
    contacts = simulate("re_engagement").to_json()["contacts"]
    assert contacts["olga"] == {
        "first_name": "Olga",
        "tags": ["newsletter", "re_engaged"],
        "re_engaged_on": "2025-09-02",
        "re_engaged_by": "email_opened",
    }
    assert contacts["pete"]["tags"] == ["re_engaged"]
    assert contacts["pete"]["re_engaged_on"] == "2025-09-07"


def test_re_engagement_needs_three_opens_within_seven_days() -> None:
    result = simulate("re_engagement")
    for contact in ("quinn", "rosa"):
        assert result.runs_of(contact) == []
        assert result.contacts[contact].attributes["tags"] == ["dormant"]


# --- post-purchase -----------------------------------------------------------------------

VARIANTS = {
    "ava": "thanks_discount",
    "bo": "thanks_discount",
    "cy": "thanks_discount",
    "di": "thanks_discount",
    "gil": "thanks_discount",
    "ed": "thanks_plain",
    "flo": "thanks_plain",
    "hal": "thanks_plain",
    "ines": "thanks_plain",
}
ZONES = {
    "ava": "America/New_York",
    "bo": "Europe/London",
    "cy": "Asia/Tokyo",
    "di": "America/Los_Angeles",
    "ed": "Europe/Berlin",
    "flo": "UTC",
    "gil": "Australia/Sydney",
    "hal": "America/Sao_Paulo",
    "ines": "Europe/Madrid",
}
# The review request of each buyer's first run: three days on, then business hours.
REVIEWS = {
    "ava": ("2025-09-05T18:00:00Z", "How do you like your espresso machine, Ava?"),  # Fri 14:00
    "bo": ("2025-09-08T08:00:00Z", "How do you like your grinder, Bo?"),  # Sun -> Mon 09:00
    "cy": ("2025-09-04T03:00:00Z", "How do you like your order, Cy?"),  # Thu 12:00
    "di": ("2025-09-05T16:00:00Z", "How do you like your kettle, Di?"),  # Thu 20:00 -> Fri 9
    "ed": ("2025-09-08T07:00:00Z", "How do you like your mugs, Ed?"),  # Sat -> Mon 09:00
    "flo": ("2025-09-08T09:00:00Z", "How do you like your order, Flo?"),  # Sat -> Mon 09:00
    "gil": ("2025-09-08T01:00:00Z", "How do you like your scale, Gil?"),  # Mon 11:00
    "hal": ("2025-09-08T15:00:00Z", "How do you like your order, Hal?"),  # Mon 12:00
    "ines": ("2025-09-11T10:00:00Z", "How do you like your filters, Ines?"),  # Thu 12:00
}
THANKS = {
    "thanks_plain": "Thank you for your order, {name}!",
    "thanks_discount": "Thanks, {name} - here's 10% off your next order",
}


def _first_run(result: SimulationResult, contact: str) -> Run:
    return result.runs_of(contact, "post_purchase")[0]


def test_post_purchase_split_shows_both_variants() -> None:
    result = simulate("post_purchase")
    chosen = {c: _first_run(result, c).variants["thank_you_split"] for c in VARIANTS}
    assert chosen == VARIANTS
    assert set(chosen.values()) == {"thanks_plain", "thanks_discount"}


@pytest.mark.parametrize("contact", sorted(VARIANTS))
def test_post_purchase_thanks_then_review_in_business_hours(contact: str) -> None:
    result = simulate("post_purchase")
    run = _first_run(result, contact)
    variant = VARIANTS[contact]
    name = result.contacts[contact].attributes["first_name"]
    assert run.status == RunStatus.COMPLETED
    assert not run.holdout
    assert run.path == [
        "thank_you_split",
        variant,
        "wait_for_delivery",
        "review_window",
        "review_request",
    ]
    thanks, review = result.emails_to(contact)[:2]
    assert (thanks.at, thanks.step, thanks.subject) == (
        run.started_at,
        variant,
        THANKS[variant].format(name=name),
    )
    review_at, review_subject = REVIEWS[contact]
    assert (review.at, review.step, review.subject) == (
        utc(review_at),
        "review_request",
        review_subject,
    )
    there = local(review.at, ZONES[contact])
    assert there.weekday() < 5 and 9 <= there.hour < 17
    assert review.at - thanks.at >= timedelta(days=3)


def test_post_purchase_holdout_runs_the_journey_without_emails() -> None:
    result = simulate("post_purchase")
    held = [run.contact_id for run in result.runs if run.holdout]
    assert held == ["mia"]
    run = only_run(result, "mia", "post_purchase")
    assert run.status == RunStatus.COMPLETED
    assert run.path == [
        "thank_you_split",
        "thanks_plain",
        "wait_for_delivery",
        "review_window",
        "review_request",
    ]
    assert result.emails_to("mia") == []


def test_post_purchase_re_entry_after_thirty_days() -> None:
    result = simulate("post_purchase")
    assert len(result.runs) == 11
    assert len(result.runs_of("ed", "post_purchase")) == 1  # bought again after 10 days
    assert len(result.emails_to("ed")) == 2
    first, second = result.runs_of("ava", "post_purchase")  # bought again after 35 days
    assert second.started_at == utc("2025-10-07T18:00:00Z")
    assert second.variants == first.variants  # the same contact sees the same variant
    thanks = THANKS["thanks_discount"].format(name="Ava")
    assert sent(result, "ava")[2:] == [
        (utc("2025-10-07T18:00:00Z"), "thanks_discount", thanks),
        (utc("2025-10-10T18:00:00Z"), "review_request", "How do you like your beans, Ava?"),
    ]


def test_post_purchase_every_email_is_addressed_to_its_contact() -> None:
    data: dict[str, Any] = simulate("post_purchase").to_json()
    assert len(data["emails"]) == 20
    assert all(e["to"] == f"{e['contact']}@example.com" for e in data["emails"])
    assert [e["at"] for e in data["emails"]] == sorted(e["at"] for e in data["emails"])
