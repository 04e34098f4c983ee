"""Drive the durable runtime (real store + worker) over virtual time, like the simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flowmail.clock import VirtualClock
from flowmail.engine.state import IDENTIFY
from flowmail.language.models import Workflow
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker, WorkerOptions
from flowmail.simulate.runner import iso
from flowmail.simulate.scenario import Scenario
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore


def run_durably(
    store: SqlStore,
    scenario: Scenario,
    workflows: list[Workflow],
    definitions: list[dict[str, Any]],
) -> dict[str, Any]:
    """Apply the workflows, feed the scenario's events at their times, fire every timer."""
    times = [e.at for e in scenario.events]
    start = scenario.start or min(times)
    until = scenario.until or max([start, *times]) + timedelta(days=90)
    clock = VirtualClock(start)
    worker = Worker(store, clock, WorkerOptions(default_timezone=scenario.timezone))
    contacts = [
        InboundEvent(
            c.id,
            IDENTIFY,
            start,
            traits={"email": c.email, "timezone": c.timezone, **c.attributes},
            id=f"seed:{c.id}",
            kind="identify",
        )
        for c in scenario.contacts
    ]
    store.ingest(contacts, start)
    worker.drain()
    for definition in definitions:
        apply_workflow(store, DEFAULT_WORKSPACE, definition, start, scenario.timezone)
    events = sorted(scenario.events, key=lambda e: e.at)
    index = 0
    while True:
        due = store.next_due()
        next_event = events[index].at if index < len(events) else None
        candidates = [t for t in (due, next_event) if t is not None and t <= until]
        if not candidates:
            break
        moment = max(min(candidates), clock.now())
        clock.set(moment)
        batch = []
        while index < len(events) and events[index].at <= moment:
            e = events[index]
            kind = "identify" if e.identify is not None else "track"
            batch.append(
                InboundEvent(
                    e.contact,
                    e.name or IDENTIFY,
                    e.at,
                    e.properties,
                    e.identify,
                    id=e.id or f"scenario:{index}",
                    kind=kind,
                )
            )
            index += 1
        store.ingest(batch, moment)
        worker.drain()
    return snapshot(store)


def snapshot(store: SqlStore) -> dict[str, Any]:
    """The simulator's JSON shape, read from the store."""
    emails = [
        {
            "at": iso(m["created_at"]),
            "contact": m["contact_id"],
            "to": m["to_address"],
            "workflow": m["workflow_id"],
            "step": m["step_id"],
            "subject": m["subject"],
        }
        for m in store.messages()
    ]
    runs = [
        {
            "contact": r.contact_id,
            "workflow": r.workflow_id,
            "status": str(r.status),
            "path": list(r.path),
        }
        for r in store.runs()
    ]
    order = ("at", "contact", "workflow", "step")
    return {"emails": sorted(emails, key=lambda e: tuple(e[k] for k in order)), "runs": runs}


__all__ = ["datetime", "run_durably", "snapshot"]
