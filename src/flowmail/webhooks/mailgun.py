"""Mailgun webhooks: one JSON event a request, signed inside the body.

Verification follows Mailgun's "Securing Webhooks": ``signature.signature`` is the hex
HMAC-SHA256, keyed with the HTTP webhook signing key, of ``signature.timestamp`` followed by
``signature.token``. Mailgun's signature covers only the timestamp and token, not the
event, so a captured signature could be replayed with other event data inside the window:
:func:`verify` returns the token, and the caller must remember tokens for the replay window
and refuse one seen before (Mailgun: "cache the token and deny subsequent requests").

Mapping (https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads):

* ``delivered``, ``opened``, ``clicked``, ``complained``, ``unsubscribed`` map by name.
* ``failed`` with ``severity: temporary`` -> deferred (Mailgun retries).
* ``failed`` with ``severity: permanent`` -> bounced: hard for the ``suppress-*`` reasons
  (Mailgun refused an address on its suppression lists), otherwise hard or soft by the
  enhanced code and SMTP code in ``delivery-status`` (:func:`classify_bounce`).
* ``rejected`` (Mailgun refused the message itself) -> bounced, soft.
* ``accepted`` and unknown events are skipped.
* An open with ``client-info.bot`` set (``apple``, ``gmail``, ``generic``: Mailgun's "Open
  and Click Bot Detection") has ``machine`` set.

Our tags travel as user variables (``v:flowmail_message`` ...). Mailgun documents
``event-data.id`` as unique only "within a day", so the event id is that id joined with the
event's timestamp: the same for every delivery of one event, distinct across days.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowmail.webhooks import _common as c
from flowmail.webhooks.model import (
    BounceType,
    DeliveryEvent,
    Kind,
    VerificationError,
    WebhookRequest,
    classify_bounce,
)

NAME = "mailgun"

_SIMPLE: dict[str, Kind] = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}


@dataclass(frozen=True)
class Config:
    signing_key: str  # Mailgun's "HTTP webhook signing key"
    tolerance: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not self.signing_key:
            raise ValueError("the Mailgun signing key must not be empty")


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Check the HMAC over timestamp + token and the window; return the token to dedupe."""
    c.require_aware(now)
    try:
        document = c.load_json(request.body)
    except ValueError:
        raise VerificationError("the body is not JSON") from None
    block = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(block, dict):
        raise VerificationError("missing Mailgun signature block")
    timestamp, token, signature = (_field(block, k) for k in ("timestamp", "token", "signature"))
    stamp = c.unix_header(timestamp, "Mailgun signature timestamp")
    if not token or not signature:
        raise VerificationError("missing Mailgun token or signature")
    c.check_window(stamp, now, config.tolerance)
    expected = hmac.new(
        config.signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not c.same_secret(signature.lower(), expected):
        raise VerificationError("the Mailgun signature does not match")
    return token


def _field(block: dict[str, Any], key: str) -> str | None:
    value = block.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def normalize(body: bytes) -> list[DeliveryEvent]:
    document = c.as_object(c.load_json(body), "a Mailgun webhook")
    raw = c.as_object(document.get("event-data"), "event-data")
    event = _event(raw)
    return [event] if event is not None else []


def _event(raw: dict[str, Any]) -> DeliveryEvent | None:
    name = str(raw.get("event", "")).lower()
    kind: Kind | None = _SIMPLE.get(name)
    bounce_type: BounceType | None = None
    status = raw.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    reason = (
        c.text(status.get("message"))
        or c.text(status.get("description"))
        or c.text(raw.get("reason"))
    )
    if name == "failed":
        if str(raw.get("severity", "")).lower() == "temporary":
            kind = "deferred"
        else:
            kind = "bounced"
            bounce_type = _permanent(raw, status)
    elif name == "rejected":
        kind, bounce_type = "bounced", "soft"
        reject = raw.get("reject")
        reason = c.text(reject.get("reason")) if isinstance(reject, dict) else reason
    if kind is None:
        return None
    message = raw.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    header_id = headers.get("message-id") if isinstance(headers, dict) else None
    rfc_message_id = c.strip_brackets(c.text(header_id))
    client = raw.get("client-info")
    message_key, workflow, step = c.our_tags(raw.get("user-variables"))
    mailgun_id = c.text(raw.get("id"))
    stamp = raw.get("timestamp")
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=f"{mailgun_id}@{stamp}" if mailgun_id else c.content_id(NAME, raw),
        kind=kind,
        at=c.from_unix(stamp, "Mailgun timestamp"),
        recipient=c.text(raw.get("recipient")),
        message_id=message_key,
        workflow_id=workflow,
        step_id=step,
        rfc_message_id=rfc_message_id,
        provider_message_id=rfc_message_id,
        bounce_type=bounce_type,
        url=c.text(raw.get("url")) if kind == "clicked" else None,
        user_agent=c.text(client.get("user-agent")) if isinstance(client, dict) else None,
        reason=reason,
        machine=_bot(client) if kind == "opened" else None,
        detail=raw,
    )


def _bot(client: Any) -> str | None:
    """``client-info.bot`` ("Open and Click Bot Detection"): ``apple`` (Mail Privacy
    Protection), ``gmail``, ``generic`` (a firewall or virus scanner); empty for none."""
    bot = c.text(client.get("bot")) if isinstance(client, dict) else None
    return f"bot: {bot}" if bot else None


def _permanent(raw: dict[str, Any], status: dict[str, Any]) -> BounceType:
    if str(raw.get("reason", "")).lower().startswith("suppress-"):
        return "hard"
    enhanced = c.text(status.get("enhanced-code")) or c.find_enhanced_code_in(
        status.get("message"), status.get("description")
    )
    return classify_bounce(c.text(status.get("code")), enhanced)
