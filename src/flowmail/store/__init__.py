"""Durable state behind one small interface.

:class:`Store` is the contract the runtime depends on; :class:`~flowmail.store.sql.SqlStore`
is its one implementation, on SQLite or PostgreSQL. The same contract tests
(``tests/integration/test_store_contract.py``) run against both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from flowmail.engine.state import Contact, Event, Run
from flowmail.store.records import (
    Applied,
    InboundEvent,
    IngestResult,
    Key,
    Unit,
    UnitResult,
    WorkflowRow,
)


class Store(Protocol):
    # the inbox and the worker's unit of work
    def ingest(self, items: Sequence[InboundEvent], now: datetime) -> IngestResult: ...
    def claim(self, owner: str, now: datetime, limit: int, lease: timedelta) -> list[Key]: ...
    def load(self, keys: Sequence[Key], now: datetime) -> list[Unit]: ...
    def commit(self, owner: str, results: Sequence[UnitResult], now: datetime) -> list[Key]: ...
    def release(self, owner: str, keys: Sequence[Key]) -> None: ...
    def history_events(
        self,
        workspace_id: str,
        contact_id: str,
        name: str | None,
        since: datetime | None,
        until: datetime,
    ) -> list[Event]: ...

    # workflows and their versions
    def apply_workflow(
        self, workspace_id: str, workflow_id: str, definition: dict[str, Any], now: datetime
    ) -> Applied: ...
    def workflow_rows(self, workspace_id: str | None = None) -> list[WorkflowRow]: ...
    def workflow_definition(
        self, workspace_id: str, workflow_id: str, version: int
    ) -> dict[str, Any] | None: ...
    def set_mode(
        self, workspace_id: str, workflow_id: str, mode: str, reason: str | None, now: datetime
    ) -> bool: ...

    # time triggers
    def due_schedules(self, now: datetime) -> list[tuple[str, str, str, datetime]]: ...
    def next_due(self) -> datetime | None: ...

    # reading back
    def runs(
        self,
        workspace_id: str = ...,
        contact_id: str | None = None,
        workflow_id: str | None = None,
    ) -> list[Run]: ...
    def contact(self, workspace_id: str, contact_id: str) -> Contact | None: ...
    def prune(self, before: datetime) -> dict[str, int]: ...


__all__ = ["Store"]
