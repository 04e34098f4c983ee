"""The dashboard: server-rendered pages under ``/ui`` (Jinja2 and htmx, charts with
uPlot, both vendored in ``static/vendor``), logged in with an admin API key.

:func:`install` adds its routes, static files and error pages to the API's app. The
pages are left out of the OpenAPI document: they are for people, not clients.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from flowmail.dashboard import (
    auth,
    contacts,
    mailbox,
    messages,
    overview,
    report,
    workflows,
)
from flowmail.dashboard.render import page, redirect
from flowmail.dashboard.session import CsrfRejected, LoginRequired, login_url

STATIC = Path(__file__).parent / "static"
ROUTERS = (
    auth.router,
    overview.router,
    workflows.router,
    contacts.router,
    messages.router,
    mailbox.router,
    report.router,
)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return redirect(login_url(exc.next_url), request)


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    return page(
        request,
        "missing.html",
        None,
        what="",
        problem="The form's security token did not match this session: reload the page "
        "and try again.",
        http_status=403,
    )


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
