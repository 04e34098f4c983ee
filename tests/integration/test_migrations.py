"""Running every migration yields exactly the declared schema, on both back ends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flowmail.store.migrate import current_revision, head_revision
from flowmail.store.schema import metadata
from flowmail.store.sql import SqlStore


def test_migrations_match_the_declared_schema(store: SqlStore) -> None:
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_the_default_workspace_exists(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        names = conn.exec_driver_sql("SELECT id FROM workspaces").scalars().all()
    assert names == ["default"]
