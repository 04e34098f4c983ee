"""``/ui/workflows``: the list with modes and key rates; a workflow's page with its
graph (live counts on each step and edge), funnel, variants and recent runs; pause and
resume (the same service functions as the API and the CLI)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flowmail.analytics.model import WorkflowFigures
from flowmail.api.context import ApiContext, Ctx
from flowmail.dashboard import data, queries
from flowmail.dashboard.graph import Diagram, layout
from flowmail.dashboard.render import page, redirect
from flowmail.dashboard.session import Form, Session, Viewer
from flowmail.engine.catalog import Mode
from flowmail.language.loader import WorkflowInvalid, parse_workflow
from flowmail.runtime.service import PAUSE_MODES, pause, resume
from flowmail.store import api_queries
from flowmail.store.records import WorkflowRow

router = APIRouter(prefix="/ui/workflows", include_in_schema=False)
MAX_LISTED = 500


@router.get("")
def workflows(request: Request, ctx: Ctx, viewer: Viewer, period: str = "7d") -> Response:
    span = data.period(period, ctx.clock.now(), "7d")
    rows = ctx.store.workflow_rows(viewer.workspace_id)[:MAX_LISTED]
    found = {f.workflow_id: f for f in data.figures(ctx.store, viewer.workspace_id, span)}
    listed = [(row, found.get(row.id) or WorkflowFigures(row.id, None, row.mode)) for row in rows]
    return page(
        request,
        "workflows.html",
        viewer,
        section="workflows",
        listed=listed,
        span=span,
        periods=data.PERIODS,
    )


def _row(ctx: ApiContext, viewer: Session, workflow_id: str) -> WorkflowRow | None:
    return api_queries.get_workflow(ctx.store, viewer.workspace_id, workflow_id)


def _diagram(
    ctx: ApiContext, viewer: Session, row: WorkflowRow, version: int, figures: WorkflowFigures
) -> tuple[Diagram | None, str]:
    definition = ctx.store.workflow_definition(viewer.workspace_id, row.id, version)
    if definition is None:
        return None, f"version {version} is not stored"
    try:
        workflow = parse_workflow(definition, f"{row.id} v{version}")
    except WorkflowInvalid as exc:  # a definition the language no longer reads
        return None, str(exc)
    steps = {step.step_id: step for step in figures.steps}
    return layout(workflow, steps, figures.entered), ""


def _missing(request: Request, viewer: Session, what: str) -> Response:
    return page(request, "missing.html", viewer, section="workflows", what=what, http_status=404)


@router.get("/{workflow_id}")
def workflow(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    workflow_id: str,
    period: str = "30d",
    version: int | None = None,
) -> Response:
    row = _row(ctx, viewer, workflow_id)
    if row is None:
        return _missing(request, viewer, f"workflow {workflow_id!r}")
    return page(
        request,
        "workflow.html",
        viewer,
        section="workflows",
        row=row,
        periods=data.PERIODS,
        pause_modes=[str(mode) for mode in PAUSE_MODES],
        runs=queries.recent_runs(ctx.store, viewer.workspace_id, workflow_id),
        **_figures(ctx, viewer, row, period, version),
    )


def _figures(
    ctx: ApiContext, viewer: Session, row: WorkflowRow, period: str, version: int | None
) -> dict[str, Any]:
    span = data.period(period, ctx.clock.now(), "30d")
    shown = version if version is not None and 1 <= version <= row.version else None
    found = data.figures(ctx.store, viewer.workspace_id, span, row.id, shown)
    figures = found[0] if found else WorkflowFigures(row.id, shown, row.mode)
    diagram, problem = _diagram(ctx, viewer, row, shown or row.version, figures)
    return {
        "figures": figures,
        "emails": figures.email_totals(),
        "diagram": diagram,
        "problem": problem,
        "span": span,
        "version": shown,
        "series": data.workflow_series(ctx.store, viewer.workspace_id, row.id, span),
    }


@router.get("/{workflow_id}/live")
def live(
    request: Request,
    ctx: Ctx,
    viewer: Viewer,
    workflow_id: str,
    period: str = "30d",
    version: int | None = None,
) -> Response:
    """The graph and funnel alone, for htmx to refresh."""
    row = _row(ctx, viewer, workflow_id)
    if row is None:
        return _missing(request, viewer, f"workflow {workflow_id!r}")
    return page(
        request,
        "workflow_live.html",
        viewer,
        row=row,
        **_figures(ctx, viewer, row, period, version),
    )


@router.post("/{workflow_id}/pause")
def pause_workflow(
    request: Request, ctx: Ctx, viewer: Viewer, form: Form, workflow_id: str
) -> Response:
    row = _row(ctx, viewer, workflow_id)
    if row is None:
        return _missing(request, viewer, f"workflow {workflow_id!r}")
    mode = form.get("mode", str(Mode.DRAIN))
    if mode not in PAUSE_MODES:
        return page(request, "missing.html", viewer, what=f"pause mode {mode!r}", http_status=422)
    reason = form.get("reason", "").strip()[:2000] or f"dashboard:{viewer.key_id}"
    pause(ctx.store, viewer.workspace_id, workflow_id, Mode(mode), ctx.clock.now(), reason)
    return redirect(f"/ui/workflows/{workflow_id}", request)


@router.post("/{workflow_id}/resume")
def resume_workflow(
    request: Request, ctx: Ctx, viewer: Viewer, form: Form, workflow_id: str
) -> Response:
    row = _row(ctx, viewer, workflow_id)
    if row is None:
        return _missing(request, viewer, f"workflow {workflow_id!r}")
    if row.mode != Mode.ARCHIVED:  # archived workflows are activated on purpose (API, CLI)
        resume(ctx.store, viewer.workspace_id, workflow_id, ctx.clock.now())
    return redirect(f"/ui/workflows/{workflow_id}", request)
