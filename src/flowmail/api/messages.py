"""``/v1/messages``: the outbox, each message with its delivery events; dead letters and
retrying them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from flowmail.api.auth import AdminKey
from flowmail.api.context import Ctx
from flowmail.api.errors import ApiError, Responses
from flowmail.api.fields import Limit, PathId
from flowmail.store import messages as outbox

router = APIRouter(prefix="/v1", tags=["messages"])
_MISSING: Responses = {404: {"description": "No such message in this key's workspace"}}
_Filter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]+$")]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    run_id: str
    contact_id: str
    workflow_id: str
    version: int
    step_id: str
    to_address: str | None
    template: str | None
    template_version: int | None
    subject: str
    topic: str
    priority: int
    status: str
    reason: str | None
    attempts: int
    created_at: datetime
    send_after: datetime
    sent_at: datetime | None
    rfc_message_id: str | None
    provider: str | None
    provider_id: str | None
    fallback: str | None


class DeliveryEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: str
    at: datetime
    detail: dict[str, Any]
    provider_event_id: str | None


class MessageDetail(Message):
    events: list[DeliveryEvent]


@router.get("/messages", response_model=list[Message])
def list_messages(
    key: AdminKey,
    ctx: Ctx,
    status: _Filter = None,
    contact_id: _Filter = None,
    workflow_id: _Filter = None,
    limit: Limit = 100,
) -> list[Message]:
    """The newest messages first, optionally filtered."""
    rows = outbox.list_messages(
        ctx.store,
        key.workspace_id,
        status=status,
        contact_id=contact_id,
        workflow_id=workflow_id,
        limit=limit,
    )
    return [Message(**row) for row in rows]


@router.get("/messages/{message_id}", response_model=MessageDetail, responses=_MISSING)
def get_message(message_id: PathId, key: AdminKey, ctx: Ctx) -> MessageDetail:
    row = outbox.get_message(ctx.store, key.workspace_id, message_id)
    if row is None:
        raise ApiError(404, f"no message {message_id!r}")
    events = outbox.message_events(ctx.store, key.workspace_id, message_id)
    return MessageDetail(**row, events=[DeliveryEvent(**e) for e in events])


@router.get("/dead-letters", response_model=list[Message])
def dead_letters(key: AdminKey, ctx: Ctx, limit: Limit = 100) -> list[Message]:
    """Messages whose retries ran out."""
    rows = outbox.list_messages(ctx.store, key.workspace_id, status="dead", limit=limit)
    return [Message(**row) for row in rows]


@router.post(
    "/messages/{message_id}/retry",
    response_model=Message,
    responses={**_MISSING, 409: {"description": "The message is not dead, failed or unknown"}},
)
def retry(message_id: PathId, key: AdminKey, ctx: Ctx) -> Message:
    """Queue a dead, failed, unknown or skipped message again, from a fresh attempt count."""
    row = outbox.get_message(ctx.store, key.workspace_id, message_id)
    if row is None:
        raise ApiError(404, f"no message {message_id!r}")
    done = outbox.requeue(
        ctx.store, key.workspace_id, [message_id], ctx.clock.now(), by=f"api:{key.key_id}"
    )
    if not done:
        raise ApiError(
            409,
            f"message {message_id!r} is {row['status']}: only "
            f"{', '.join(outbox.REQUEUEABLE)} messages can be retried",
        )
    fresh = outbox.get_message(ctx.store, key.workspace_id, message_id)
    return Message(**(fresh or row))
