"""The engine's read-only history view, loaded from the store on first use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowmail.engine.state import Event, ListHistory
from flowmail.store.sql import SqlStore

HISTORY_WINDOW_EVENTS = 10_000


class StoreHistory:
    """One contact's events up to ``until``: a single query, only if a condition asks."""

    def __init__(
        self, store: SqlStore, workspace_id: str, contact_id: str, until: datetime
    ) -> None:
        self._args = (store, workspace_id, contact_id, until)
        self._cache: ListHistory | None = None

    def events(self, name: str | None, since: datetime | None, until: datetime) -> Sequence[Event]:
        if self._cache is None:
            store, workspace_id, contact_id, latest = self._args
            loaded = store.history_events(workspace_id, contact_id, None, None, latest)
            self._cache = ListHistory(loaded[-HISTORY_WINDOW_EVENTS:])
        return self._cache.events(name, since, until)
