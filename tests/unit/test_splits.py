"""A/B splits: the z-test against hand-computed values, the winner, the per-arm counters a
batch adds, the winner rule in the language, and the engine routing new runs to a winner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmail.analytics.splits import Arm, against_control, pick_winner, split_figures, z_test
from flowmail.engine.catalog import StaticCatalog
from flowmail.engine.decisions import Record, SaveRun
from flowmail.engine.journeys import Context, on_event, on_wake
from flowmail.engine.state import Contact, Event, ListHistory, Run, RunStatus
from flowmail.language.graph import check_graph
from flowmail.language.loader import WorkflowInvalid, parse_workflow
from flowmail.language.models import SplitStep, Workflow
from flowmail.language.schema import workflow_schema
from flowmail.runtime.worker import WorkerOptions
from flowmail.settings import Settings
from flowmail.simulate import ScenarioInvalid, Simulation, simulate_file
from flowmail.store.conversions import Attribution, event_value
from flowmail.store.records import UnitResult
from flowmail.store.splits import ArmCounts, counter_rows

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
HOUR_MICROS = 3_600_000_000
T0_HOUR = int(T0.timestamp()) * 1_000_000  # T0 is on the hour


# --- the z-test --------------------------------------------------------------------------


def test_pooled_z_test_matches_hand_computed_values() -> None:
    # 200/1000 vs 250/1000: pooled p = 450/2000 = 0.225,
    # se = sqrt(0.225 * 0.775 * (1/1000 + 1/1000)) = sqrt(0.00034875) = 0.0186748,
    # z = (0.20 - 0.25) / 0.0186748 = -2.6774, p = erfc(2.6774 / sqrt 2) = 0.007420
    # (0.0073 is the unpooled figure: se = sqrt(.2*.8/1000 + .25*.75/1000) gives z = -2.682)
    test = z_test(200, 1000, 250, 1000)
    assert test is not None
    assert test.z == pytest.approx(-2.6774, abs=1e-4)
    assert test.p_value == pytest.approx(0.007420, abs=1e-6)
    assert test.significant(0.95) and test.significant(0.99)
    assert not test.significant(0.995)
    # 30/100 vs 45/100: pooled 0.375, se = sqrt(0.375 * 0.625 * 0.02) = 0.0684653,
    # z = -0.15 / 0.0684653 = -2.1909, p = 0.02846: significant at 95 %, not at 99 %
    close = z_test(30, 100, 45, 100)
    assert close is not None
    assert (round(close.z, 4), round(close.p_value, 5)) == (-2.1909, 0.02846)
    assert close.significant(0.95) and not close.significant(0.99)


def test_z_test_is_antisymmetric_and_handles_empty_and_flat_arms() -> None:
    forward, backward = z_test(200, 1000, 250, 1000), z_test(250, 1000, 200, 1000)
    assert forward is not None and backward is not None
    assert backward.z == pytest.approx(-forward.z)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert z_test(5, 10, 0, 0) is None  # no runs on one side: nothing to test
    flat = z_test(0, 10, 0, 20)  # both 0 %: no spread, no difference
    assert flat is not None and (flat.z, flat.p_value) == (0.0, 1.0)
    assert not flat.significant(0.95)


def test_each_arm_is_tested_against_the_control() -> None:
    arms = [Arm("a", 1000, 200), Arm("b", 1000, 250), Arm("c", 1000, 200)]
    control, b, c = against_control(arms)
    assert control is None
    assert b is not None and b.z == pytest.approx(2.6774, abs=1e-4)  # b above the control
    assert c is not None and (c.z, c.p_value) == (0.0, 1.0)


def test_the_winner_is_significantly_better_than_every_other_arm() -> None:
    # b 150/1000 against c 140/1000: pooled 0.145, se = sqrt(.145 * .855 * .002) = 0.015746,
    # z = 0.01 / 0.015746 = 0.635: b beats a but not c, so nobody wins yet
    assert (
        pick_winner([Arm("a", 1000, 100), Arm("b", 1000, 150), Arm("c", 1000, 140)], 0.95) is None
    )
    # c at 100/1000 too: b against each, pooled 0.125, se = 0.014790, z = 3.381, p = 0.00072
    arms = [Arm("a", 1000, 100), Arm("b", 1000, 150), Arm("c", 1000, 100)]
    assert pick_winner(arms, 0.95) == "b"
    assert pick_winner(arms, 0.9995) is None  # p = 0.00072 is not below 0.0005
    assert pick_winner(arms, 0.95, min_runs=1001) is None  # every arm needs min_runs
    assert pick_winner([Arm("a", 1000, 100)], 0.95) is None  # one arm: nothing to compare


def test_split_figures_show_rates_tests_and_the_winner() -> None:
    workflow = parse_workflow(_ab_workflow(winner={"metric": "converted", "min_runs": 20}))
    step = workflow.step("ab")
    assert isinstance(step, SplitStep)
    counts = {"a": ArmCounts(20, 4, 9), "b": ArmCounts(20, 12, 5)}
    a, b = split_figures(workflow, step, counts)
    assert (a.target, a.entered, a.converted, a.clicked, a.rate) == ("a", 20, 4, 9, 0.2)
    assert (a.z, a.p_value, a.significant, a.winner) == (None, None, False, False)
    # 12/20 vs 4/20: pooled 0.4, se = sqrt(.4 * .6 * .1) = 0.154919, z = 0.4 / 0.154919 = 2.582
    assert (b.rate, round(b.z or 0, 3), round(b.p_value or 0, 4)) == (0.6, 2.582, 0.0098)
    assert b.significant and b.winner and b.metric == "converted"
    # a decided winner is shown as it is, whatever the counts say now
    a, b = split_figures(workflow, step, counts, decided="a")
    assert (a.winner, b.winner) == (True, False)
    # on clicks a (9/20) is ahead of b (5/20), not significantly: p = 0.185
    clicks = parse_workflow(_ab_workflow(winner={"metric": "clicked"}))
    step = clicks.step("ab")
    assert isinstance(step, SplitStep)
    a, b = split_figures(clicks, step, counts)
    assert (a.metric, a.rate, b.rate, b.significant, a.winner, b.winner) == (
        "clicked", 0.45, 0.25, False, False, False
    )  # fmt: skip


# --- the counters a batch adds -----------------------------------------------------------


def _run(path: list[str], variants: dict[str, str], **extra: Any) -> Run:
    trigger = Event("ana", "go", T0)
    return Run("r1", "ab_test", 2, "ana", T0, trigger, path=path, variants=variants, **extra)


def _record(action: str, step: str | None, at: datetime = T0) -> Record:
    return Record(at, "ana", "ab_test", "r1", step, action, {})


def _result(run: Run, *records: Record) -> UnitResult:
    result = UnitResult("ws", Contact("ana"))
    result.runs[run.id] = (run, False)
    result.journal.extend(records)
    return result


def _row(metric: str, target: str, at: datetime = T0) -> tuple[Any, ...]:
    hour = T0_HOUR + (at - T0) // timedelta(hours=1) * HOUR_MICROS
    return ("ws", "ab_test", 2, "ab", metric, target, hour, 1)


def test_a_run_taking_an_arm_is_counted_once() -> None:
    run = _run(["intro", "ab", "b", "hold"], {"ab": "b"})
    result = _result(run, _record("email", "intro"), _record("split", "ab"))
    assert counter_rows([result]) == [_row("split:entered", "b")]
    # a loop back to the split in a later batch: the run took its arm already
    again = _run(["intro", "ab", "b", "hold", "ab", "b"], {"ab": "b"})
    assert counter_rows([_result(again, _record("split", "ab"))]) == []
    # ... but both visits in one batch count the run once
    both = _result(again, _record("split", "ab"), _record("split", "ab"))
    assert counter_rows([both]) == [_row("split:entered", "b")]


def test_a_converted_run_and_its_first_click_after_the_split_are_counted() -> None:
    later = T0 + timedelta(hours=5, minutes=10)
    run = _run(
        ["intro", "ab", "a", "hold"],
        {"ab": "a"},
        status=RunStatus.CONVERTED,
        engaged={"intro": ["clicked", "opened"], "a": ["clicked", "opened"]},
    )
    result = _result(run, _record("clicked", "a", later), _record("converted", "hold", later))
    assert counter_rows([result]) == [
        _row("split:clicked", "a", later),
        _row("split:converted", "a", later),
    ]
    # a click on the email before the split is not the arm's
    before = _run(["intro", "ab", "a", "hold"], {"ab": "a"}, engaged={"intro": ["clicked"]})
    assert counter_rows([_result(before, _record("clicked", "intro"))]) == []


def test_only_the_first_click_after_the_split_counts() -> None:
    path = ["ab", "a", "pause", "a2", "hold"]
    engaged = {"a": ["clicked", "opened"], "a2": ["clicked", "opened"]}
    run = _run(path, {"ab": "a"}, engaged=engaged)
    # a clicked in an earlier batch, a2 now: the run had clicked already
    assert counter_rows([_result(run, _record("clicked", "a2"))]) == []
    # both clicks in this batch: counted once
    both = _result(run, _record("clicked", "a"), _record("clicked", "a2"))
    assert counter_rows([both]) == [_row("split:clicked", "a")]


def test_runs_without_a_split_or_in_the_holdout_add_nothing() -> None:
    run = _run(["intro", "hold"], {}, status=RunStatus.CONVERTED)
    assert counter_rows([_result(run, _record("converted", "hold"))]) == []
    held = _run(["ab", "a", "hold"], {"ab": "a"}, holdout=True)  # got no email
    assert counter_rows([_result(held, _record("split", "ab"))]) == []


def test_worker_options_come_from_the_settings() -> None:
    settings = Settings(conversion_events=["order"], attribution_hours=12,
                        attribution_model="first", worker_batch=64)  # fmt: skip
    options = WorkerOptions.from_settings(settings)
    assert options.conversion_events == ("order",)
    assert options.attribution == Attribution(timedelta(hours=12), "first")
    assert (options.batch, options.retention) == (64, timedelta(days=90))
    assert WorkerOptions.from_settings(Settings()).attribution == Attribution()


# --- the rule in the language ------------------------------------------------------------


def _ab_workflow(goal: bool = True, **split: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "id": "ab_test",
        "trigger": {"event": "go"},
        "steps": [
            {"id": "ab", "split": [{"weight": 50, "then": "a"}, {"weight": 50, "then": "b"}],
             **split},
            {"id": "a", "email": {"subject": "A"}, "next": "hold"},
            {"id": "b", "email": {"subject": "B"}},
            {"id": "hold", "wait": "7d"},
        ],
    }  # fmt: skip
    if goal:
        definition["goal"] = {"event": "purchase"}
    return definition


def test_the_winner_rule_parses_with_its_defaults() -> None:
    workflow = parse_workflow(_ab_workflow(winner={"metric": "clicked"}))
    step = workflow.step("ab")
    assert isinstance(step, SplitStep) and step.winner is not None
    assert (step.winner.metric, step.winner.confidence, step.winner.min_runs) == (
        "clicked",
        0.95,
        100,
    )
    plain = parse_workflow(_ab_workflow()).step("ab")
    assert isinstance(plain, SplitStep) and plain.winner is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "opened"}, "metric"),
        ({"confidence": 1.0}, "confidence"),
        ({"min_runs": 0}, "min_runs"),
        ({"metric": "clicked", "after": "2d"}, "after"),
    ],
)
def test_a_bad_winner_rule_is_rejected(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowInvalid, match=message):
        parse_workflow(_ab_workflow(winner=rule))


def test_the_graph_checks_a_winner_rule() -> None:
    no_goal = Workflow.model_validate(_ab_workflow(goal=False, winner={"metric": "converted"}))
    assert [p.message for p in check_graph(no_goal)] == [
        "winner metric 'converted' needs a workflow goal (or use 'clicked')"
    ]
    same = _ab_workflow(winner={"metric": "clicked"})
    same["steps"][0]["split"] = [{"weight": 50, "then": "a"}, {"weight": 50, "then": "a"}]
    same["steps"][2]["next"] = "hold"
    problems = check_graph(Workflow.model_validate(same))
    assert any("two or more arms, each to a different step" in p.message for p in problems)
    assert check_graph(Workflow.model_validate(_ab_workflow(winner={}))) == []


def test_the_schema_describes_the_winner_rule() -> None:
    rule = workflow_schema()["$defs"]["WinnerRule"]
    assert rule["properties"]["metric"]["enum"] == ["converted", "clicked"]
    assert rule["properties"]["min_runs"]["minimum"] == 1
    assert rule["additionalProperties"] is False


# --- the engine routes new runs to a decided winner --------------------------------------


def _population(winners: dict[str, dict[str, str]] | None) -> list[Record]:
    sim = Simulation([parse_workflow(_ab_workflow())], start=T0, winners=winners)
    for index in range(100):
        sim.add_contact(f"c{index}", email=f"c{index}@example.com")
        sim.track(f"c{index}", "go", at=T0)
    return [r for r in sim.run(until=T0 + timedelta(hours=1)).timeline if r.action == "split"]


def test_without_a_winner_the_hash_splits_and_with_one_every_new_run_takes_it() -> None:
    hashed = _population(None)
    arms = [r.detail["then"] for r in hashed]
    assert 30 < arms.count("a") < 70 and arms.count("a") + arms.count("b") == 100
    assert all("winner" not in r.detail for r in hashed)
    routed = _population({"ab_test": {"ab": "b"}})
    assert [r.detail for r in routed] == [{"then": "b", "winner": True}] * 100


def test_a_run_that_took_an_arm_keeps_it_when_it_loops_back_after_the_decision() -> None:
    loop = _ab_workflow()
    loop["steps"][1] = {"id": "a", "email": {"subject": "A"}, "next": "pause"}
    loop["steps"].insert(2, {"id": "pause", "wait": "1d", "next": "ab"})
    workflow = parse_workflow(loop)
    contact = next(  # a contact the hash sends to a
        Contact(f"c{i}", f"c{i}@example.com")
        for i in range(100)
        if _arm_of(workflow, f"c{i}") == "a"
    )
    start = Event(contact.id, "go", T0)
    first = on_event(
        contact, [], start, Context(T0, ListHistory([start]), StaticCatalog([workflow]))
    )
    run = [d.run for d in first if isinstance(d, SaveRun)][-1]
    assert run.variants == {"ab": "a"} and run.step == "pause"
    later = T0 + timedelta(days=1)
    decided = StaticCatalog([workflow], {"ab_test": {"ab": "b"}})
    woken = on_wake(contact, run, Context(later, ListHistory([start]), decided))
    splits = [d for d in woken if isinstance(d, Record) and d.action == "split"]
    assert [s.detail for s in splits] == [{"then": "a"}]  # its own arm, not the winner


def _arm_of(workflow: Workflow, contact_id: str) -> str:
    start = Event(contact_id, "go", T0)
    ctx = Context(T0, ListHistory([start]), StaticCatalog([workflow]))
    decisions = on_event(Contact(contact_id, f"{contact_id}@example.com"), [], start, ctx)
    return next(
        d.detail["then"] for d in decisions if isinstance(d, Record) and d.action == "split"
    )


def test_an_open_or_click_of_an_ended_runs_email_is_noted() -> None:
    workflow = parse_workflow(
        {
            "id": "once",
            "trigger": {"event": "go"},
            "steps": [{"id": "hi", "email": {"subject": "Hi"}}],
        }
    )
    contact = Contact("ana", "ana@example.com")
    start = Event("ana", "go", T0)
    ctx = Context(T0, ListHistory([start]), StaticCatalog([workflow]))
    run = [d.run for d in on_event(contact, [], start, ctx) if isinstance(d, SaveRun)][-1]
    assert run.status == RunStatus.COMPLETED
    click = Event("ana", "email_clicked", T0 + timedelta(hours=2),
                  {"message_id": run.emails["hi"], "workflow": "once", "step": "hi"})  # fmt: skip
    decisions = on_event(
        contact, [run], click, Context(click.at, ListHistory([start]), ctx.catalog)
    )
    records = [d for d in decisions if isinstance(d, Record)]
    saved = [d.run for d in decisions if isinstance(d, SaveRun)]
    assert [(r.action, r.step_id) for r in records] == [("clicked", "hi")]
    assert saved[0].engaged == {"hi": ["clicked", "opened"]}
    assert saved[0].status == RunStatus.COMPLETED  # still ended, nothing else moves
    assert on_event(contact, saved, click, Context(click.at, ListHistory(), ctx.catalog)) == []


# --- the value of a conversion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        ({"revenue": 40}, 40.0),
        ({"revenue": "12.50", "value": 3}, 12.5),
        ({"value": 7}, 7.0),
        ({"revenue": "n/a", "value": 2.5}, 2.5),
        ({"revenue": True}, 0.0),
        ({"revenue": float("nan")}, 0.0),
        ({}, 0.0),
    ],
)
def test_a_conversions_value_is_its_revenue_else_its_value(
    properties: dict[str, Any], value: float
) -> None:
    assert event_value(properties) == value


# --- a scenario may set decided winners ----------------------------------------------------


def _scenario(tmp_path: Path, winners: dict[str, Any]) -> Path:
    document = {
        "start": "2025-09-01T09:00:00Z",
        "until": "2025-09-02T09:00:00Z",
        "workflows": [_ab_workflow()],
        "contacts": [{"id": f"c{i}", "email": f"c{i}@example.com"} for i in range(20)],
        "events": [{"at": "2025-09-01T10:00:00Z", "contact": f"c{i}", "name": "go"}
                   for i in range(20)],
        "winners": winners,
    }  # fmt: skip
    path = tmp_path / "ab.scenario.json"
    path.write_text(json.dumps(document))
    return path


def test_a_scenario_routes_to_the_winners_it_sets(tmp_path: Path) -> None:
    result = simulate_file(_scenario(tmp_path, {"ab_test": {"ab": "a"}}))
    assert [e.step for e in result.emails] == ["a"] * 20
    assert {run.variants["ab"] for run in result.runs} == {"a"}
    plain = simulate_file(_scenario(tmp_path, {}))
    assert {e.step for e in plain.emails} == {"a", "b"}


@pytest.mark.parametrize(
    ("winners", "message"),
    [
        ({"ab_test": {"ab": "hold"}}, "'hold' is not one of its arms"),
        ({"ab_test": {"a": "b"}}, "not a split step"),
        ({"other": {"ab": "a"}}, "no such workflow or step"),
    ],
)
def test_a_scenario_winner_must_be_an_arm(
    tmp_path: Path, winners: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioInvalid, match=message):
        simulate_file(_scenario(tmp_path, winners))
