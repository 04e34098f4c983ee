"""The inbox and the worker's unit of work: ingest, claim, load, commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.engine.decisions import EnrollContact, Record, SendEmail
from flowmail.engine.state import Contact, Event, Run
from flowmail.store import conversions, hot, splits
from flowmail.store import schema as t
from flowmail.store.base import StoreBase, chunks, keys_match
from flowmail.store.notify import CHANNEL
from flowmail.store.records import (
    InboundEvent,
    IngestResult,
    Key,
    PendingEvent,
    Unit,
    UnitResult,
)
from flowmail.store.schema import to_micros


class InboxQueries(StoreBase):
    # --- the inbox -------------------------------------------------------------------

    def ingest(self, items: Sequence[InboundEvent], now: datetime) -> IngestResult:
        """Put events in the inbox. A repeated id changes nothing and is counted as duplicate."""
        if not items:
            return IngestResult(0, 0, [])
        received = to_micros(now)
        rows = [
            (
                item.workspace_id,
                item.id or uuid.uuid4().hex,
                item.contact_id,
                item.kind,
                item.name,
                to_micros(item.at),
                hot.dumps(item.properties),
                None if item.traits is None else hot.dumps(item.traits),
                received,
            )
            for item in items
        ]
        contacts = {(row[0], row[2]): (row[0], row[2], received, received) for row in rows}
        with self.engine.begin() as conn:
            new = self._insert_events(conn, rows)
            for chunk in chunks(list(contacts.values())):
                hot.CONTACT_INSERT.run(conn, chunk)
            if self.postgres:
                conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        duplicates = []
        for row in rows:  # a repeat inside the batch is a duplicate too
            key = (row[0], row[1])
            if key in new:
                new.discard(key)
            else:
                duplicates.append(row[1])
        return IngestResult(len(rows) - len(duplicates), len(duplicates), duplicates)

    # --- claiming and loading work ---------------------------------------------------

    def claim(self, owner: str, now: datetime, limit: int, lease: timedelta) -> list[Key]:
        """Lease up to ``limit`` contacts that have pending events or due timers."""
        c, e = t.contacts, t.events
        free = sa.or_(c.c.lease_until.is_(None), c.c.lease_until < now)
        # the oldest pending events first (an index scan), then drop those of contacts other
        # workers hold: joining first would read every contact on every claim. The window is
        # wide enough for several workers' batches in flight plus busy contacts' many events.
        oldest = (
            sa.select(e.c.workspace_id, e.c.contact_id, e.c.seq)
            .where(e.c.processed_at.is_(None))
            .order_by(e.c.seq)
            .limit(limit * 16)
            .subquery()
        )
        pending = (
            sa.select(oldest.c.workspace_id, oldest.c.contact_id)
            .join(
                c, sa.and_(c.c.workspace_id == oldest.c.workspace_id, c.c.id == oldest.c.contact_id)
            )
            .where(free)
            .order_by(oldest.c.seq)
        )
        due = (
            sa.select(c.c.workspace_id, c.c.id)
            .where(c.c.wake_at <= now, free)
            .order_by(c.c.wake_at)
            .limit(limit)
        )
        with self.engine.begin() as conn:
            keys = list(dict.fromkeys(tuple(r) for r in conn.execute(pending)))
            keys += [k for k in (tuple(r) for r in conn.execute(due)) if k not in keys]
            keys = keys[:limit]
            if not keys:
                return []
            if self.postgres:  # skip contacts another worker is claiming right now
                locked = sa.select(c.c.workspace_id, c.c.id).where(keys_match(c.c.id, keys), free)
                keys = [tuple(r) for r in conn.execute(locked.with_for_update(skip_locked=True))]
                if not keys:
                    return []
            stmt = (
                sa.update(c)
                .where(keys_match(c.c.id, keys), free)
                .values(lease_owner=owner, lease_until=now + lease)
                .returning(c.c.workspace_id, c.c.id)
            )
            return [(r[0], r[1]) for r in conn.execute(stmt)]

    def release(self, owner: str, keys: Sequence[Key]) -> None:
        c = t.contacts
        with self.engine.begin() as conn:
            for chunk in chunks(list(keys)):
                conn.execute(
                    sa.update(c)
                    .where(keys_match(c.c.id, chunk), c.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def load(self, keys: Sequence[Key], now: datetime) -> list[Unit]:
        """Contacts, their runs, pending events (in event-time order) and date fires."""
        c, r, e, d = t.contacts, t.runs, t.events, t.date_triggers
        units: dict[Key, Unit] = {}
        with self.reader.connect() as conn:
            for chunk in chunks(list(keys)):
                match_c = keys_match(c.c.id, chunk)
                for row in conn.execute(
                    sa.select(
                        c.c.workspace_id, c.c.id, c.c.email, c.c.timezone, c.c.attributes
                    ).where(match_c)
                ):
                    contact = Contact(row.id, row.email, row.timezone, dict(row.attributes or {}))
                    units[(row.workspace_id, row.id)] = Unit(row.workspace_id, contact, [], [], {})
                match_r = keys_match(r.c.contact_id, chunk)
                for ws, state in conn.execute(
                    sa.select(r.c.workspace_id, r.c.state).where(match_r)
                ):
                    run = Run.from_dict(state)
                    units[(ws, run.contact_id)].runs.append(run)
                match_e = keys_match(e.c.contact_id, chunk)
                query = (
                    sa.select(e)
                    .where(match_e, e.c.processed_at.is_(None))
                    .order_by(e.c.at, e.c.seq)
                )
                for row in conn.execute(query):
                    event = Event(
                        row.contact_id,
                        row.name,
                        row.at,
                        dict(row.properties or {}),
                        row.id,
                        dict(row.traits) if row.traits is not None else None,
                    )
                    unit = units[(row.workspace_id, row.contact_id)]
                    unit.events.append(PendingEvent(row.seq, row.kind, event))
                match_d = keys_match(d.c.contact_id, chunk)
                for row in conn.execute(sa.select(d).where(match_d)):
                    units[(row.workspace_id, row.contact_id)].date_fires[row.workflow_id] = (
                        row.fire_at
                    )
        return [units[k] for k in keys if k in units]

    def history_events(
        self,
        workspace_id: str,
        contact_id: str,
        name: str | None,
        since: datetime | None,
        until: datetime,
    ) -> list[Event]:
        e = t.events
        query = sa.select(e).where(
            e.c.workspace_id == workspace_id,
            e.c.contact_id == contact_id,
            e.c.at <= until,
            e.c.kind.in_(("track", "identify")),
        )
        if name is not None:
            query = query.where(e.c.name == name)
        if since is not None:
            query = query.where(e.c.at > since)
        with self.reader.connect() as conn:
            return [
                Event(row.contact_id, row.name, row.at, dict(row.properties or {}), row.id)
                for row in conn.execute(query.order_by(e.c.at, e.c.seq))
            ]

    # --- writing results -------------------------------------------------------------

    def commit(self, owner: str, results: Sequence[UnitResult], now: datetime) -> list[Key]:
        """Write every unit whose lease is still ours, in one transaction; release leases.

        Returns the keys written. A unit whose lease was lost (another worker took it
        over after expiry) is dropped: that worker does its work instead.
        """
        if not results:
            return []
        c = t.contacts
        with self.engine.begin() as conn:
            owned: set[Key] = set()
            for chunk in chunks([r.key for r in results]):
                query = sa.select(c.c.workspace_id, c.c.id).where(
                    keys_match(c.c.id, chunk), c.c.lease_owner == owner
                )
                if self.postgres:
                    query = query.with_for_update()
                owned.update((row[0], row[1]) for row in conn.execute(query))
            mine = [r for r in results if r.key in owned]
            if mine:
                self._write(conn, mine, now)
                if self.postgres and any(r.enrolments for r in mine):
                    conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        return [r.key for r in mine]

    def _write(self, conn: Connection, results: Sequence[UnitResult], now: datetime) -> None:
        """The hot path: plain executemany with hand-written SQL (see :mod:`store.hot`);
        then conversions credited and split counters added (only batches that have any)."""
        micros = to_micros(now)
        runs: list[tuple[Any, ...]] = []
        journal: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        processed: list[tuple[Any, ...]] = []
        contacts: list[tuple[Any, ...]] = []
        actions: list[dict[str, Any]] = []
        inbox: list[hot.Row] = []
        for result in results:
            ws = result.workspace_id
            runs += [_run_row(ws, run) for run, _new in result.runs.values()]
            journal += [_journal_row(ws, record) for record in result.journal]
            messages += [_message_row(ws, message) for message in result.messages]
            actions += [_action_row(ws, w, now) for w in result.webhooks]
            inbox += [_enrol_row(ws, en, now) for en in result.enrolments]
            processed += [(micros, error, seq) for seq, error in result.processed]
            contact = result.contact
            wake = to_micros(result.wake_at) if result.wake_at else None
            contacts.append(
                (
                    contact.email,
                    contact.timezone,
                    hot.dumps(contact.attributes),
                    micros,
                    wake,
                    ws,
                    contact.id,
                )
            )
        for query, rows in (
            (hot.RUN_UPSERT, runs),
            (hot.JOURNAL_INSERT, journal),
            (hot.MESSAGE_INSERT, messages),
            (hot.EVENT_DONE, processed),
            (hot.CONTACT_SAVE, contacts),
        ):
            query.run(conn, rows)
        if actions:
            conn.execute(
                self._insert(t.actions).on_conflict_do_nothing(
                    index_elements=["workspace_id", "id"]
                ),
                actions,
            )
        if inbox:
            self._insert_events(conn, inbox)
        self._write_date_fires(conn, results)
        conversions.credit(conn, results)
        splits.count(conn, results)

    def _write_date_fires(self, conn: Connection, results: Sequence[UnitResult]) -> None:
        d = t.date_triggers
        upserts, deletes = [], []
        for result in results:
            for workflow_id, fire in result.date_fires.items():
                row = {"ws": result.workspace_id, "wf": workflow_id, "cid": result.contact.id}
                if fire is None:
                    deletes.append(row)
                else:
                    upserts.append(
                        {
                            "workspace_id": row["ws"],
                            "workflow_id": workflow_id,
                            "contact_id": row["cid"],
                            "fire_at": fire,
                        }
                    )
        if upserts:
            stmt = self._insert(d)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["workspace_id", "workflow_id", "contact_id"],
                    set_={"fire_at": stmt.excluded.fire_at},
                ),
                upserts,
            )
        if deletes:
            conn.execute(
                sa.delete(d).where(
                    d.c.workspace_id == sa.bindparam("ws"),
                    d.c.workflow_id == sa.bindparam("wf"),
                    d.c.contact_id == sa.bindparam("cid"),
                ),
                deletes,
            )


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


def _run_row(ws: str, run: Run) -> tuple[Any, ...]:
    return (
        ws,
        run.id,
        run.workflow_id,
        run.version,
        run.contact_id,
        str(run.status),
        run.step,
        _micros(run.wake_at),
        to_micros(run.started_at),
        _micros(run.ended_at),
        hot.dumps(run.to_dict()),
    )


def _journal_row(ws: str, rec: Record) -> tuple[Any, ...]:
    return (
        ws,
        rec.run_id,
        rec.contact_id,
        rec.workflow_id,
        rec.step_id,
        to_micros(rec.at),
        rec.action,
        hot.dumps(rec.detail),
    )


def _message_row(ws: str, m: SendEmail) -> tuple[Any, ...]:
    at = to_micros(m.at)
    return (
        ws,
        m.key,
        m.run_id,
        m.contact_id,
        m.workflow_id,
        m.version,
        m.step_id,
        m.to,
        m.template,
        m.subject,
        m.topic,
        m.priority,
        m.on_capped,
        m.content,
        at,
        at,
    )


def _action_row(ws: str, w: Any, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": ws,
        "id": w.key,
        "kind": "webhook",
        "run_id": w.run_id,
        "step_id": w.step_id,
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": w.at,
        "created_at": now,
        "payload": {"url": w.url, "method": w.method, "headers": w.headers, "body": w.body},
    }


def _enrol_row(ws: str, en: EnrollContact, now: datetime) -> hot.Row:
    properties = {"source_run": en.source_run_id, "trigger": en.trigger.to_dict()}
    return (
        ws,
        f"enroll:{en.key}",
        en.contact_id,
        "enroll",
        en.workflow_id,
        to_micros(en.at),
        hot.dumps(properties),
        None,
        to_micros(now),
    )
