"""The SQL behind the HTTP API's management and health endpoints.

Every function takes a :class:`~flowmail.store.sql.SqlStore` and a workspace id (the
caller's key's): a row of another workspace is never read, so it looks missing.
Portable SQLAlchemy Core, except the per-step counts, which unnest each run's path
with the dialect's own JSON function.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flowmail.store import schema as t
from flowmail.store.records import WorkflowRow
from flowmail.store.sql import SqlStore

# --- contacts ---------------------------------------------------------------------------


def get_contact(store: SqlStore, workspace_id: str, contact_id: str) -> dict[str, Any] | None:
    c = t.contacts
    query = sa.select(
        c.c.id, c.c.email, c.c.timezone, c.c.attributes, c.c.created_at, c.c.updated_at
    ).where(c.c.workspace_id == workspace_id, c.c.id == contact_id)
    with store.reader.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else dict(row._mapping)


def list_contacts(
    store: SqlStore,
    workspace_id: str,
    *,
    limit: int,
    after: str | None = None,
    email: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Contacts in id order after ``after``; ``attributes`` must all be equal (JSON-typed)."""
    c = t.contacts
    query = sa.select(
        c.c.id, c.c.email, c.c.timezone, c.c.attributes, c.c.created_at, c.c.updated_at
    ).where(c.c.workspace_id == workspace_id)
    if after is not None:
        query = query.where(c.c.id > after)
    if email is not None:
        query = query.where(c.c.email == email)
    for name, value in (attributes or {}).items():
        query = query.where(_attribute_equals(store, name, value))
    with store.reader.connect() as conn:
        rows = conn.execute(query.order_by(c.c.id).limit(limit))
        return [dict(row._mapping) for row in rows]


def _attribute_equals(store: SqlStore, name: str, value: Any) -> sa.ColumnElement[bool]:
    """``attributes[name] == value``, comparing JSON types (``3`` is not ``"3"``)."""
    column = t.contacts.c.attributes
    if store.postgres:
        return column.op("@>")(sa.cast(sa.literal({name: value}, t.JSON), t.JSON))
    path = '$."' + name.replace('"', "") + '"'
    kind = sa.func.json_type(column, path)
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    extracted = sa.func.json_extract(column, path)
    if isinstance(value, str):
        return sa.and_(kind == "text", extracted == value)
    return sa.and_(kind.in_(("integer", "real")), extracted == value)


# --- workflows --------------------------------------------------------------------------


def get_workflow(store: SqlStore, workspace_id: str, workflow_id: str) -> WorkflowRow | None:
    w = t.workflows
    with store.reader.connect() as conn:
        r = conn.execute(
            sa.select(w).where(w.c.workspace_id == workspace_id, w.c.id == workflow_id)
        ).first()
    if r is None:
        return None
    return WorkflowRow(r.workspace_id, r.id, r.version, r.mode, r.reason, r.updated_at)


_STEP_COUNTS = {
    "sqlite": """
        SELECT p.value, COUNT(DISTINCT r.id) FROM runs AS r, json_each(r.state, '$.path') AS p
        WHERE r.workspace_id = :ws AND r.workflow_id = :wf GROUP BY p.value
    """,
    "postgresql": """
        SELECT p.value, COUNT(DISTINCT r.id)
        FROM runs AS r, jsonb_array_elements_text(r.state -> 'path') AS p(value)
        WHERE r.workspace_id = :ws AND r.workflow_id = :wf GROUP BY p.value
    """,
}


