"""Segment-style calls (track, identify, batch) and what they become in the inbox.

The fields are Segment's HTTP Tracking API's, so an existing source can point here.
Fields Segment defines that flowmail does not use (``context``, ``integrations``,
``sentAt``, ...) are accepted and ignored; any other field is refused. ``userId`` is
required: it is the contact's id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from flowmail.api.errors import problem
from flowmail.api.fields import Id, JsonObject, Text, check_email, check_timezone
from flowmail.engine.state import IDENTIFY
from flowmail.store.records import InboundEvent

RESERVED_PREFIXES = ("enroll:", "tick:")  # ids the runtime gives events it makes itself


class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id = Field(alias="userId", description="The contact's id")
    anonymous_id: Text | None = Field(None, alias="anonymousId", description="Ignored")
    timestamp: AwareDatetime | None = Field(
        None, description="When it happened (ISO 8601 with a zone); default: when received"
    )
    message_id: Id | None = Field(
        None,
        alias="messageId",
        description="The client's unique id: a repeated call with it changes nothing",
    )
    context: dict[str, Any] | None = Field(None, description="Ignored")
    integrations: dict[str, Any] | None = Field(None, description="Ignored")
    sent_at: Text | None = Field(None, alias="sentAt", description="Ignored")
    original_timestamp: Text | None = Field(None, alias="originalTimestamp", description="Ignored")
    received_at: Text | None = Field(None, alias="receivedAt", description="Ignored")
    channel: Text | None = Field(None, description="Ignored")
    version: int | Text | None = Field(None, description="Ignored")
    write_key: Text | None = Field(None, alias="writeKey", description="Ignored")


class Track(_Call):
    """Something a contact did."""

    type: Literal["track"] = "track"
    event: Id = Field(description="The event's name")
    properties: JsonObject = Field(default_factory=dict)


class Identify(_Call):
    """Who a contact is: traits become the contact's attributes (``email`` and
    ``timezone`` are its address and zone)."""

    type: Literal["identify"] = "identify"
    traits: JsonObject = Field(default_factory=dict)


Call = Annotated[Track | Identify, Field(discriminator="type")]


class Batch(BaseModel):
    """Several track and identify calls, accepted or refused together."""

    model_config = ConfigDict(extra="forbid")

    batch: list[Call]
    context: dict[str, Any] | None = Field(None, description="Ignored")
    integrations: dict[str, Any] | None = Field(None, description="Ignored")
    sent_at: Text | None = Field(None, alias="sentAt", description="Ignored")
    write_key: Text | None = Field(None, alias="writeKey", description="Ignored")
    metadata: dict[str, Any] | None = Field(None, description="Ignored")


class Accepted(BaseModel):
    accepted: int = Field(description="Events new to the inbox")
    duplicates: int = Field(description="Events whose messageId was already received")


def check_call(
    call: Track | Identify, where: str, now: datetime, max_future: timedelta
) -> list[dict[str, str]]:
    """What pydantic cannot see: the time is not too far ahead, the email is valid, the
    id is not one of the runtime's own."""
    prefix = f"{where}." if where else ""
    problems = []
    if call.timestamp is not None and call.timestamp > now + max_future:
        ahead = (call.timestamp - now).total_seconds()
        problems.append(
            problem(
                f"{prefix}timestamp",
                f"is {ahead:,.0f} s in the future; at most {max_future.total_seconds():,.0f} s"
                " ahead is accepted",
            )
        )
    if call.message_id is not None and call.message_id.startswith(RESERVED_PREFIXES):
        reserved = " or ".join(repr(p) for p in RESERVED_PREFIXES)
        problems.append(problem(f"{prefix}messageId", f"must not start with {reserved}"))
    if isinstance(call, Identify):
        problems += _check_traits(call.traits, prefix)
    return problems


def _check_traits(traits: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    """``timezone`` and ``email`` are the contact's own fields: text (or null to clear)
    that must be a known zone and a valid address."""
    problems = []
    for name, check in (("timezone", check_timezone), ("email", check_email)):
        value = traits.get(name)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ValueError("must be a string or null")
            check(value)
        except ValueError as exc:
            problems.append(problem(f"{prefix}traits.{name}", str(exc)))
    return problems


def to_event(call: Track | Identify, workspace_id: str, now: datetime) -> InboundEvent:
    at = (call.timestamp or now).astimezone(UTC)
    if isinstance(call, Track):
        return InboundEvent(
            call.user_id,
            call.event,
            at,
            call.properties,
            None,
            call.message_id,
            "track",
            workspace_id,
        )
    return InboundEvent(
        call.user_id, IDENTIFY, at, {}, call.traits, call.message_id, "identify", workspace_id
    )
