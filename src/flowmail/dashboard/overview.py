"""``/ui/``: health tiles, throughput and lag charts, and the alerts firing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flowmail.api.context import ApiContext, Ctx
from flowmail.dashboard import data
from flowmail.dashboard.render import page
from flowmail.dashboard.session import Session, Viewer

router = APIRouter(prefix="/ui", include_in_schema=False)


def _tiles(ctx: ApiContext, viewer: Session) -> dict[str, Any]:
    now = ctx.clock.now()
    return {
        "health": data.health(ctx.store, ctx.settings, now),
        "alerts": data.active_alerts(ctx.store, viewer.workspace_id),
        "now": now,
        "settings": ctx.settings,
    }


@router.get("/")
def overview(request: Request, ctx: Ctx, viewer: Viewer, period: str = "6h") -> Response:
    span = data.period(period, ctx.clock.now(), "6h")
    return page(
        request,
        "overview.html",
        viewer,
        section="overview",
        span=span,
        periods=data.PERIODS,
        series=data.health_series(ctx.store, span),
        **_tiles(ctx, viewer),
    )


@router.get("/overview/live")
def live(request: Request, ctx: Ctx, viewer: Viewer) -> Response:
    """The tiles and alerts alone, for htmx to refresh."""
    return page(request, "overview_live.html", viewer, **_tiles(ctx, viewer))
