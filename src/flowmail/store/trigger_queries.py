"""Schedules and date triggers: stored fire times, so workers never scan contacts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from flowmail.engine.state import Contact
from flowmail.store import hot
from flowmail.store import schema as t
from flowmail.store.base import StoreBase, earliest
from flowmail.store.notify import CHANNEL
from flowmail.store.schema import to_micros


class TriggerQueries(StoreBase):
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
                .values(wake_at=earliest(c.c.wake_at, sa.bindparam("at", type_=t.Moment()))),
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
