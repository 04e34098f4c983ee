"""``/v1/dev/mailbox``: the emails the local SMTP sink (``flowmail sink``) caught, as
JSON, for tests and scripts. 404 when no dev mailbox is configured
(``FLOWMAIL_DEV_MAILBOX``). The folder is the installation's, not a workspace's: only
admin keys may read it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from flowmail.api.auth import AdminKey
from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import ApiError, Responses
from flowmail.delivery import sink

router = APIRouter(prefix="/v1/dev/mailbox", tags=["dev mailbox"])
_MISSING: Responses = {404: {"description": "No dev mailbox configured, or no such email"}}
_MailId = Annotated[str, Query(pattern=sink.MAIL_ID.pattern)]


class MailSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    subject: str
    received_at: datetime


class Header(BaseModel):
    name: str
    value: str


class Mail(MailSummary):
    headers: list[Header]
    text: str | None
    html: str | None
    attachments: list[str]
    size: int = Field(description="Bytes, as received")


def mailbox_folder(ctx: ApiContext) -> Path:
    if not ctx.settings.dev_mailbox:
        raise ApiError(404, "no dev mailbox: set FLOWMAIL_DEV_MAILBOX and run `flowmail sink`")
    return Path(ctx.settings.dev_mailbox)


def _summary(found: sink.MailSummary) -> MailSummary:
    return MailSummary.model_validate(
        {
            "id": found.id,
            "from": found.from_,
            "to": found.to,
            "subject": found.subject,
            "received_at": found.received_at,
        }
    )


@router.get("", response_model=list[MailSummary], response_model_by_alias=True, responses=_MISSING)
def list_mailbox(
    key: AdminKey,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: _MailId | None = None,
) -> list[MailSummary]:
    """The newest caught emails first; ``before`` (an id) pages back."""
    return [_summary(m) for m in sink.list_mail(mailbox_folder(ctx), limit, before)]


@router.get("/{mail_id}", response_model=Mail, response_model_by_alias=True, responses=_MISSING)
def get_mail(mail_id: str, key: AdminKey, ctx: Ctx) -> Mail:
    """One caught email: its headers in order, text and HTML parts, attachment names."""
    found = sink.read_mail(mailbox_folder(ctx), mail_id)
    if found is None:
        raise ApiError(404, f"no email {mail_id!r} in the dev mailbox")
    return Mail(
        **_summary(found.summary).model_dump(by_alias=True),
        headers=[Header(name=n, value=v) for n, v in found.headers],
        text=found.text,
        html=found.html,
        attachments=found.attachments,
        size=found.size,
    )
