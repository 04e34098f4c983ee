"""Dashboard logins: an admin API key in, a signed session cookie out.

- The cookie (:data:`COOKIE`) is ``flowmail.signing`` data signed with the installation's
  secret key: the key's id and workspace, when the session ends
  (``dashboard_session_hours`` after login) and a random nonce. It is HttpOnly,
  SameSite=Strict, limited to ``/ui``, and Secure when ``public_url`` is https.
- Every request checks the signature, the end time, and that the key is still an active
  admin key: revoking the key ends its sessions.
- Every POST form carries a CSRF token (the nonce, signed for another purpose), checked
  in constant time. The login form's token is bound the same way to a short-lived
  cookie set with the form.
- A request without a valid session is sent to ``/ui/login`` (with ``HX-Redirect`` for
  htmx requests).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from flowmail.api.context import ApiContext, Ctx
from flowmail.signing import BadToken, sign, verify
from flowmail.store import schema as t
from flowmail.store.keys import Role
from flowmail.store.sql import SqlStore

COOKIE = "fm_session"
LOGIN_COOKIE = "fm_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_MINUTES = 60  # how long a login form stays valid
_SESSION = "dashboard-session"
_CSRF = "dashboard-csrf"
_LOGIN = "dashboard-login"


@dataclass(frozen=True)
class Session:
    key_id: str
    workspace_id: str
    expires: datetime
    nonce: str
    csrf: str


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRejected(Exception):
    pass


def secure_cookies(ctx: ApiContext) -> bool:
    return ctx.settings.public_url.lower().startswith("https://")


def csrf_token(secret: str, nonce: str) -> str:
    return sign(secret, _CSRF, {"n": nonce})


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# --- sessions --------------------------------------------------------------------------


def new_session(
    ctx: ApiContext, key_id: str, workspace_id: str, now: datetime
) -> tuple[Session, str]:
    """A session for a checked admin key, and its cookie value."""
    expires = now + timedelta(hours=ctx.settings.dashboard_session_hours)
    nonce = secrets.token_urlsafe(16)
    data = {"k": key_id, "w": workspace_id, "x": int(expires.timestamp()), "n": nonce}
    cookie = sign(ctx.settings.secret_key, _SESSION, data)
    secret = ctx.settings.secret_key
    return Session(key_id, workspace_id, expires, nonce, csrf_token(secret, nonce)), cookie


def set_session_cookie(response: Response, ctx: ApiContext, cookie: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(ctx.settings.dashboard_session_hours * 3600),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(ctx),
    )


def clear_session_cookie(response: Response, ctx: ApiContext) -> None:
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="strict", secure=secure_cookies(ctx)
    )


def admin_key_active(store: SqlStore, key_id: str, workspace_id: str) -> bool:
    k = t.api_keys
    query = sa.select(k.c.role, k.c.workspace_id, k.c.revoked_at).where(k.c.id == key_id)
    with store.reader.connect() as conn:
        row = conn.execute(query).first()
    return (
        row is not None
        and row.revoked_at is None
        and row.role == str(Role.ADMIN)
        and row.workspace_id == workspace_id
    )


def read_session(ctx: ApiContext, cookie: str | None, now: datetime) -> Session | None:
    """The session a cookie stands for, if signed by us and not over (key not checked)."""
    if not cookie:
        return None
    secret = ctx.settings.secret_key
    try:
        data = verify(secret, _SESSION, cookie)
        key_id, workspace_id = str(data["k"]), str(data["w"])
        expires = datetime.fromtimestamp(int(data["x"]), now.tzinfo)
        nonce = str(data["n"])
    except (BadToken, KeyError, TypeError, ValueError, OverflowError):
        return None
    if expires <= now:
        return None
    return Session(key_id, workspace_id, expires, nonce, csrf_token(secret, nonce))


def _next_url(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query


def login_url(next_url: str = "") -> str:
    if not next_url or not safe_next(next_url) or next_url == "/ui/":
        return "/ui/login"
    return f"/ui/login?next={quote(next_url, safe='/')}"


def safe_next(next_url: str) -> bool:
    """Only pages of the dashboard: never another site (``//host``, ``/ui\\..``)."""
    return (
        next_url.startswith("/ui")
        and not next_url.startswith("//")
        and "\\" not in next_url
        and all(ord(c) > 31 for c in next_url)
    )


async def current_session(request: Request, ctx: Ctx) -> Session:
    session = read_session(ctx, request.cookies.get(COOKIE), ctx.clock.now())
    if session is None or not await run_in_threadpool(
        admin_key_active, ctx.store, session.key_id, session.workspace_id
    ):
        raise LoginRequired(_next_url(request) if request.method == "GET" else "")
    return session


Viewer = Annotated[Session, Depends(current_session)]


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The POSTed form, once its CSRF token (field or header) matches the session's."""
    form = await request.form()
    given = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    if not given or not _same(given, viewer.csrf):
        raise CsrfRejected()
    return {name: str(value) for name, value in form.items() if isinstance(value, str)}


Form = Annotated[dict[str, str], Depends(checked_form)]


# --- the login form ----------------------------------------------------------------------


def login_nonce(request: Request) -> str:
    """The login form's nonce: the one in its cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)


def login_csrf(secret: str, nonce: str) -> str:
    return sign(secret, _LOGIN, {"n": nonce})


def set_login_cookie(response: Response, ctx: ApiContext, nonce: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_MINUTES * 60,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(ctx),
    )


def login_form_valid(ctx: ApiContext, request: Request, token: str) -> bool:
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or not token:
        return False
    return _same(token, login_csrf(ctx.settings.secret_key, nonce))
