"""A generic webhook for senders flowmail has no module for, signed per Standard Webhooks.

Verification follows the Standard Webhooks specification (https://www.standardwebhooks.com,
"Verifying webhook authenticity"): the headers ``webhook-id``, ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature``; the signed content is ``{id}.{timestamp}.{raw body}``;
the signature is ``v1,`` followed by the base64 HMAC-SHA256 of it, keyed with the secret
(``whsec_`` followed by the base64 key); the header may hold several space-separated
signatures (key rotation) and one match is enough; other versions (``v1a``) are ignored.
The timestamp must be within the window either way; :func:`verify` returns ``webhook-id``
so the caller can refuse a replay inside the window.

The body is flowmail's own event format: one JSON object, or a JSON array of them::

    {
      "type": "delivered" | "opened" | "clicked" | "bounced" | "complained"
              | "unsubscribed" | "deferred",
      "message_id": "our message key (the X-Flowmail-Message header)",
      "email": "recipient@example.com",
      "at": "2025-09-01T09:00:00Z",        # ISO 8601; no offset means UTC
      "url": "https://...",                 # clicked only
      "bounce_type": "hard" | "soft",       # bounced only; default: by "status"
      "status": "5.1.1",                    # optional enhanced status code
      "reason": "550 5.1.1 user unknown",   # optional
      "id": "evt_123",                      # optional; else a hash of the event
      "workflow_id": "...", "step_id": "...", "user_agent": "...",  # optional
      "automated": true                     # opened only: a machine opened it (optional)
    }
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from flowmail.webhooks import _common as c
from flowmail.webhooks.model import (
    KINDS,
    BounceType,
    DeliveryEvent,
    Kind,
    MalformedPayload,
    VerificationError,
    WebhookRequest,
    classify_bounce,
)

NAME = "generic"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key in a ``whsec_<base64>`` secret (the prefix is optional)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("the Standard Webhooks secret is too short")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender puts on ``body`` (``v1,<base64>``)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Config:
    secret: str  # whsec_<base64>
    tolerance: timedelta = timedelta(minutes=5)
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", decode_secret(self.secret))


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Check one of the ``v1`` signatures over ``id.timestamp.body`` and the window."""
    c.require_aware(now)
    webhook_id = request.headers.get(ID_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signatures = request.headers.get(SIGNATURE_HEADER)
    if not webhook_id or not signatures or timestamp is None:
        raise VerificationError("missing Standard Webhooks headers")
    stamp = c.unix_header(timestamp, TIMESTAMP_HEADER)
    c.check_window(stamp, now, config.tolerance)
    content = f"{webhook_id}.{timestamp.strip()}.".encode() + request.body
    expected = hmac.new(config._key, content, hashlib.sha256).digest()
    matched = False
    for entry in signatures.split()[:16]:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        matched |= hmac.compare_digest(given, expected)
    if not matched:
        raise VerificationError("no Standard Webhooks signature matches")
    return webhook_id


def normalize(body: bytes) -> list[DeliveryEvent]:
    document = c.load_json(body)
    items = document if isinstance(document, list) else [document]
    return [_event(c.as_object(raw, "an event")) for raw in c.as_list(items, "the events")]


def _event(raw: dict[str, Any]) -> DeliveryEvent:
    kind = raw.get("type")
    if kind not in KINDS:
        raise MalformedPayload(f"unknown event type {kind!r}")
    bounce_type: BounceType | None = None
    if kind == "bounced":
        given = raw.get("bounce_type")
        if given is not None and given not in ("hard", "soft"):
            raise MalformedPayload("bounce_type must be hard or soft")
        bounce_type = given or classify_bounce(c.text(raw.get("reason")), c.text(raw.get("status")))
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=c.text(raw.get("id")) or c.content_id(NAME, raw),
        kind=cast(Kind, kind),
        at=c.from_iso(raw.get("at"), "at"),
        recipient=c.text(raw.get("email")),
        message_id=c.text(raw.get("message_id")),
        workflow_id=c.text(raw.get("workflow_id")),
        step_id=c.text(raw.get("step_id")),
        bounce_type=bounce_type,
        url=c.text(raw.get("url")) if kind == "clicked" else None,
        user_agent=c.text(raw.get("user_agent")),
        reason=c.text(raw.get("reason")),
        machine="automated" if kind == "opened" and raw.get("automated") is True else None,
        detail=raw,
    )
