"""``POST /v1/webhooks/{provider}``: delivery events from mail providers.

Each request is verified over its raw bytes by the provider's module
(:data:`flowmail.webhooks.PROVIDERS`): unsigned, forged, altered or stale requests, and
providers not configured here, are refused with 401, apply nothing, and are logged.

Replays: where the scheme has a replay key (Mailgun's token, the SNS ``MessageId``, the
Standard Webhooks ``webhook-id``) it is remembered, with a digest of the body, for the
provider's window. The same key with another body is a forgery (Mailgun signs only
timestamp and token) and is refused with 401; the same key with the same body is a
redelivery and is answered 200 with nothing applied (refusing it would only make the
provider retry). Whatever gets through, provider event ids are deduplicated in the
database, so nothing is ever applied twice.

SES comes through SNS: a verified ``SubscriptionConfirmation`` for the configured topic
is confirmed by visiting its ``SubscribeURL``. The certificate fetch and that visit go
through :meth:`WebhookHub.fetch`, which only ever reaches Amazon SNS hosts over HTTPS (a
test or an air-gapped installation swaps it with :func:`use_fetcher`).

Which workspace an event belongs to comes from the message it is about; events about
messages flowmail does not know are acknowledged (200) and ignored.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from flowmail.api.context import ApiContext, Ctx
from flowmail.api.errors import ApiError, Responses
from flowmail.runtime.feedback import FeedbackOptions, apply_events
from flowmail.settings import Settings
from flowmail.webhooks import (
    PROVIDERS,
    Headers,
    MalformedPayload,
    VerificationError,
    WebhookRequest,
    generic,
    mailgun,
    postmark,
    sendgrid,
    ses,
    smtp_dsn,
)
from flowmail.webhooks.ses import CertificateCache, is_sns_url

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger("flowmail.webhooks")

Fetch = Callable[[str], bytes]
MAX_FETCH_BYTES = 64 * 1024
DEFAULT_WINDOW = timedelta(hours=1)


class Provider(StrEnum):
    ses = "ses"
    sendgrid = "sendgrid"
    mailgun = "mailgun"
    postmark = "postmark"
    smtp_dsn = "smtp-dsn"
    generic = "generic"


class Received(BaseModel):
    received: int = Field(description="Delivery events in the request")
    applied: int = Field(description="Events recorded now")
    duplicates: int = Field(description="Events recorded before (replays)")
    ignored: int = Field(description="Events about no message of ours")
    replayed: bool = Field(default=False, description="The whole request was seen before")
    confirmed: bool = Field(default=False, description="An SNS subscription was confirmed")


_RESPONSES: Responses = {
    400: {"description": "Verified, but not the provider's format"},
    401: {"description": "Unsigned, forged, altered, stale or replayed; or not configured"},
}


# --- fetching from SNS only ------------------------------------------------------------


def fetch_from_sns(url: str) -> bytes:
    """GET an Amazon SNS URL over HTTPS (no redirects, bounded size); nothing else."""
    if not is_sns_url(url):
        raise ValueError(f"not an Amazon SNS URL: {url!r}")
    with (
        httpx.Client(timeout=10.0, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_FETCH_BYTES:
                raise ValueError(f"{url} answered more than {MAX_FETCH_BYTES} bytes")
        return data


# --- replay memory ---------------------------------------------------------------------


class ReplayMemory:
    """Replay keys seen recently, with a digest of their request body, per process."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._seen: OrderedDict[tuple[str, str], tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, provider: str, key: str, digest: str, now: datetime) -> str | None:
        """None if unseen (or expired); ``same`` for the same body, ``other`` otherwise."""
        with self._lock:
            found = self._seen.get((provider, key))
            if found is None or found[1] < now:
                return None
            return "same" if found[0] == digest else "other"

    def remember(self, provider: str, key: str, digest: str, until: datetime) -> None:
        with self._lock:
            self._seen[(provider, key)] = (digest, until)
            self._seen.move_to_end((provider, key))
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)


# --- per-app state ---------------------------------------------------------------------


@dataclass
class WebhookHub:
    """What the webhook endpoints keep between requests: the SNS fetcher, the replay
    memory, and each provider's verifier configuration (built from settings once)."""

    fetch_sns: Fetch = fetch_from_sns
    replays: ReplayMemory = field(default_factory=ReplayMemory)
    _configs: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, url: str) -> bytes:
        """Only ever Amazon SNS hosts, whatever fetcher is installed."""
        if not is_sns_url(url):
            raise ValueError(f"not an Amazon SNS URL: {url!r}")
        return self.fetch_sns(url)

    def config(self, provider: str, settings: Settings) -> Any | None:
        """The provider's verifier configuration, or None if it is not configured."""
        with self._lock:
            if provider not in self._configs:
                self._configs[provider] = self._build(provider, settings)
            return self._configs[provider]

    def _build(self, provider: str, settings: Settings) -> Any | None:
        try:
            return _configure(provider, settings, CertificateCache(self.fetch))
        except ValueError as exc:
            log.error("the %s webhook is misconfigured: %s", provider, exc)
            return None


