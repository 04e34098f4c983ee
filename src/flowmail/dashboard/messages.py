"""``/ui/messages``: search the outbox (by contact, workflow, status), a message with
its delivery events, its rendered preview and headers; dead letters and retrying them
(the same ``requeue`` as ``POST /v1/messages/{id}/retry``)."""

from __future__ import annotations

import email
import email.policy
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from flowmail.api.context import ApiContext, Ctx
from flowmail.dashboard import queries
from flowmail.dashboard.render import mail_body, page, redirect
from flowmail.dashboard.session import Form, Session, Viewer
from flowmail.store import messages as outbox
from flowmail.templates.model import Rendered
from flowmail.templates.preview import PreviewError, eml_bytes, render_preview

router = APIRouter(prefix="/ui/messages", include_in_schema=False)
STATUSES = (
    "queued", "sending", "sent", "delivered", "bounced", "complained", "skipped", "failed",
    "dead", "unknown",
)  # fmt: skip


@router.get("")
def messages(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    contact: str = "",
    workflow: str = "",
    status: str = "",
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> Response:
    contact, workflow, status = contact.strip()[:200], workflow.strip()[:200], status.strip()
    rows = queries.search_messages(
        ctx.store,
        viewer.workspace_id,
        contact_id=contact or None,
        workflow_id=workflow or None,
        status=status if status in STATUSES else None,
        page=page_number,
    )
    return page(
        request,
        "messages.html",
        viewer,
        section="messages",
        rows=rows,
        contact=contact,
        workflow=workflow,
        status=status,
        statuses=STATUSES,
        page_number=max(1, min(page_number, queries.MAX_PAGES)),
        more=len(rows) == queries.PAGE_SIZE and page_number < queries.MAX_PAGES,
        requeueable=outbox.REQUEUEABLE,
    )


def _preview(ctx: ApiContext, viewer: Session, row: dict[str, Any]) -> dict[str, Any]:
    """The message rendered for its contact now (template, contact's data), and the
    headers the sender would build; or why it cannot be."""
    if not row.get("template"):
        return {"problem": "no template: the sender sends the subject as a plain text email"}
    now = ctx.clock.now()
    try:
        shown = render_preview(
            ctx.store, ctx.settings, viewer.workspace_id, row["template"], row["contact_id"],
            now, content=row.get("content"), version=row.get("template_version"),
        )  # fmt: skip
    except (PreviewError, ValueError) as exc:
        return {"problem": str(exc)}
    built = email.message_from_bytes(
        eml_bytes(shown, ctx.settings, now), policy=email.policy.default
    )
    headers = [(name, str(value)) for name, value in built.items()]
    return {"rendered": shown.rendered, "headers": headers, "problem": ""}


def _message(ctx: ApiContext, viewer: Session, message_id: str) -> dict[str, Any] | None:
    return outbox.get_message(ctx.store, viewer.workspace_id, message_id)


@router.get("/{message_id}")
def message(request: Request, ctx: Ctx, viewer: Viewer, message_id: str) -> Response:
    row = _message(ctx, viewer, message_id)
    if row is None:
        return page(
            request, "missing.html", viewer, section="messages",
            what=f"message {message_id!r}", http_status=404,
        )  # fmt: skip
    return page(
        request,
        "message.html",
        viewer,
        section="messages",
        message=row,
        events=outbox.message_events(ctx.store, viewer.workspace_id, message_id),
        preview=_preview(ctx, viewer, row),
        requeueable=outbox.REQUEUEABLE,
    )


@router.get("/{message_id}/body")
def body(request: Request, ctx: Ctx, viewer: Viewer, message_id: str) -> Response:
    """The preview's HTML alone, for the sandboxed iframe of the message's page."""
    row = _message(ctx, viewer, message_id)
    shown: dict[str, Any] = {"problem": "no such message"}
    if row is not None:
        shown = _preview(ctx, viewer, row)
    rendered: Rendered | None = shown.get("rendered")
    if rendered is None or not rendered.html:
        return mail_body(f"<p>{_escape(str(shown.get('problem') or 'no HTML part'))}</p>")
    return mail_body(rendered.html)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@router.post("/{message_id}/retry")
def retry(request: Request, ctx: Ctx, viewer: Viewer, form: Form, message_id: str) -> Response:
    row = _message(ctx, viewer, message_id)
    if row is None:
        return page(
            request, "missing.html", viewer, section="messages",
            what=f"message {message_id!r}", http_status=404,
        )  # fmt: skip
    outbox.requeue(
        ctx.store, viewer.workspace_id, [message_id], ctx.clock.now(), by=f"ui:{viewer.key_id}"
    )
    back = form.get("back", "")
    return redirect(back if back.startswith("/ui/messages") else f"/ui/messages/{message_id}")
