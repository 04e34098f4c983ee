"""``/ui/login`` and ``/ui/logout``: an admin API key in, a session cookie out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from flowmail.api.context import Ctx
from flowmail.dashboard import session as auth
from flowmail.dashboard.render import page, redirect
from flowmail.dashboard.session import Form as CheckedForm
from flowmail.dashboard.session import Viewer
from flowmail.store.keys import Role

router = APIRouter(prefix="/ui", include_in_schema=False)


def _login_page(
    request: Request, ctx: Ctx, next_url: str, problem: str = "", status: int = 200
) -> Response:
    nonce = auth.login_nonce(request)
    response = page(
        request,
        "login.html",
        None,
        next_url=next_url if auth.safe_next(next_url) else "/ui/",
        login_csrf=auth.login_csrf(ctx.settings.secret_key, nonce),
        problem=problem,
        http_status=status,
    )
    auth.set_login_cookie(response, ctx, nonce)
    return response


@router.get("/login")
async def login_form(request: Request, ctx: Ctx, next: str = "/ui/") -> Response:
    found = auth.read_session(ctx, request.cookies.get(auth.COOKIE), ctx.clock.now())
    if found is not None and await run_in_threadpool(
        auth.admin_key_active, ctx.store, found.key_id, found.workspace_id
    ):
        return redirect(next if auth.safe_next(next) else "/ui/")
    return _login_page(request, ctx, next)


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    key: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui/",
) -> Response:
    if not auth.login_form_valid(ctx, request, csrf):
        return _login_page(request, ctx, next, "The form expired: please try again.", 403)
    found = await run_in_threadpool(ctx.keys.lookup, key.strip()) if key.strip() else None
    if found is None:
        return _login_page(request, ctx, next, "That key is not valid.", 401)
    if found.role != Role.ADMIN:
        problem = f"The dashboard needs an admin key; this key's role is {found.role}."
        return _login_page(request, ctx, next, problem, 403)
    _session, cookie = auth.new_session(ctx, found.id, found.workspace_id, ctx.clock.now())
    response = redirect(next if auth.safe_next(next) else "/ui/")
    auth.set_session_cookie(response, ctx, cookie)
    response.delete_cookie(auth.LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
async def logout(ctx: Ctx, viewer: Viewer, form: CheckedForm) -> Response:
    response = redirect("/ui/login")
    auth.clear_session_cookie(response, ctx)
    return response
