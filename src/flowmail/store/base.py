"""What every part of the SQL store shares: the engine, the dialect, small helpers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from flowmail.store import hot
from flowmail.store import schema as t
from flowmail.store.records import (
    Key,
)

CHUNK = 500  # rows per IN (...) list
READ_ONLY = "flowmail_read_only"  # execution option: a reading transaction (SQLite: deferred)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
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


class StoreBase:
    """The connection-level state of :class:`~flowmail.store.sql.SqlStore`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(**{READ_ONLY: True})  # for reads only
        self.dialect = engine.dialect.name
        self.postgres = self.dialect == "postgresql"

    # --- helpers ---------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.postgres else sqlite.insert)(table)

    def ensure_workspace(self, workspace_id: str, now: datetime, name: str | None = None) -> None:
        stmt = self._insert(t.workspaces).values(
            id=workspace_id, name=name or workspace_id, created_at=now
        )
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

    def _insert_events(self, conn: Connection, rows: Sequence[hot.Row]) -> set[Key]:
        """Insert inbox rows; returns the keys that were new."""
        inserted: set[Key] = set()
        for chunk in chunks(rows):
            result = hot.EVENT_INSERT.run(conn, chunk)
            if result is not None:
                inserted.update((row.workspace_id, row.id) for row in result)
        return inserted


def keys_match(column: sa.Column[str], keys: Sequence[Key]) -> sa.ColumnElement[bool]:
    """``(workspace_id, column)`` in ``keys``, written so that both databases use an index
    (SQLite scans for row-value IN lists): one ``workspace = ? AND column IN (...)`` per
    workspace."""
    groups: dict[str, list[str]] = {}
    for workspace_id, value in keys:
        groups.setdefault(workspace_id, []).append(value)
    workspace = column.table.c.workspace_id
    return sa.or_(*(sa.and_(workspace == ws, column.in_(ids)) for ws, ids in groups.items()))


def earliest(column: Any, moment: Any) -> Any:
    """The earlier of a nullable time column and ``moment``, portably."""
    return sa.case((column.is_(None), moment), (column > moment, moment), else_=column)
