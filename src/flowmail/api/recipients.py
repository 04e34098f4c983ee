"""What recipients reach from an email: unsubscribe, preferences, opens, clicks, and the
double opt-in confirmation. No key, no login, no cookies; the signed token in the URL is
the only authority.

- ``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (RFC 8058) unsubscribes from
  the token's topic at once: 200, no redirect, no cookie. A replay changes nothing more.
- ``GET /u/{token}`` (and ``GET /p/{token}``, the preferences link) changes nothing: it
  shows a page where the recipient can leave topics or every email; its form POSTs to the
  same URL (``scope=topic`` with ``topic`` values, or ``scope=all``). The form needs no
  CSRF token: it carries no ambient authority (no session, no cookie), only the signed
  token already in its URL, which one-click unsubscribe honours by design.
- ``GET /o/{token}.gif``: the open pixel; ``GET /c/{token}``: a 302 to the signed URL,
  and only to it. Both record a delivery event (every hit; the engine hears of the first
  open and the first click of each message). An open that looks machine-made (a
  prefetcher's or scanner's user agent, or within ``automated_open_seconds`` of sending)
  is marked ``automated``, counted apart and not fed to the engine.
- ``GET /confirm/{token}``: confirms a pending double opt-in.

A forged, altered or foreign token, an unknown contact, and an unsubscribe link older
than ``unsubscribe_link_days`` all get the same 404. A token carries what it needs
(workspace, contact, topic, message key), so links keep working after their workflow
or template is deleted.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import Responses
from flowmail.runtime.feedback import record_engagement, unsubscribe
from flowmail.signing import BadToken, sign, verify
from flowmail.store import api_queries
from flowmail.store import feedback as sql
from flowmail.store.feedback import MessageRef
from flowmail.store.schema import from_micros, to_micros
from flowmail.templates.links import (
    CLICK,
    OPEN,
    Recipient,
    resolve_click,
    resolve_open,
    resolve_preferences,
    resolve_unsubscribe,
)

router = APIRouter(tags=["recipients"])
log = logging.getLogger("flowmail.recipients")

CONFIRM = "confirm"  # the signing purpose of double opt-in links
ONE_CLICK = ("List-Unsubscribe", "One-Click")
MAX_FORM_BYTES = 16 * 1024
MAX_TOPICS = 100
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_pages = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "pages"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
Token = Annotated[str, PathParam(description="The signed token from the email")]
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,4000}\.[A-Za-z0-9_\-]{1,100}")
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}
_NOT_FOUND: Responses = {404: {"description": "Unknown, forged, altered, foreign or expired token"}}


def well_formed(token: str) -> bool:
    """Whether ``token`` looks like one of ours at all (anything else: the same 404)."""
    return _TOKEN.fullmatch(token) is not None


def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _pages.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


def not_found() -> HTMLResponse:
    return page("not_found.html", 404)


# --- resolving a link ------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A verified unsubscribe or preferences link, and what it points at."""

    recipient: Recipient
    email: str | None
    message: MessageRef | None

    @property
    def address(self) -> str | None:
        return self.email or (self.message.to_address if self.message else None)


def _message(ctx: ApiContext, key: str | None, workspace_id: str | None) -> MessageRef | None:
    if not key:
        return None
    found = sql.find_messages(ctx.store, key=key, workspace_id=workspace_id)
    return found[0] if len(found) == 1 else None


def resolve_link(ctx: ApiContext, token: str, preferences: bool) -> Link | None:
    """The link's recipient, if the token is ours, its contact exists in its workspace,
    its message (if still there) is that contact's, and it is not too old."""
    if not well_formed(token):
        return None
    secret = ctx.settings.secret_key
    try:
        recipient = (
            resolve_preferences(secret, token)
            if preferences
            else resolve_unsubscribe(secret, token)
        )
    except BadToken:
        return None
    contact = api_queries.get_contact(ctx.store, recipient.workspace, recipient.contact_id)
    if contact is None:
        return None
    message = _message(ctx, recipient.message_key, recipient.workspace)
    if message is not None:
        if message.contact_id != recipient.contact_id:
            return None
        lifetime = timedelta(days=ctx.settings.unsubscribe_link_days)
        if message.created_at + lifetime < ctx.clock.now():
            return None
    return Link(recipient, contact["email"], message)


# --- the preference page and unsubscribing ---------------------------------------------


