"""``POST /v1/track``, ``/v1/identify`` and ``/v1/batch``: events into the inbox.

Every call is checked whole before anything is written, and written in one
transaction (shared with the calls that arrived at the same moment, see
:mod:`flowmail.api.inbox`): a batch is accepted or refused as a unit. A ``messageId``
seen before in the workspace is a duplicate: answered 200, counted, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from fastapi import APIRouter

from flowmail.api.auth import IngestKey
from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import ApiError, Responses, invalid, problem
from flowmail.api.inbox import Written
from flowmail.api.segment import Accepted, Batch, Identify, Track, check_call, to_event
from flowmail.store.records import InboundEvent

router = APIRouter(prefix="/v1", tags=["ingest"])

_REFUSED: Responses = {
    400: {"description": "The body is not valid JSON"},
    401: {"description": "No valid API key"},
    413: {"description": "The body (or a batch item) is too large"},
    422: {"description": "A field is missing, of the wrong type, unknown or invalid"},
    429: {"description": "The key's rate limit is exceeded"},
}


def prepare(
    ctx: ApiContext,
    calls: Sequence[Track | Identify],
    workspace_id: str,
    now: datetime,
    *,
    batch: bool = False,
) -> list[InboundEvent]:
    """The inbox events of ``calls``, once all are checked; :class:`ApiError` otherwise."""
    max_future = timedelta(seconds=ctx.settings.max_future_seconds)
    problems = [
        found
        for index, call in enumerate(calls)
        for found in check_call(call, f"batch[{index}]" if batch else "", now, max_future)
    ]
    if problems:
        raise invalid(problems)
    return [to_event(call, workspace_id, now) for call in calls]


def counted(ctx: ApiContext, written: Written) -> Accepted:
    for kind, count in written.kinds.items():
        ctx.metrics.events.labels(kind).inc(count)
    if written.duplicates:
        ctx.metrics.duplicates.inc(written.duplicates)
    return Accepted(accepted=written.accepted, duplicates=written.duplicates)


def ingest_now(ctx: ApiContext, calls: Sequence[Track | Identify], workspace_id: str) -> Accepted:
    """Check and write ``calls`` from a worker thread (management endpoints)."""
    events = prepare(ctx, calls, workspace_id, ctx.clock.now())
    return counted(ctx, ctx.writer.write_now(workspace_id, events))


@router.post("/track", response_model=Accepted, responses=_REFUSED)
async def track(call: Track, key: IngestKey, ctx: Ctx) -> Accepted:
    """Record an event a contact did (Segment's track call)."""
    events = prepare(ctx, (call,), key.workspace_id, ctx.clock.now())
    return counted(ctx, await ctx.writer.write(key.workspace_id, events))


@router.post("/identify", response_model=Accepted, responses=_REFUSED)
async def identify(call: Identify, key: IngestKey, ctx: Ctx) -> Accepted:
    """Set a contact's traits (Segment's identify call); ``traits.email`` must be valid."""
    events = prepare(ctx, (call,), key.workspace_id, ctx.clock.now())
    return counted(ctx, await ctx.writer.write(key.workspace_id, events))


@router.post("/batch", response_model=Accepted, responses=_REFUSED)
async def batch(body: Batch, key: IngestKey, ctx: Ctx) -> Accepted:
    """Several calls at once, all accepted or none (Segment's batch call)."""
    limit = ctx.settings.max_event_bytes
    too_large = [
        problem(f"batch[{i}]", f"is {size:,} bytes; the most accepted for one event is {limit:,}")
        for i, call in enumerate(body.batch)
        if (size := len(call.model_dump_json(by_alias=True, exclude_none=True))) > limit
    ]
    if too_large:
        raise ApiError(413, too_large[0]["problem"], problems=too_large)
    events = prepare(ctx, body.batch, key.workspace_id, ctx.clock.now(), batch=True)
    return counted(ctx, await ctx.writer.write(key.workspace_id, events))
