"""The action outbox: webhook calls claimed, attempted and finished."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flowmail.store import schema as t
from flowmail.store.base import StoreBase, keys_match
from flowmail.store.schema import DEFAULT_WORKSPACE


class ActionQueries(StoreBase):
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
                .where(keys_match(a.c.id, keys), due)
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