def _topics(ctx: ApiContext, link: Link) -> tuple[list[dict[str, Any]], bool]:
    """The topics to offer ({name, checked, left}), and whether every email is left."""
    rows = sql.consents(ctx.store, link.recipient.workspace, link.recipient.contact_id)
    status = {row["topic"]: row["status"] for row in rows}
    names = sorted(set(status) - {"transactional"})
    own = link.recipient.topic
    if own is not None and own != "transactional":
        names = [own, *[n for n in names if n != own]]
    topics = [
        {"name": n, "checked": n == own, "left": status.get(n) == "unsubscribed"}
        for n in names[:MAX_TOPICS]
    ]
    address = link.address
    everything = bool(address and sql.is_suppressed(ctx.store, link.recipient.workspace, address))
    return topics, everything


def _masked(address: str | None) -> str | None:
    """``j•••@example.com``: enough to recognise, not enough to learn an address."""
    if not address or "@" not in address:
        return None
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def _preferences(ctx: ApiContext, token: str, preferences: bool) -> HTMLResponse:
    link = resolve_link(ctx, token, preferences)
    if link is None:
        return not_found()
    topics, everything = _topics(ctx, link)
    return page(
        "preferences.html",
        action=token,
        address=_masked(link.address),
        topics=topics,
        everything=everything,
    )


@router.get("/u/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
def unsubscribe_page(token: Token, ctx: Ctx) -> HTMLResponse:
    """The preference page of an unsubscribe link: shows choices, changes nothing."""
    return _preferences(ctx, token, preferences=False)


@router.get("/p/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
def preferences_page(token: Token, ctx: Ctx) -> HTMLResponse:
    """The contact's preference page: shows choices, changes nothing."""
    return _preferences(ctx, token, preferences=True)


async def _form(request: Request) -> dict[str, list[str]]:
    """The POSTed fields: urlencoded or multipart (RFC 8058 allows both), else the raw
    body read as urlencoded. Malformed or oversized: no fields."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            async with request.form(max_files=0, max_fields=MAX_TOPICS + 10) as form:
                fields: dict[str, list[str]] = {}
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        fields.setdefault(name, []).append(value)
                return fields
        except Exception:  # malformed multipart: no fields, answered with a 400 page
            return {}
    try:
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_TOPICS + 10)
    except (UnicodeDecodeError, ValueError):
        return {}


@router.post("/u/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
async def unsubscribe_post(token: Token, request: Request, ctx: Ctx) -> HTMLResponse:
    """One-click unsubscribe (``List-Unsubscribe=One-Click``), or the page's form."""
    fields = await _form(request)
    return await run_in_threadpool(_post, ctx, token, fields, False)


@router.post("/p/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
async def preferences_post(token: Token, request: Request, ctx: Ctx) -> HTMLResponse:
    """The preference page's form."""
    fields = await _form(request)
    return await run_in_threadpool(_post, ctx, token, fields, True)


def _choice(
    fields: Mapping[str, Sequence[str]], link: Link, offered: Sequence[str]
) -> tuple[list[str], bool] | None:
    """(topics to leave, every email?) from the fields, or None if they ask nothing."""
    own = link.recipient.topic
    if ONE_CLICK[1] in fields.get(ONE_CLICK[0], ()) and own is not None:
        return [own], False
    scope = list(fields.get("scope", ()))
    if "all" in scope:
        return ([own] if own is not None else []), True
    if "topic" in scope:
        chosen = [t for t in dict.fromkeys(fields.get("topic", ())) if t in offered]
        return (chosen, False) if chosen else None
    return None


def _post(
    ctx: ApiContext, token: str, fields: Mapping[str, Sequence[str]], preferences: bool
) -> HTMLResponse:
    link = resolve_link(ctx, token, preferences)
    if link is None:
        return not_found()
    topics, everything = _topics(ctx, link)
    offered = [t["name"] for t in topics]
    choice = _choice(fields, link, offered)
    if choice is None:
        return page(
            "preferences.html",
            400,
            action=token,
            address=_masked(link.address),
            topics=topics,
            everything=everything,
            error="Choose at least one topic, or leave every email.",
        )
    chosen, leave_all = choice
    if leave_all and not link.address:
        leave_all = False  # nothing to suppress: leave every topic we know instead
        chosen = offered
    one_click = ONE_CLICK[0] in fields
    unsubscribe(
        ctx.store,
        link.recipient.workspace,
        link.recipient.contact_id,
        chosen,
        ctx.clock.now(),
        everything=leave_all,
        address=link.address,
        message=link.message,
        source="one-click unsubscribe" if one_click else "preference page",
    )
    return page("unsubscribed.html", topics=chosen, everything=leave_all)


# --- opens and clicks ------------------------------------------------------------------


def _tracked(ctx: ApiContext, purpose: str, token: str) -> MessageRef | None:
    """The message of a verified tracking token (the workspace, if the token names one)."""
    try:
        data = verify(ctx.settings.secret_key, purpose, token)
    except BadToken:
        return None
    workspace = data.get("w")
    key = data.get("m")
    return _message(
        ctx,
        key if isinstance(key, str) else None,
        workspace if isinstance(workspace, str) else None,
    )


def _record(
    ctx: ApiContext, message: MessageRef | None, kind: str, request: Request, url: str | None = None
) -> None:
    if message is None:
        return
    try:
        record_engagement(
            ctx.store,
            message,
            kind,
            ctx.clock.now(),
            url=url,
            user_agent=request.headers.get("user-agent"),
            automated_within=timedelta(seconds=ctx.settings.automated_open_seconds),
        )
    except Exception:  # a recording failure must never break the pixel or the link
        log.exception("could not record %s of message %s", kind, message.id)


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, **_NOT_FOUND},
)
def open_pixel(token: Token, request: Request, ctx: Ctx) -> Response:
    """A 1x1 transparent GIF; records an open of the message."""
    if not well_formed(token):
        return not_found()
    try:
        resolve_open(ctx.settings.secret_key, token)
    except BadToken:
        return not_found()
    _record(ctx, _tracked(ctx, OPEN, token), "opened", request)
    return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)


