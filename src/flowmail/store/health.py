"""The SQL behind health samples and alerts: queue depths, lag, throughput, failures,
the ``health_samples`` chart rows and the ``alerts`` rows.

Every query is an index range or lookup, so that a sample stays cheap with millions of
contacts and events:

- queue depths count partial or leading index entries (``ix_events_pending``,
  ``ix_contacts_wake_at``, ``ix_messages_claim``), capped at :data:`COUNT_CAP`;
- events processed in a window use ``ix_events_processed``;
- ``message_events`` has no index on ``at``, but its ``seq`` grows with time: the first
  ``seq`` of a window is found by a binary search of primary-key lookups
  (:func:`first_seq`), then the window is a primary-key range;
- failures come from the hourly ``stats`` counters of the last hours, read per workspace
  through ``ix_stats_metric`` (workspace, metric, bucket).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.store import schema as t
from flowmail.store.sql import SqlStore

COUNT_CAP = 1_000_000  # queue depths are counted up to this many rows
GLOBAL = "*"  # the workspace of alerts about the whole installation (queues, lag, errors)
DELIVERY_KINDS = ("sending", "sent", "retry", "failed", "dead")
_ALERT_LOCK = 0x666D_616C_6572  # pg_advisory_xact_lock key: one alert evaluation at a time


# --- queues and throughput ----------------------------------------------------------------


def _capped(conn: Connection, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    rows = sa.select(sa.literal(1)).select_from(table).where(*where).limit(COUNT_CAP).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one())


def queue_depths(store: SqlStore, now: datetime) -> dict[str, int]:
    """Work waiting across all workspaces (each count capped at :data:`COUNT_CAP`)."""
    e, m, c = t.events, t.messages, t.contacts
    with store.reader.connect() as conn:
        return {
            "pending_events": _capped(conn, e, e.c.processed_at.is_(None)),
            "due_wakes": _capped(conn, c, c.c.wake_at.is_not(None), c.c.wake_at <= now),
            "queued_messages": _capped(conn, m, m.c.status == "queued"),
            "due_messages": _capped(conn, m, m.c.status == "queued", m.c.send_after <= now),
            "dead_messages": _capped(conn, m, m.c.status == "dead"),
        }


def oldest_pending(store: SqlStore) -> datetime | None:
    """When the oldest unprocessed event was received (events are taken in ``seq`` order)."""
    e = t.events
    query = sa.select(e.c.received_at).where(e.c.processed_at.is_(None)).order_by(e.c.seq).limit(1)
    with store.reader.connect() as conn:
        found: datetime | None = conn.execute(query).scalar()
    return found


def processed_between(store: SqlStore, since: datetime, until: datetime) -> int:
    """Events the workers finished in ``(since, until]``."""
    e = t.events
    with store.reader.connect() as conn:
        return _capped(conn, e, e.c.processed_at > since, e.c.processed_at <= until)


def first_seq(conn: Connection, table: sa.Table, moment: datetime) -> int | None:
    """The smallest ``seq`` from which every row's ``at`` is ``moment`` or later; None when
    even the newest row is older. ``seq`` is given out in time order (give or take the
    writers' clocks), so a binary search of primary-key lookups finds it: about 25 of them
    for 10 million rows, without an index on ``at``."""
    seq, at = table.c.seq, table.c.at
    newest = conn.execute(sa.select(seq, at).order_by(seq.desc()).limit(1)).first()
    if newest is None or newest.at < moment:
        return None
    low = int(conn.execute(sa.select(sa.func.min(seq))).scalar_one())
    high = int(newest.seq)
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(sa.select(seq, at).where(seq >= middle).order_by(seq).limit(1)).one()
        if row.at >= moment:
            high = middle
        else:
            low = int(row.seq) + 1
    return low


@dataclass(frozen=True)
class Deliveries:
    """What the senders did in a window: the number of emails handed over and accepted,
    and the latest hand-offs and outcomes (oldest first), for provider figures."""

    sent: int
    rows: list[tuple[str, str, str, datetime, dict[str, Any]]]  # ws, message, kind, at, detail


def deliveries(store: SqlStore, since: datetime, until: datetime, limit: int) -> Deliveries:
    """``message_events`` of hand-offs and their outcomes in ``[since, until]``: the count
    of ``sent``, and at most ``limit`` of the newest rows."""
    me = t.message_events
    with store.reader.connect() as conn:
        start = first_seq(conn, me, since)
        if start is None:
            return Deliveries(0, [])
        window = (me.c.seq >= start, me.c.at <= until)
        sent = conn.execute(
            sa.select(sa.func.count()).where(*window, me.c.kind == "sent")
        ).scalar_one()
        rows = conn.execute(
            sa.select(me.c.workspace_id, me.c.message_id, me.c.kind, me.c.at, me.c.detail)
            .where(*window, me.c.kind.in_(DELIVERY_KINDS))
            .order_by(me.c.seq.desc())
            .limit(limit)
        ).all()
    return Deliveries(int(sent), [(r[0], r[1], r[2], r[3], dict(r[4] or {})) for r in rows[::-1]])


StatsKey = tuple[str, str, int, str, str]  # workspace, workflow, version, step, metric


def stats_totals(store: SqlStore, since: datetime, metrics: Sequence[str]) -> dict[StatsKey, int]:
    """Sums of the hourly ``stats`` counters of ``metrics`` from the bucket ``since`` on,
    in every workspace: one ``ix_stats_metric`` (workspace, metric, bucket) range each.
    The rows are added up here: with a GROUP BY, SQLite would rather walk the primary key
    (to group without sorting) than use the index."""
    s = t.stats
    found: dict[StatsKey, int] = {}
    with store.reader.connect() as conn:
        spaces = conn.execute(sa.select(t.workflows.c.workspace_id).distinct()).scalars().all()
        for workspace_id in spaces:
            query = sa.select(
                s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric, s.c.value
            ).where(
                s.c.workspace_id == workspace_id,
                s.c.metric.in_(metrics),
                s.c.bucket >= since,
            )
            for wf, version, step, metric, value in conn.execute(query):
                key = (str(workspace_id), wf, int(version), step, metric)
                found[key] = found.get(key, 0) + int(value)
    return found


def definitions(
    store: SqlStore, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Workflow definitions by (workspace, workflow, version)."""
    v = t.workflow_versions
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    with store.reader.connect() as conn:
        for ws, wf, version in sorted(set(keys)):
            definition = conn.execute(
                sa.select(v.c.definition).where(
                    v.c.workspace_id == ws, v.c.workflow_id == wf, v.c.version == version
                )
            ).scalar()
            if definition is not None:
                found[(ws, wf, version)] = dict(definition)
    return found


def workspaces(store: SqlStore) -> list[str]:
    """Workspaces that have workflows (the ones whose workflows can raise alerts)."""
    w = t.workflows
    with store.reader.connect() as conn:
        return [str(r[0]) for r in conn.execute(sa.select(w.c.workspace_id).distinct())]


# --- samples ----------------------------------------------------------------------------


def has_sample(store: SqlStore, at: datetime) -> bool:
    h = t.health_samples
    with store.reader.connect() as conn:
        return conn.execute(sa.select(h.c.at).where(h.c.at == at)).first() is not None


def save_sample(store: SqlStore, at: datetime, values: dict[str, Any]) -> bool:
    """Store the sample of ``at`` unless another process already did; True if this one."""
    h = t.health_samples
    stmt = store._insert(h).values({"at": at, "values": values})
    stmt = stmt.on_conflict_do_nothing(index_elements=["at"]).returning(h.c.at)
    with store.engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def prune_samples(store: SqlStore, before: datetime) -> int:
    h = t.health_samples
    with store.engine.begin() as conn:
        return int(conn.execute(sa.delete(h).where(h.c.at < before)).rowcount)


def samples(
    store: SqlStore, since: datetime, until: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """Health samples taken in ``[since, until]``, oldest first, for charts."""
    h = t.health_samples
    query = (
        sa.select(h.c.at, h.c["values"]).where(h.c.at >= since, h.c.at <= until).order_by(h.c.at)
    )
    with store.reader.connect() as conn:
        return [(row[0], dict(row[1])) for row in conn.execute(query)]


# --- alerts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    seq: int
    workspace_id: str
    kind: str
    subject: str
    status: str
    value: float
    threshold: float
    message: str
    started_at: datetime
    resolved_at: datetime | None


def _alert_rows(conn: Connection, query: sa.Select[Any]) -> list[AlertRow]:
    return [AlertRow(*row) for row in conn.execute(query)]


def _alert_columns() -> list[sa.Column[Any]]:
    a = t.alerts
    return [
        a.c.seq,
        a.c.workspace_id,
        a.c.kind,
        a.c.subject,
        a.c.status,
        a.c.value,
        a.c.threshold,
        a.c.message,
        a.c.started_at,
        a.c.resolved_at,
    ]


def lock_alerts(store: SqlStore, conn: Connection) -> None:
    """Serialise alert evaluations for the rest of the transaction (SQLite's write
    transactions already are), so that one (kind, subject) never has two firing rows."""
    if store.postgres:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ALERT_LOCK})


