"""The performance report's recommendations, from figures built by hand (counted here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rich.console import Console

from flowmail.analytics.model import (
    Alert,
    EmailFigures,
    HealthFigures,
    StepFigures,
    VariantFigures,
    WorkflowFigures,
)
from flowmail.analytics.report import build, recommend, render, summary, to_json

UNTIL = datetime(2025, 9, 2, 9, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=24)


def step(step_id: str, kind: str, **counts: object) -> StepFigures:
    return StepFigures(step_id, kind, **counts)  # type: ignore[arg-type]


def healthy() -> WorkflowFigures:
    """100 runs: 90 finished of 95 ended, 5 waiting; 185 emails, 3 bounces, 2 unsubscribes."""
    return WorkflowFigures(
        "welcome",
        None,
        entered=100,
        waiting=5,
        completed=80,
        converted=10,
        exited=5,
        steps=[
            step(
                "hello",
                "email",
                entered=100,
                edges={"pause": 100},
                email=EmailFigures(
                    sent=100, delivered=98, opened=40, clicked=10, bounced=2, unsubscribed=1
                ),
            ),
            step("pause", "wait", entered=100, waiting=5, converted=10, edges={"bye": 85}),
            step(
                "bye",
                "email",
                entered=85,
                completed=80,
                exited=5,
                email=EmailFigures(sent=85, delivered=84, bounced=1, unsubscribed=1),
            ),
        ],
    )


def test_a_healthy_workflow_gets_no_recommendation() -> None:
    assert recommend(healthy()) == []
    # a wait step holding nearly every run in progress is what a wait does
    drip = WorkflowFigures(
        "drip",
        None,
        entered=100,
        waiting=90,
        completed=10,
        steps=[
            step("hello", "email", entered=100, edges={"pause": 100}),
            step("pause", "wait", entered=100, waiting=90, edges={"bye": 10}),
            step("bye", "email", entered=10, completed=10),
        ],
    )
    assert recommend(drip) == []


def test_too_few_runs_or_emails_are_not_judged() -> None:
    small = WorkflowFigures(
        "small",
        None,
        entered=10,
        completed=4,
        failed=6,
        steps=[
            step(
                "only",
                "email",
                entered=10,
                completed=4,
                failed=6,
                email=EmailFigures(sent=10, delivered=5, bounced=5, unsubscribed=3),
            )
        ],
    )
    assert recommend(small) == []


def test_low_completion_names_the_step_where_runs_end_early() -> None:
    # 100 ended: 55 completed + 10 converted = 65 % finished; 33 exited, 2 failed (2 %)
    workflow = WorkflowFigures(
        "onboarding",
        3,
        entered=100,
        completed=55,
        converted=10,
        exited=33,
        failed=2,
        steps=[
            step("nudge", "email", entered=100, exited=30, failed=2, edges={"thanks": 68}),
            step("thanks", "email", entered=68, completed=55, converted=10, exited=3),
        ],
    )
    [rec] = recommend(workflow)
    assert (rec.kind, rec.workflow_id, rec.step_id) == ("low_completion", "onboarding", "nudge")
    assert rec.message.startswith("workflow 'onboarding' v3: only 65.0% of the runs that ended")
    assert "(65 of 100: 33 exited, 2 failed)" in rec.message
    assert "step 'nudge' (email)" in rec.message


def test_high_error_rate_names_the_failing_step() -> None:
    # 50 ended, 6 failed: 12 %; completion 44 / 50 = 88 %
    workflow = WorkflowFigures(
        "billing",
        None,
        entered=50,
        completed=44,
        failed=6,
        steps=[
            step("charge", "webhook", entered=50, failed=6, edges={"receipt": 44}),
            step("receipt", "email", entered=44, completed=44),
        ],
    )
    [rec] = recommend(workflow)
    assert (rec.kind, rec.step_id) == ("high_errors", "charge")
    assert "12.0% of the runs that ended failed (6 of 50)" in rec.message
    assert "step 'charge' (webhook: 6)" in rec.message


def test_error_rate_at_exactly_five_percent_is_not_high() -> None:
    workflow = WorkflowFigures("edge", None, entered=100, completed=95, failed=5)
    assert [r.kind for r in recommend(workflow)] == []


def test_high_unsubscribes_name_the_worst_email() -> None:
    # 1,000 delivered, 30 unsubscribes (3 %): p1 10 / 500 = 2 %, p2 20 / 500 = 4 %
    workflow = WorkflowFigures(
        "promo",
        None,
        entered=500,
        completed=500,
        steps=[
            step(
                "p1",
                "email",
                entered=500,
                edges={"p2": 500},
                email=EmailFigures(sent=500, delivered=500, unsubscribed=10, bounced=5),
            ),
            step(
                "p2",
                "email",
                entered=500,
                completed=500,
                email=EmailFigures(sent=500, delivered=500, unsubscribed=20, bounced=5),
            ),
        ],
    )
    [rec] = recommend(workflow)
    assert (rec.kind, rec.step_id) == ("high_unsubscribes", "p2")
    assert "3.0% of emails led to an unsubscribe (30 of 1,000)" in rec.message
    assert "the most at step 'p2' (4.0%)" in rec.message


def test_high_bounces_count_over_delivered() -> None:
    # 200 sent, 180 delivered, 20 bounced: 20 / 180 = 11.1 %
    workflow = WorkflowFigures(
        "reengage",
        None,
        entered=200,
        completed=200,
        steps=[
            step(
                "reach",
                "email",
                entered=200,
                completed=200,
                email=EmailFigures(sent=200, delivered=180, bounced=20),
            )
        ],
    )
    [rec] = recommend(workflow)
    assert (rec.kind, rec.step_id) == ("high_bounces", "reach")
    assert "11.1% of emails bounced (20 of 180)" in rec.message


def test_a_significant_arm_wins_its_split() -> None:
    arms = [
        VariantFigures("ab", "subject_a", entered=500, converted=50, rate=0.10),
        VariantFigures(
            "ab", "subject_b", entered=500, converted=75, rate=0.15, z=2.5, p_value=0.012,
            significant=True,
        ),
        VariantFigures("cd", "plain", entered=40, converted=4, rate=0.10),
        VariantFigures("cd", "fancy", entered=40, converted=6, rate=0.15, p_value=0.5),
    ]  # fmt: skip
    workflow = WorkflowFigures("subject_test", None, variants=arms)
    [rec] = recommend(workflow)
    assert (rec.kind, rec.step_id) == ("winner", "ab")
    assert "in split 'ab', 'subject_b' wins (converted 15.0% vs 10.0% for 'subject_a'" in (
        rec.message
    )
    assert "p = 0.012" in rec.message


def test_the_winner_rule_and_a_better_control_are_reported() -> None:
    arms = [
        VariantFigures("ab", "a", rate=0.05, metric="clicked"),
        VariantFigures("ab", "b", rate=0.07, metric="clicked", p_value=0.03, winner=True),
        VariantFigures("ef", "e", rate=0.20),
        VariantFigures("ef", "f", rate=0.10, p_value=0.001, significant=True),
    ]
    recs = recommend(WorkflowFigures("w", None, variants=arms))
    assert [(r.kind, r.step_id) for r in recs] == [("winner", "ab"), ("winner", "ef")]
    assert "'b' wins (clicked 7.0% vs 5.0% for 'a'" in recs[0].message
    assert "'e' wins (converted 20.0% vs 10.0% for 'f', p = 0.001)" in recs[1].message


def test_a_step_holding_most_runs_in_progress_stalls() -> None:
    # 90 in progress: 60 held at the email step 'offer' (67 %), 30 in a plain wait
    workflow = WorkflowFigures(
        "trial",
        None,
        entered=100,
        active=60,
        waiting=30,
        completed=10,
        steps=[
            step("start", "email", entered=100, edges={"offer": 100}),
            step("offer", "email", entered=100, active=60, edges={"pause": 40}),
            step("pause", "wait", entered=40, waiting=30, edges={"end": 10}),
            step("end", "email", entered=10, completed=10),
        ],
    )
    [rec] = recommend(workflow)
    assert (rec.kind, rec.step_id) == ("stall", "offer")
    assert "step 'offer' (email) holds 60 of the 90 runs in progress (67%)" in rec.message


def test_waiting_steps_hold_runs_by_design() -> None:
    # a wait for a purchase (with a timeout) holding every run in progress is no stall
    workflow = WorkflowFigures(
        "cart",
        None,
        entered=100,
        waiting=80,
        converted=20,
        steps=[
            step("remind", "email", entered=100, edges={"await": 100}),
            step("await", "wait_for", entered=100, waiting=80, converted=20),
        ],
    )
    assert recommend(workflow) == []


def test_a_step_most_runs_do_not_leave_for_the_next_one_stalls() -> None:
    # 200 entered 'cart', 150 exited there, 50 went on: 25 %; edges unknown -> next entered
    workflow = WorkflowFigures(
        "checkout",
        None,
        entered=200,
        completed=50,
        exited=150,
        steps=[
            step("cart", "email", entered=200, exited=150),
            step("remind", "email", entered=50, completed=50),
        ],
    )
    recs = recommend(workflow)
    assert [(r.kind, r.step_id) for r in recs] == [("low_completion", "cart"), ("stall", "cart")]
    assert "only 50 of the 200 runs that left step 'cart' (email) went on to 'remind' (25%)" in (
        recs[1].message
    )
    assert "(150 exited, 0 failed, 0 completed)" in recs[1].message


def test_build_keeps_the_order_and_json_round_trips() -> None:
    failing = WorkflowFigures("billing", None, entered=50, completed=44, failed=6)
    alert = Alert("lag", "", 400.0, 300.0, "the oldest unprocessed event is 6m40s old", "x")
    health = HealthFigures(at=UNTIL.isoformat(), pending_events=7, lag_seconds=400.0)
    report = build([healthy(), failing], [alert], health, SINCE, UNTIL)
    assert report.since == "2025-09-01T09:00:00+00:00"
    assert [r.workflow_id for r in report.recommendations] == ["billing"]
    data = json.loads(json.dumps(to_json(report)))
    assert data["summary"] == {
        "workflows": 2,
        "entered": 150,
        "in_progress": 5,
        "ended": 145,
        "completion_rate": (90 + 44) / 145,
        "failed": 6,
        "emails_sent": 185,
        "emails_delivered": 182,
        "open_rate": 40 / 182,
        "click_rate": 10 / 182,
        "conversions": 0,
        "revenue": 0.0,
        "recommendations": 1,
        "alerts_firing": 1,
    }
    welcome = data["workflows"][0]
    assert (welcome["workflow_id"], welcome["ended"]) == ("welcome", 95)
    assert welcome["completion_rate"] == 90 / 95
    assert welcome["emails"]["bounced"] == 3
    assert data["recommendations"][0]["kind"] == "high_errors"
    assert data["alerts"][0]["kind"] == "lag"
    assert data["health"]["pending_events"] == 7


def test_render_shows_workflows_recommendations_alerts_and_health() -> None:
    failing = WorkflowFigures("billing", None, entered=50, completed=44, failed=6)
    alert = Alert("queue_depth", "", 12_000, 10_000, "queue depth 12,000", "2025-09-02T08:00")
    health = HealthFigures(at=UNTIL.isoformat(), pending_events=12_000, sent_per_minute=42.5)
    console = Console(record=True, width=250, color_system=None)
    console.print(render(build([healthy(), failing], [alert], health, SINCE, UNTIL)))
    text = console.export_text()
    assert "2 workflows, 150 runs entered, 145 ended (92.4% finished), 185 emails sent" in text
    assert "welcome" in text and "94.7%" in text  # 90 of 95 finished
    assert "high errors  workflow 'billing': 12.0% of the runs that ended failed" in text
    assert "Alerts firing: 1" in text and "queue depth 12,000" in text
    assert "12,000 events pending (oldest 0s)" in text and "42.5 sent/min" in text


def test_render_says_so_when_nothing_needs_attention() -> None:
    console = Console(record=True, width=200, color_system=None)
    console.print(render(build([healthy()], [], None, SINCE, UNTIL)))
    text = console.export_text()
    assert "none: every workflow is within its thresholds" in text
    assert "Alerts firing: 0" in text
    assert summary(build([], [], None, SINCE, UNTIL))["completion_rate"] == 0.0
