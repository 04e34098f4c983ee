"""Properties over random small workflows and random event streams (hypothesis)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmail.language.graph import edges
from flowmail.language.loader import parse_workflow
from flowmail.language.models import END, EmailStep, Workflow
from flowmail.simulate import Simulation, SimulationResult

T0 = datetime(2025, 3, 6, 9, 0, tzinfo=UTC)  # spans the March DST change in New York
HORIZON = T0 + timedelta(days=4)
CONTACTS = ("c0", "c1", "c2")
ZONES = (None, "America/New_York", "Asia/Tokyo")
EVENT_NAMES = ("go", "go", "go", "buy", "click", "reply", "unsubscribed", "email_opened")

PROPERTIES = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CONDITIONS = st.sampled_from(
    [
        {"contact.plan": "pro"},
        {"event.cart_id": "c1"},
        {"contact.tags": {"contains": "seen"}},
        {"history": {"event": "buy", "within": "1d"}},
        {"history": {"event": "click", "max": 1}},
        {"engagement": {"gte": 0.3}},
        {"opened": "s0"},
        {"any": [{"contact.plan": {"in": ["pro", "team"]}}, {"not": {"event.cart_id": "c2"}}]},
        {"user.plan": {"exists": False}, "event.name": "go"},
    ]
)
KINDS = st.sampled_from(
    ["email"] * 4 + ["wait"] * 4 + ["wait_for"] * 3 + ["branch", "split", "tag", "update", "exit"]
)
SUBJECTS = st.sampled_from(
    ["Hi", "Hi {{ contact.first_name }}", "Cart {{ event.cart_id | default: 'none' }}"]
)


@st.composite
def raw_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid workflow: forward jumps anywhere, backward jumps only out of waits."""
    count = draw(st.integers(min_value=1, max_value=7))
    ids = [f"s{index}" for index in range(count)]
    steps: list[dict[str, Any]] = []
    for index, step_id in enumerate(ids):
        forward = st.sampled_from([*ids[index + 1 :], END])
        anywhere = st.sampled_from([*ids, END])
        kind = draw(KINDS)
        step: dict[str, Any] = {"id": step_id}
        if kind == "email":
            step["email"] = {"subject": draw(SUBJECTS)}
            if draw(st.booleans()):
                step["next"] = draw(forward)
        elif kind == "wait":
            if draw(st.booleans()):
                step["wait"] = draw(st.sampled_from(["1h", "90m", "1d", "2d"]))
                if draw(st.integers(min_value=0, max_value=2)):
                    step["next"] = draw(anywhere)  # maybe a loop, through this wait
            else:
                step["wait"] = draw(
                    st.sampled_from(
                        [
                            {"business_hours": {"start": 9, "end": 17}},
                            {"until_time": "10:00", "days": ["mon", "sat"]},
                            {"until": "2025-03-08T12:00:00Z"},
                        ]
                    )
                )
        elif kind == "wait_for":
            step["wait_for"] = {
                "event": draw(st.sampled_from(["buy", "click", "reply"])),
                "timeout": draw(st.sampled_from(["2h", "1d"])),
            }
            if draw(st.booleans()):
                step["wait_for"]["match"] = ["cart_id"]
            if draw(st.booleans()):
                step["on_event"] = draw(forward)
            if draw(st.integers(min_value=0, max_value=2)):
                step["on_timeout"] = draw(anywhere)  # maybe a loop, through this wait
        elif kind == "branch":
            step["branch"] = [
                {"if": draw(CONDITIONS), "then": draw(forward)},
                {"else": draw(forward)},
            ]
        elif kind == "split":
            cases = draw(st.integers(min_value=2, max_value=3))
            step["split"] = [
                {"weight": draw(st.integers(min_value=1, max_value=90)), "then": draw(forward)}
                for _ in range(cases)
            ]
        elif kind == "tag":
            step["tag"] = "seen"
        elif kind == "update":
            step["update"] = {"plan": draw(st.sampled_from(["pro", "free"]))}
        else:
            step["exit"] = True
        steps.append(step)

    raw: dict[str, Any] = {
        "id": "wf",
        "trigger": draw(
            st.sampled_from(
                [
                    {"event": "go"},
                    {"event": "go", "where": {"event.cart_id": {"in": ["c1", "c2"]}}},
                    {"event": "go", "hours": {"start": 8, "end": 20}},
                ]
            )
        ),
        "re_entry": draw(st.sampled_from(["never", "always", {"after": "1d"}])),
        "steps": _reachable_only(steps),
    }
    goal = draw(st.sampled_from([None, {"event": "buy"}, {"contact.plan": "pro"}]))
    if goal is not None:
        raw["goal"] = goal
    if draw(st.booleans()):
        raw["exit_when"] = {"event": "unsubscribed"}
    return raw


