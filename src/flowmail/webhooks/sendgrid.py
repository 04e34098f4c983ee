"""SendGrid Event Webhook: signed batches of events.

Verification follows "Getting Started with the Event Webhook Security Features": SendGrid
signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 and sends the base64 DER
signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the Unix timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``. The verification key is the base64 DER
SubjectPublicKeyInfo shown in SendGrid's settings (a PEM block is accepted too).

Mapping (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event):

* ``delivered`` -> delivered, ``open`` -> opened, ``click`` -> clicked, ``deferred`` ->
  deferred, ``spamreport`` -> complained, ``unsubscribe`` / ``group_unsubscribe`` ->
  unsubscribed (the group is in ``detail["asm_group_id"]``).
* ``bounce`` -> bounced: ``type: blocked`` is soft (SendGrid: "temporarily"), otherwise
  hard or soft by the enhanced code in ``status`` (:func:`classify_bounce`).
* ``dropped`` -> bounced, never complained or unsubscribed (a drop is not a new complaint,
  and must not count toward complaint rates): hard when SendGrid dropped the address for
  being on a suppression list (Bounced Address, Invalid, Spam Reporting Address,
  Unsubscribed Address), soft otherwise (spam content, bad SMTPAPI header, quota).
* ``processed``, ``group_resubscribe`` and unknown events are skipped.

Our custom args come back as top-level keys; ``sg_event_id`` is the event id. An open with
``sg_machine_open: true`` (Apple Mail Privacy Protection, per "Understanding Apple Mail
Privacy Protection and Open Events") has ``machine`` set.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from flowmail.webhooks import _common as c
from flowmail.webhooks.model import (
    BounceType,
    DeliveryEvent,
    Kind,
    VerificationError,
    WebhookRequest,
    classify_bounce,
)

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

_SIMPLE: dict[str, Kind] = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "deferred": "deferred",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
_SUPPRESSED_DROPS = {
    "bounced address",
    "invalid",
    "spam reporting address",
    "unsubscribed address",
}


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER SubjectPublicKeyInfo, or PEM."""
    try:
        if "-----BEGIN" in text:
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not a SendGrid verification key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the SendGrid verification key must be an ECDSA P-256 public key")
    return key


@dataclass(frozen=True)
class Config:
    public_key: str  # as SendGrid shows it: base64 DER SubjectPublicKeyInfo
    tolerance: timedelta = timedelta(minutes=5)
    _key: ec.EllipticCurvePublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", load_public_key(self.public_key))


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Check the ECDSA signature over ``timestamp + raw body`` and the replay window."""
    c.require_aware(now)
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature:
        raise VerificationError(f"missing {SIGNATURE_HEADER}")
    if timestamp is None:
        raise VerificationError(f"missing {TIMESTAMP_HEADER}")
    stamp = c.unix_header(timestamp, TIMESTAMP_HEADER)
    c.check_window(stamp, now, config.tolerance)
    der = c.b64decode_strict(signature, SIGNATURE_HEADER)
    signed = timestamp.strip().encode("ascii") + request.body
    try:
        config._key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise VerificationError("the SendGrid signature does not match") from None
    return None


def normalize(body: bytes) -> list[DeliveryEvent]:
    batch = c.as_list(c.load_json(body), "a SendGrid batch")
    events = []
    for raw in batch:
        event = _event(c.as_object(raw, "a SendGrid event"))
        if event is not None:
            events.append(event)
    return events


def _event(raw: dict[str, Any]) -> DeliveryEvent | None:
    name = str(raw.get("event", "")).lower()
    kind: Kind | None = _SIMPLE.get(name)
    bounce_type: BounceType | None = None
    reason = c.text(raw.get("reason")) or c.text(raw.get("response"))
    if name == "bounce":
        kind = "bounced"
        if str(raw.get("type", "")).lower() == "blocked":
            bounce_type = "soft"
        else:
            bounce_type = classify_bounce(reason, c.text(raw.get("status")))
    elif name == "dropped":
        kind = "bounced"
        suppressed = (reason or "").lower() in _SUPPRESSED_DROPS
        bounce_type = "hard" if suppressed else "soft"
    if kind is None:
        return None
    message, workflow, step = c.our_tags(raw)
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=c.text(raw.get("sg_event_id")) or c.content_id(NAME, raw),
        kind=kind,
        at=c.from_unix(raw.get("timestamp"), "SendGrid timestamp"),
        recipient=c.text(raw.get("email")),
        message_id=message,
        workflow_id=workflow,
        step_id=step,
        rfc_message_id=c.strip_brackets(c.text(raw.get("smtp-id"))),
        provider_message_id=c.text(raw.get("sg_message_id")),
        bounce_type=bounce_type,
        url=c.text(raw.get("url")) if kind == "clicked" else None,
        user_agent=c.text(raw.get("useragent")),
        reason=reason,
        machine=_machine(raw) if kind == "opened" else None,
        detail=raw,
    )


def _machine(raw: dict[str, Any]) -> str | None:
    """``sg_machine_open``: SendGrid's flag for an open by Apple's privacy proxy."""
    flag = raw.get("sg_machine_open")
    if flag is True or (isinstance(flag, str) and flag.strip().lower() == "true"):
        return "sg_machine_open"
    return None
