"""``/ui/mailbox``: the emails the local SMTP sink caught (``flowmail sink``), each
shown as a recipient would see it: the HTML in a sandboxed frame under a strict content
policy, the text part, and the headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flowmail.api.context import Ctx
from flowmail.dashboard.render import mail_body, page
from flowmail.dashboard.session import Viewer
from flowmail.delivery import sink

router = APIRouter(prefix="/ui/mailbox", include_in_schema=False)
LISTED = 50


def _folder(ctx: Ctx) -> Path | None:
    return Path(ctx.settings.dev_mailbox) if ctx.settings.dev_mailbox else None


@router.get("")
def mailbox(request: Request, ctx: Ctx, viewer: Viewer, before: str | None = None) -> Response:
    folder = _folder(ctx)
    before = before if before and sink.MAIL_ID.match(before) else None
    found = sink.list_mail(folder, LISTED + 1, before) if folder is not None else []
    return page(
        request,
        "mailbox.html",
        viewer,
        section="mailbox",
        folder=folder,
        mails=found[:LISTED],
        older=found[LISTED - 1].id if len(found) > LISTED else None,
    )


@router.get("/{mail_id}")
def mail(request: Request, ctx: Ctx, viewer: Viewer, mail_id: str) -> Response:
    folder = _folder(ctx)
    found = sink.read_mail(folder, mail_id) if folder is not None else None
    if found is None:
        return page(
            request, "missing.html", viewer, section="mailbox",
            what=f"email {mail_id!r} in the dev mailbox", http_status=404,
        )  # fmt: skip
    return page(request, "mail.html", viewer, section="mailbox", mail=found)


@router.get("/{mail_id}/body")
def body(request: Request, ctx: Ctx, viewer: Viewer, mail_id: str) -> Response:
    folder = _folder(ctx)
    found = sink.read_mail(folder, mail_id) if folder is not None else None
    if found is None or found.html is None:
        return mail_body("<p>This email has no HTML part.</p>")
    return mail_body(found.html)