def workflow_stats(store: SqlStore, workspace_id: str, workflow_id: str) -> dict[str, Any]:
    """Runs by status, each step's runs (that reached it; that are at it now), messages
    by status."""
    r, m = t.runs, t.messages
    ws = {"ws": workspace_id, "wf": workflow_id}
    steps: dict[str, dict[str, int]] = {}
    with store.reader.connect() as conn:
        runs = conn.execute(
            sa.select(r.c.status, sa.func.count())
            .where(r.c.workspace_id == workspace_id, r.c.workflow_id == workflow_id)
            .group_by(r.c.status)
        ).all()
        for step, count in conn.execute(sa.text(_STEP_COUNTS[store.dialect]), ws):
            steps.setdefault(str(step), {"reached": 0, "current": 0})["reached"] = int(count)
        for step, count in conn.execute(
            sa.select(r.c.step, sa.func.count())
            .where(
                r.c.workspace_id == workspace_id,
                r.c.workflow_id == workflow_id,
                r.c.status.in_(("active", "waiting")),
                r.c.step.is_not(None),
            )
            .group_by(r.c.step)
        ):
            steps.setdefault(str(step), {"reached": 0, "current": 0})["current"] = int(count)
        messages = conn.execute(
            sa.select(m.c.status, sa.func.count())
            .where(m.c.workspace_id == workspace_id, m.c.workflow_id == workflow_id)
            .group_by(m.c.status)
        ).all()
    return {
        "runs": {str(status): int(n) for status, n in runs},
        "steps": dict(sorted(steps.items())),
        "messages": {str(status): int(n) for status, n in messages},
    }


# --- suppressions -----------------------------------------------------------------------


def list_suppressions(
    store: SqlStore,
    workspace_id: str,
    *,
    limit: int,
    after: str | None = None,
    reason: str | None = None,
) -> list[dict[str, Any]]:
    s = t.suppressions
    query = sa.select(s.c.email, s.c.reason, s.c.source, s.c.created_at).where(
        s.c.workspace_id == workspace_id
    )
    if after is not None:
        query = query.where(s.c.email > after)
    if reason is not None:
        query = query.where(s.c.reason == reason)
    with store.reader.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query.order_by(s.c.email).limit(limit))]


def get_suppression(store: SqlStore, workspace_id: str, email: str) -> dict[str, Any] | None:
    s = t.suppressions
    query = sa.select(s.c.email, s.c.reason, s.c.source, s.c.created_at).where(
        s.c.workspace_id == workspace_id, s.c.email == email
    )
    with store.reader.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else dict(row._mapping)


def remove_suppression(store: SqlStore, workspace_id: str, email: str) -> bool:
    s = t.suppressions
    with store.engine.begin() as conn:
        deleted = conn.execute(
            sa.delete(s).where(s.c.workspace_id == workspace_id, s.c.email == email)
        ).rowcount
    return bool(deleted)


# --- health -----------------------------------------------------------------------------


def ping(store: SqlStore) -> None:
    """Raises if the database does not answer."""
    with store.reader.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar_one()


def heartbeats(store: SqlStore) -> list[tuple[str, str, datetime]]:
    """(id, kind, last seen) of every worker and sender that ever reported."""
    h = t.heartbeats
    with store.reader.connect() as conn:
        rows = conn.execute(sa.select(h.c.id, h.c.kind, h.c.seen_at).order_by(h.c.kind, h.c.id))
        return [(r.id, r.kind, r.seen_at) for r in rows]


def queue_depths(store: SqlStore, now: datetime) -> dict[str, int]:
    """Work waiting across all workspaces: inbox events, queued messages, due wakes."""
    e, m, c = t.events, t.messages, t.contacts
    count = sa.func.count()
    with store.reader.connect() as conn:
        pending = conn.execute(sa.select(count).where(e.c.processed_at.is_(None))).scalar_one()
        queued = conn.execute(sa.select(count).where(m.c.status == "queued")).scalar_one()
        due = conn.execute(
            sa.select(count).where(m.c.status == "queued", m.c.send_after <= now)
        ).scalar_one()
        wakes = conn.execute(sa.select(count).where(c.c.wake_at <= now)).scalar_one()
    return {
        "pending_events": int(pending),
        "queued_messages": int(queued),
        "due_messages": int(due),
        "due_wakes": int(wakes),
    }
