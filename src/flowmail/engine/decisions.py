"""What the engine decides. The runtime (or the simulator) carries these out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowmail.engine.state import Event, Run


@dataclass(frozen=True)
class SaveRun:
    """The run's new state; ``new`` when this decision created it."""

    run: Run
    new: bool = False


@dataclass(frozen=True)
class SendEmail:
    """Queue one email. ``key`` is unique per run, step and visit: the idempotency key."""

    key: str
    run_id: str
    contact_id: str
    workflow_id: str
    version: int
    step_id: str
    to: str | None
    template: str | None
    subject: str
    topic: str
    priority: int
    on_capped: str
    content: str | None
    at: datetime


@dataclass(frozen=True)
class UpdateContact:
    """Set attributes on the contact (tags are the ``tags`` attribute)."""

    contact_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class CallWebhook:
    key: str
    run_id: str
    step_id: str
    url: str
    method: str
    headers: dict[str, str]
    body: Any
    at: datetime


@dataclass(frozen=True)
class EnrollContact:
    """Start a run of another workflow for this contact (outboxed, carried out later)."""

    key: str
    contact_id: str
    workflow_id: str
    trigger: Event
    source_run_id: str
    at: datetime


@dataclass(frozen=True)
class Record:
    """One journal line: a step executed, a run started or ended, and why."""

    at: datetime
    contact_id: str
    workflow_id: str
    run_id: str
    step_id: str | None
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Warn:
    """Something the user should know that did not stop the journey."""

    at: datetime
    message: str
    run_id: str | None = None
    step_id: str | None = None


Decision = SaveRun | SendEmail | UpdateContact | CallWebhook | EnrollContact | Record | Warn