def _configure(provider: str, s: Settings, certificates: CertificateCache) -> Any | None:
    if provider == "ses":
        return ses.Config(s.sns_topic_arn, certificates) if s.sns_topic_arn else None
    if provider == "sendgrid":
        return sendgrid.Config(s.sendgrid_public_key) if s.sendgrid_public_key else None
    if provider == "mailgun":
        return mailgun.Config(s.mailgun_signing_key) if s.mailgun_signing_key else None
    if provider == "postmark":
        configured = s.postmark_user and s.postmark_password
        return postmark.Config(s.postmark_user, s.postmark_password) if configured else None
    if provider == "smtp-dsn":
        return smtp_dsn.Config(s.dsn_secret) if s.dsn_secret else None
    if provider == "generic":
        secret = s.generic_webhook_secret
        return generic.Config(secret) if secret else None
    return None


_hub_lock = threading.Lock()


def webhook_hub(app: FastAPI) -> WebhookHub:
    with _hub_lock:
        hub = getattr(app.state, "flowmail_webhooks", None)
        if not isinstance(hub, WebhookHub):
            hub = WebhookHub()
            app.state.flowmail_webhooks = hub
        return hub


def use_fetcher(app: FastAPI, fetch: Fetch) -> WebhookHub:
    """Fetch SNS certificates and confirmations with ``fetch`` (tests, proxies); it is
    still only ever given Amazon SNS URLs."""
    with _hub_lock:
        hub = WebhookHub(fetch_sns=fetch)
        app.state.flowmail_webhooks = hub
        return hub


# --- the endpoint ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Incoming:
    provider: str
    path: str
    headers: Headers
    query: dict[str, str]
    body: bytes
    client: str


@router.post("/{provider}", response_model=Received, responses=_RESPONSES)
async def receive(provider: Provider, request: Request, ctx: Ctx) -> Received:
    """Delivery events from a provider, verified over the raw request bytes."""
    body = await request.body()
    incoming = _Incoming(
        provider=provider.value,
        path=request.url.path,
        headers=Headers(request.headers.items()),
        query=dict(request.query_params),
        body=body,
        client=request.client.host if request.client else "unknown",
    )
    hub = webhook_hub(request.app)
    return await run_in_threadpool(_receive, ctx, hub, incoming)


def _refuse(incoming: _Incoming, why: str) -> ApiError:
    log.warning(
        "refused %s webhook from %s (%d bytes): %s",
        incoming.provider,
        incoming.client,
        len(incoming.body),
        why,
    )
    return ApiError(401, f"the {incoming.provider} webhook request was refused: {why}")


def _receive(ctx: ApiContext, hub: WebhookHub, incoming: _Incoming) -> Received:
    name = incoming.provider
    config = hub.config(name, ctx.settings)
    if config is None:
        raise _refuse(incoming, "this provider's webhook is not configured on this server")
    now = ctx.clock.now()
    request = WebhookRequest(
        "POST", incoming.path, incoming.headers, incoming.body, now, incoming.query
    )
    spec = PROVIDERS[name]
    try:
        replay_key = spec.verify(request, config, now)
    except VerificationError as exc:
        raise _refuse(incoming, str(exc)) from None
    digest = hashlib.sha256(incoming.body).hexdigest()
    if replay_key is not None:
        seen = hub.replays.check(name, replay_key, digest, now)
        if seen == "other":
            raise _refuse(incoming, "a replayed signature with another body")
        if seen == "same":
            log.info("%s webhook %s delivered again: nothing applied", name, replay_key)
            return Received(received=0, applied=0, duplicates=0, ignored=0, replayed=True)
    try:
        result = _apply(ctx, hub, name, incoming.body, now)
    except MalformedPayload as exc:
        log.warning("%s webhook from %s is malformed: %s", name, incoming.client, exc)
        raise ApiError(400, f"the body is not a {name} webhook: {exc}") from None
    if replay_key is not None:
        window = getattr(config, "tolerance", DEFAULT_WINDOW)
        hub.replays.remember(name, replay_key, digest, now + window)
    return result


def _apply(ctx: ApiContext, hub: WebhookHub, name: str, body: bytes, now: datetime) -> Received:
    if name == "ses":
        confirmation = ses.subscription_confirmation(body)
        if confirmation is not None:
            if confirmation.type == "SubscriptionConfirmation":
                try:
                    hub.fetch(confirmation.subscribe_url)
                except Exception as exc:  # the network's: tell SNS to try again later
                    log.error("could not confirm the SNS subscription: %s", exc)
                    raise ApiError(503, "could not confirm the SNS subscription") from None
                log.info("confirmed the SNS subscription to %s", confirmation.topic_arn)
                return Received(received=0, applied=0, duplicates=0, ignored=0, confirmed=True)
            log.warning("SNS reports %s for %s", confirmation.type, confirmation.topic_arn)
            return Received(received=0, applied=0, duplicates=0, ignored=0)
    events = PROVIDERS[name].normalize(body)
    applied = apply_events(ctx.store, events, now, FeedbackOptions.from_settings(ctx.settings))
    return Received(
        received=applied.received,
        applied=applied.applied,
        duplicates=applied.duplicates,
        ignored=applied.ignored,
    )
