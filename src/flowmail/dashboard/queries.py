"""The SQL behind the dashboard's pages. Every query is bounded (a LIMIT, or a range of
a primary key) and reads through an index, so that a page stays fast with millions of
contacts and events:

============================  ==========================================================
what                          how
============================  ==========================================================
find a contact                primary key (id, or an id prefix as a key range), or
                              ``ix_contacts_email``
a contact's timeline          ``ix_events_contact``, ``ix_runs_contact``,
                              ``ix_messages_contact``, ``ix_message_events_contact``,
                              the consents' primary key; each newest first, limited
messages by contact           ``ix_messages_contact`` (newest first)
messages by workflow          ``ix_messages_workflow_sent`` (latest sent first)
messages by status            ``ix_messages_claim`` (status, priority, send_after)
latest messages               the newest ``message_events`` rows: a range of its
                              primary key (``seq``), at most :data:`ACTIVITY_WINDOW`
a workflow's recent runs      the newest ``journal`` rows, likewise, then runs by key
============================  ==========================================================

Pages go back with ``page`` (OFFSET through the index), at most :data:`MAX_PAGES` pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.store import schema as t
from flowmail.store.sql import SqlStore

PAGE_SIZE = 50
MAX_PAGES = 200
ACTIVITY_WINDOW = 50_000  # newest message_events / journal rows a "latest" list reads
TIMELINE_ROWS = 50  # of each kind on a contact's page
SEARCH_ROWS = 20


def offset(page: int, size: int = PAGE_SIZE) -> int:
    return (min(max(page, 1), MAX_PAGES) - 1) * size


def _dicts(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


# --- contacts ---------------------------------------------------------------------------


def find_contacts(
    store: SqlStore, ws: str, text: str, limit: int = SEARCH_ROWS
) -> list[dict[str, Any]]:
    """Contacts whose id starts with ``text``, or whose address is ``text``."""
    c = t.contacts
    text = text.strip()
    if not text:
        return []
    columns = (c.c.id, c.c.email, c.c.timezone, c.c.updated_at)
    with store.reader.connect() as conn:
        if "@" in text:
            by_email = sa.select(*columns).where(c.c.workspace_id == ws, c.c.email == text)
            found = _dicts(conn, by_email.order_by(c.c.id).limit(limit))
            if found:
                return found
        prefix = sa.select(*columns).where(
            c.c.workspace_id == ws, c.c.id >= text, c.c.id < text + "\U0010ffff"
        )
        return _dicts(conn, prefix.order_by(c.c.id).limit(limit))


@dataclass
class Timeline:
    contact: dict[str, Any]
    events: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    more_events: bool


def timeline(
    store: SqlStore, ws: str, contact_id: str, events_before: datetime | None = None
) -> Timeline | None:
    """A contact and the newest of everything about it (events page back by time)."""
    c, e, r, m, me, k = (t.contacts, t.events, t.runs, t.messages, t.message_events, t.consents)
    with store.reader.connect() as conn:
        found = conn.execute(
            sa.select(
                c.c.id, c.c.email, c.c.timezone, c.c.attributes, c.c.created_at, c.c.updated_at
            ).where(c.c.workspace_id == ws, c.c.id == contact_id)
        ).first()
        if found is None:
            return None
        events = sa.select(
            e.c.id,
            e.c.kind,
            e.c.name,
            e.c.at,
            e.c.properties,
            e.c.traits,
            e.c.received_at,
            e.c.processed_at,
            e.c.error,
        ).where(e.c.workspace_id == ws, e.c.contact_id == contact_id)
        if events_before is not None:
            events = events.where(e.c.at < events_before)
        event_rows = _dicts(conn, events.order_by(e.c.at.desc()).limit(TIMELINE_ROWS + 1))
        runs = _dicts(
            conn,
            sa.select(
                r.c.id,
                r.c.workflow_id,
                r.c.version,
                r.c.status,
                r.c.step,
                r.c.started_at,
                r.c.ended_at,
                r.c.state,
            )
            .where(r.c.workspace_id == ws, r.c.contact_id == contact_id)
            .order_by(r.c.started_at.desc())
            .limit(TIMELINE_ROWS),
        )
        for run in runs:
            state = run.pop("state") or {}
            run["path"] = list(state.get("path") or [])
            run["reason"] = state.get("reason")
            run["variants"] = dict(state.get("variants") or {})
        messages = _dicts(
            conn,
            sa.select(
                m.c.id,
                m.c.workflow_id,
                m.c.step_id,
                m.c.subject,
                m.c.status,
                m.c.reason,
                m.c.to_address,
                m.c.created_at,
                m.c.sent_at,
            )
            .where(m.c.workspace_id == ws, m.c.contact_id == contact_id)
            .order_by(m.c.created_at.desc())
            .limit(TIMELINE_ROWS),
        )
        deliveries = _dicts(
            conn,
            sa.select(me.c.message_id, me.c.kind, me.c.at, me.c.detail)
            .where(me.c.workspace_id == ws, me.c.contact_id == contact_id)
            .order_by(me.c.at.desc(), me.c.seq.desc())
            .limit(TIMELINE_ROWS),
        )
        consents = _dicts(
            conn,
            sa.select(k.c.topic, k.c.status, k.c.at, k.c.source)
            .where(k.c.workspace_id == ws, k.c.contact_id == contact_id)
            .order_by(k.c.topic)
            .limit(TIMELINE_ROWS),
        )
    return Timeline(
        dict(found._mapping),
        event_rows[:TIMELINE_ROWS],
        runs,
        messages,
        deliveries,
        consents,
        len(event_rows) > TIMELINE_ROWS,
    )


# --- messages ---------------------------------------------------------------------------

_LIST_COLUMNS = (
    "id",
    "contact_id",
    "workflow_id",
    "step_id",
    "to_address",
    "subject",
    "status",
    "reason",
    "attempts",
    "created_at",
    "send_after",
    "sent_at",
)


def search_messages(
    store: SqlStore,
    ws: str,
    *,
    contact_id: str | None = None,
    workflow_id: str | None = None,
    status: str | None = None,
    page: int = 1,
) -> list[dict[str, Any]]:
    """One page of messages, by the most selective filter's index (see the module)."""
    m = t.messages
    query = sa.select(*(m.c[name] for name in _LIST_COLUMNS)).where(m.c.workspace_id == ws)
    if contact_id:
        query = query.where(m.c.contact_id == contact_id)
    if workflow_id:
        query = query.where(m.c.workflow_id == workflow_id)
    if status:
        query = query.where(m.c.status == status)
    if contact_id:
        order = [m.c.created_at.desc(), m.c.id.desc()]
    elif workflow_id:
        order = [m.c.sent_at.desc(), m.c.id.desc()]
    elif status:
        order = [m.c.priority.desc(), m.c.send_after.desc()]
    else:
        return latest_messages(store, ws, page)
    query = query.order_by(*order).limit(PAGE_SIZE).offset(offset(page))
    with store.reader.connect() as conn:
        return _dicts(conn, query)


