"""Conditions: parsing, every operator and alias, paths, history, engagement, predicates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmail.engine.conditions import (
    ENGAGEMENT_HALF_LIFE,
    ENGAGEMENT_WINDOW,
    Scope,
    compare,
    engagement_score,
    evaluate,
    resolve,
)
from flowmail.engine.predicates import PREDICATES, register
from flowmail.engine.state import Contact, Event, ListHistory, Run, RunStatus
from flowmail.language.conditions import (
    ALIASES,
    OPERATORS,
    All,
    AnyOf,
    Compare,
    ConditionError,
    Engaged,
    Engagement,
    History,
    Not,
    Predicate,
    normalize_op,
    parse_condition,
)
from flowmail.language.loader import parse_workflow
from flowmail.simulate import Simulation

NOW = datetime(2025, 9, 15, 12, tzinfo=UTC)


def event(name: str, at: datetime = NOW, **properties: Any) -> Event:
    return Event("c1", name, at, properties)


def make_run(**fields: Any) -> Run:
    return Run(
        id="r1",
        workflow_id="wf",
        version=1,
        contact_id="c1",
        started_at=NOW - timedelta(hours=1),
        trigger=event("signed_up", NOW - timedelta(hours=1), cart_id="c9"),
        **fields,
    )


def scope(
    attributes: dict[str, Any] | None = None,
    *,
    event_: Event | None = None,
    run: Run | None = None,
    history: list[Event] | None = None,
    now: datetime = NOW,
    timezone: str | None = None,
    predicates: dict[str, Any] | None = None,
) -> Scope:
    contact = Contact("c1", "c1@example.com", timezone, dict(attributes or {}))
    return Scope(
        contact,
        now,
        ListHistory(history or []),
        event_,
        run,
        PREDICATES if predicates is None else predicates,
    )


def holds(raw: object, where: Scope | None = None) -> bool:
    return evaluate(parse_condition(raw), where or scope())


# --- parsing ----------------------------------------------------------------------------


def test_equality_shorthand_and_operator_form() -> None:
    assert parse_condition({"contact.plan": "pro"}) == Compare("contact.plan", "eq", "pro")
    assert parse_condition({"event.total": {"gte": 20}}) == Compare("event.total", "gte", 20)


@pytest.mark.parametrize(("alias", "canonical"), sorted(ALIASES.items()))
def test_article_aliases(alias: str, canonical: str) -> None:
    assert normalize_op(alias) == canonical
    parsed = parse_condition({"contact.x": {alias: [1] if canonical == "in" else 1}})
    assert isinstance(parsed, Compare) and parsed.op == canonical


def test_aliases_cover_the_article_names() -> None:
    assert set(ALIASES) == {
        "equals",
        "not_equals",
        "greater_than",
        "less_than",
        "greater_equal",
        "less_equal",
        "in_list",
        "in_array",
    }
    assert set(OPERATORS) == {
        "eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "not_in", "exists",
    }  # fmt: skip


def test_user_paths_are_contact_paths() -> None:
    assert parse_condition({"user.first_name": "Ana"}) == Compare("contact.first_name", "eq", "Ana")


def test_several_keys_mean_all() -> None:
    parsed = parse_condition({"contact.plan": "pro", "event.total": {"gt": 5}})
    assert parsed == All((Compare("contact.plan", "eq", "pro"), Compare("event.total", "gt", 5)))


def test_combinators_parse() -> None:
    parsed = parse_condition(
        {"any": [{"contact.a": 1}, {"not": {"contact.b": 2}}], "all": [{"contact.c": 3}]}
    )
    assert parsed == All(
        (
            AnyOf((Compare("contact.a", "eq", 1), Not(Compare("contact.b", "eq", 2)))),
            All((Compare("contact.c", "eq", 3),)),
        )
    )


def test_other_condition_kinds_parse() -> None:
    assert parse_condition({"engagement": {"greater_equal": 0.5}}) == Engagement("gte", 0.5)
    assert parse_condition({"opened": "welcome"}) == Engaged("opened", "welcome")
    assert parse_condition({"clicked": "welcome"}) == Engaged("clicked", "welcome")
    assert parse_condition({"predicate": "vip"}) == Predicate("vip")
    assert parse_condition({"history": {"event": "purchase"}}) == History(
        "purchase", None, 1, None, None
    )
    assert parse_condition(
        {"history": {"event": "purchase", "within": "30d", "max": 2, "where": {"event.x": 1}}}
    ) == History("purchase", timedelta(days=30), None, 2, Compare("event.x", "eq", 1))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"contact.x": {"approximately": 1}}, "unknown operator 'approximately'"),
        ({"contact.x": {"gt": 1, "lt": 5}}, "exactly one operator"),
        ({"contact.x": {"in": "abc"}}, "'in' needs a list"),
        ({"contact.x": {"in_list": 3}}, "'in' needs a list"),
        ({"contact.x": {"not_in": None}}, "'not_in' needs a list"),
        ({"contact.x": {"exists": "yes"}}, "'exists' takes true or false"),
        ({"plan": "pro"}, "unknown condition 'plan'"),
        ({"account.plan": "pro"}, "unknown condition 'account.plan'"),
        ({"all": []}, "'all' needs a non-empty list"),
        ({"any": {"contact.x": 1}}, "'any' needs a non-empty list"),
        ({}, "non-empty mapping"),
        (["contact.x"], "non-empty mapping"),
        ({"history": {"within": "1d"}}, "'history' needs at least {event: name}"),
        ({"history": {"event": "x", "since": "1d"}}, "unknown keys ['since']"),
        ({"history": {"event": "x", "within": "a while"}}, "bad duration"),
        ({"history": {"event": "x", "min": "2"}}, "'min' must be a whole number"),
        ({"engagement": {"gte": "high"}}, "compares with a number"),
        ({"opened": ""}, "'opened' needs the id of an email step"),
        ({"predicate": 3}, "'predicate' needs the name"),
    ],
)
def test_bad_conditions(raw: object, fragment: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(raw)
    assert fragment in str(caught.value)


# --- operators --------------------------------------------------------------------------

OPERATOR_CASES: list[tuple[str, Any, Any, bool]] = [
    ("eq", "pro", "pro", True),
    ("eq", "pro", "free", False),
    ("eq", 5, 5.0, True),
    ("eq", True, 1, False),
    ("eq", None, None, True),
    ("eq", [1, 2], [1, 2], True),
    ("ne", "pro", "free", True),
    ("ne", "pro", "pro", False),
    ("ne", 1, True, True),
    ("gt", 21, 20, True),
    ("gt", 20, 20, False),
    ("gte", 20, 20, True),
    ("gte", 19.99, 20, False),
    ("lt", 3, 4, True),
    ("lt", 4, 4, False),
    ("lte", 4, 4, True),
    ("lte", 4.01, 4, False),
    ("gt", "b", "a", True),
    ("lt", "2025-01-01", "2025-06-01", True),
    ("gt", True, 0, False),
    ("gt", {"a": 1}, 0, False),
    ("contains", "hello world", "world", True),
    ("contains", "hello world", "mars", False),
    ("contains", ["vip", "new"], "vip", True),
    ("contains", ["vip", "new"], "old", False),
    ("contains", [1, 2, 3], 2.0, True),
    ("contains", 12345, 23, False),
    ("starts_with", "ana@example.com", "ana@", True),
    ("starts_with", "ana@example.com", "bob", False),
    ("starts_with", 12345, 12, False),
    ("in", "pro", ["pro", "team"], True),
    ("in", "free", ["pro", "team"], False),
    ("in", 2, [1.0, 2.0], True),
    ("not_in", "free", ["pro", "team"], True),
    ("not_in", "pro", ["pro", "team"], False),
    ("exists", "x", True, True),
    ("exists", "", True, True),
    ("exists", 0, False, False),
    ("exists", False, True, True),
]


@pytest.mark.parametrize(("op", "actual", "expected", "result"), OPERATOR_CASES)
def test_operator(op: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(actual, op, expected) is result
    assert holds({"contact.value": {op: expected}}, scope({"value": actual})) is result


def test_every_operator_has_a_case() -> None:
    assert {case[0] for case in OPERATOR_CASES} == set(OPERATORS)


ALIAS_CASES: list[tuple[str, Any, Any, bool]] = [
    ("equals", "pro", "pro", True),
    ("equals", "pro", "free", False),
    ("not_equals", "pro", "free", True),
    ("not_equals", "pro", "pro", False),
    ("greater_than", 1001, 1000, True),
    ("greater_than", 1000, 1000, False),
    ("less_than", 5, 6, True),
    ("less_than", 6, 6, False),
    ("greater_equal", 6, 6, True),
    ("greater_equal", 5, 6, False),
    ("less_equal", 6, 6, True),
    ("less_equal", 7, 6, False),
    ("in_list", "b", ["a", "b"], True),
    ("in_list", "c", ["a", "b"], False),
    ("in_array", "a", ["a", "b"], True),
    ("in_array", "z", ["a", "b"], False),
]


@pytest.mark.parametrize(("alias", "actual", "expected", "result"), ALIAS_CASES)
def test_alias_behaves_like_its_operator(
    alias: str, actual: Any, expected: Any, result: bool
) -> None:
    where = scope({"value": actual})
    assert holds({"contact.value": {alias: expected}}, where) is result
    assert holds({"contact.value": {ALIASES[alias]: expected}}, where) is result


@pytest.mark.parametrize(
    ("op", "operand", "result"),
    [
        ("eq", "x", False),
        ("eq", None, True),
        ("ne", "x", True),
        ("gt", 0, False),
        ("gte", 0, False),
        ("lt", 0, False),
        ("lte", 0, False),
        ("contains", "x", False),
        ("starts_with", "", False),
        ("in", ["x"], False),
        ("not_in", ["x"], True),
        ("exists", True, False),
        ("exists", False, True),
    ],
)
def test_a_missing_value_fails_everything_but_ne_not_in_and_not_exists(
    op: str, operand: Any, result: bool
) -> None:
    assert holds({"contact.nothing_here": {op: operand}}, scope({"other": 1})) is result


@pytest.mark.parametrize(
    ("raw", "actual", "result"),
    [
        ({"gt": 20}, "25", True),
        ({"gte": "20"}, 20, True),
        ({"lt": 10}, "9.5", True),
        ({"lt": 10}, "10", False),
        ({"gt": 100}, "99", False),  # numerically, not as text ("99" > "100" as text)
        ({"gt": 5}, "five", False),
        ({"gt": 5}, "nan", False),
        ({"lte": 5}, "inf", False),
        ({"eq": 5}, "5", False),  # equality does not convert types, like the article's ==
        ({"in": [1, 2]}, "1", False),
    ],
)
def test_numeric_strings(raw: dict[str, Any], actual: Any, result: bool) -> None:
    assert holds({"contact.value": raw}, scope({"value": actual})) is result


def test_combinators() -> None:
    where = scope({"plan": "pro", "age": 30})
    assert holds({"all": [{"contact.plan": "pro"}, {"contact.age": {"gte": 18}}]}, where)
    assert not holds({"all": [{"contact.plan": "pro"}, {"contact.age": {"gte": 40}}]}, where)
    assert holds({"any": [{"contact.plan": "free"}, {"contact.age": {"gte": 18}}]}, where)
    assert not holds({"any": [{"contact.plan": "free"}, {"contact.age": {"gte": 40}}]}, where)
    assert holds({"not": {"contact.plan": "free"}}, where)
    assert not holds({"not": {"contact.plan": "pro"}}, where)
    assert holds(
        {"any": [{"all": [{"contact.plan": "pro"}, {"not": {"contact.age": {"lt": 18}}}]}]}, where
    )


def test_implicit_all_with_several_keys() -> None:
    where = scope({"plan": "pro", "age": 30}, event_=event("purchase", total=50))
    assert holds({"contact.plan": "pro", "contact.age": 30, "event.total": {"gt": 20}}, where)
    assert not holds({"contact.plan": "pro", "contact.age": 31}, where)
    assert not holds({"contact.plan": "free", "contact.age": 30}, where)


# --- paths ------------------------------------------------------------------------------


def test_paths_reach_contact_user_event_and_run() -> None:
    run = make_run(variants={"subject_test": "b"}, holdout=True, path=["a", "split"])
    where = scope(
        {"first_name": "Ana", "address": {"city": "Lyon"}, "orders": [{"id": 7}]},
        event_=event("purchase_completed", total=42, cart={"id": "c1"}),
        run=run,
    )
    assert resolve("contact.first_name", where) == "Ana"
    assert resolve("contact.address.city", where) == "Lyon"
    assert resolve("contact.orders.0.id", where) == 7
    assert resolve("contact.orders.1.id", where) is None
    assert resolve("contact.email", where) == "c1@example.com"
    assert resolve("contact.id", where) == "c1"
    assert resolve("event.name", where) == "purchase_completed"
    assert resolve("event.total", where) == 42
    assert resolve("event.cart.id", where) == "c1"
    assert resolve("run.variants.subject_test", where) == "b"
    assert resolve("run.holdout", where) is True
    assert resolve("run.workflow", where) == "wf"
    assert resolve("contact.first_name.more", where) is None
    assert holds({"user.first_name": "Ana"}, where)
    assert holds({"user.address.city": {"starts_with": "Ly"}}, where)
    assert holds({"event.total": {"gt": 40}, "run.variants.subject_test": "b"}, where)
    assert holds({"run.path": {"contains": "split"}}, where)


def test_event_and_run_paths_without_an_event_or_run_are_missing() -> None:
    where = scope({"plan": "pro"})
    assert resolve("event.total", where) is None
    assert resolve("run.holdout", where) is None
    assert holds({"event.total": {"exists": False}, "run.holdout": {"exists": False}}, where)


# --- history ----------------------------------------------------------------------------


def purchases(*days_ago: float, **properties: Any) -> list[Event]:
    return [event("purchase", NOW - timedelta(days=d), **properties) for d in days_ago]


@pytest.mark.parametrize(
    ("spec", "result"),
    [
        ({"event": "purchase"}, True),  # at least one, ever
        ({"event": "refund"}, False),
        ({"event": "purchase", "within": "7d"}, True),
        ({"event": "purchase", "within": "1d"}, False),
        ({"event": "purchase", "within": "7d", "min": 2}, True),
        ({"event": "purchase", "within": "7d", "min": 3}, False),
        ({"event": "purchase", "min": 3}, True),
        ({"event": "purchase", "max": 2}, False),
        ({"event": "purchase", "max": 3}, True),
        ({"event": "purchase", "within": "7d", "max": 2}, True),
        ({"event": "refund", "max": 0}, True),
        ({"event": "purchase", "max": 0}, False),
        ({"event": "purchase", "within": "40d", "min": 2, "max": 2}, False),
        ({"event": "purchase", "where": {"event.total": {"gte": 100}}}, True),
        ({"event": "purchase", "where": {"event.total": {"gte": 100}}, "min": 2}, False),
        ({"event": "purchase", "within": "7d", "where": {"event.total": {"gte": 100}}}, False),
    ],
)
def test_history(spec: dict[str, Any], result: bool) -> None:
    history = [
        *purchases(2, 5, total=20),
        *purchases(30, total=150),
        event("email_opened", NOW - timedelta(days=1)),
        event("purchase", NOW + timedelta(days=1), total=999),  # the future is not history
    ]
    assert holds({"history": spec}, scope(history=history)) is result


def test_history_window_excludes_its_start_and_includes_now() -> None:
    history = [event("purchase", NOW - timedelta(days=7)), event("purchase", NOW)]
    assert holds(
        {"history": {"event": "purchase", "within": "7d", "max": 1}}, scope(history=history)
    )
    assert holds(
        {"history": {"event": "purchase", "within": "7d", "min": 1}}, scope(history=history)
    )


# --- engagement -------------------------------------------------------------------------


def engagement(*items: tuple[str, float]) -> float:
    history = [event(f"email_{kind}", NOW - timedelta(days=days)) for kind, days in items]
    return engagement_score(ListHistory(history), NOW)


def test_engagement_score_definition() -> None:
    assert ENGAGEMENT_HALF_LIFE.days == 14
    assert ENGAGEMENT_WINDOW.days == 90
    assert engagement() == 0
    assert engagement(("opened", 0)) == pytest.approx(1 / 3)  # 1 point: 1 / (1 + 2)
    assert engagement(("clicked", 0)) == pytest.approx(0.5)  # 2 points: 2 / (2 + 2)
    assert engagement(("opened", 0), ("clicked", 0)) == pytest.approx(3 / 5)
    assert engagement(("clicked", 14)) == pytest.approx(1 / 3)  # one half-life: 1 point
    assert engagement(("opened", 28)) == pytest.approx(0.25 / 2.25)  # two half-lives
    assert engagement(("opened", 89)) > 0
    assert engagement(("opened", 91), ("clicked", 120)) == 0  # outside the 90-day window
    many = engagement(*[("clicked", 0)] * 50)
    assert 0.95 < many < 1


def test_engagement_ignores_other_events_and_the_future() -> None:
    history = [event("purchase", NOW), event("email_clicked", NOW + timedelta(hours=1))]
    assert engagement_score(ListHistory(history), NOW) == 0


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        ({"gte": 0.5}, True),
        ({"greater_than": 0.5}, False),
        ({"lt": 0.6}, True),
        ({"eq": 0.5}, True),
    ],
)
def test_engagement_condition(raw: dict[str, Any], result: bool) -> None:
    history = [event("email_clicked", NOW - timedelta(hours=0))]
    assert holds({"engagement": raw}, scope(history=history)) is result


# --- opened / clicked -------------------------------------------------------------------


def test_opened_and_clicked_read_the_runs_engagement() -> None:
    run = make_run(engaged={"welcome": ["opened"], "tips": ["clicked", "opened"]})
    where = scope(run=run)
    assert holds({"opened": "welcome"}, where)
    assert not holds({"clicked": "welcome"}, where)
    assert holds({"clicked": "tips"}, where)
    assert not holds({"opened": "never_sent"}, where)
    assert not holds({"opened": "welcome"}, scope())  # no run, nothing opened


def test_opened_branch_in_a_journey() -> None:
    workflow = parse_workflow(
        {
            "id": "nudge",
            "trigger": {"event": "signed_up"},
            "steps": [
                {"id": "welcome", "email": {"subject": "Welcome"}},
                {"id": "pause", "wait": "2d"},
                {
                    "id": "check",
                    "branch": [
                        {"if": {"clicked": "welcome"}, "then": "clicker"},
                        {"if": {"opened": "welcome"}, "then": "opener"},
                        {"else": "nudge"},
                    ],
                },
                {"id": "clicker", "tag": "clicked", "next": "end"},
                {"id": "opener", "tag": "opened", "next": "end"},
                {"id": "nudge", "email": {"subject": "Did you see this?"}},
            ],
        }
    )
    start = datetime(2025, 9, 1, 9, tzinfo=UTC)
    sim = Simulation([workflow], start=start)
    for contact in ("opens", "clicks", "ignores", "other_step"):
        sim.add_contact(contact, email=f"{contact}@example.com")
        sim.track(contact, "signed_up", at=start)
    sim.track(
        "opens", "email_opened", at=start + timedelta(hours=3), properties={"step": "welcome"}
    )
    # a click also proves the open; the step may be named by the workflow too
    sim.track(
        "clicks",
        "email_clicked",
        at=start + timedelta(hours=5),
        properties={"step": "welcome", "workflow": "nudge"},
    )
    sim.track(
        "other_step",
        "email_opened",
        at=start + timedelta(hours=5),
        properties={"step": "welcome", "workflow": "someone_else"},
    )
    result = sim.run(until=start + timedelta(days=5))
    paths = {run.contact_id: run.path[-1] for run in result.runs}
    assert paths == {
        "opens": "opener",
        "clicks": "clicker",
        "ignores": "nudge",
        "other_step": "nudge",
    }
    (clicks_run,) = result.runs_of("clicks")
    assert set(clicks_run.engaged["welcome"]) == {"clicked", "opened"}


# --- predicates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "result"),
    [
        ({"lifetime_value": 1500}, True),
        ({"lifetime_value": 1000}, False),
        ({"lifetime_value": "2500.50"}, True),
        ({"total_lifetime_value": 5000}, True),
        ({"lifetime_value": "lots"}, False),
        ({}, False),
    ],
)
def test_high_value_customer(attributes: dict[str, Any], result: bool) -> None:
    assert holds({"predicate": "high_value_customer"}, scope(attributes)) is result


def test_recent_purchaser() -> None:
    def bought(days_ago: float) -> list[Event]:
        return [event("purchase_completed", NOW - timedelta(days=days_ago))]

    assert holds({"predicate": "recent_purchaser"}, scope(history=bought(29)))
    assert not holds({"predicate": "recent_purchaser"}, scope(history=bought(31)))
    assert not holds({"predicate": "recent_purchaser"}, scope(history=purchases(1)))
    assert not holds({"predicate": "recent_purchaser"}, scope())
    by_attribute = scope({"last_purchase_date": (NOW - timedelta(days=3)).isoformat()})
    assert holds({"predicate": "recent_purchaser"}, by_attribute)
    too_old = scope({"last_purchase_date": "2025-07-01"})
    assert not holds({"predicate": "recent_purchaser"}, too_old)
    in_the_future = scope({"last_purchase_date": "2025-12-01"})
    assert not holds({"predicate": "recent_purchaser"}, in_the_future)


def test_engagement_trending_up() -> None:
    def trend(*items: tuple[str, float]) -> bool:
        history = [event(f"email_{kind}", NOW - timedelta(days=days)) for kind, days in items]
        return holds({"predicate": "engagement_trending_up"}, scope(history=history))

    assert trend(("opened", 2))
    assert not trend()
    assert not trend(("opened", 20))
    assert trend(("opened", 20), ("opened", 3), ("opened", 4))
    assert not trend(("clicked", 20), ("clicked", 22), ("opened", 3))
    assert not trend(("opened", 40), ("opened", 1), ("opened", 20), ("opened", 21))


@pytest.fixture
def registry() -> Iterator[dict[str, Any]]:
    saved = dict(PREDICATES)
    yield PREDICATES
    PREDICATES.clear()
    PREDICATES.update(saved)


def test_a_user_registered_predicate(registry: dict[str, Any]) -> None:
    @register("big_spender")
    def big_spender(where: Scope) -> bool:
        return bool((where.contact.attributes.get("spent") or 0) > 5000)

    assert registry["big_spender"] is big_spender
    assert holds({"predicate": "big_spender"}, scope({"spent": 6000}))
    assert not holds({"predicate": "big_spender"}, scope({"spent": 10}))
    assert holds({"not": {"predicate": "big_spender"}}, scope({}))


def test_a_predicate_sees_the_event_run_and_history() -> None:
    seen: list[Scope] = []

    def spy(where: Scope) -> bool:
        seen.append(where)
        return True

    run = make_run()
    where = scope(event_=event("x"), run=run, history=purchases(1), predicates={"spy": spy})
    assert holds({"predicate": "spy"}, where)
    assert seen[0].run is run and seen[0].event is not None and seen[0].now == NOW


def test_an_unknown_predicate_raises_lookup_error() -> None:
    with pytest.raises(LookupError, match="no predicate named 'nope'"):
        holds({"predicate": "nope"}, scope())


def predicate_workflow(**extra: Any) -> Any:
    raw: dict[str, Any] = {
        "id": "wf",
        "trigger": {"event": "go"},
        "steps": [
            {
                "id": "check",
                "branch": [{"if": {"predicate": "nope"}, "then": "yes"}, {"else": "end"}],
            },
            {"id": "yes", "email": {"subject": "Yes"}},
        ],
    }
    raw.update(extra)
    return parse_workflow(raw)


def run_one(workflow: Any, *, predicates: dict[str, Any] | None = None) -> Any:
    start = datetime(2025, 9, 1, tzinfo=UTC)
    sim = Simulation([workflow], start=start, predicates=predicates)
    sim.add_contact("u1", email="u1@example.com")
    sim.track("u1", "go", at=start + timedelta(hours=1))
    sim.track("u1", "later", at=start + timedelta(hours=2))
    return sim.run(until=start + timedelta(days=3))


def test_an_unknown_predicate_fails_the_run_with_a_reason() -> None:
    result = run_one(predicate_workflow())
    (run,) = result.runs
    assert run.status == RunStatus.FAILED
    assert run.reason is not None
    assert "check" in run.reason and "no predicate named 'nope'" in run.reason
    assert result.emails == []


def test_a_predicate_given_to_the_simulation_is_used() -> None:
    result = run_one(predicate_workflow(), predicates={"nope": lambda where: True})
    (run,) = result.runs
    assert run.status == RunStatus.COMPLETED
    assert run.path == ["check", "yes"]
    assert [e.subject for e in result.emails] == ["Yes"]


def test_an_unknown_predicate_in_a_trigger_is_a_warning_not_a_crash() -> None:
    workflow = predicate_workflow(trigger={"event": "go", "where": {"predicate": "missing"}})
    result = run_one(workflow)
    assert result.runs == []
    assert any("no predicate named 'missing'" in w.message for w in result.warnings)


@pytest.mark.parametrize(
    "extra",
    [
        {"goal": {"predicate": "missing"}},
        {"goal": {"event": "later", "where": {"predicate": "missing"}}},
        {"exit_when": {"event": "later", "where": {"predicate": "missing"}}},
    ],
    ids=["bare-goal", "event-goal", "exit-when"],
)
def test_an_unknown_predicate_in_a_goal_fails_the_run(extra: dict[str, Any]) -> None:
    workflow = parse_workflow(
        {
            "id": "wf",
            "trigger": {"event": "go"},
            "steps": [{"id": "pause", "wait": "1d"}, {"id": "hello", "email": {"subject": "Hi"}}],
            **extra,
        }
    )
    result = run_one(workflow)
    (run,) = result.runs
    assert run.status == RunStatus.FAILED
    assert "no predicate named 'missing'" in (run.reason or "")
    assert result.emails == []
