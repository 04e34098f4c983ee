"""Amazon SES events delivered by Amazon SNS over HTTPS.

Verification follows "Verifying the signatures of Amazon SNS messages":

1. ``SigningCertURL`` must be ``https://sns.<region>.amazonaws.com/...pem``; anything
   else is refused before any certificate is looked at, so nothing is ever fetched from
   another host. The certificate comes from ``Config.certificate``, a callable (for
   example a :class:`CertificateCache` over an HTTPS client) given the checked URL.
2. ``TopicArn`` must be the configured topic; ``Timestamp`` must be inside the window.
3. The string to sign is built from the named fields in byte order, each as
   ``name\\nvalue\\n`` (Notification: Message, MessageId, Subject if present, Timestamp,
   TopicArn, Type; confirmations: Message, MessageId, SubscribeURL, Timestamp, Token,
   TopicArn, Type), and checked with the certificate's RSA key: ``SignatureVersion`` 1 is
   SHA1withRSA, 2 is SHA256withRSA.

The replay window defaults to an hour: SNS keeps the original ``Timestamp`` and signature
when it retries, and a topic's delivery policy may retry for a long time; replays inside
the window are harmless because event ids are deterministic (``verify`` also returns the
SNS ``MessageId``). Raw message delivery (no SNS envelope) cannot be verified and is
refused. China-region hosts (``amazonaws.com.cn``) are not accepted.

Inner SES events, in both shapes (``eventType`` from configuration sets and
``notificationType`` from identity notifications):

* ``Delivery`` -> delivered; ``Open`` -> opened; ``Click`` -> clicked;
  ``DeliveryDelay`` -> deferred; ``Complaint`` -> complained; ``Subscription`` ->
  unsubscribed when the new preferences unsubscribe from all or opt out of a topic.
* ``Bounce`` -> bounced: ``Permanent`` is hard, ``Transient`` soft, ``Undetermined`` by
  the recipient's enhanced code (:func:`classify_bounce`).
* ``Reject`` (SES refused to send the message) -> bounced, soft.
* A complaint with ``complaintSubType: OnAccountSuppressionList`` was never sent, so it is
  a hard bounce, not a complaint (it must not count toward complaint rates).
* ``Send``, ``Rendering Failure`` and unknown types are skipped, and so are
  ``SubscriptionConfirmation`` and ``UnsubscribeConfirmation`` envelopes (use
  :func:`subscription_confirmation` to act on those).

Our tags come from ``mail.tags`` (lists of values) and our header from ``mail.headers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowmail.webhooks import _common as c
from flowmail.webhooks._sns import (
    TYPES,
    CertificateCache,
    SubscriptionConfirmation,
    is_sns_url,
    string_to_sign,
    subscription_confirmation,
    verify_envelope,
)
from flowmail.webhooks.model import (
    MAX_EVENTS,
    BounceType,
    DeliveryEvent,
    Kind,
    MalformedPayload,
    WebhookRequest,
    classify_bounce,
)

NAME = "ses"
__all__ = [
    "NAME",
    "CertificateCache",
    "Config",
    "SubscriptionConfirmation",
    "is_sns_url",
    "normalize",
    "normalize_ses",
    "string_to_sign",
    "subscription_confirmation",
    "verify",
]


@dataclass(frozen=True)
class Config:
    topic_arn: str
    certificate: Callable[[str], bytes]  # checked SigningCertURL -> PEM (or DER) certificate
    tolerance: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not self.topic_arn.startswith("arn:"):
            raise ValueError("topic_arn must be an SNS topic ARN")


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Verify the SNS envelope's signature, topic and timestamp; return its ``MessageId``."""
    c.require_aware(now)
    return verify_envelope(
        request.body, config.topic_arn, config.certificate, config.tolerance, now
    )


# --- normalize -------------------------------------------------------------------------


def normalize(body: bytes) -> list[DeliveryEvent]:
    envelope = c.as_object(c.load_json(body), "an SNS message")
    if envelope.get("Type") != "Notification":
        if envelope.get("Type") in TYPES:
            return []
        raise MalformedPayload("not an SNS message")
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise MalformedPayload("the SNS Message must be a string")
    return normalize_ses(c.as_object(c.load_json(message.encode("utf-8")), "an SES event"))


def normalize_ses(event: dict[str, Any]) -> list[DeliveryEvent]:
    """Events from one SES event object (the SNS ``Message``, already parsed)."""
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    mail = event.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    handler = _HANDLERS.get(kind)
    if handler is None:
        return []
    section = event.get(_SECTIONS[kind])
    section = section if isinstance(section, dict) else {}
    return handler(kind, section, mail)


_SECTIONS = {
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Open": "open",
    "Click": "click",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "Subscription": "subscription",
}


@dataclass(frozen=True)
class _Mail:
    message_id: str | None
    rfc_message_id: str | None
    message_key: str | None
    workflow: str | None
    step: str | None
    destinations: list[str]


