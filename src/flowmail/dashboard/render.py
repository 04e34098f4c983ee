"""Rendering pages: one Jinja2 environment (autoescaped), a few filters, and the
security headers every dashboard answer carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from flowmail.dashboard.session import Session

# scripts only from here; styles from here (uPlot and htmx set element styles); the
# mail bodies are framed from /ui/.../body, which has a policy of its own
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# an email's HTML, shown as a recipient sees it: no scripts, no forms, no plugins, an
# opaque origin (the iframe is sandboxed too); images load like in a mail client
MAIL_POLICY = (
    "default-src 'none'; img-src data: cid: http: https:; style-src 'unsafe-inline'; "
    "font-src data: http: https:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

NONE = "\u2013"  # an en dash: no value

NAV = [
    ("overview", "/ui/", "Overview"),
    ("workflows", "/ui/workflows", "Workflows"),
    ("contacts", "/ui/contacts", "Contacts"),
    ("messages", "/ui/messages", "Messages"),
    ("mailbox", "/ui/mailbox", "Dev mailbox"),
    ("report", "/ui/report", "Report"),
]


def _number(value: float | int | None) -> str:
    if value is None:
        return NONE
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def _moment(value: datetime | str | None) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172_800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return NONE
    return _seconds(max(0.0, (now - value).total_seconds())) + " ago"


def _json_script(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block (``<`` escaped)."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


env = Environment(
    loader=PackageLoader("flowmail.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    number=_number, percent=_percent, moment=_moment, seconds=_seconds, json_script=_json_script
)
env.globals.update(nav=NAV, ago=_ago, timedelta=timedelta)


def with_headers(response: Response, policy: str = PAGE_POLICY) -> Response:
    response.headers.update(HEADERS)
    response.headers["Content-Security-Policy"] = policy
    if policy is PAGE_POLICY:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def page(
    request: Request,
    template: str,
    session: Session | None,
    *,
    section: str = "",
    http_status: int = 200,
    **context: Any,
) -> Response:
    """A rendered template. ``partial`` templates (htmx swaps) get the same context."""
    html = env.get_template(template).render(
        request=request, session=session, section=section, **context
    )
    return with_headers(HTMLResponse(html, status_code=http_status))


def redirect(url: str, request: Request | None = None) -> Response:
    """303 to ``url``; for htmx requests, a 200 telling htmx to go there."""
    if request is not None and request.headers.get("HX-Request"):
        return with_headers(Response(status_code=200, headers={"HX-Redirect": url}))
    return with_headers(RedirectResponse(url, status_code=303))


def mail_body(html: str) -> Response:
    """An email's HTML for a sandboxed iframe, under :data:`MAIL_POLICY`."""
    return with_headers(HTMLResponse(html), MAIL_POLICY)
