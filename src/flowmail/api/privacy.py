"""Privacy (admin key): a contact's data export, erasure, and consent per topic.

- ``GET /v1/contacts/{id}/export``: everything held about the contact, as JSON.
- ``DELETE /v1/contacts/{id}``: erases the contact, its events, runs, journal rows,
  messages and their delivery events, consents and date triggers, in one transaction.
  What keeps honouring an opt-out stays only as ``sha256:<hex>`` of the lower-cased
  address (see :func:`flowmail.store.feedback.erase_contact`).
- ``GET /v1/contacts/{id}/consents`` and ``POST`` (``{topic, status, source}``): consent
  per topic with its time and source. ``double_opt_in: true`` records ``pending`` and
  queues a confirmation email (topic ``transactional``) whose link,
  ``GET /confirm/{token}``, makes it ``subscribed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from flowmail.api.auth import AdminKey
from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import ApiError, Responses
from flowmail.api.fields import PathId, Text
from flowmail.api.recipients import confirm_url
from flowmail.delivery.policy import TRANSACTIONAL
from flowmail.engine.state import stable_hash
from flowmail.language.types import Slug
from flowmail.store import api_queries
from flowmail.store import feedback as sql

router = APIRouter(prefix="/v1/contacts", tags=["privacy"])
_MISSING: Responses = {404: {"description": "No such contact in this key's workspace"}}
CONFIRMATION_WORKFLOW = "_double_opt_in"


class Erased(BaseModel):
    contact_id: str
    deleted: dict[str, int] = Field(description="Rows deleted, per table")
    suppressions_hashed: int = Field(description="Opt-outs kept, as hashes of the address")


class Consent(BaseModel):
    topic: str
    status: str = Field(description="subscribed, unsubscribed or pending")
    at: datetime
    source: str | None


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: Slug = Field(max_length=64)
    status: Literal["subscribed", "unsubscribed"] = "subscribed"
    double_opt_in: bool = Field(
        False, description="Record pending and email a confirmation link (subscribed only)"
    )
    source: Text | None = Field(None, max_length=500, description="Default: the key")


class ConsentResult(Consent):
    confirmation_message_id: str | None = Field(
        None, description="The queued confirmation email, for a double opt-in"
    )


def _contact(ctx: ApiContext, workspace_id: str, contact_id: str) -> dict[str, Any]:
    row = api_queries.get_contact(ctx.store, workspace_id, contact_id)
    if row is None:
        raise ApiError(404, f"no contact {contact_id!r}")
    return row


@router.get("/{contact_id}/export", responses=_MISSING)
def export(contact_id: PathId, key: AdminKey, ctx: Ctx) -> JSONResponse:
    """Everything held about the contact: the contact, its events, runs, journal,
    messages with their delivery events, consents, suppressions and date triggers."""
    data = sql.export_contact(ctx.store, key.workspace_id, contact_id)
    if data is None:
        raise ApiError(404, f"no contact {contact_id!r}")
    data = {"exported_at": ctx.clock.now(), "workspace_id": key.workspace_id, **data}
    return JSONResponse(
        jsonable_encoder(data),
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": 'attachment; filename="contact-export.json"',
        },
    )


@router.delete("/{contact_id}", response_model=Erased, responses=_MISSING)
def erase(contact_id: PathId, key: AdminKey, ctx: Ctx) -> Erased:
    """Erase the contact and everything about it; opt-outs stay only as address hashes."""
    counts = sql.erase_contact(ctx.store, key.workspace_id, contact_id, ctx.clock.now())
    if counts is None:
        raise ApiError(404, f"no contact {contact_id!r}")
    hashed = counts.pop("suppressions_hashed")
    return Erased(contact_id=contact_id, deleted=counts, suppressions_hashed=hashed)


@router.get("/{contact_id}/consents", response_model=list[Consent], responses=_MISSING)
def list_consents(contact_id: PathId, key: AdminKey, ctx: Ctx) -> list[Consent]:
    """The contact's consent per topic, with when and how it was given or withdrawn."""
    _contact(ctx, key.workspace_id, contact_id)
    return [Consent(**row) for row in sql.consents(ctx.store, key.workspace_id, contact_id)]


@router.post(
    "/{contact_id}/consents",
    response_model=ConsentResult,
    responses={
        **_MISSING,
        409: {"description": "A double opt-in for a contact without an email address"},
    },
)
def change_consent(
    contact_id: PathId, body: ConsentChange, key: AdminKey, ctx: Ctx, response: Response
) -> ConsentResult:
    """Record consent for a topic, or with ``double_opt_in`` ask the contact to confirm."""
    if body.double_opt_in and body.status != "subscribed":
        raise ApiError(422, "double_opt_in is for subscribing only")
    contact = _contact(ctx, key.workspace_id, contact_id)
    source = body.source or f"api:{key.key_id}"
    now = ctx.clock.now()
    ws = key.workspace_id
    if not body.double_opt_in:
        sql.set_consent(ctx.store, ws, contact_id, body.topic, body.status, source, now)
        return _result(ctx, ws, contact_id, body.topic, None)
    current = sql.consent(ctx.store, ws, contact_id, body.topic)
    if current is not None and current["status"] == "subscribed":
        return _result(ctx, ws, contact_id, body.topic, None)  # nothing to confirm
    if not contact.get("email"):
        raise ApiError(409, f"contact {contact_id!r} has no email address to confirm with")
    message = _confirmation(ctx, ws, contact_id, contact["email"], body.topic, now)
    sql.request_confirmation(ctx.store, ws, contact_id, body.topic, source, message, now)
    response.status_code = status.HTTP_202_ACCEPTED
    return _result(ctx, ws, contact_id, body.topic, message["id"])


def _result(
    ctx: ApiContext, ws: str, contact_id: str, topic: str, message_id: str | None
) -> ConsentResult:
    row = sql.consent(ctx.store, ws, contact_id, topic)
    assert row is not None
    return ConsentResult(**row, confirmation_message_id=message_id)


def _confirmation(
    ctx: ApiContext, ws: str, contact_id: str, email: str, topic: str, now: datetime
) -> dict[str, Any]:
    """The confirmation email's outbox row. Without a template the sender makes a plain
    text email of the subject, so the subject carries the link."""
    settings = ctx.settings
    link = confirm_url(settings.public_url, settings.secret_key, ws, contact_id, topic, now)
    key = "doi-" + stable_hash("double-opt-in", ws, contact_id, topic, now.isoformat())
    return {
        "workspace_id": ws,
        "id": key,
        "run_id": key,
        "contact_id": contact_id,
        "workflow_id": CONFIRMATION_WORKFLOW,
        "version": 0,
        "step_id": f"confirm-{topic}",
        "to_address": email,
        "template": None,
        "subject": f"Please confirm your subscription to {topic}: {link}",
        "topic": TRANSACTIONAL,
        "priority": 100,
        "on_capped": "defer",
        "content": None,
        "status": "queued",
        "created_at": now,
        "send_after": now,
        "attempts": 0,
    }
