"""Opening the store and settings for commands, with errors instead of tracebacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from flowmail.bootstrap import SchemaOutOfDate, open_store
from flowmail.cli.output import fail
from flowmail.settings import Settings, load_settings
from flowmail.store.sql import SqlStore


def settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"FLOWMAIL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"bad settings: {problems}")


@contextmanager
def store_session(migrate: bool | None = None) -> Iterator[tuple[Settings, SqlStore]]:
    config = settings()
    try:
        store = open_store(config, migrate=migrate)
    except SchemaOutOfDate as exc:
        fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        fail(f"cannot open the database {config.database_url!r}: {exc}")
    try:
        yield config, store
    finally:
        store.close()
