"""The demo's HTTP client: flowmail's real API, over httpx.

A refused key, a refused webhook secret or an API that cannot be reached ends the demo
(:class:`DemoError`, with what to do about it). A 429 or 503 is retried after its
``Retry-After``, a dropped connection after a short pause, each a bounded number of
times; any other refusal of one request is an :class:`ApiFailure` the demo counts and
gets past.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from flowmail.webhooks import generic

RETRIES = 8  # per request, for 429 and 503
DROPS = 3  # per request, for connections refused or dropped (a server restarting)
MAX_PAUSE = 30.0  # seconds: the longest Retry-After honoured as given


class DemoError(Exception):
    """Something that ends the demo; the message says what to do."""


class ApiFailure(Exception):
    """One request the API refused or failed; the demo counts it and goes on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ApiClient:
    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "flowmail-demo"},
        )
        self.retried = 0  # requests sent again after a 429, a 503 or a dropped connection

    def close(self) -> None:
        self._http.close()

    # --- the calls ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no key): queue depths and heartbeats."""
        response = self._send("GET", "/health", keyed=False)
        if response.status_code not in (200, 503):
            raise ApiFailure(response.status_code, _message(response))
        return dict(response.json())

    def workflows(self) -> list[str]:
        """The ids of the key's workspace's workflows (checks the key too)."""
        return [str(row["id"]) for row in self._json("GET", "/v1/workflows")]

    def stats(self, workflow_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/workflows/{workflow_id}/stats"))

    def messages(self, status: str, workflow_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest messages of a workflow with ``status``."""
        params = {"status": status, "workflow_id": workflow_id, "limit": limit}
        return list(self._json("GET", "/v1/messages", params=params))

    def batch(self, calls: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """``POST /v1/batch``: (accepted, duplicates)."""
        found = self._json("POST", "/v1/batch", json={"batch": list(calls)})
        return int(found["accepted"]), int(found["duplicates"])

    def webhook(self, events: Sequence[dict[str, Any]], secret: str, now: int) -> dict[str, Any]:
        """``POST /v1/webhooks/generic``, signed per Standard Webhooks with ``secret``."""
        body = json.dumps(list(events), separators=(",", ":")).encode()
        webhook_id = "msg_" + hashlib.sha256(body).hexdigest()[:32]  # a resend is a replay
        headers = {
            generic.ID_HEADER: webhook_id,
            generic.TIMESTAMP_HEADER: str(now),
            generic.SIGNATURE_HEADER: generic.sign(secret, webhook_id, now, body),
            "Content-Type": "application/json",
        }
        response = self._send(
            "POST", "/v1/webhooks/generic", keyed=False, content=body, headers=headers
        )
        if response.status_code == 401:
            raise DemoError(
                f"the webhook secret was refused: {_message(response)}. Give the server's "
                "FLOWMAIL_GENERIC_WEBHOOK_SECRET with --webhook-secret"
            )
        if response.status_code >= 400:
            raise ApiFailure(response.status_code, _message(response))
        return dict(response.json())

    # --- sending -----------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:
            raise DemoError(
                f"the API key was refused ({_message(response)}): give an admin key with "
                "--key or FLOWMAIL_API_KEY (`flowmail keys create --role admin` makes one)"
            )
        if response.status_code == 403:
            raise DemoError(f"{_message(response)}: the demo needs an admin key")
        if response.status_code >= 400:
            raise ApiFailure(response.status_code, _message(response))
        return response.json()

    def _send(self, method: str, path: str, *, keyed: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if keyed:
            headers["Authorization"] = f"Bearer {self._key}"
        busy = drops = 0
        while True:
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if drops == DROPS:
                    raise DemoError(self._unreachable(exc)) from None
                drops += 1
                self._pause(0.25 * 2**drops)
                continue
            if response.status_code not in (429, 503) or busy == RETRIES:
                return response
            busy += 1
            self._pause(retry_after(response, 0.25 * 2**busy))

    def _pause(self, seconds: float) -> None:
        self.retried += 1
        self._sleep(seconds)

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"cannot reach the flowmail API at {self.base_url} ({type(exc).__name__}: {exc}). "
            "Is it running (`flowmail up`, or `flowmail serve`)? Give its address with --api"
        )


def retry_after(response: httpx.Response, default: float) -> float:
    """Seconds to wait from the ``Retry-After`` header (seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    seconds = default
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = default
    return min(MAX_PAUSE, max(0.05, seconds))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and "message" in body:
        return f"HTTP {response.status_code}: {body['message']}"
    return f"HTTP {response.status_code}: {str(body)[:200]}"
