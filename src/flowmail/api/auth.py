"""API keys on requests: ``Authorization: Bearer <key>``, or HTTP Basic with the key as
the user name (what Segment's libraries send as the write key).

:func:`requires` makes the one dependency every protected endpoint uses: it finds the
key (401 if missing, malformed, wrong or revoked), spends a token of the key's rate
limit (429 with Retry-After), and checks the role (403). The resulting
:class:`Principal` carries the workspace that scopes everything the endpoint does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.concurrency import run_in_threadpool

from flowmail.api.context import Ctx
from flowmail.api.errors import ApiError
from flowmail.store.keys import ApiKey, Role, verify_token
from flowmail.store.sql import SqlStore

_bearer = HTTPBearer(auto_error=False, description="An API key: fm_<id>_<secret>")
_basic = HTTPBasic(auto_error=False, description="The API key as the user name, no password")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flowmail", Basic realm="flowmail"'}


class KeyCache:
    """What checking each token found, kept ``seconds`` (0: not kept), so that a busy key
    is not looked up on every request. A revoked key stops working within ``seconds``."""

    MAX_ENTRIES = 10_000

    def __init__(
        self, store: SqlStore, seconds: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.seconds = seconds
        self._monotonic = monotonic
        self._found: dict[str, tuple[ApiKey | None, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, ApiKey | None]:
        """(known, key): known is False when the token must be looked up."""
        with self._lock:
            entry = self._found.get(token)
        if entry is None or entry[1] < self._monotonic():
            return False, None
        return True, entry[0]

    def lookup(self, token: str) -> ApiKey | None:
        key = verify_token(self.store, token)
        if self.seconds > 0:
            with self._lock:
                if len(self._found) >= self.MAX_ENTRIES:
                    self._found.clear()
                self._found[token] = (key, self._monotonic() + self.seconds)
        return key


@dataclass(frozen=True)
class Principal:
    key_id: str
    workspace_id: str
    role: Role


def _token(
    bearer: HTTPAuthorizationCredentials | None, basic: HTTPBasicCredentials | None
) -> str | None:
    if bearer is not None:
        return bearer.credentials.strip()
    if basic is not None:
        return (basic.username or basic.password).strip()
    return None


def requires(role: Role) -> Callable[..., Awaitable[Principal]]:
    """The dependency for endpoints that need ``role`` (admin keys may call everything)."""

    async def authenticate(
        ctx: Ctx,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> Principal:
        token = _token(bearer, basic)
        if not token:
            raise ApiError(401, "an API key is required", headers=_CHALLENGE)
        known, key = ctx.keys.cached(token)
        if not known:
            key = await run_in_threadpool(ctx.keys.lookup, token)
        if key is None:
            raise ApiError(401, "the API key is not valid", headers=_CHALLENGE)
        wait = ctx.limiter.take(key.id)
        if wait > 0:
            raise ApiError(
                429,
                f"rate limit of {ctx.limiter.rate:g} requests/s for this key exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if role == Role.ADMIN and key.role != Role.ADMIN:
            raise ApiError(403, f"this needs an admin key; this key's role is {key.role}")
        return Principal(key.id, key.workspace_id, key.role)

    return authenticate


AdminKey = Annotated[Principal, Depends(requires(Role.ADMIN))]
IngestKey = Annotated[Principal, Depends(requires(Role.INGEST))]
