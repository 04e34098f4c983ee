"""What the HTTP providers share: an httpx client, bounded concurrency, and the error rules.

Error rules for every HTTP provider (each may refine them from the provider's error codes):

- no answer (refused, reset, timeout): transient;
- 429 and 5xx: transient;
- 401 and 403: transient with code ``auth`` — a bad or revoked key is a problem with the
  installation, not with the message, so messages wait (and dead-letter) rather than fail;
- any other 4xx: permanent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx

from flowmail.clock import Clock, SystemClock
from flowmail.delivery.dkim import DkimSigner
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult


def http_error(
    provider: str,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    transient: bool | None = None,
    hard_bounce: bool = False,
) -> SendError:
    """The generic rule, unless ``transient`` says otherwise."""
    if transient is None:
        transient = status == 429 or status >= 500 or status in (401, 403) or status < 400
    label = code or str(status)
    if status in (401, 403) and code is None:
        label = "auth"
    return SendError(
        f"{provider} HTTP {status}: {detail[:300]}",
        permanent=not transient,
        hard_bounce=hard_bounce and not transient,
        code=label,
        provider=provider,
    )


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or an empty one if it has none."""
    try:
        data = json.loads(response.content or b"null")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class HttpProvider:
    """Base class: subclasses build the request and read the answer."""

    name = "http"
    default_base_url = ""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        concurrency: int = 16,
        dkim: DkimSigner | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.concurrency = max(1, concurrency)
        self._dkim = dkim
        self._clock: Clock = clock or SystemClock()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers={"user-agent": "flowmail"},
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    # --- for subclasses -----------------------------------------------------------------

    def build_request(self, email: OutgoingEmail) -> httpx.Request:
        raise NotImplementedError

    def result(self, response: httpx.Response) -> SendResult:
        raise NotImplementedError

    def error(self, response: httpx.Response) -> SendError:
        body = json_body(response)
        detail = str(body.get("message") or body.get("Message") or response.text)
        return http_error(self.name, response.status_code, detail)

    # --- Provider -------------------------------------------------------------------------

    async def send(self, email: OutgoingEmail) -> SendResult:
        try:
            request = self.build_request(email)
        except ValueError as exc:
            raise SendError(str(exc), permanent=True, code="invalid", provider=self.name) from exc
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException as exc:
            raise SendError(
                f"{self.name}: timeout: {exc!r}", code="timeout", provider=self.name
            ) from exc
        except httpx.HTTPError as exc:
            raise SendError(
                f"{self.name}: connection error: {exc!r}", code="connection", provider=self.name
            ) from exc
        if response.is_success:
            return self.result(response)
        raise self.error(response)

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[SendResult | SendError]:
        """Up to ``concurrency`` requests in flight; results in the order given."""
        results: list[SendResult | SendError | None] = [None] * len(emails)
        pending = iter(enumerate(emails))

        async def worker() -> None:
            for index, email in pending:
                try:
                    results[index] = await self.send(email)
                except SendError as exc:
                    results[index] = exc

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(emails)))))
        return [result for result in results if result is not None]

    async def close(self) -> None:
        await self._client.aclose()
