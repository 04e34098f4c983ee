"""The one SQL implementation of the store: SQLite (embedded) and PostgreSQL (scale-out).

Ordinary work is portable SQLAlchemy Core; the hot paths (claiming contacts) are
written per dialect: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a plain
``UPDATE … RETURNING`` under SQLite's single writer.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from flowmail.engine.decisions import EnrollContact, Record, SendEmail
from flowmail.engine.state import Contact, Event, Run, RunStatus
from flowmail.store import hot
from flowmail.store import schema as t
from flowmail.store.notify import CHANNEL, Listener
from flowmail.store.records import (
    Applied,
    InboundEvent,
    IngestResult,
    Key,
    PendingEvent,
    Unit,
    UnitResult,
    WorkflowRow,
)
from flowmail.store.schema import DEFAULT_WORKSPACE, to_micros

CHUNK = 500  # rows per IN (...) list
READ_ONLY = "flowmail_read_only"  # execution option: a reading transaction (SQLite: deferred)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def create_db_engine(url: str) -> Engine:
    """An engine with the settings each back end needs (SQLite: WAL, busy timeout)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")  # a snapshot: WAL readers never wait
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front

        # let SQLAlchemy's pysqlite driver leave transaction control to us
        @sa.event.listens_for(engine, "connect")
        def _autocommit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return sa.create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


