"""The engine's entry points: an event, a wake, a time trigger or an enrolment for one contact.

Each takes the contact, its runs, a read-only history and ``now`` and returns decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flowmail.engine.advance import Pass, end_run, goal_reached, proceed, same_as_trigger
from flowmail.engine.catalog import Catalog, Mode, Version
from flowmail.engine.conditions import PredicateFn, Scope, evaluate
from flowmail.engine.decisions import Decision
from flowmail.engine.predicates import PREDICATES
from flowmail.engine.state import (
    ENGAGEMENT_EVENTS,
    IDENTIFY,
    Contact,
    Event,
    History,
    Run,
    RunStatus,
    bucket,
    stable_hash,
)
from flowmail.engine.timing import utc
from flowmail.engine.triggers import matches, may_enter, time_trigger_event
from flowmail.language.models import ScheduleTrigger, WaitForStep


@dataclass(frozen=True)
class Context:
    """What the engine may read besides the contact and its runs."""

    now: datetime
    history: History
    catalog: Catalog
    default_timezone: str = "UTC"
    predicates: Mapping[str, PredicateFn] = field(default_factory=lambda: PREDICATES)

    def start(self, contact: Contact) -> Pass:
        scope = Scope(contact, utc(self.now), self.history, predicates=self.predicates)
        return Pass(contact, utc(self.now), scope, self.default_timezone)


def _live(runs: Sequence[Run]) -> list[Run]:
    return sorted((r for r in runs if not r.status.ended), key=lambda r: (r.started_at, r.id))


def on_event(contact: Contact, runs: Sequence[Run], event: Event, ctx: Context) -> list[Decision]:
    """An event arrived: identify changes, engagement, goals, exits, wait_for, then triggers."""
    work = ctx.start(contact)
    before = contact
    if event.name == IDENTIFY and event.traits:
        work.update_contact(dict(event.traits))
    for run in _live(runs):
        version = ctx.catalog.version(run.workflow_id, run.version)
        if version is not None:
            mine = run.copy()
            try:
                _observe(work, version, mine, event)
            except LookupError as exc:  # an unknown predicate in goal, exit_when or wait_for
                end_run(work, mine, RunStatus.FAILED, str(exc))
    if event.name in ENGAGEMENT_EVENTS:
        _observe_ended(work, runs, event)
    for version in ctx.catalog.enrolling():
        try:
            triggered = matches(version.workflow, before, work.scope(None, event), work.default_tz)
        except LookupError as exc:
            work.warn(f"trigger of workflow {version.id!r}: {exc}")
            continue
        if triggered:
            start_run(work, version, work.runs_now(runs), event)
    return work.result()


def _observe(work: Pass, version: Version, run: Run, event: Event) -> None:
    workflow = version.workflow
    changed = _engagement(run, event)
    if changed:
        work.record(run, event.properties.get("step"), event.name.removeprefix("email_"))
    scope = work.scope(run, event)
    if goal_reached(workflow.goal, scope):
        return end_run(work, run, RunStatus.CONVERTED, f"goal: {event.name}")
    if goal_reached(workflow.exit_when, scope):
        return end_run(work, run, RunStatus.EXITED, f"exit_when: {event.name}")
    step = workflow.step(run.step) if run.step and workflow.has_step(run.step) else None
    if (
        run.status == RunStatus.WAITING
        and isinstance(step, WaitForStep)
        and run.waiting_for == event.name
        and _awaited(step, run, scope)
    ):
        work.record(run, step.id, "event", event=event.name)
        return proceed(work, version, run, step.on_event or _after(version, step.id))
    if changed:
        work.save(run)


def _observe_ended(work: Pass, runs: Sequence[Run], event: Event) -> None:
    """An open or click of an ended run's email is still noted (the last email of a run is
    mostly read after the run ended): the split statistics count it."""
    for run in runs:
        if run.status.ended and _engaged_step(run, event) is not None:
            mine = run.copy()
            if _engagement(mine, event):
                work.record(mine, event.properties.get("step"), event.name.removeprefix("email_"))
                work.save(mine)


def _after(version: Version, step_id: str) -> str:
    step = version.workflow.step(step_id)
    return step.next or version.workflow.successor(step_id)


def _awaited(step: WaitForStep, run: Run, scope: Scope) -> bool:
    event = scope.event
    assert event is not None
    if not same_as_trigger(event, run, step.wait_for.match):
        return False
    return step.wait_for.where is None or evaluate(step.wait_for.where, scope)


def _engaged_step(run: Run, event: Event) -> str | None:
    """The step of this run whose email an open or click event is about, if any."""
    props = event.properties
    step = props.get("step")
    message = props.get("message_id")
    if message and message in run.emails.values():
        return next(s for s, key in run.emails.items() if key == message)
    if step not in run.emails or props.get("workflow", run.workflow_id) != run.workflow_id:
        return None
    return str(step)


def _engagement(run: Run, event: Event) -> bool:
    """Note an open or click of this run's email; True if it is new."""
    if event.name not in ENGAGEMENT_EVENTS:
        return False
    step = _engaged_step(run, event)
    if step is None:
        return False
    kind = event.name.removeprefix("email_")
    seen = run.engaged.setdefault(step, [])
    if kind in seen:
        return False
    seen.append(kind)
    if kind == "clicked" and "opened" not in seen:
        seen.append("opened")  # a click proves the open the pixel may have missed
    return True


