"""What every endpoint needs: settings, store, clock, rate limiter and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request

from flowmail.api.inbox import GroupWriter
from flowmail.api.metrics import ApiMetrics
from flowmail.api.ratelimit import RateLimiter
from flowmail.clock import Clock
from flowmail.settings import Settings
from flowmail.store.sql import SqlStore

if TYPE_CHECKING:
    from flowmail.api.auth import KeyCache


@dataclass
class ApiContext:
    settings: Settings
    store: SqlStore
    clock: Clock
    limiter: RateLimiter
    metrics: ApiMetrics
    keys: KeyCache
    writer: GroupWriter
    body_limits: dict[str, int] = field(default_factory=dict)  # path -> most bytes

    def body_limit(self, path: str) -> int:
        """The most bytes a request body to ``path`` may have (default: the batch limit)."""
        return self.body_limits.get(path, self.settings.max_batch_bytes)


async def get_context(request: Request) -> ApiContext:
    """(async: FastAPI runs plain-def dependencies in a worker thread, which costs time)"""
    return cast(ApiContext, request.app.state.flowmail)


Ctx = Annotated[ApiContext, Depends(get_context)]
