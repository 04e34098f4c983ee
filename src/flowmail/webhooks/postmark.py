"""Postmark webhooks: one JSON record a request, protected by HTTP Basic auth.

Postmark does not sign webhooks; it documents securing them with HTTP Basic credentials in
the webhook URL (``https://user:password@host/...``). :func:`verify` compares both, in
constant time, with the configured ones. There is no timestamp to bound a replay, so
replays are made harmless by the deterministic event ids alone.

Mapping by ``RecordType`` (https://postmarkapp.com/developer/webhooks/webhooks-overview):

* ``Delivery`` -> delivered, ``Open`` -> opened, ``Click`` -> clicked (``OriginalLink``),
  ``SpamComplaint`` -> complained.
* ``Bounce`` -> by ``Type``: ``HardBounce``, ``BadEmailAddress`` and
  ``ManuallyDeactivated`` are hard; ``SoftBounce``, ``Transient``, ``DnsError``,
  ``Blocked``, ``SpamNotification``, ``VirusNotification``, ``ChallengeVerification``,
  ``DMARCPolicy``, ``SMTPApiError``, ``InboundError``, ``TemplateRenderingFailed`` and
  ``Unconfirmed`` are soft; ``Unknown`` (or a type not listed) goes by the enhanced code in
  ``Details`` (:func:`classify_bounce`); ``Unsubscribe`` -> unsubscribed,
  ``SpamComplaint`` -> complained; ``AutoResponder``, ``Subscribe``, ``AddressChange`` and
  ``OpenRelayTest`` are not failures and are skipped.
* ``SubscriptionChange`` -> unsubscribed when sending was suppressed for
  ``ManualSuppression`` (the recipient or you unsubscribed them); suppressions for
  ``HardBounce`` and ``SpamComplaint`` are skipped because Postmark also sends the bounce
  or complaint itself (counting both would double complaint rates); reactivations are
  skipped.

Our tags travel in ``Metadata``. Bounce and complaint records carry Postmark's ``ID``;
the others are identified by record type, ``MessageID``, recipient and time (and the link,
for clicks).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
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

NAME = "postmark"

_HARD = {"hardbounce", "bademailaddress", "manuallydeactivated"}
_SOFT = {
    "softbounce",
    "transient",
    "dnserror",
    "blocked",
    "spamnotification",
    "virusnotification",
    "challengeverification",
    "dmarcpolicy",
    "smtpapierror",
    "inbounderror",
    "templaterenderingfailed",
    "unconfirmed",
}
_NOT_FAILURES = {"autoresponder", "subscribe", "addresschange", "openrelaytest"}
_TIME_FIELD = {
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Delivery": "DeliveredAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
    "SubscriptionChange": "ChangedAt",
}


@dataclass(frozen=True)
class Config:
    username: str
    password: str

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("Postmark webhook credentials must not be empty")


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Check the HTTP Basic credentials, in constant time."""
    c.require_aware(now)
    header = request.headers.get("Authorization")
    if not header:
        raise VerificationError("missing Authorization header")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise VerificationError("the Authorization header is not HTTP Basic")
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise VerificationError("malformed HTTP Basic credentials") from None
    username, colon, password = decoded.partition(b":")
    user_ok = c.same_secret(username, config.username)
    password_ok = c.same_secret(password, config.password)
    if not (colon and user_ok and password_ok):
        raise VerificationError("wrong Postmark webhook credentials")
    return None


def normalize(body: bytes) -> list[DeliveryEvent]:
    raw = c.as_object(c.load_json(body), "a Postmark webhook")
    event = _event(raw)
    return [event] if event is not None else []


def _event(raw: dict[str, Any]) -> DeliveryEvent | None:
    record = str(raw.get("RecordType", ""))
    time_field = _TIME_FIELD.get(record)
    if time_field is None:
        return None
    decided = _kind(record, raw)
    if decided is None:
        return None
    kind, bounce_type = decided
    recipient = c.text(raw.get("Email")) or c.text(raw.get("Recipient"))
    stamp = c.text(raw.get(time_field))
    message, workflow, step = c.our_tags(raw.get("Metadata"))
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=_event_id(record, raw, recipient, stamp),
        kind=kind,
        at=c.from_iso(stamp, f"Postmark {time_field}"),
        recipient=recipient,
        message_id=message,
        workflow_id=workflow,
        step_id=step,
        provider_message_id=c.text(raw.get("MessageID")),
        bounce_type=bounce_type,
        url=c.text(raw.get("OriginalLink")) if kind == "clicked" else None,
        user_agent=c.text(raw.get("UserAgent")),
        reason=c.text(raw.get("Details")) or c.text(raw.get("Description")),
        detail=raw,
    )


def _kind(record: str, raw: dict[str, Any]) -> tuple[Kind, BounceType | None] | None:
    simple: dict[str, Kind] = {
        "Delivery": "delivered",
        "Open": "opened",
        "Click": "clicked",
        "SpamComplaint": "complained",
    }
    if record in simple:
        return simple[record], None
    if record == "SubscriptionChange":
        manual = str(raw.get("SuppressionReason", "")).lower() == "manualsuppression"
        return ("unsubscribed", None) if raw.get("SuppressSending") is True and manual else None
    bounce = str(raw.get("Type", "")).lower()
    if bounce in _NOT_FAILURES:
        return None
    if bounce == "unsubscribe":
        return "unsubscribed", None
    if bounce == "spamcomplaint":
        return "complained", None
    if bounce in _HARD:
        return "bounced", "hard"
    if bounce in _SOFT:
        return "bounced", "soft"
    details = c.text(raw.get("Details"))
    return "bounced", classify_bounce(details, c.find_enhanced_code_in(details))


def _event_id(record: str, raw: dict[str, Any], recipient: str | None, stamp: str | None) -> str:
    postmark_id = c.text(raw.get("ID"))
    if postmark_id is not None and record in ("Bounce", "SpamComplaint"):
        return f"{record}:{postmark_id}"
    parts = [record, c.text(raw.get("MessageID")) or "", recipient or "", stamp or ""]
    if record == "Click":
        parts.append(c.text(raw.get("OriginalLink")) or "")
    if not parts[1]:
        return c.content_id(NAME, raw)
    return ":".join(parts)
