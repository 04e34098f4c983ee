"""``/v1/contacts``: read contacts, list them a page at a time, and upsert them.

An upsert is an identify event through the inbox, like ``/v1/identify``: the worker
applies it in order with the contact's other events, and workflows see it. The
answer is 202: the change is accepted and will show once the worker has handled it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from flowmail.api.auth import AdminKey
from flowmail.api.context import Ctx
from flowmail.api.errors import ApiError, invalid, problem
from flowmail.api.fields import (
    Cursor,
    Email,
    Id,
    JsonObject,
    Limit,
    PathId,
    Zone,
    check_email,
    check_text,
)
from flowmail.api.ingest import ingest_now
from flowmail.api.segment import Accepted, Identify
from flowmail.store import api_queries

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
_ATTRIBUTE = re.compile(r"^([\w.\-]{1,100})=(.*)$", re.S)


class Contact(BaseModel):
    id: str
    email: str | None
    timezone: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    items: list[Contact]
    next: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class ContactUpsert(BaseModel):
    """Fields to set; attributes are merged into the contact's (a null value removes one)."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = Field(None, description="null removes the address")
    timezone: Zone | None = Field(None, description="An IANA zone; null removes it")
    attributes: JsonObject = Field(default_factory=dict)
    message_id: Id | None = Field(None, alias="messageId", description="Makes the call idempotent")
    timestamp: AwareDatetime | None = None

    @field_validator("attributes")
    @classmethod
    def _own_fields_apart(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in ("email", "timezone"):
            if name in value:
                raise ValueError(f"set {name!r} with the {name} field, not as an attribute")
        return value


class Upserted(Accepted):
    contact_id: str


def _encode(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        last = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        if not last:
            raise ValueError("empty")
        return check_text(last)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid([problem("cursor", "is not a cursor this API gave", "query")]) from None


def _attribute_filters(values: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; a value that is JSON (``3``, ``true``, ``"3"``) compares as
    that JSON value, anything else as a string."""
    filters: dict[str, Any] = {}
    for raw in values:
        match = _ATTRIBUTE.match(raw)
        if match is None:
            raise invalid([problem("attribute", f"{raw!r} is not name=value", "query")])
        try:
            value = json.loads(match[2])
        except ValueError:
            value = match[2]
        if isinstance(value, dict | list) or (isinstance(value, float) and value != value):
            value = match[2]
        filters[match[1]] = value
    return filters


@router.get("", response_model=ContactPage)
def list_contacts(
    key: AdminKey,
    ctx: Ctx,
    limit: Limit = 100,
    cursor: Cursor = None,
    email: Annotated[str | None, Query(max_length=320, pattern=r"^[^\x00]+$")] = None,
    attribute: Annotated[
        list[str], Query(description="name=value: attributes that must equal these")
    ] = [],  # noqa: B006 (FastAPI copies defaults)
) -> ContactPage:
    """Contacts in id order, a page at a time, optionally filtered."""
    if email is not None:
        try:
            email = check_email(email)
        except ValueError as exc:
            raise invalid([problem("email", str(exc), "query")]) from None
    rows = api_queries.list_contacts(
        ctx.store,
        key.workspace_id,
        limit=limit,
        after=None if cursor is None else _decode(cursor),
        email=email,
        attributes=_attribute_filters(attribute),
    )
    following = _encode(rows[-1]["id"]) if len(rows) == limit else None
    return ContactPage(items=[Contact(**row) for row in rows], next=following)


@router.get("/{contact_id}", response_model=Contact, responses={404: {"description": "No such"}})
def get_contact(contact_id: PathId, key: AdminKey, ctx: Ctx) -> Contact:
    row = api_queries.get_contact(ctx.store, key.workspace_id, contact_id)
    if row is None:
        raise ApiError(404, f"no contact {contact_id!r}")
    return Contact(**row)


@router.put("/{contact_id}", response_model=Upserted, status_code=status.HTTP_202_ACCEPTED)
def upsert_contact(contact_id: PathId, body: ContactUpsert, key: AdminKey, ctx: Ctx) -> Upserted:
    """Create or change a contact, through the inbox (as an identify event)."""
    traits = dict(body.attributes)
    for name in ("email", "timezone"):
        if name in body.model_fields_set:
            traits[name] = getattr(body, name)
    call = Identify.model_construct(
        user_id=contact_id, traits=traits, message_id=body.message_id, timestamp=body.timestamp
    )
    result = ingest_now(ctx, (call,), key.workspace_id)
    return Upserted(contact_id=contact_id, **result.model_dump())
