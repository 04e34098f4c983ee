"""Whether an event starts a workflow, and whether a contact may (re-)enter it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowmail.engine.conditions import Scope, compare, evaluate
from flowmail.engine.state import IDENTIFY, Contact, Event, Run, stable_hash
from flowmail.engine.timing import date_fire_time, in_window, next_cron, zone
from flowmail.language.models import (
    AttributeTrigger,
    BehaviorTrigger,
    DateTrigger,
    EventTrigger,
    ReEntryAfter,
    ScheduleTrigger,
    Workflow,
)


def matches(workflow: Workflow, before: Contact, scope: Scope, default_tz: str = "UTC") -> bool:
    """Whether ``scope.event`` triggers ``workflow`` (``before``: the contact before it).

    ``hours`` are read in the contact's zone, or ``default_tz`` when it has none.
    """
    trigger, event = workflow.trigger, scope.event
    assert event is not None
    if isinstance(trigger, EventTrigger):
        if event.name != trigger.event:
            return False
        tz = zone(scope.contact.timezone, default_tz)
        hours = trigger.hours
        if hours is not None and not in_window(event.at, hours.start, hours.end, tz):
            return False
        return trigger.where is None or evaluate(trigger.where, scope)
    if isinstance(trigger, BehaviorTrigger):
        spec = trigger.behavior
        if event.name != spec.event:
            return False
        if spec.where is not None and not evaluate(spec.where, scope):
            return False
        recent = scope.history.events(spec.event, event.at - spec.within, event.at)
        if spec.where is not None:
            recent = [e for e in recent if evaluate(spec.where, _scope_for(scope, e))]
        count = len(recent) + (0 if any(e.id == event.id for e in recent) else 1)
        return count >= spec.count
    if isinstance(trigger, AttributeTrigger):
        name, target = trigger.attribute.name, trigger.attribute.becomes
        if event.name != IDENTIFY or name not in (event.traits or {}):
            return False
        old = before.as_variables().get(name)
        new = scope.contact.as_variables().get(name)
        return compare(new, "eq", target) and not compare(old, "eq", target)
    return False


def _scope_for(scope: Scope, event: Event) -> Scope:
    return Scope(scope.contact, scope.now, scope.history, event, scope.run, scope.predicates)


def may_enter(workflow: Workflow, runs: Sequence[Run], now: datetime) -> str | None:
    """None when the contact may start a run now, else the reason it may not."""
    mine = [r for r in runs if r.workflow_id == workflow.id]
    if any(not r.status.ended for r in mine):
        return "already in an active run"
    if not mine:
        return None
    if workflow.re_entry == "never":
        return "re_entry is never and the contact has had a run"
    if isinstance(workflow.re_entry, ReEntryAfter):
        last = max(r.started_at for r in mine)
        if now < last + workflow.re_entry.after:
            return "re_entry wait has not passed"
    return None


def date_fire(workflow: Workflow, contact: Contact, default_tz: str) -> datetime | None:
    """When a date trigger fires for this contact, from its attribute (None: no date)."""
    trigger = workflow.trigger
    if not isinstance(trigger, DateTrigger):
        return None
    spec = trigger.date
    value = contact.as_variables().get(spec.attribute)
    return date_fire_time(value, spec.offset, spec.at, zone(contact.timezone, default_tz))


def next_tick(workflow: Workflow, timezone: str, after: datetime) -> datetime | None:
    """The next schedule tick strictly after ``after``, in ``timezone`` (None: no more)."""
    trigger = workflow.trigger
    if not isinstance(trigger, ScheduleTrigger):
        return None
    spec = trigger.schedule
    if spec.at is not None:
        return spec.at if spec.at > after else None
    assert spec.cron is not None
    return next_cron(spec.cron, after, zone(timezone))


def time_trigger_event(workflow: Workflow, contact: Contact, at: datetime) -> Event:
    """The synthetic event that starts a date- or schedule-triggered run."""
    trigger = workflow.trigger
    if isinstance(trigger, DateTrigger):
        name = "date"
        value = contact.as_variables().get(trigger.date.attribute)
        properties = {"attribute": trigger.date.attribute, "value": value}
    else:
        name, properties = "schedule", {"tick": at.isoformat()}
    event_id = stable_hash("time-trigger", workflow.id, contact.id, at.isoformat())
    return Event(contact.id, name, at, {**properties, "workflow": workflow.id}, id=event_id)
