"""Helpers for the HTTP API tests: an app on a real database, keys, and a client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from flowmail.api.app import create_app
from flowmail.clock import VirtualClock
from flowmail.settings import Settings
from flowmail.store.keys import Role, create_key
from flowmail.store.sql import SqlStore

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    """A client for the app, with an admin and an ingest key in workspace ``default``."""

    client: TestClient
    store: SqlStore
    clock: VirtualClock
    admin_key: str
    ingest_key: str

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_key)

    @property
    def ingest(self) -> dict[str, str]:
        return bearer(self.ingest_key)

    def key(self, role: Role = Role.ADMIN, workspace: str = "default") -> str:
        return create_key(self.store, workspace, role, "test", self.clock.now())[1]

    def get(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        return self.client.post(path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        return self.client.put(path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        return self.client.delete(path, **kwargs)


@contextmanager
def running_api(store: SqlStore, **settings: Any) -> Iterator[Api]:
    """The real app on ``store`` (rate limit off unless asked), a virtual clock at T0."""
    clock = VirtualClock(T0)
    config = Settings(**{"rate_limit_per_key": 0, **settings})
    app = create_app(config, store, clock)
    admin = create_key(store, "default", Role.ADMIN, "admin", clock.now())[1]
    ingest = create_key(store, "default", Role.INGEST, "ingest", clock.now())[1]
    with TestClient(app) as client:
        yield Api(client, store, clock, admin, ingest)


def event_count(store: SqlStore, workspace: str = "default") -> int:
    import sqlalchemy as sa

    from flowmail.store import schema as t

    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(t.events.c.workspace_id == workspace)
            ).scalar_one()
        )


def add_message(
    store: SqlStore,
    message_id: str,
    *,
    workspace: str = "default",
    status: str = "queued",
    contact_id: str = "c1",
    workflow_id: str = "welcome",
    at: datetime = T0,
) -> None:
    """An outbox row as the worker and sender leave it, with one delivery event."""
    import sqlalchemy as sa

    from flowmail.store import schema as t

    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.messages).values(
                workspace_id=workspace,
                id=message_id,
                run_id=f"run-{message_id}",
                contact_id=contact_id,
                workflow_id=workflow_id,
                version=1,
                step_id="hello",
                to_address=f"{contact_id}@example.com",
                template="hello",
                subject="Hello",
                topic="marketing",
                priority=0,
                on_capped="defer",
                status=status,
                created_at=at,
                send_after=at,
                attempts=8 if status == "dead" else 0,
                reason="gave up" if status == "dead" else None,
            )
        )
        conn.execute(
            sa.insert(t.message_events).values(
                workspace_id=workspace,
                message_id=message_id,
                contact_id=contact_id,
                kind=status,
                at=at,
                detail={"note": "made by the test"},
            )
        )
