"""Plain data passed across the store's interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowmail.engine.decisions import CallWebhook, EnrollContact, Record, SendEmail
from flowmail.engine.state import Contact, Event, Run
from flowmail.store.schema import DEFAULT_WORKSPACE

Key = tuple[str, str]  # (workspace id, contact id)


@dataclass(frozen=True)
class InboundEvent:
    """An event to put in the inbox. ``id`` is the client's messageId (made up if absent)."""

    contact_id: str
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] | None = None
    id: str | None = None
    kind: str = "track"  # track, identify, enroll, schedule
    workspace_id: str = DEFAULT_WORKSPACE


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    duplicate_ids: list[str]


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    kind: str
    event: Event


@dataclass
class Unit:
    """Everything a worker needs to handle one contact's due work."""

    workspace_id: str
    contact: Contact
    runs: list[Run]
    events: list[PendingEvent]
    date_fires: dict[str, datetime]  # workflow id -> when its date trigger fires

    @property
    def key(self) -> Key:
        return (self.workspace_id, self.contact.id)


@dataclass
class UnitResult:
    """What handling one contact's work produced; written in one transaction."""

    workspace_id: str
    contact: Contact
    contact_changed: bool = False
    runs: dict[str, tuple[Run, bool]] = field(default_factory=dict)  # id -> (run, new)
    journal: list[Record] = field(default_factory=list)
    messages: list[SendEmail] = field(default_factory=list)
    webhooks: list[CallWebhook] = field(default_factory=list)
    enrolments: list[EnrollContact] = field(default_factory=list)
    processed: list[tuple[int, str | None]] = field(default_factory=list)  # seq, error
    date_fires: dict[str, datetime | None] = field(default_factory=dict)
    wake_at: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.workspace_id, self.contact.id)


@dataclass(frozen=True)
class WorkflowRow:
    workspace_id: str
    id: str
    version: int
    mode: str
    reason: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Applied:
    workflow_id: str
    version: int
    changed: bool
