"""``/ui/report``: each workflow's figures over a period with recommendations, the
alerts and the machinery's health: what ``flowmail report`` prints; also as JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from flowmail.analytics.report import summary
from flowmail.api.context import Ctx
from flowmail.dashboard import data
from flowmail.dashboard.render import page, with_headers
from flowmail.dashboard.session import Viewer

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/report")
def report(request: Request, ctx: Ctx, viewer: Viewer, since: str = "24h") -> Response:
    span = data.period(since, ctx.clock.now(), "24h")
    built, _json = data.report(ctx.store, ctx.settings, viewer.workspace_id, span)
    return page(
        request,
        "report.html",
        viewer,
        section="report",
        report=built,
        summary=summary(built),
        span=span,
        periods=data.PERIODS,
    )


@router.get("/report.json")
def report_json(ctx: Ctx, viewer: Viewer, since: str = "24h") -> Response:
    span = data.period(since, ctx.clock.now(), "24h")
    _built, body = data.report(ctx.store, ctx.settings, viewer.workspace_id, span)
    return with_headers(
        JSONResponse(
            jsonable_encoder(body),
            headers={"Content-Disposition": 'attachment; filename="flowmail-report.json"'},
        )
    )
