"""Carrying out outboxed webhook calls, with retries, off the engine's path.

A webhook step only writes a row in ``actions`` (in the same transaction as the run's
new state). This dispatcher claims due rows, calls the endpoint with a timeout, and on
failure retries with exponential backoff and jitter, up to a limit; then the call is
``dead`` and kept for a person to look at. A slow or failing endpoint delays only its
own call, never the engine.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from flowmail.clock import Clock
from flowmail.engine.state import bucket
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.actions")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(hours=6)

    def delay(self, action_id: str, attempt: int) -> timedelta:
        """Exponential backoff with deterministic jitter (50-100 % of the step)."""
        step = min(self.cap, self.base * (1 << min(attempt - 1, 30)))
        return step * (0.5 + bucket(action_id, attempt) / 200)


class ActionDispatcher:
    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        owner: str,
        client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 10.0,
        batch: int = 20,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.lease = timedelta(seconds=timeout * 3)

    def step(self) -> int:
        """Attempt every due call once; returns how many were attempted."""
        rows = self.store.claim_actions(self.owner, self.clock.now(), self.batch, self.lease)
        for row in rows:
            self._attempt(row)
        return len(rows)

    def _attempt(self, row: dict[str, Any]) -> None:
        payload = row["payload"]
        attempt = row["attempts"] + 1
        error = _call(self.client, payload)
        now = self.clock.now()
        if error is None:
            status, next_at = "done", now
        elif attempt >= self.policy.max_attempts:
            status, next_at = "dead", now
            log.warning("webhook %s dead after %d attempts: %s", row["id"], attempt, error)
        else:
            status, next_at = "queued", now + self.policy.delay(row["id"], attempt)
        self.store.finish_action(
            self.owner,
            row["workspace_id"],
            row["id"],
            status=status,
            attempts=attempt,
            next_attempt_at=next_at,
            error=error,
            now=now,
        )

    def close(self) -> None:
        self.client.close()

    def run(self, stop: threading.Event, idle: float = 0.5) -> None:
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # the database may be briefly unreachable: try again later
                log.exception("webhook dispatcher")
                busy = 0
            if not busy:
                stop.wait(idle)
        self.close()


def _call(client: httpx.Client, payload: dict[str, Any]) -> str | None:
    """Make the call; None on a 2xx answer, else what went wrong."""
    body = payload.get("body")
    content = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", **(payload.get("headers") or {})}
    try:
        response = client.request(
            payload["method"], payload["url"], content=content, headers=headers
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"