def _reachable_only(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop steps no path reaches (the edges among the others do not change)."""
    ids = [step["id"] for step in steps]
    following = dict(zip(ids, [*ids[1:], END], strict=True))
    by_id = {step["id"]: step for step in steps}

    def targets(step: dict[str, Any]) -> list[str]:
        after = step.get("next", following[step["id"]])
        if "exit" in step:
            return []
        if "branch" in step:
            return [case.get("then", case.get("else")) for case in step["branch"]]
        if "split" in step:
            return [case["then"] for case in step["split"]]
        if "wait_for" in step:
            return [step.get("on_event", after), step.get("on_timeout", after)]
        return [after]

    seen: set[str] = set()
    todo = [ids[0]]
    while todo:
        current = todo.pop()
        if current == END or current in seen:
            continue
        seen.add(current)
        todo.extend(targets(by_id[current]))
    return [step for step in steps if step["id"] in seen]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(CONTACTS),
        st.one_of(
            st.sampled_from(EVENT_NAMES),
            st.sampled_from([{"plan": "pro"}, {"plan": "free"}, {"first_name": "Ana"}]),
        ),
        st.integers(min_value=0, max_value=3 * 24 * 60),
        st.sampled_from([None, "c1", "c2"]),
    ),
    min_size=1,
    max_size=15,
)


def simulate(
    workflow: Workflow, events: list[tuple[str, Any, int, str | None]]
) -> SimulationResult:
    sim = Simulation([workflow], start=T0)
    for contact, zone in zip(CONTACTS, ZONES, strict=True):
        sim.add_contact(contact, email=f"{contact}@example.com", timezone=zone)
    for contact, what, minutes, cart in events:
        at = T0 + timedelta(minutes=minutes)
        if isinstance(what, dict):
            sim.identify(contact, what, at=at)
        else:
            properties = {"step": "s0"} if what == "email_opened" else {}
            if cart is not None:
                properties["cart_id"] = cart
            sim.track(contact, what, at=at, properties=properties)
    return sim.run(until=HORIZON)


def on_a_cycle(workflow: Workflow) -> set[str]:
    """Step ids that can be reached again from themselves."""
    graph = {step.id: [t for t in edges(workflow, step) if t != END] for step in workflow.steps}
    cyclic = set()
    for start in graph:
        todo, seen = list(graph[start]), set()
        while todo:
            current = todo.pop()
            if current == start:
                cyclic.add(start)
                break
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])
    return cyclic


@PROPERTIES
@given(raw=raw_workflows())
def test_generated_workflows_are_valid(raw: dict[str, Any]) -> None:
    workflow = parse_workflow(raw, "generated.yaml")
    assert [step.id for step in workflow.steps] == [step["id"] for step in raw["steps"]]


@PROPERTIES
@given(raw=raw_workflows(), events=EVENTS)
def test_simulating_twice_gives_the_same_output(
    raw: dict[str, Any], events: list[tuple[str, Any, int, str | None]]
) -> None:
    workflow = parse_workflow(raw)
    first, second = simulate(workflow, events), simulate(workflow, events)
    assert first.to_json() == second.to_json()
    assert [r.to_dict() for r in first.runs] == [r.to_dict() for r in second.runs]
    assert first.timeline == second.timeline
    assert first.warnings == second.warnings


@PROPERTIES
@given(raw=raw_workflows(), events=EVENTS)
def test_every_run_ends_or_waits(
    raw: dict[str, Any], events: list[tuple[str, Any, int, str | None]]
) -> None:
    workflow = parse_workflow(raw)
    result = simulate(workflow, events)
    for run in result.runs:
        assert run.status in ("waiting", "completed", "converted", "exited"), run.reason
        if run.status == "waiting":
            assert run.wake_at is not None and run.wake_at > HORIZON
            assert run.ended_at is None
        else:
            assert run.ended_at is not None and run.wake_at is None
    live = Counter(run.contact_id for run in result.runs if run.status == "waiting")
    assert all(count == 1 for count in live.values())  # never two active runs


@PROPERTIES
@given(raw=raw_workflows(), events=EVENTS)
def test_a_step_repeats_only_on_a_cycle_and_paths_follow_edges(
    raw: dict[str, Any], events: list[tuple[str, Any, int, str | None]]
) -> None:
    workflow = parse_workflow(raw)
    cyclic = on_a_cycle(workflow)
    result = simulate(workflow, events)
    for run in result.runs:
        if not run.path:
            continue  # converted before its first step
        assert run.path[0] == workflow.steps[0].id
        repeated = {step for step, count in Counter(run.path).items() if count > 1}
        assert repeated <= cyclic, (run.path, cyclic)
        for here, there in zip(run.path, run.path[1:], strict=False):
            assert there in edges(workflow, workflow.step(here)), (here, there)


@PROPERTIES
@given(raw=raw_workflows(), events=EVENTS)
def test_emails_only_for_email_steps_in_the_path(
    raw: dict[str, Any], events: list[tuple[str, Any, int, str | None]]
) -> None:
    workflow = parse_workflow(raw)
    result = simulate(workflow, events)
    visits: Counter[tuple[str, str]] = Counter()
    for run in result.runs:
        for step_id in run.path:
            if isinstance(workflow.step(step_id), EmailStep):
                visits[(run.contact_id, step_id)] += 1
    emails = Counter((email.contact, email.step) for email in result.emails)
    assert emails == visits
    for email in result.emails:
        assert email.workflow == "wf"
        assert isinstance(workflow.step(email.step), EmailStep)
        assert T0 <= email.at <= HORIZON
