"""``/v1/workflows``: definitions, versions, modes and statistics.

PUT validates a definition as ``flowmail workflows validate`` does (422 with the
problems) and stores it; a changed definition becomes a new version, and runs in
flight keep theirs. Pause takes one explicit mode: ``drain`` (no new runs), ``freeze``
(runs hold too) or ``cancel`` (runs end). Archived workflows start no runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from flowmail.api.auth import AdminKey, Principal
from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import ApiError, Responses, invalid, problem
from flowmail.api.fields import JsonObject, PathId, Text
from flowmail.engine.catalog import Mode
from flowmail.language.loader import WorkflowInvalid, parse_workflow
from flowmail.runtime.service import apply_workflow, pause, resume
from flowmail.store import api_queries
from flowmail.store.records import WorkflowRow

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])
_MISSING: Responses = {404: {"description": "No such workflow in this key's workspace"}}


class Workflow(BaseModel):
    id: str
    version: int
    mode: str = Field(description="active, drain, freeze, cancel or archived")
    reason: str | None
    updated_at: datetime


class WorkflowDetail(Workflow):
    definition: dict[str, Any]


class Applied(BaseModel):
    id: str
    version: int
    changed: bool = Field(description="False when the definition was the current version's")
    mode: str


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["drain", "freeze", "cancel"] = "drain"
    reason: Text | None = Field(None, max_length=2000)


class ArchiveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = Field(None, max_length=2000)


class Stats(BaseModel):
    runs: dict[str, int] = Field(description="Runs by status")
    steps: dict[str, dict[str, int]] = Field(
        description="Per step: runs that reached it, and runs at it now"
    )
    messages: dict[str, int] = Field(description="Messages by status")


def _summary(row: WorkflowRow) -> Workflow:
    return Workflow(
        id=row.id, version=row.version, mode=row.mode, reason=row.reason, updated_at=row.updated_at
    )


def _row(ctx: ApiContext, key: Principal, workflow_id: str) -> WorkflowRow:
    row = api_queries.get_workflow(ctx.store, key.workspace_id, workflow_id)
    if row is None:
        raise ApiError(404, f"no workflow {workflow_id!r}")
    return row


@router.get("", response_model=list[Workflow])
def list_workflows(key: AdminKey, ctx: Ctx, mode: Mode | None = None) -> list[Workflow]:
    rows = ctx.store.workflow_rows(key.workspace_id)
    return [_summary(r) for r in rows if mode is None or r.mode == mode]


@router.get("/{workflow_id}", response_model=WorkflowDetail, responses=_MISSING)
def get_workflow(workflow_id: PathId, key: AdminKey, ctx: Ctx) -> WorkflowDetail:
    """The current version's definition, with its number and the workflow's mode."""
    row = _row(ctx, key, workflow_id)
    definition = ctx.store.workflow_definition(key.workspace_id, workflow_id, row.version)
    return WorkflowDetail(**_summary(row).model_dump(), definition=definition or {})


@router.put("/{workflow_id}", response_model=Applied, responses={422: {"description": "Invalid"}})
def put_workflow(workflow_id: PathId, definition: JsonObject, key: AdminKey, ctx: Ctx) -> Applied:
    """Create or change a workflow (our language or the article's JSON format)."""
    try:
        workflow = parse_workflow(definition)
    except WorkflowInvalid as exc:
        raise invalid(
            [
                problem(f"steps.{p.step}" if p.step else "definition", p.message)
                for p in exc.problems
            ]
        ) from None
    if workflow.id != workflow_id:
        raise invalid([problem("id", f"is {workflow.id!r}, but the URL names {workflow_id!r}")])
    now = ctx.clock.now()
    _, applied = apply_workflow(
        ctx.store, key.workspace_id, definition, now, ctx.settings.default_timezone
    )
    row = _row(ctx, key, workflow_id)
    return Applied(id=workflow_id, version=applied.version, changed=applied.changed, mode=row.mode)


@router.post("/{workflow_id}/activate", response_model=Workflow, responses=_MISSING)
def activate(workflow_id: PathId, key: AdminKey, ctx: Ctx) -> Workflow:
    """Make a workflow active, whatever its mode (archived too)."""
    _row(ctx, key, workflow_id)
    resume(ctx.store, key.workspace_id, workflow_id, ctx.clock.now())
    return _summary(_row(ctx, key, workflow_id))


@router.post("/{workflow_id}/pause", response_model=Workflow, responses=_MISSING)
def pause_workflow(
    workflow_id: PathId, key: AdminKey, ctx: Ctx, body: PauseRequest | None = None
) -> Workflow:
    """Stop new runs; ``freeze`` also holds runs in flight, ``cancel`` ends them."""
    body = body or PauseRequest.model_validate({})
    _row(ctx, key, workflow_id)
    pause(ctx.store, key.workspace_id, workflow_id, Mode(body.mode), ctx.clock.now(), body.reason)
    return _summary(_row(ctx, key, workflow_id))


@router.post("/{workflow_id}/resume", response_model=Workflow, responses=_MISSING)
def resume_workflow(workflow_id: PathId, key: AdminKey, ctx: Ctx) -> Workflow:
    """Back to active after a pause; frozen runs continue where they held."""
    if _row(ctx, key, workflow_id).mode == Mode.ARCHIVED:
        raise ApiError(409, f"workflow {workflow_id!r} is archived: activate it instead")
    resume(ctx.store, key.workspace_id, workflow_id, ctx.clock.now())
    return _summary(_row(ctx, key, workflow_id))


@router.post("/{workflow_id}/archive", response_model=Workflow, responses=_MISSING)
def archive(
    workflow_id: PathId, key: AdminKey, ctx: Ctx, body: ArchiveRequest | None = None
) -> Workflow:
    """No new runs; runs in flight finish (pause with ``cancel`` first to end them)."""
    _row(ctx, key, workflow_id)
    reason = body.reason if body else None
    ctx.store.set_mode(key.workspace_id, workflow_id, str(Mode.ARCHIVED), reason, ctx.clock.now())
    return _summary(_row(ctx, key, workflow_id))


@router.get("/{workflow_id}/stats", response_model=Stats, responses=_MISSING)
def stats(workflow_id: PathId, key: AdminKey, ctx: Ctx) -> Stats:
    _row(ctx, key, workflow_id)
    return Stats(**api_queries.workflow_stats(ctx.store, key.workspace_id, workflow_id))