@router.get("/c/{token}", response_class=RedirectResponse, status_code=302, responses=_NOT_FOUND)
def click(token: Token, request: Request, ctx: Ctx) -> Response:
    """A 302 to the URL the token signs (never anywhere else); records a click."""
    if not well_formed(token):
        return not_found()
    try:
        url, _ = resolve_click(ctx.settings.secret_key, token)
    except BadToken:
        return not_found()
    _record(ctx, _tracked(ctx, CLICK, token), "clicked", request, url)
    return RedirectResponse(url, status_code=302, headers=_NO_CACHE)


# --- double opt-in ---------------------------------------------------------------------


def confirm_token(
    secret: str, workspace: str, contact_id: str, topic: str, pending_at: datetime
) -> str:
    """A double opt-in link's token: good for the pending request made at ``pending_at``."""
    return sign(
        secret, CONFIRM, {"w": workspace, "c": contact_id, "t": topic, "p": to_micros(pending_at)}
    )


def confirm_url(
    public_url: str, secret: str, workspace: str, contact_id: str, topic: str, pending_at: datetime
) -> str:
    token = confirm_token(secret, workspace, contact_id, topic, pending_at)
    return f"{public_url.rstrip('/')}/confirm/{token}"


@router.get("/confirm/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
def confirm(token: Token, ctx: Ctx) -> HTMLResponse:
    """Confirm a double opt-in: the pending consent becomes ``subscribed``."""
    if not well_formed(token):
        return not_found()
    try:
        data = verify(ctx.settings.secret_key, CONFIRM, token)
    except BadToken:
        return not_found()
    ws, contact, topic, pending = (data.get(k) for k in ("w", "c", "t", "p"))
    if not (isinstance(ws, str) and isinstance(contact, str) and isinstance(topic, str)):
        return not_found()
    if not isinstance(pending, int) or isinstance(pending, bool):
        return not_found()
    row = sql.consent(ctx.store, ws, contact, topic)
    if row is None:
        return not_found()
    if row["status"] == "subscribed" and row["source"] == "double opt-in confirmed":
        return page("confirmed.html", topic=topic)  # a repeat visit
    if row["status"] != "pending" or to_micros(row["at"]) != pending:
        return not_found()
    changed = sql.set_consent(
        ctx.store,
        ws,
        contact,
        topic,
        "subscribed",
        "double opt-in confirmed",
        ctx.clock.now(),
        only_from=("pending",),
        since=from_micros(pending),
    )
    if not changed:
        return not_found()
    return page("confirmed.html", topic=topic)
