"""The worker: claims contacts with due work, runs the engine, writes the outcome.

One batch is two short transactions: a claim (a lease on each contact) and a commit
that writes every unit's runs, journal, outbox and processed marks together and
releases the leases. A worker killed between the two loses nothing: its leases
expire and another worker does the work from the start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from flowmail.analytics import monitor
from flowmail.analytics.splits import decide_winners
from flowmail.clock import Clock
from flowmail.delivery.addresses import clean_email
from flowmail.engine.advance import end_run
from flowmail.engine.decisions import (
    CallWebhook,
    Decision,
    EnrollContact,
    Record,
    SaveRun,
    SendEmail,
    UpdateContact,
    Warn,
)
from flowmail.engine.journeys import Context, on_enroll, on_event, on_time_trigger, on_wake, tend
from flowmail.engine.state import Event, Run, RunStatus
from flowmail.engine.triggers import date_fire, next_tick
from flowmail.language.models import DateTrigger, ScheduleTrigger
from flowmail.runtime.catalog import StoreCatalog
from flowmail.runtime.history import StoreHistory
from flowmail.settings import Settings
from flowmail.store.analytics import compact
from flowmail.store.conversions import Attribution, Conversion, ConvertingResult, event_value
from flowmail.store.notify import Listener
from flowmail.store.records import PendingEvent, Unit, UnitResult
from flowmail.store.splits import load_winners
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.worker")

_WAKE, _DATE = 2, 3
_RANK = {"track": 0, "identify": 0, "enroll": 1, "schedule": 4}  # order at one instant
_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class WorkerOptions:
    batch: int = 256
    lease: timedelta = timedelta(seconds=30)
    poll: float = 0.1
    default_timezone: str = "UTC"
    retention: timedelta = timedelta(days=90)
    prune_every: timedelta = timedelta(hours=1)
    conversion_events: tuple[str, ...] = ("purchase", "order_completed")  # and workflow goals
    attribution: Attribution = field(default_factory=Attribution)
    decide_every: timedelta = timedelta(minutes=1)  # split winner rules
    replay_event_time: bool = False  # decide past-stamped events at their own time
    monitor: Settings | None = None  # take health samples and evaluate alerts with these

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        return cls(
            batch=settings.worker_batch,
            lease=timedelta(seconds=settings.lease_seconds),
            poll=settings.poll_seconds,
            default_timezone=settings.default_timezone,
            retention=timedelta(days=settings.retention_days),
            conversion_events=tuple(settings.conversion_events),
            attribution=Attribution(
                timedelta(hours=settings.attribution_hours),
                "first" if settings.attribution_model == "first" else "last",
            ),
            replay_event_time=settings.replay_event_time,
            monitor=settings,
        )


class Worker:
    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        options: WorkerOptions | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.options = options or WorkerOptions()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._catalogs: dict[str, StoreCatalog] = {}
        self.processed = 0
        self._pruned_at: datetime | None = None
        self._decided_at: datetime | None = None
        self._conversion_events = frozenset(self.options.conversion_events)

    # --- one batch -------------------------------------------------------------------

    def step(self) -> int:
        """Handle one batch of due work; returns the number of contacts handled."""
        now = self.clock.now()
        self._refresh_catalogs()
        self.fire_schedules(now)
        keys = self.store.claim(self.id, now, self.options.batch, self.options.lease)
        if not keys:
            return 0
        units = self.store.load(keys, now)
        results = [self.handle(unit, now) for unit in units]
        written = self.store.commit(self.id, results, now)
        done = set(written)
        self.processed += sum(len(r.processed) for r in results if r.key in done)
        return len(written)

    def drain(self, max_batches: int = 1_000_000) -> int:
        """Handle everything due now; returns contacts handled (for tests and cron)."""
        total = 0
        for _ in range(max_batches):
            handled = self.step()
            if handled == 0:
                break
            total += handled
        return total

    def _refresh_catalogs(self) -> None:
        rows = self.store.workflow_rows()
        winners = load_winners(self.store)
        for workspace_id in {row.workspace_id for row in rows} | set(self._catalogs):
            self.catalog(workspace_id).refresh(rows, winners.get(workspace_id, {}))

    def catalog(self, workspace_id: str) -> StoreCatalog:
        if workspace_id not in self._catalogs:
            catalog = StoreCatalog(self.store, workspace_id)
            catalog.refresh()
            self._catalogs[workspace_id] = catalog
        return self._catalogs[workspace_id]

    # --- one contact -----------------------------------------------------------------

    def handle(self, unit: Unit, now: datetime) -> ConvertingResult:
        """Run the engine over one contact's pending events, due wakes and date triggers,
        in time order (a worker that fell behind decides as a punctual one would have)."""
        catalog = self.catalog(unit.workspace_id)
        history = StoreHistory(self.store, unit.workspace_id, unit.contact.id, now)
        ctx = Context(now, history, catalog, self.options.default_timezone)
        result = ConvertingResult(unit.workspace_id, unit.contact)
        runs: dict[str, Run] = {run.id: run for run in unit.runs}
        zone_before = unit.contact.timezone
        # With replay_event_time, the engine decides at each item's own time (never before
        # what the contact's runs already saw, never after now): a worker that fell behind,
        # or events stamped in the past (a backfill, a demo), play out as a punctual worker
        # would have run them. Without it, everything is decided now.
        floor = max((r.started_at for r in unit.runs), default=None)
        changed_at: list[datetime] = []

        def at(moment: datetime) -> Context:
            if not self.options.replay_event_time:
                return ctx
            when = min(moment, now)
            return replace(ctx, now=when if floor is None else max(when, floor))

        def apply(decisions: Sequence[Decision]) -> None:
            _apply(result, runs, decisions, now)

        def attempt(run: Run | None, work: Callable[[], Sequence[Decision]]) -> None:
            """Timers have no event to mark: an engine bug fails the run it concerns."""
            try:
                decisions = work()
            except Exception as exc:  # an engine bug must not block the contact forever
                log.exception("contact %s, run %s failed", unit.contact.id, run and run.id)
                if run is None:
                    return
                failing = ctx.start(result.contact)
                reason = f"{type(exc).__name__}: {exc}"
                end_run(failing, runs[run.id].copy(), RunStatus.FAILED, reason)
                decisions = failing.result()
            apply(decisions)

        def handle_event(pending: PendingEvent) -> None:
            try:
                moment = at(pending.event.at)
                apply(self._event(result, list(runs.values()), pending.kind, pending.event, moment))
                if pending.event.traits:
                    changed_at.append(moment.now)
                result.processed.append((pending.seq, None))
            except Exception as exc:  # an engine bug must not block the contact forever
                log.exception("event %s failed", pending.event.id)
                result.processed.append((pending.seq, f"{type(exc).__name__}: {exc}"))

        woken: set[tuple[str, datetime]] = set()

        def next_wake() -> Run | None:
            due = [
                r
                for r in runs.values()
                if not r.status.ended
                and r.wake_at is not None
                and r.wake_at <= now
                and (r.id, r.wake_at) not in woken
            ]
            return min(due, key=lambda r: (r.wake_at or now, r.id), default=None)

        # One timeline, in time order, as the simulator has it: at one instant, events,
        # then enrolments, then run wakes, then date triggers, then schedule ticks.
        events = deque(sorted(unit.events, key=lambda p: (p.event.at, _RANK.get(p.kind, 0), p.seq)))
        fires = deque(sorted((at, wid) for wid, at in unit.date_fires.items() if at <= now))
        while True:
            wake = next_wake()
            options = [
                *([(events[0].event.at, _RANK.get(events[0].kind, 0))] if events else []),
                *([(wake.wake_at, _WAKE)] if wake is not None and wake.wake_at else []),
                *([(fires[0][0], _DATE)] if fires else []),
            ]
            if not options:
                break
            _, rank = min(options)
            if rank == _WAKE and wake is not None and wake.wake_at is not None:
                woken.add((wake.id, wake.wake_at))
                attempt(wake, partial(on_wake, result.contact, wake, at(wake.wake_at)))
            elif rank == _DATE:
                fire_at, workflow_id = fires.popleft()
                result.date_fires[workflow_id] = None
                version = catalog.current(workflow_id)
                if version is not None:
                    live = list(runs.values())
                    attempt(
                        None,
                        partial(
                            on_time_trigger, result.contact, live, version, fire_at, at(fire_at)
                        ),
                    )
            else:
                handle_event(events.popleft())
        for run in sorted(runs.values(), key=lambda r: (r.started_at, r.id)):
            attempt(run, partial(tend, result.contact, [runs[run.id]], ctx))
        if result.contact_changed:
            self._replan_dates(result, unit, catalog, min(changed_at, default=now))
        if result.contact.timezone != zone_before:
            self._add_zone(unit.workspace_id, result.contact.timezone, catalog, now)
        pending_fires = [
            at for wid, at in unit.date_fires.items() if wid not in result.date_fires
        ] + [at for at in result.date_fires.values() if at is not None]
        wakes = [r.wake_at for r in runs.values() if r.wake_at is not None and not r.status.ended]
        result.wake_at = min([*wakes, *pending_fires], default=None)
        result.conversions = self._conversions(unit, catalog)
        return result

    def _conversions(self, unit: Unit, catalog: StoreCatalog) -> list[Conversion]:
        """The unit's events that are conversions, to credit (see store.conversions)."""
        named, goals = self._conversion_events, catalog.goal_events()
        rule = self.options.attribution
        return [
            Conversion(e.id, e.contact_id, e.name, e.at, event_value(e.properties), rule)
            for e in (p.event for p in unit.events if p.kind == "track")
            if e.name in named or e.name in goals
        ]

    def _event(
        self, result: UnitResult, runs: list[Run], kind: str, event: Event, ctx: Context
    ) -> list[Decision]:
        contact = result.contact
        if kind == "enroll":
            trigger = Event.from_dict(event.properties["trigger"])
            return on_enroll(contact, runs, event.name, trigger, ctx)
        if kind == "schedule":
            version = ctx.catalog.current(event.name)
            return [] if version is None else on_time_trigger(contact, runs, version, event.at, ctx)
        if event.traits and "email" in event.traits:  # before the engine can send to it
            event = replace(event, traits=_checked(result, {}, event.traits, event.at))
        return on_event(contact, runs, event, ctx)

    def _replan_dates(
        self, result: UnitResult, unit: Unit, catalog: StoreCatalog, now: datetime
    ) -> None:
        for version in catalog.enrolling():
            if not isinstance(version.workflow.trigger, DateTrigger):
                continue
            fire = date_fire(version.workflow, result.contact, self.options.default_timezone)
            known = unit.date_fires.get(version.id)  # planned before, fired now or not
            if fire is not None and fire >= now and fire != known:
                result.date_fires[version.id] = fire
            elif fire is None and result.date_fires.get(version.id, known) is not None:
                result.date_fires[version.id] = None

    def _add_zone(
        self, workspace_id: str, zone: str | None, catalog: StoreCatalog, now: datetime
    ) -> None:
        tz = zone or self.options.default_timezone
        for version in catalog.enrolling():
            trigger = version.workflow.trigger
            if isinstance(trigger, ScheduleTrigger) and trigger.schedule.cron is not None:
                tick = next_tick(version.workflow, tz, now - _INSTANT)  # a tick at now counts
                self.store.add_schedule_zone(workspace_id, version.id, tz, tick)

    # --- schedules -------------------------------------------------------------------

    def fire_schedules(self, now: datetime) -> int:
        """Turn due schedule ticks into inbox events for the contacts in their zone."""
        queued = 0
        for workspace_id, workflow_id, zone, tick in self.store.due_schedules(now):
            version = self.catalog(workspace_id).current(workflow_id)
            following = None
            if version is not None and zone != "*":
                following = next_tick(version.workflow, zone, tick)
            queued += self.store.enqueue_tick(
                workspace_id,
                workflow_id,
                zone,
                tick,
                following,
                self.options.default_timezone,
                now,
            )
        return queued

    # --- the loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; finish the batch in hand before returning."""
        log.info("worker %s started", self.id)
        listener = self.store.listener() if self.store.postgres else None
        try:
            while not stop.is_set():
                now = self.clock.now()
                self.store.heartbeat(self.id, "worker", now, {"processed": self.processed})
                self.maintain(now)
                if self.step():
                    continue
                self._sleep(stop, listener)
        finally:
            if listener is not None:
                listener.close()
        log.info("worker %s stopped after %d events", self.id, self.processed)

    def maintain(self, now: datetime) -> dict[str, int] | None:
        """Decide split winners (once a minute), take the health sample and evaluate the
        alerts (once per sample interval), and prune processed events and journal rows
        past the retention (once in a while)."""
        self.decide(now)
        if self.options.monitor is not None:
            try:
                monitor.tick(self.store, self.options.monitor, now)
            except Exception:  # monitoring must never stop the worker: try again next time
                log.exception("taking a health sample or evaluating alerts failed")
        if self._pruned_at is not None and now - self._pruned_at < self.options.prune_every:
            return None
        self._pruned_at = now
        compact(self.store, now)  # fold old hourly counter rows together
        pruned = self.store.prune(now - self.options.retention)
        if any(pruned.values()):
            log.info("pruned %s", pruned)
        return pruned

    def decide(self, now: datetime) -> list[tuple[str, str, int, str, str]] | None:
        """Evaluate the splits' winner rules, at most once per ``decide_every``."""
        if self._decided_at is not None and now - self._decided_at < self.options.decide_every:
            return None
        self._decided_at = now
        try:
            decided = decide_winners(self.store, now)
        except Exception:  # statistics must never stop the worker: try again next time
            log.exception("deciding split winners failed")
            return []
        for workspace_id, workflow_id, version, step_id, target in decided:
            where = f"split {step_id} of {workflow_id} v{version} ({workspace_id})"
            log.info("%s: arm %s won", where, target)
        return decided

    def _sleep(self, stop: threading.Event, listener: Listener | None) -> None:
        timeout = self.options.poll
        due = self.store.next_due()
        if due is not None:
            timeout = max(0.0, min(timeout, (due - self.clock.now()).total_seconds()))
        if listener is None:
            stop.wait(timeout)
            return
        listener.wait(timeout)