class SqlStore:
    """Durable state behind one small interface; see :mod:`flowmail.store` for the contract."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(**{READ_ONLY: True})  # for reads only
        self.dialect = engine.dialect.name
        self.postgres = self.dialect == "postgresql"

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(create_db_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # --- helpers ---------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.postgres else sqlite.insert)(table)

    def ensure_workspace(self, workspace_id: str, now: datetime, name: str | None = None) -> None:
        stmt = self._insert(t.workspaces).values(
            id=workspace_id, name=name or workspace_id, created_at=now
        )
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

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
            for chunk in _chunks(list(contacts.values())):
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

    def _insert_events(self, conn: Connection, rows: Sequence[hot.Row]) -> set[Key]:
        """Insert inbox rows; returns the keys that were new."""
        inserted: set[Key] = set()
        for chunk in _chunks(rows):
            result = hot.EVENT_INSERT.run(conn, chunk)
            if result is not None:
                inserted.update((row.workspace_id, row.id) for row in result)
        return inserted

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
                locked = sa.select(c.c.workspace_id, c.c.id).where(_keys(c.c.id, keys), free)
                keys = [tuple(r) for r in conn.execute(locked.with_for_update(skip_locked=True))]
                if not keys:
                    return []
            stmt = (
                sa.update(c)
                .where(_keys(c.c.id, keys), free)
                .values(lease_owner=owner, lease_until=now + lease)
                .returning(c.c.workspace_id, c.c.id)
            )
            return [(r[0], r[1]) for r in conn.execute(stmt)]

    def release(self, owner: str, keys: Sequence[Key]) -> None:
        c = t.contacts
        with self.engine.begin() as conn:
            for chunk in _chunks(list(keys)):
                conn.execute(
                    sa.update(c)
                    .where(_keys(c.c.id, chunk), c.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def load(self, keys: Sequence[Key], now: datetime) -> list[Unit]:
        """Contacts, their runs, pending events (in event-time order) and date fires."""
        c, r, e, d = t.contacts, t.runs, t.events, t.date_triggers
        units: dict[Key, Unit] = {}
        with self.reader.connect() as conn:
            for chunk in _chunks(list(keys)):
                match_c = _keys(c.c.id, chunk)
                for row in conn.execute(
                    sa.select(
                        c.c.workspace_id, c.c.id, c.c.email, c.c.timezone, c.c.attributes
                    ).where(match_c)
                ):
                    contact = Contact(row.id, row.email, row.timezone, dict(row.attributes or {}))
                    units[(row.workspace_id, row.id)] = Unit(row.workspace_id, contact, [], [], {})
                match_r = _keys(r.c.contact_id, chunk)
                for ws, state in conn.execute(
                    sa.select(r.c.workspace_id, r.c.state).where(match_r)
                ):
                    run = Run.from_dict(state)
                    units[(ws, run.contact_id)].runs.append(run)
                match_e = _keys(e.c.contact_id, chunk)
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
                match_d = _keys(d.c.contact_id, chunk)
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
            for chunk in _chunks([r.key for r in results]):
                query = sa.select(c.c.workspace_id, c.c.id).where(
                    _keys(c.c.id, chunk), c.c.lease_owner == owner
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
        """The hot path: plain executemany with hand-written SQL (see :mod:`store.hot`)."""
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

    # --- the action outbox (webhook calls) -----------------------------------------

    def claim_actions(
        self, owner: str, now: datetime, limit: int, lease: timedelta
    ) -> list[dict[str, Any]]:
        """Lease due webhook calls (queued, or retrying and due, or leased but expired)."""
        a = t.actions
        due = sa.and_(
            a.c.status == "queued",
            a.c.next_attempt_at <= now,
            sa.or_(a.c.lease_until.is_(None), a.c.lease_until < now),
        )
        with self.engine.begin() as conn:
            query = sa.select(a.c.workspace_id, a.c.id).where(due).order_by(a.c.next_attempt_at)
            query = query.limit(limit)
            if self.postgres:
                query = query.with_for_update(skip_locked=True)
            keys = [(row[0], row[1]) for row in conn.execute(query)]
            if not keys:
                return []
            rows = conn.execute(
                sa.update(a)
                .where(_keys(a.c.id, keys), due)
                .values(lease_owner=owner, lease_until=now + lease)
                .returning(a)
            )
            return [dict(row._mapping) for row in rows]

    def finish_action(
        self,
        owner: str,
        workspace_id: str,
        action_id: str,
        *,
        status: str,
        attempts: int,
        next_attempt_at: datetime,
        error: str | None,
        now: datetime,
    ) -> bool:
        """Record an attempt's outcome, if the lease is still ours."""
        a = t.actions
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(a)
                .where(
                    a.c.workspace_id == workspace_id, a.c.id == action_id, a.c.lease_owner == owner
                )
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt_at=next_attempt_at,
                    last_error=error,
                    lease_owner=None,
                    lease_until=None,
                    done_at=now if status in ("done", "dead") else None,
                )
            ).rowcount
        return bool(updated)

    def actions(self, workspace_id: str = DEFAULT_WORKSPACE) -> list[dict[str, Any]]:
        a = t.actions
        with self.reader.connect() as conn:
            rows = conn.execute(
                sa.select(a).where(a.c.workspace_id == workspace_id).order_by(a.c.created_at)
            )
            return [dict(row._mapping) for row in rows]

    # --- workflows -------------------------------------------------------------------

    def apply_workflow(
        self, workspace_id: str, workflow_id: str, definition: dict[str, Any], now: datetime
    ) -> Applied:
        """Store a definition; a changed one becomes a new version. New workflows start active."""
        digest = hashlib.sha256(
            json.dumps(definition, sort_keys=True, default=str).encode()
        ).hexdigest()
        w, v = t.workflows, t.workflow_versions
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(w.c.version).where(
                    w.c.workspace_id == workspace_id, w.c.id == workflow_id
                )
            ).first()
            if row is not None:
                current = conn.execute(
                    sa.select(v.c.digest).where(
                        v.c.workspace_id == workspace_id,
                        v.c.workflow_id == workflow_id,
                        v.c.version == row.version,
                    )
                ).scalar_one()
                if current == digest:
                    return Applied(workflow_id, row.version, False)
            version = 1 if row is None else row.version + 1
            conn.execute(
                sa.insert(v).values(
                    workspace_id=workspace_id,
                    workflow_id=workflow_id,
                    version=version,
                    definition=definition,
                    digest=digest,
                    created_at=now,
                )
            )
            if row is None:
                conn.execute(
                    sa.insert(w).values(
                        workspace_id=workspace_id,
                        id=workflow_id,
                        version=1,
                        mode="active",
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    sa.update(w)
                    .where(w.c.workspace_id == workspace_id, w.c.id == workflow_id)
                    .values(version=version, updated_at=now)
                )
        return Applied(workflow_id, version, True)

    def workflow_rows(self, workspace_id: str | None = None) -> list[WorkflowRow]:
        w = t.workflows
        query = sa.select(w).order_by(w.c.workspace_id, w.c.id)
        if workspace_id is not None:
            query = query.where(w.c.workspace_id == workspace_id)
        with self.reader.connect() as conn:
            return [
                WorkflowRow(r.workspace_id, r.id, r.version, r.mode, r.reason, r.updated_at)
                for r in conn.execute(query)
            ]

    def workflow_definition(
        self, workspace_id: str, workflow_id: str, version: int
    ) -> dict[str, Any] | None:
        v = t.workflow_versions
        with self.reader.connect() as conn:
            return conn.execute(
                sa.select(v.c.definition).where(
                    v.c.workspace_id == workspace_id,
                    v.c.workflow_id == workflow_id,
                    v.c.version == version,
                )
            ).scalar_one_or_none()

    def set_mode(
        self, workspace_id: str, workflow_id: str, mode: str, reason: str | None, now: datetime
    ) -> bool:
        """Change a workflow's mode; runs that must react (cancel, resume) are woken now."""
        w, r, c = t.workflows, t.runs, t.contacts
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(w)
                .where(w.c.workspace_id == workspace_id, w.c.id == workflow_id)
                .values(mode=mode, reason=reason, updated_at=now)
            ).rowcount
            if not updated:
                return False
            if mode in ("active", "drain", "cancel"):
                live = sa.select(r.c.contact_id).where(
                    r.c.workspace_id == workspace_id,
                    r.c.workflow_id == workflow_id,
                    r.c.status.in_((str(RunStatus.ACTIVE), str(RunStatus.WAITING))),
                )
                if mode != "cancel":
                    live = live.where(r.c.status == str(RunStatus.ACTIVE))
                conn.execute(
                    sa.update(c)
                    .where(c.c.workspace_id == workspace_id, c.c.id.in_(live))
                    .values(wake_at=_earliest(c.c.wake_at, sa.literal(now, t.Moment())))
                )
        return True

    # --- schedules and date triggers -------------------------------------------------

    def set_schedules(
        self, workspace_id: str, workflow_id: str, ticks: dict[str, datetime | None]
    ) -> None:
        """Replace a workflow's schedule rows: zone -> next tick."""
        s = t.schedules
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(s).where(s.c.workspace_id == workspace_id, s.c.workflow_id == workflow_id)
            )
            if ticks:
                conn.execute(
                    sa.insert(s),
                    [
                        {
                            "workspace_id": workspace_id,
                            "workflow_id": workflow_id,
                            "zone": z,
                            "next_at": at,
                        }
                        for z, at in ticks.items()
                    ],
                )

    def contact_zones(self, workspace_id: str, default_tz: str) -> set[str]:
        c = t.contacts
        with self.reader.connect() as conn:
            return {
                row[0] or default_tz
                for row in conn.execute(
                    sa.select(c.c.timezone).where(c.c.workspace_id == workspace_id).distinct()
                )
            }

    def due_schedules(self, now: datetime) -> list[tuple[str, str, str, datetime]]:
        s = t.schedules
        with self.reader.connect() as conn:
            return [
                (r.workspace_id, r.workflow_id, r.zone, r.next_at)
                for r in conn.execute(sa.select(s).where(s.c.next_at <= now).order_by(s.c.next_at))
            ]

    def enqueue_tick(
        self,
        workspace_id: str,
        workflow_id: str,
        zone: str,
        tick: datetime,
        following: datetime | None,
        default_tz: str,
        now: datetime,
    ) -> int:
        """Put one schedule tick in the inbox of every contact in ``zone`` ("*": all) and
        move the schedule on, in one transaction; ids make a repeated tick a no-op."""
        c, s = t.contacts, t.schedules
        tick_id = f"tick:{workflow_id}:{tick.isoformat()}:"
        with self.engine.begin() as conn:
            moved = conn.execute(
                sa.update(s)
                .where(
                    s.c.workspace_id == workspace_id,
                    s.c.workflow_id == workflow_id,
                    s.c.zone == zone,
                    s.c.next_at == tick,
                )
                .values(next_at=following)
            ).rowcount
            if not moved:
                return 0  # another worker took this tick
            query = sa.select(c.c.id).where(c.c.workspace_id == workspace_id)
            if zone != "*":
                zone_of = sa.func.coalesce(c.c.timezone, default_tz)
                query = query.where(zone_of == zone)
            ids = [row[0] for row in conn.execute(query)]
            properties = hot.dumps({"tick": tick.isoformat()})
            at, received = to_micros(tick), to_micros(now)
            rows = [
                (
                    workspace_id,
                    tick_id + cid,
                    cid,
                    "schedule",
                    workflow_id,
                    at,
                    properties,
                    None,
                    received,
                )
                for cid in ids
            ]
            self._insert_events(conn, rows)
            if self.postgres:
                conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        return len(rows)

    def contacts_with_attribute(
        self, workspace_id: str, attribute: str, after: str | None, limit: int
    ) -> list[Contact]:
        """Contacts (by id order, after ``after``) for backfilling date triggers."""
        c = t.contacts
        query = sa.select(c.c.id, c.c.email, c.c.timezone, c.c.attributes).where(
            c.c.workspace_id == workspace_id, c.c.attributes[attribute].as_string().is_not(None)
        )
        if after is not None:
            query = query.where(c.c.id > after)
        with self.reader.connect() as conn:
            rows = conn.execute(query.order_by(c.c.id).limit(limit)).all()
        return [Contact(r.id, r.email, r.timezone, dict(r.attributes or {})) for r in rows]

    def schedule_date_fires(
        self, workspace_id: str, workflow_id: str, fires: dict[str, datetime]
    ) -> None:
        """Upsert date trigger fire times and pull each contact's wake forward to them."""
        if not fires:
            return
        d, c = t.date_triggers, t.contacts
        stmt = self._insert(d)
        with self.engine.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["workspace_id", "workflow_id", "contact_id"],
                    set_={"fire_at": stmt.excluded.fire_at},
                ),
                [
                    {
                        "workspace_id": workspace_id,
                        "workflow_id": workflow_id,
                        "contact_id": cid,
                        "fire_at": at,
                    }
                    for cid, at in fires.items()
                ],
            )
            conn.execute(
                sa.update(c)
                .where(c.c.workspace_id == workspace_id, c.c.id == sa.bindparam("cid"))
                .values(wake_at=_earliest(c.c.wake_at, sa.bindparam("at", type_=t.Moment()))),
                [{"cid": cid, "at": at} for cid, at in fires.items()],
            )

    def add_schedule_zone(
        self, workspace_id: str, workflow_id: str, zone: str, tick: datetime | None
    ) -> None:
        """Start ticking a cron schedule in a zone first seen on a contact."""
        stmt = self._insert(t.schedules).values(
            workspace_id=workspace_id, workflow_id=workflow_id, zone=zone, next_at=tick
        )
        with self.engine.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["workspace_id", "workflow_id", "zone"])
            )

    def move_runs(
        self,
        workspace_id: str,
        versions: dict[str, int],
        owner: str,
        now: datetime,
        lease: timedelta,
    ) -> list[str]:
        """Set the version of live runs, holding each contact's lease while doing it."""
        r, c = t.runs, t.contacts
        with self.reader.connect() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.contact_id).where(
                    r.c.workspace_id == workspace_id, r.c.id.in_(list(versions))
                )
            ).all()
        by_contact: dict[str, list[str]] = {}
        for run_id, contact_id in rows:
            by_contact.setdefault(contact_id, []).append(run_id)
        moved: list[str] = []
        waiting = sorted(by_contact)
        deadline = time.monotonic() + lease.total_seconds() * 2
        while waiting and time.monotonic() < deadline:
            free = sa.or_(c.c.lease_until.is_(None), c.c.lease_until < now)
            keys = [(workspace_id, cid) for cid in waiting]
            with self.engine.begin() as conn:
                leased = [
                    row[1]
                    for row in conn.execute(
                        sa.update(c)
                        .where(_keys(c.c.id, keys), free)
                        .values(lease_owner=owner, lease_until=now + lease)
                        .returning(c.c.workspace_id, c.c.id)
                    )
                ]
            for contact_id in leased:
                with self.engine.begin() as conn:
                    for run_id in by_contact[contact_id]:
                        state = conn.execute(
                            sa.select(r.c.state).where(
                                r.c.workspace_id == workspace_id, r.c.id == run_id
                            )
                        ).scalar_one()
                        state = {**state, "version": versions[run_id]}
                        conn.execute(
                            sa.update(r)
                            .where(r.c.workspace_id == workspace_id, r.c.id == run_id)
                            .values(version=versions[run_id], state=state)
                        )
                        moved.append(run_id)
                    conn.execute(
                        sa.update(c)
                        .where(c.c.workspace_id == workspace_id, c.c.id == contact_id)
                        .values(lease_owner=None, lease_until=None)
                    )
            waiting = [cid for cid in waiting if cid not in set(leased)]
            if waiting:
                time.sleep(0.2)
        return moved

    def listener(self) -> Listener:
        return Listener(self.engine.url)

    def heartbeat(self, name: str, kind: str, now: datetime, info: dict[str, Any]) -> None:
        stmt = self._insert(t.heartbeats).values(id=name, kind=kind, seen_at=now, info=info)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={"seen_at": stmt.excluded.seen_at, "info": stmt.excluded.info},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    # --- looking around --------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """The earliest timer or schedule tick (for sleeping, and for virtual clocks)."""
        c, s = t.contacts, t.schedules
        with self.reader.connect() as conn:
            wake = conn.execute(sa.select(sa.func.min(c.c.wake_at))).scalar()
            tick = conn.execute(sa.select(sa.func.min(s.c.next_at))).scalar()
        times = [
            t.from_micros(x) if isinstance(x, int) else x for x in (wake, tick) if x is not None
        ]
        return min(times) if times else None

    def pending_events(self) -> int:
        e = t.events
        with self.reader.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(e.c.processed_at.is_(None))
                ).scalar_one()
            )

    def runs(
        self,
        workspace_id: str = DEFAULT_WORKSPACE,
        contact_id: str | None = None,
        workflow_id: str | None = None,
    ) -> list[Run]:
        r = t.runs
        query = sa.select(r.c.state).where(r.c.workspace_id == workspace_id)
        if contact_id is not None:
            query = query.where(r.c.contact_id == contact_id)
        if workflow_id is not None:
            query = query.where(r.c.workflow_id == workflow_id)
        with self.reader.connect() as conn:
            return [
                Run.from_dict(row[0])
                for row in conn.execute(query.order_by(r.c.started_at, r.c.id))
            ]

    def contact(self, workspace_id: str, contact_id: str) -> Contact | None:
        c = t.contacts
        with self.reader.connect() as conn:
            row = conn.execute(
                sa.select(c).where(c.c.workspace_id == workspace_id, c.c.id == contact_id)
            ).first()
        return (
            None if row is None else Contact(row.id, row.email, row.timezone, dict(row.attributes))
        )

    def messages(self, workspace_id: str = DEFAULT_WORKSPACE) -> list[dict[str, Any]]:
        m = t.messages
        with self.reader.connect() as conn:
            rows = conn.execute(
                sa.select(m)
                .where(m.c.workspace_id == workspace_id)
                .order_by(m.c.created_at, m.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def prune(self, before: datetime) -> dict[str, int]:
        """Delete processed events and journal rows older than ``before`` (retention)."""
        e, j = t.events, t.journal
        with self.engine.begin() as conn:
            events = conn.execute(
                sa.delete(e).where(e.c.processed_at.is_not(None), e.c.processed_at < before)
            ).rowcount
            journal = conn.execute(sa.delete(j).where(j.c.at < before)).rowcount
        return {"events": events, "journal": journal}


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


def _keys(column: sa.Column[str], keys: Sequence[Key]) -> sa.ColumnElement[bool]:
    """``(workspace_id, column)`` in ``keys``, written so that both databases use an index
    (SQLite scans for row-value IN lists): one ``workspace = ? AND column IN (...)`` per
    workspace."""
    groups: dict[str, list[str]] = {}
    for workspace_id, value in keys:
        groups.setdefault(workspace_id, []).append(value)
    workspace = column.table.c.workspace_id
    return sa.or_(*(sa.and_(workspace == ws, column.in_(ids)) for ws, ids in groups.items()))


def _earliest(column: Any, moment: Any) -> Any:
    """The earlier of a nullable time column and ``moment``, portably."""
    return sa.case((column.is_(None), moment), (column > moment, moment), else_=column)