def firing(conn: Connection, workspace_id: str, kinds: Sequence[str]) -> list[AlertRow]:
    a = t.alerts
    query = sa.select(*_alert_columns()).where(
        a.c.status == "firing", a.c.kind.in_(kinds), a.c.workspace_id == workspace_id
    )
    return _alert_rows(conn, query.order_by(a.c.seq))


def open_alert(
    conn: Connection,
    workspace_id: str,
    kind: str,
    subject: str,
    value: float,
    threshold: float,
    message: str,
    now: datetime,
) -> AlertRow:
    a = t.alerts
    row = conn.execute(
        sa.insert(a)
        .values(
            workspace_id=workspace_id,
            kind=kind,
            subject=subject,
            status="firing",
            value=value,
            threshold=threshold,
            message=message,
            started_at=now,
        )
        .returning(*_alert_columns())
    ).one()
    return AlertRow(*row)


def update_alert(
    conn: Connection,
    seq: int,
    value: float,
    message: str,
    resolved_at: datetime | None = None,
) -> None:
    """Keep a firing alert's value and message current; with ``resolved_at``, resolve it."""
    a = t.alerts
    values: dict[str, Any] = {"value": value, "message": message}
    if resolved_at is not None:
        values.update(status="resolved", resolved_at=resolved_at)
    conn.execute(sa.update(a).where(a.c.seq == seq, a.c.status == "firing").values(values))


