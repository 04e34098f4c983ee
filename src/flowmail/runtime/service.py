"""Operations on workflows that touch more than one table: apply, pause, resume, migrate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowmail.engine.catalog import Mode
from flowmail.engine.state import Run
from flowmail.engine.triggers import date_fire, next_tick
from flowmail.language.loader import parse_workflow
from flowmail.language.models import DateTrigger, ScheduleTrigger, Workflow
from flowmail.store.records import Applied
from flowmail.store.sql import SqlStore

BACKFILL_BATCH = 5_000
PAUSE_MODES = (Mode.DRAIN, Mode.FREEZE, Mode.CANCEL)


def apply_workflow(
    store: SqlStore,
    workspace_id: str,
    definition: dict[str, Any],
    now: datetime,
    default_tz: str = "UTC",
) -> tuple[Workflow, Applied]:
    """Validate and store a definition; set up its schedule or date trigger when it changed."""
    workflow = parse_workflow(definition)
    applied = store.apply_workflow(workspace_id, workflow.id, definition, now)
    if applied.changed:
        plan_time_triggers(store, workspace_id, workflow, now, default_tz)
    return workflow, applied


def plan_time_triggers(
    store: SqlStore, workspace_id: str, workflow: Workflow, now: datetime, default_tz: str
) -> None:
    """Schedule rows for cron/at triggers; fire times for every contact of a date trigger.

    The date backfill reads each contact once, here, so that workers never scan contacts:
    they wake at the stored fire time.
    """
    trigger = workflow.trigger
    if isinstance(trigger, ScheduleTrigger):
        ticks: dict[str, datetime | None]
        if trigger.schedule.at is not None:
            ticks = {"*": trigger.schedule.at} if trigger.schedule.at >= now else {}
        else:
            zones = store.contact_zones(workspace_id, default_tz) | {default_tz}
            since = now - timedelta(microseconds=1)  # a tick at this very instant counts
            ticks = {zone: next_tick(workflow, zone, since) for zone in sorted(zones)}
        store.set_schedules(workspace_id, workflow.id, ticks)
        return
    store.set_schedules(workspace_id, workflow.id, {})
    if not isinstance(trigger, DateTrigger):
        return
    after: str | None = None
    while True:
        contacts = store.contacts_with_attribute(
            workspace_id, trigger.date.attribute, after, BACKFILL_BATCH
        )
        if not contacts:
            break
        fires = {}
        for contact in contacts:
            fire = date_fire(workflow, contact, default_tz)
            if fire is not None and fire >= now:
                fires[contact.id] = fire
        store.schedule_date_fires(workspace_id, workflow.id, fires)
        after = contacts[-1].id


def pause(
    store: SqlStore,
    workspace_id: str,
    workflow_id: str,
    mode: Mode,
    now: datetime,
    reason: str | None = None,
) -> bool:
    if mode not in PAUSE_MODES:
        raise ValueError(f"pause mode must be one of {', '.join(PAUSE_MODES)}")
    return store.set_mode(workspace_id, workflow_id, str(mode), reason, now)


def resume(store: SqlStore, workspace_id: str, workflow_id: str, now: datetime) -> bool:
    """Back to active: enrolments restart and frozen runs continue where they held."""
    return store.set_mode(workspace_id, workflow_id, str(Mode.ACTIVE), None, now)


@dataclass(frozen=True)
class Move:
    run_id: str
    contact_id: str
    from_version: int
    step: str | None
    moved: bool
    problem: str | None = None


def migrate_runs(
    store: SqlStore,
    workspace_id: str,
    workflow_id: str,
    to: int,
    now: datetime,
    dry_run: bool = False,
    lease: timedelta = timedelta(seconds=30),
) -> list[Move]:
    """Move live runs to version ``to``, matching steps by id.

    A run whose current step is not in the target version is reported and left where it is.
    Contacts are leased while their runs move, so no worker handles them meanwhile.
    """
    definition = store.workflow_definition(workspace_id, workflow_id, to)
    if definition is None:
        raise LookupError(f"workflow {workflow_id!r} has no version {to}")
    target = parse_workflow(definition)
    live = [r for r in store.runs(workspace_id, workflow_id=workflow_id) if not r.status.ended]
    moves = [_plan(run, target, to) for run in live if run.version != to]
    if dry_run:
        return moves
    movable = [m for m in moves if m.moved]
    store.move_runs(
        workspace_id, {m.run_id: to for m in movable}, f"migrate:{workflow_id}", now, lease
    )
    return moves


def _plan(run: Run, target: Workflow, to: int) -> Move:
    if run.step is not None and not target.has_step(run.step):
        problem = f"step {run.step!r} is not in version {to}"
        return Move(run.id, run.contact_id, run.version, run.step, False, problem)
    return Move(run.id, run.contact_id, run.version, run.step, True)
