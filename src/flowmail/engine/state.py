"""What the engine reads: contacts, events, runs, and the contact's history."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

IDENTIFY = "identify"
ENGAGEMENT_EVENTS = ("email_opened", "email_clicked")


def stable_hash(*parts: object) -> str:
    """A short, stable hex digest: ids and A/B buckets come from here, never from random."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def bucket(*parts: object) -> float:
    """A stable number in [0, 100) for splits and holdouts."""
    return int(stable_hash(*parts)[:12], 16) % 1_000_000 / 10_000


@dataclass(frozen=True)
class Event:
    """Something that happened to a contact. ``identify`` events carry ``traits``."""

    contact_id: str
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    traits: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        if not self.id:
            object.__setattr__(
                self, "id", stable_hash(self.contact_id, self.name, self.at.isoformat())
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contact_id": self.contact_id,
            "name": self.name,
            "at": self.at.isoformat(),
            "properties": self.properties,
            "traits": self.traits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            contact_id=data["contact_id"],
            name=data["name"],
            at=datetime.fromisoformat(data["at"]),
            properties=data.get("properties") or {},
            id=data["id"],
            traits=data.get("traits"),
        )


@dataclass(frozen=True)
class Contact:
    """A person. Tags live in the ``tags`` attribute as a sorted list."""

    id: str
    email: str | None = None
    timezone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def with_attributes(self, values: dict[str, Any]) -> Contact:
        merged = {**self.attributes, **values}
        email = merged.pop("email", self.email)
        timezone = merged.pop("timezone", self.timezone)
        return replace(self, email=email, timezone=timezone, attributes=merged)

    def as_variables(self) -> dict[str, Any]:
        """The ``contact`` seen by conditions and templates."""
        return {
            **self.attributes,
            "id": self.id,
            "email": self.email,
            "timezone": self.timezone,
        }


class RunStatus(StrEnum):
    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETED = "completed"
    CONVERTED = "converted"
    EXITED = "exited"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self not in (RunStatus.ACTIVE, RunStatus.WAITING)


@dataclass
class Run:
    """One contact's pass through one workflow version."""

    id: str
    workflow_id: str
    version: int
    contact_id: str
    started_at: datetime
    trigger: Event
    status: RunStatus = RunStatus.ACTIVE
    step: str | None = None  # the step being executed or waited on
    path: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    waiting_for: str | None = None  # event name a wait_for step waits on
    ended_at: datetime | None = None
    reason: str | None = None
    holdout: bool = False
    emails: dict[str, str] = field(default_factory=dict)  # step id -> message key
    engaged: dict[str, list[str]] = field(default_factory=dict)  # step id -> opened/clicked
    variants: dict[str, str] = field(default_factory=dict)  # split step id -> chosen target

    def copy(self) -> Run:
        return replace(
            self,
            path=list(self.path),
            emails=dict(self.emails),
            engaged={k: list(v) for k, v in self.engaged.items()},
            variants=dict(self.variants),
        )

    def as_variables(self) -> dict[str, Any]:
        """The ``run`` seen by conditions and templates."""
        return {
            "id": self.id,
            "workflow": self.workflow_id,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "status": str(self.status),
            "step": self.step,
            "path": list(self.path),
            "variants": dict(self.variants),
            "holdout": self.holdout,
            "trigger": {
                "name": self.trigger.name,
                "at": self.trigger.at.isoformat(),
                **self.trigger.properties,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "contact_id": self.contact_id,
            "started_at": self.started_at.isoformat(),
            "trigger": self.trigger.to_dict(),
            "status": str(self.status),
            "step": self.step,
            "path": self.path,
            "wake_at": self.wake_at.isoformat() if self.wake_at else None,
            "waiting_for": self.waiting_for,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "reason": self.reason,
            "holdout": self.holdout,
            "emails": self.emails,
            "engaged": self.engaged,
            "variants": self.variants,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        started = when("started_at")
        assert started is not None
        return cls(
            id=data["id"],
            workflow_id=data["workflow_id"],
            version=data["version"],
            contact_id=data["contact_id"],
            started_at=started,
            trigger=Event.from_dict(data["trigger"]),
            status=RunStatus(data["status"]),
            step=data.get("step"),
            path=list(data.get("path") or []),
            wake_at=when("wake_at"),
            waiting_for=data.get("waiting_for"),
            ended_at=when("ended_at"),
            reason=data.get("reason"),
            holdout=bool(data.get("holdout")),
            emails=dict(data.get("emails") or {}),
            engaged={k: list(v) for k, v in (data.get("engaged") or {}).items()},
            variants=dict(data.get("variants") or {}),
        )


class History(Protocol):
    """A read-only view of one contact's past events (including the one in hand)."""

    def events(self, name: str | None, since: datetime | None, until: datetime) -> Sequence[Event]:
        """Events named ``name`` (any if None) with ``since < at <= until``, oldest first."""
        ...


class ListHistory:
    """A :class:`History` over an in-memory list of one contact's events."""

    def __init__(self, events: Sequence[Event] = ()) -> None:
        self._events = sorted(events, key=lambda e: e.at)

    def append(self, event: Event) -> None:
        if self._events and event.at < self._events[-1].at:
            self._events.append(event)
            self._events.sort(key=lambda e: e.at)
        else:
            self._events.append(event)

    def events(self, name: str | None, since: datetime | None, until: datetime) -> Sequence[Event]:
        return [
            e
            for e in self._events
            if (name is None or e.name == name)
            and (since is None or e.at > since)
            and e.at <= until
        ]
