"""Workflows, their versions and modes, and moving runs between versions."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flowmail.engine.state import RunStatus
from flowmail.store import schema as t
from flowmail.store.base import StoreBase, earliest, keys_match
from flowmail.store.records import (
    Applied,
    WorkflowRow,
)


class WorkflowQueries(StoreBase):
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
                    .values(wake_at=earliest(c.c.wake_at, sa.literal(now, t.Moment())))
                )
        return True

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
                        .where(keys_match(c.c.id, keys), free)
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