def _newest_seq(conn: Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.max(table.c.seq))).scalar() or 0)


def _newest_distinct(
    conn: Connection, table: sa.Table, column: str, where: list[Any], count: int
) -> list[str]:
    """The first ``count`` distinct values of ``column``, newest rows first, among the
    newest ``ACTIVITY_WINDOW`` rows: read backwards along the primary key a block at a
    time, so a busy table answers after a few hundred rows."""
    newest = _newest_seq(conn, table)
    floor = newest - ACTIVITY_WINDOW
    found: dict[str, None] = {}
    top = newest + 1
    while len(found) < count and top > floor:
        rows = conn.execute(
            sa.select(table.c.seq, table.c[column])
            .where(table.c.seq < top, table.c.seq > floor, *where)
            .order_by(table.c.seq.desc())
            .limit(1000)
        ).all()
        if not rows:
            break
        for row in rows:
            found.setdefault(row[1])
        top = rows[-1][0]
    return list(found)[:count]


def latest_messages(store: SqlStore, ws: str, page: int = 1) -> list[dict[str, Any]]:
    """Messages with the newest delivery events (sent, failed, delivered, opened, ...)."""
    m, me = t.messages, t.message_events
    with store.reader.connect() as conn:
        wanted = offset(page) + PAGE_SIZE
        ids = _newest_distinct(conn, me, "message_id", [me.c.workspace_id == ws], wanted)
        ids = ids[offset(page) :]
        if not ids:
            return []
        rows = _dicts(
            conn,
            sa.select(*(m.c[name] for name in _LIST_COLUMNS)).where(
                m.c.workspace_id == ws, m.c.id.in_(ids)
            ),
        )
    position = {message_id: index for index, message_id in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row["id"]])


# --- runs -------------------------------------------------------------------------------


def recent_runs(
    store: SqlStore, ws: str, workflow_id: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The workflow's runs that moved most recently (within the newest journal rows)."""
    j, r = t.journal, t.runs
    with store.reader.connect() as conn:
        where = [j.c.workspace_id == ws, j.c.workflow_id == workflow_id]
        ids = _newest_distinct(conn, j, "run_id", where, limit)
        if not ids:
            return []
        rows = _dicts(
            conn,
            sa.select(
                r.c.id,
                r.c.contact_id,
                r.c.version,
                r.c.status,
                r.c.step,
                r.c.started_at,
                r.c.ended_at,
                r.c.state,
            ).where(r.c.workspace_id == ws, r.c.id.in_(ids)),
        )
    for row in rows:
        state = row.pop("state") or {}
        row["path"] = list(state.get("path") or [])
    position = {run_id: index for index, run_id in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row["id"]])
