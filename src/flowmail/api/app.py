"""The application factory: ``create_app(settings, store, clock)``.

Routers live one per module (the dashboard's pages under ``/ui`` are added by
:func:`flowmail.dashboard.install`); to add a group of endpoints, write a module with an
``APIRouter`` whose endpoints depend on :data:`~flowmail.api.auth.AdminKey` (or
``IngestKey``) and :data:`~flowmail.api.context.Ctx`, and add it to :data:`ROUTERS`
(or pass it in ``routers``). A path whose bodies may be larger or must be smaller than
``max_batch_bytes`` sets its limit in ``ApiContext.body_limits``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from flowmail import __version__, dashboard
from flowmail.api import (
    contacts,
    devmail,
    health,
    ingest,
    messages,
    privacy,
    recipients,
    suppressions,
    templates,
    webhooks,
    workflows,
)
from flowmail.api.auth import KeyCache
from flowmail.api.context import ApiContext
from flowmail.api.errors import CatchAll, install_handlers
from flowmail.api.inbox import GroupWriter
from flowmail.api.limits import BodyLimit
from flowmail.api.metrics import ApiMetrics, RequestTimer
from flowmail.api.ratelimit import RateLimiter
from flowmail.clock import Clock
from flowmail.settings import Settings
from flowmail.store.sql import SqlStore

ROUTERS: tuple[APIRouter, ...] = (
    ingest.router,
    contacts.router,
    workflows.router,
    templates.router,
    messages.router,
    suppressions.router,
    health.router,
    webhooks.router,
    recipients.router,
    privacy.router,
    devmail.router,
)

# /metrics is ours; FastAPI versions with OpenTelemetry hooks look for a provider on
# every request unless told not to
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)

DESCRIPTION = """\
Events in (Segment-style track, identify and batch), and the management of contacts,
workflows, templates, messages and suppressions.

Authenticate with an API key (`flowmail keys create`) as `Authorization: Bearer <key>`,
or as HTTP Basic with the key as the user name. `ingest` keys may only send events;
everything else needs an `admin` key. Every key sees only its own workspace.

Errors are `{"error": code, "message": text, "problems": [{"field", "in", "problem"}]}`.
"""


def create_app(
    settings: Settings, store: SqlStore, clock: Clock, routers: Sequence[APIRouter] = ()
) -> FastAPI:
    metrics = ApiMetrics(store, clock.now)
    limiter = RateLimiter(settings.rate_limit_per_key, settings.rate_limit_burst)
    keys = KeyCache(store, settings.api_key_cache_seconds)
    context = ApiContext(settings, store, clock, limiter, metrics, keys, GroupWriter(store, clock))
    context.body_limits.update(
        {"/v1/track": settings.max_event_bytes, "/v1/identify": settings.max_event_bytes}
    )
    app = FastAPI(
        title="flowmail",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        **_NO_TELEMETRY,
    )
    app.state.flowmail = context
    install_handlers(app)
    for router in (*ROUTERS, *routers):
        app.include_router(router)
    dashboard.install(app)  # /ui: pages for people, left out of the OpenAPI document
    # the last added runs first: CatchAll, then the timer, then the size limit
    app.add_middleware(BodyLimit, limit_for=context.body_limit)
    app.add_middleware(RequestTimer, metrics=metrics)
    app.add_middleware(CatchAll)
    return app