def _apply(
    result: UnitResult, runs: dict[str, Run], decisions: Sequence[Decision], now: datetime
) -> None:
    for decision in decisions:
        match decision:
            case SaveRun(run, new):
                runs[run.id] = run
                was_new = result.runs.get(run.id, (run, False))[1]
                result.runs[run.id] = (run, new or was_new)
            case SendEmail():
                result.messages.append(decision)
            case UpdateContact(_, values):
                values = _checked(result, runs, values, now)
                result.contact = result.contact.with_attributes(values)
                result.contact_changed = True
            case CallWebhook():
                result.webhooks.append(decision)
            case EnrollContact():
                result.enrolments.append(decision)
            case Record():
                result.journal.append(decision)
            case Warn():
                result.journal.append(_warning_record(result, runs, decision))


def _checked(
    result: UnitResult, runs: dict[str, Run], values: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """``values`` without an invalid email address, which is journaled instead."""
    values, warning = clean_email(values, result.contact.email)
    if warning is not None:
        result.journal.append(_warning_record(result, runs, Warn(at, warning)))
    return values


def _warning_record(result: UnitResult, runs: dict[str, Run], warn: Warn) -> Record:
    """Warnings land in the journal beside the step they concern (not in the log)."""
    run = runs.get(warn.run_id or "")
    return Record(
        warn.at,
        result.contact.id,
        run.workflow_id if run else "",
        warn.run_id or "",
        warn.step_id,
        "warning",
        {"message": warn.message},
    )