def _mail(mail: dict[str, Any]) -> _Mail:
    raw_headers, raw_common = mail.get("headers"), mail.get("commonHeaders")
    headers: list[Any] = raw_headers if isinstance(raw_headers, list) else []
    common: dict[str, Any] = raw_common if isinstance(raw_common, dict) else {}
    message_key, workflow, step = c.our_tags(mail.get("tags"))
    message_key = message_key or c.message_key_from_headers(headers)
    rfc = c.header_value(headers, "Message-ID") or c.text(common.get("messageId"))
    destination = mail.get("destination")
    destinations = (
        [d for d in destination if isinstance(d, str)] if isinstance(destination, list) else []
    )
    return _Mail(
        message_id=c.text(mail.get("messageId")),
        rfc_message_id=c.strip_brackets(rfc),
        message_key=message_key,
        workflow=workflow,
        step=step,
        destinations=destinations[:MAX_EVENTS],
    )


def _make(
    kind: Kind,
    source: str,
    section: dict[str, Any],
    mail: dict[str, Any],
    recipient: str | None,
    **extra: Any,
) -> DeliveryEvent:
    info = _mail(mail)
    stamp = c.text(section.get("timestamp")) or c.text(mail.get("timestamp"))
    key = extra.pop("key", None) or info.message_id or c.content_id(NAME, mail)
    parts = [source, key, recipient or "", stamp or ""]
    if kind == "clicked":
        parts.append(extra.get("url") or "")
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=":".join(parts),
        kind=kind,
        at=c.from_iso(stamp, f"SES {source} timestamp"),
        recipient=recipient,
        message_id=info.message_key,
        workflow_id=info.workflow,
        step_id=info.step,
        rfc_message_id=info.rfc_message_id,
        provider_message_id=info.message_id,
        detail={"eventType": source, "mail": mail, _SECTIONS[source]: section},
        **extra,
    )


def _recipients(section: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = section.get(key)
    if not isinstance(entries, list):
        return []
    return [e for e in entries[:MAX_EVENTS] if isinstance(e, dict)]


def _delivery(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    recipients = section.get("recipients")
    listed = recipients if isinstance(recipients, list) else _mail(mail).destinations
    reason = c.text(section.get("smtpResponse"))
    return [
        _make("delivered", source, section, mail, c.text(r), reason=reason)
        for r in listed[:MAX_EVENTS]
    ]


def _bounce(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    bounce_type = str(section.get("bounceType", "")).lower()
    feedback = c.text(section.get("feedbackId"))
    events = []
    for entry in _recipients(section, "bouncedRecipients"):
        diagnostic = c.text(entry.get("diagnosticCode"))
        hard_or_soft: BounceType
        if bounce_type == "permanent":
            hard_or_soft = "hard"
        elif bounce_type == "transient":
            hard_or_soft = "soft"
        else:
            hard_or_soft = classify_bounce(diagnostic, c.text(entry.get("status")))
        events.append(
            _make(
                "bounced",
                source,
                section,
                mail,
                c.text(entry.get("emailAddress")),
                key=feedback,
                bounce_type=hard_or_soft,
                reason=diagnostic or c.text(section.get("bounceSubType")),
            )
        )
    return events


def _complaint(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    suppressed = str(section.get("complaintSubType", "")) == "OnAccountSuppressionList"
    feedback = c.text(section.get("feedbackId"))
    user_agent = c.text(section.get("userAgent"))
    return [
        _make(
            "bounced" if suppressed else "complained",
            source,
            section,
            mail,
            c.text(entry.get("emailAddress")),
            key=feedback,
            bounce_type="hard" if suppressed else None,
            user_agent=user_agent,
            reason="OnAccountSuppressionList" if suppressed else None,
        )
        for entry in _recipients(section, "complainedRecipients")
    ]


def _engagement(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    kind: Kind = "opened" if source == "Open" else "clicked"
    url = c.text(section.get("link")) if kind == "clicked" else None
    user_agent = c.text(section.get("userAgent"))
    destinations = _mail(mail).destinations
    recipient = destinations[0] if destinations else None
    return [_make(kind, source, section, mail, recipient, url=url, user_agent=user_agent)]


def _reject(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    reason = c.text(section.get("reason"))
    return [
        _make("bounced", source, section, mail, r, bounce_type="soft", reason=reason)
        for r in _mail(mail).destinations
    ]


def _delay(source: str, section: dict[str, Any], mail: dict[str, Any]) -> list[DeliveryEvent]:
    return [
        _make(
            "deferred",
            source,
            section,
            mail,
            c.text(entry.get("emailAddress")),
            reason=c.text(entry.get("diagnosticCode")) or c.text(section.get("delayType")),
        )
        for entry in _recipients(section, "delayedRecipients")
    ]


def _subscription(
    source: str, section: dict[str, Any], mail: dict[str, Any]
) -> list[DeliveryEvent]:
    new = section.get("newTopicPreferences")
    new = new if isinstance(new, dict) else {}
    topics = new.get("topicSubscriptionStatus")
    opted_out = isinstance(topics, list) and any(
        isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut" for t in topics
    )
    if not (new.get("unsubscribeAll") is True or opted_out):
        return []
    destinations = _mail(mail).destinations
    recipient = destinations[0] if destinations else None
    return [_make("unsubscribed", source, section, mail, recipient)]


_HANDLERS: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], list[DeliveryEvent]]] = {
    "Delivery": _delivery,
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Open": _engagement,
    "Click": _engagement,
    "Reject": _reject,
    "DeliveryDelay": _delay,
    "Subscription": _subscription,
}