def start_run(work: Pass, version: Version, runs: Sequence[Run], trigger: Event) -> Run | None:
    """Start a run if re-entry allows; it proceeds from the first step at once."""
    workflow = version.workflow
    if version.mode != Mode.ACTIVE:
        return None
    if may_enter(workflow, runs, work.now) is not None:
        return None
    run = Run(
        id=stable_hash("run", workflow.id, work.contact.id, trigger.id),
        workflow_id=workflow.id,
        version=version.number,
        contact_id=work.contact.id,
        started_at=work.now,
        trigger=trigger,
        holdout=bucket(workflow.id, work.contact.id, "holdout") < workflow.holdout,
    )
    work.record(run, None, "enrolled", trigger=trigger.name, holdout=run.holdout)
    work.save(run, new=True)
    proceed(work, version, run, workflow.steps[0].id)
    return run


def on_wake(contact: Contact, run: Run, ctx: Context) -> list[Decision]:
    """A run's timer fell due: a wait ends, or a wait_for times out."""
    work = ctx.start(contact)
    version = ctx.catalog.version(run.workflow_id, run.version)
    if run.status != RunStatus.WAITING or run.wake_at is None or run.wake_at > work.now:
        return []  # stale: the run moved on since this wake was set
    run = run.copy()
    if version is None or run.step is None or not version.workflow.has_step(run.step):
        end_run(work, run, RunStatus.FAILED, "its workflow version or step no longer exists")
        return work.result()
    step = version.workflow.step(run.step)
    target = _after(version, step.id)
    if isinstance(step, WaitForStep):
        work.record(run, step.id, "timeout", event=step.wait_for.event)
        target = step.on_timeout or target
    proceed(work, version, run, target)
    return work.result()


def on_time_trigger(
    contact: Contact, runs: Sequence[Run], version: Version, at: datetime, ctx: Context
) -> list[Decision]:
    """A date or schedule trigger fired for this contact at ``at``."""
    work = ctx.start(contact)
    trigger = version.workflow.trigger
    event = time_trigger_event(version.workflow, contact, at)
    where = trigger.schedule.where if isinstance(trigger, ScheduleTrigger) else None
    try:
        if where is not None and not evaluate(where, work.scope(None, event)):
            return []
    except LookupError as exc:
        work.warn(f"trigger of workflow {version.id!r}: {exc}")
        return work.result()
    start_run(work, version, runs, event)
    return work.result()


def on_enroll(
    contact: Contact, runs: Sequence[Run], workflow_id: str, trigger: Event, ctx: Context
) -> list[Decision]:
    """An ``enroll`` step of another run asks to start this workflow."""
    work = ctx.start(contact)
    version = ctx.catalog.current(workflow_id)
    if version is None:
        work.warn(f"enroll: there is no workflow {workflow_id!r}")
        return work.result()
    start_run(work, version, runs, trigger)
    return work.result()


def tend(contact: Contact, runs: Sequence[Run], ctx: Context) -> list[Decision]:
    """React to workflow modes: cancelled workflows end their runs, unfrozen ones resume."""
    work = ctx.start(contact)
    for run in _live(runs):
        version = ctx.catalog.version(run.workflow_id, run.version)
        if version is None:
            continue
        if version.mode == Mode.CANCEL:
            end_run(work, run.copy(), RunStatus.EXITED, "workflow cancelled")
        elif run.status == RunStatus.ACTIVE and run.step and version.mode != Mode.FREEZE:
            proceed(work, version, run.copy(), run.step)
    return work.result()
