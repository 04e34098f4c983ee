"""``GET /health`` and ``GET /metrics``: for load balancers and Prometheus, no key needed
(bind the server to a private address, or put it behind a proxy that restricts them)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from flowmail.api.context import Ctx
from flowmail.store import api_queries

router = APIRouter(tags=["operations"])
log = logging.getLogger("flowmail.api")


class Heartbeat(BaseModel):
    id: str
    kind: str = Field(description="worker or sender")
    age_seconds: float = Field(description="Since it last reported")


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when the database does not answer")
    database: bool
    heartbeats: list[Heartbeat] = Field(default_factory=list)
    queues: dict[str, int] = Field(
        default_factory=dict,
        description="pending_events, queued_messages, due_messages, due_wakes",
    )


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database does not answer"}},
)
def health(ctx: Ctx) -> Health | JSONResponse:
    """200 while the database answers (with heartbeats and queue depths), else 503."""
    now = ctx.clock.now()
    try:
        api_queries.ping(ctx.store)
        beats = api_queries.heartbeats(ctx.store)
        queues = api_queries.queue_depths(ctx.store, now)
    except Exception:
        log.warning("health: the database did not answer", exc_info=True)
        body = Health(status="unavailable", database=False)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(
        status="ok",
        database=True,
        heartbeats=[
            Heartbeat(id=i, kind=k, age_seconds=round((now - seen).total_seconds(), 3))
            for i, k, seen in beats
        ],
        queues=queues,
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(ctx: Ctx) -> Response:
    """Prometheus text: events ingested, duplicates, request latency, queue depths."""
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
