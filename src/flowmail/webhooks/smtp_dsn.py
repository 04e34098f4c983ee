"""Plain SMTP: RFC 3464 delivery status notifications and RFC 5965 (ARF) complaint reports.

The body is the raw report as received by the mail server that handles bounces and
feedback-loop mail, posted as it is (``Content-Type: message/rfc822``) by a pipe, a
sieve script or an MTA hook.

Verification: such a forwarder cannot sign, so the request carries a shared secret, either
in the ``X-Flowmail-Webhook-Secret`` header (preferred: it does not end up in access
logs) or as ``?token=`` in the URL. Either is compared in constant time; the header wins
when both are present. There is no timestamp; replays are harmless because event ids are
deterministic.

``multipart/report; report-type=delivery-status`` gives one event per recipient block:
``Action: failed`` -> bounced (hard or soft by ``Status``, then the SMTP code in
``Diagnostic-Code``: :func:`classify_bounce`), ``delayed`` -> deferred, ``delivered`` ->
delivered; ``relayed`` and ``expanded`` are skipped. ``report-type=feedback-report`` with
``Feedback-Type`` abuse, fraud, virus or other -> complained (not-spam and auth-failure
are skipped); the recipient is ``Original-Rcpt-To``, else ``Removal-Recipient``, else none
(many feedback loops redact it: the original message's headers still identify our
message). Our message key and the Message-ID come from the original message's headers,
the third part (``text/rfc822-headers`` or ``message/rfc822``). An event's time is the
recipient's ``Last-Attempt-Date``, else the report's ``Date``, else ``Arrival-Date``; an
event id is the report's Message-ID (or a hash of the report) with the action and
recipient.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser, HeaderParser
from typing import Any

from flowmail.webhooks import _common as c
from flowmail.webhooks.model import (
    HEADER_MESSAGE,
    MAX_EVENTS,
    BounceType,
    DeliveryEvent,
    Kind,
    MalformedPayload,
    VerificationError,
    WebhookRequest,
    classify_bounce,
)

NAME = "smtp-dsn"
MAX_PARTS = 64
_COMPLAINTS = {"abuse", "fraud", "virus", "other"}
_ACTIONS: dict[str, Kind] = {"failed": "bounced", "delayed": "deferred", "delivered": "delivered"}
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_FEEDBACK_TYPES = ("message/feedback-report",)
_ORIGINAL_TYPES = (
    "text/rfc822-headers",
    "message/rfc822",
    "message/global",
    "message/global-headers",
)


@dataclass(frozen=True)
class Config:
    secret: str
    header: str = "X-Flowmail-Webhook-Secret"
    query_param: str = "token"

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the smtp-dsn webhook secret must be at least 16 characters")


def verify(request: WebhookRequest, config: Config, now: datetime) -> str | None:
    """Check the shared secret from the header (or the URL token), in constant time."""
    c.require_aware(now)
    given = request.headers.get(config.header)
    if given is None:
        given = request.query.get(config.query_param)
    if not given:
        raise VerificationError("missing webhook secret")
    if not c.same_secret(given.strip(), config.secret):
        raise VerificationError("wrong webhook secret")
    return None


# --- parsing ---------------------------------------------------------------------------


def _clean(value: Any) -> str | None:
    return c.text(" ".join(str(value).split())) if value is not None else None


def _fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in block.items():
        cleaned = _clean(value)
        if cleaned is not None:
            fields.setdefault(name.lower(), cleaned)
    return fields


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part (per-message first)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [_fields(b) for b in payload[: MAX_EVENTS + 1] if isinstance(b, Message)]
    blocks = []
    for chunk in _text_of(part).replace("\r\n", "\n").split("\n\n")[: MAX_EVENTS + 1]:
        if chunk.strip():
            blocks.append(_fields(HeaderParser().parsestr(chunk.strip() + "\n")))
    return blocks


def _header_block(part: Message | None) -> dict[str, str]:
    """The fields of a part holding one block of headers: ``text/rfc822-headers``, or a
    ``message/*`` part the parser has already turned into a message of its own."""
    if part is None:
        return {}
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _fields(payload[0])
    return _fields(HeaderParser().parsestr(_text_of(part)))


def _parts(message: Message) -> Iterator[Message]:
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            return
        yield part


def _find(message: Message, types: tuple[str, ...]) -> Message | None:
    return next((p for p in _parts(message) if p.get_content_type() in types), None)


def _date(*values: str | None) -> datetime | None:
    for value in values:
        if not value:
            continue
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return None


def _address(value: str | None) -> str | None:
    """``rfc822; user@example.com`` or ``<user@example.com>`` -> ``user@example.com``."""
    if value is None:
        return None
    _, _, address = value.rpartition(";")
    return c.strip_brackets(address)


# --- normalize -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Report:
    report_id: str
    date: str | None
    message_key: str | None
    rfc_message_id: str | None
    original: dict[str, str]


def normalize(body: bytes) -> list[DeliveryEvent]:
    if not isinstance(body, bytes) or not body.strip():
        raise MalformedPayload("the body must be a raw email report")
    message = BytesParser().parsebytes(body)
    if message.get_content_type() != "multipart/report":
        raise MalformedPayload("not a multipart/report message")
    original = _header_block(_find(message, _ORIGINAL_TYPES))
    report_id = c.strip_brackets(_clean(message.get("Message-ID")))
    report = _Report(
        report_id=report_id or c.content_id(NAME, body.decode("latin-1")),
        date=_clean(message.get("Date")),
        message_key=original.get(HEADER_MESSAGE.lower()),
        rfc_message_id=c.strip_brackets(original.get("message-id")),
        original=original,
    )
    status = _find(message, _STATUS_TYPES)
    if status is not None:
        return _delivery_status(report, _blocks(status))
    feedback = _find(message, _FEEDBACK_TYPES)
    if feedback is not None:
        return _feedback(report, _header_block(feedback))
    raise MalformedPayload("neither a delivery-status nor a feedback report")


def _delivery_status(report: _Report, blocks: list[dict[str, str]]) -> list[DeliveryEvent]:
    if not blocks:
        raise MalformedPayload("the delivery-status part is empty")
    per_message, recipients = blocks[0], blocks[1:]
    if "final-recipient" in per_message or "action" in per_message:
        per_message, recipients = {}, blocks  # some MTAs omit the per-message block
    events = []
    for fields in recipients:
        action = fields.get("action", "").lower()
        recipient = _address(fields.get("final-recipient") or fields.get("original-recipient"))
        kind = _ACTIONS.get(action)
        if kind is None:
            continue
        diagnostic = fields.get("diagnostic-code")
        reason = (
            diagnostic.partition(";")[2].strip() if diagnostic and ";" in diagnostic else diagnostic
        )
        bounce_type: BounceType | None = None
        if kind == "bounced":
            bounce_type = classify_bounce(reason, fields.get("status"))
        at = _date(fields.get("last-attempt-date"), report.date, per_message.get("arrival-date"))
        events.append(
            _event(
                report,
                kind,
                recipient,
                at,
                bounce_type,
                reason,
                f"{action}:{recipient}",
                {"per_message": per_message, "per_recipient": fields},
            )
        )
    return events


def _feedback(report: _Report, fields: dict[str, str]) -> list[DeliveryEvent]:
    feedback_type = fields.get("feedback-type", "").lower()
    if feedback_type not in _COMPLAINTS:
        return []
    recipient = _address(fields.get("original-rcpt-to") or fields.get("removal-recipient"))
    at = _date(fields.get("arrival-date"), fields.get("received-date"), report.date)
    event = _event(
        report,
        "complained",
        recipient,
        at,
        None,
        feedback_type,
        f"arf:{recipient}",
        {"feedback_report": fields},
        user_agent=fields.get("user-agent"),
    )
    return [event]


def _event(
    report: _Report,
    kind: Kind,
    recipient: str | None,
    at: datetime | None,
    bounce_type: BounceType | None,
    reason: str | None,
    suffix: str,
    detail: dict[str, Any],
    user_agent: str | None = None,
) -> DeliveryEvent:
    if at is None:
        raise MalformedPayload("the report carries no date")
    return DeliveryEvent(
        provider=NAME,
        provider_event_id=f"{report.report_id}:{suffix}",
        kind=kind,
        at=at,
        recipient=recipient,
        message_id=report.message_key,
        rfc_message_id=report.rfc_message_id,
        bounce_type=bounce_type,
        user_agent=user_agent,
        reason=reason,
        detail={**detail, "original_headers": report.original},
    )
