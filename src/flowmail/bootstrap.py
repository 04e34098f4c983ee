"""The composition root: the one place that picks real adapters from settings."""

from __future__ import annotations

import importlib

from flowmail.clock import Clock, SystemClock
from flowmail.runtime.worker import Worker, WorkerOptions
from flowmail.settings import Settings
from flowmail.store.migrate import current_revision, head_revision, upgrade
from flowmail.store.sql import SqlStore


class SchemaOutOfDate(RuntimeError):
    pass


def open_store(
    settings: Settings, clock: Clock | None = None, migrate: bool | None = None
) -> SqlStore:
    """Open the store. SQLite is upgraded on the spot (the embedded default); PostgreSQL
    must be upgraded on purpose with ``flowmail db upgrade`` unless ``migrate`` is true."""
    store = SqlStore.from_url(settings.database_url)
    if migrate is None:
        migrate = not store.postgres
    if migrate:
        upgrade(store.engine, (clock or SystemClock()).now())
    elif current_revision(store.engine) != head_revision():
        store.close()
        raise SchemaOutOfDate("the database schema is out of date: run `flowmail db upgrade`")
    return store


def load_plugins(settings: Settings) -> None:
    """Import the user's modules so their ``@register`` predicates and providers exist."""
    for name in settings.plugins:
        importlib.import_module(name)


def make_worker(settings: Settings, store: SqlStore, clock: Clock | None = None) -> Worker:
    options = WorkerOptions.from_settings(settings)
    return Worker(store, clock or SystemClock(), options)
