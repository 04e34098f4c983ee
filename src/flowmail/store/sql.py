"""The one SQL implementation of the store: SQLite (embedded) and PostgreSQL (scale-out).

Ordinary work is portable SQLAlchemy Core; the hot paths (claiming contacts, writing a
batch's outcome, ingestion) are written per dialect in :mod:`flowmail.store.hot`:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, plain ``UPDATE … RETURNING`` under SQLite's
single writer. The methods are grouped by concern in the mixins below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flowmail.engine.state import Contact, Run
from flowmail.store import schema as t
from flowmail.store.action_queries import ActionQueries
from flowmail.store.base import (
    READ_ONLY,
    create_db_engine,
)
from flowmail.store.inbox import InboxQueries
from flowmail.store.notify import Listener
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.trigger_queries import TriggerQueries
from flowmail.store.workflow_queries import WorkflowQueries


class SqlStore(InboxQueries, WorkflowQueries, TriggerQueries, ActionQueries):
    """Durable state behind one small interface; see :mod:`flowmail.store` for the contract."""

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(create_db_engine(url))

    def close(self) -> None:
        self.engine.dispose()

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


__all__ = ["READ_ONLY", "SqlStore", "create_db_engine"]