def queue_call(
    store: SqlStore,
    conn: Connection,
    workspace_id: str,
    call_id: str,
    url: str,
    body: dict[str, Any],
    now: datetime,
) -> None:
    """Outbox a JSON POST in ``actions``: the webhook dispatcher makes it, with retries."""
    stmt = store._insert(t.actions).values(
        workspace_id=workspace_id,
        id=call_id,
        kind="alert",
        run_id=None,
        step_id=None,
        payload={"url": url, "method": "POST", "headers": {}, "body": body},
        status="queued",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["workspace_id", "id"]))


def prune_alerts(store: SqlStore, before: datetime) -> int:
    """Delete alerts resolved before ``before`` (retention)."""
    a = t.alerts
    query = sa.delete(a).where(a.c.status == "resolved", a.c.resolved_at < before)
    with store.engine.begin() as conn:
        return int(conn.execute(query).rowcount)


def list_alerts(
    store: SqlStore, workspace_id: str, *, status: str | None = None, limit: int = 50
) -> list[AlertRow]:
    """Alerts of a workspace and of the whole installation, newest first."""
    a = t.alerts
    query = sa.select(*_alert_columns()).where(a.c.workspace_id.in_((workspace_id, GLOBAL)))
    if status is not None:
        query = query.where(a.c.status == status)
    with store.reader.connect() as conn:
        return _alert_rows(conn, query.order_by(a.c.seq.desc()).limit(limit))
