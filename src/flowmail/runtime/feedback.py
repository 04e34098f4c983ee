"""What providers and recipients report about sent email, applied.

- :func:`apply_events` takes normalized provider delivery events: each is matched to its
  message (by our message key, else the Message-ID, else the provider's id; the message
  names the workspace and contact), recorded once (deduplicated on the provider's event
  id), moves the message's status (delivered, bounced, complained), suppresses the
  address for a hard bounce or a complaint, records a topic opt-out for an unsubscribe,
  and feeds an ``email_<kind>`` event into the inbox. Events about messages flowmail does
  not know are counted as ignored.
- :func:`record_engagement` does the same for our own open pixel and click redirects
  (every hit is recorded, for totals; the engine hears of the first of each kind).
- An open that looks machine-made (:func:`flowmail.analytics.opens.automated_open`: the
  provider says so, a prefetcher's or scanner's user agent, or sooner than
  ``automated_open`` after sending) is recorded with ``detail.automated`` and counted
  apart, and is not fed to the engine: it neither satisfies ``opened:`` conditions nor
  adds to engagement scores. It still proves the delivery.
- :func:`unsubscribe` records a recipient leaving topics, or every email.
- :func:`check_complaints` computes a workflow's complaint rate after new complaints: an
  alert at ``alert_rate``, and at ``pause_rate`` the workflow is paused (drain) with the
  reason recorded; both only once ``min_volume`` emails went out in the window.

Events fed to the engine carry ``message_id`` (our message key), ``workflow`` and
``step``, so ``opened:``/``clicked:`` conditions see them; their ids are deterministic
(one ``email_opened`` per message, ...), so replays and retries never feed one twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowmail.analytics.opens import automated_open
from flowmail.engine.catalog import Mode
from flowmail.engine.state import stable_hash
from flowmail.runtime.service import pause
from flowmail.settings import Settings
from flowmail.store import feedback as sql
from flowmail.store.feedback import Change, MessageRef, OptOut, Recorded
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore
from flowmail.webhooks import DeliveryEvent

log = logging.getLogger("flowmail.feedback")

SENT = ("sending", "sent", "unknown")  # a provider has (or may have) the message
FED = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
_STATUS: dict[str, tuple[str, tuple[str, ...]]] = {
    "delivered": ("delivered", SENT),
    "opened": ("delivered", SENT),  # an open or a click proves the delivery
    "clicked": ("delivered", SENT),
    "bounced": ("bounced", (*SENT, "delivered")),
    "complained": ("complained", (*SENT, "delivered")),
}
_SUPPRESSION = {"complained": "complaint", "bounced": "hard_bounce"}
MAX_TEXT = 1000  # characters of a remote server's words kept
AUTOMATED_OPEN = timedelta(seconds=2)  # opens sooner after sending are automated


@dataclass(frozen=True)
class FeedbackOptions:
    alert_rate: float = 0.001
    pause_rate: float = 0.003
    min_volume: int = 1000
    window: timedelta = timedelta(days=7)
    automated_open: timedelta = AUTOMATED_OPEN

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackOptions:
        return cls(
            alert_rate=settings.complaint_alert_rate,
            pause_rate=settings.complaint_pause_rate,
            min_volume=settings.complaint_min_volume,
            window=timedelta(days=settings.complaint_window_days),
            automated_open=timedelta(seconds=settings.automated_open_seconds),
        )


@dataclass(frozen=True)
class ComplaintRate:
    """A workflow's complaint rate over the window, and what was done about it."""

    workspace_id: str
    workflow_id: str
    sent: int
    complained: int
    level: str  # ok, alert, pause
    paused: bool  # this check paused the workflow
    message: str

    @property
    def rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0


@dataclass
class Applied:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0  # about no message of ours (or an ambiguous one)
    complaints: list[ComplaintRate] = field(default_factory=list)


# --- provider events -------------------------------------------------------------------


def resolve(store: SqlStore, event: DeliveryEvent) -> MessageRef | None:
    """The message a provider event is about, or None if unknown or ambiguous."""
    found = sql.find_messages(
        store,
        key=event.message_id,
        rfc_message_id=event.rfc_message_id,
        provider_id=event.provider_message_id,
    )
    if len(found) > 1 and event.recipient:
        wanted = sql.normal_address(event.recipient)
        found = [m for m in found if m.to_address and sql.normal_address(m.to_address) == wanted]
    return found[0] if len(found) == 1 else None


def apply_events(
    store: SqlStore,
    events: Sequence[DeliveryEvent],
    now: datetime,
    options: FeedbackOptions | None = None,
) -> Applied:
    """Record provider events against their messages, and everything that follows."""
    options = options or FeedbackOptions()
    applied = Applied(received=len(events))
    changes: list[Change] = []
    cache: dict[tuple[str | None, ...], MessageRef | None] = {}
    for event in events:
        ref_key = (
            event.message_id,
            event.rfc_message_id,
            event.provider_message_id,
            event.recipient,
        )
        if ref_key not in cache:
            cache[ref_key] = resolve(store, event)
        message = cache[ref_key]
        if message is None:
            applied.ignored += 1
            log.info("%s event %s about no known message: ignored", event.provider, event.kind)
            continue
        changes.append(provider_change(message, event, options.automated_open))
    results = sql.record_changes(store, changes, now) if changes else []
    complained: set[tuple[str, str]] = set()
    for change, result in zip(changes, results, strict=True):
        if result.new:
            applied.applied += 1
            if change.kind == "complained":
                complained.add((change.message.workspace_id, change.message.workflow_id))
        else:
            applied.duplicates += 1
    for workspace_id, workflow_id in sorted(complained):
        applied.complaints.append(check_complaints(store, workspace_id, workflow_id, now, options))
    return applied


def provider_change(
    message: MessageRef, event: DeliveryEvent, automated_within: timedelta = AUTOMATED_OPEN
) -> Change:
    """What one provider event means for its message (pure)."""
    kind = event.kind
    status, status_from = _STATUS.get(kind, (None, ()))
    source = f"webhook:{event.provider}"
    reason = _clip(event.reason)
    suppress = None
    if kind == "complained" or (kind == "bounced" and event.bounce_type == "hard"):
        address = event.recipient or message.to_address
        if address:
            suppress = (address, _SUPPRESSION[kind], source)
    detail = {
        "provider": event.provider,
        "recipient": event.recipient,
        "bounce_type": event.bounce_type,
        "reason": reason,
        "url": event.url,
        "user_agent": _clip(event.user_agent),
        "provider_message_id": event.provider_message_id,
    }
    extra: dict[str, Any] = {"provider": event.provider}
    if kind == "bounced":
        extra["bounce_type"] = event.bounce_type
        reason = f"{event.bounce_type} bounce" + (f": {reason}" if reason else "")
    elif kind == "complained":
        reason = "the recipient reported it as spam"
    if event.url:
        extra["url"] = event.url
    suffix = f":{event.bounce_type}" if kind == "bounced" else ""
    automated = None
    if kind == "opened":
        automated = automated_open(
            machine=event.machine,
            user_agent=event.user_agent,
            at=event.at,
            sent_at=message.sent_at,
            within=automated_within,
        )
    fed = kind in FED and automated is None
    return Change(
        message=message,
        kind=kind,
        at=event.at,
        detail=_marked({k: v for k, v in detail.items() if v is not None}, automated),
        provider_event_id=_bounded(f"{event.provider}:{event.provider_event_id}"),
        status=status,
        status_from=status_from,
        reason=reason if status in ("bounced", "complained") else None,
        suppress=suppress,
        consent=(message.topic, "unsubscribed", source) if kind == "unsubscribed" else None,
        inbox=engine_event(message, kind, event.at, extra, suffix) if fed else None,
    )


def _marked(detail: dict[str, Any], automated: str | None) -> dict[str, Any]:
    """An open's detail, marked ``automated`` (with the reason) if it looks machine-made."""
    if automated is None:
        return detail
    return {**detail, "automated": True, "automated_by": automated}


def engine_event(
    message: MessageRef, kind: str, at: datetime, extra: dict[str, Any], suffix: str = ""
) -> InboundEvent:
    """The ``email_<kind>`` event for the engine: one per message and kind (and suffix)."""
    return InboundEvent(
        contact_id=message.contact_id,
        name=f"email_{kind}",
        at=at,
        properties={
            "message_id": message.id,
            "workflow": message.workflow_id,
            "step": message.step_id,
            "topic": message.topic,
            **extra,
        },
        id=f"fm:email_{kind}:{message.id}{suffix}",
        workspace_id=message.workspace_id,
    )


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


def _bounded(event_id: str, most: int = 255) -> str:
    """A provider event id that fits its column (a long one by its hash)."""
    if len(event_id) <= most:
        return event_id
    return f"{event_id[:100]}:sha256:{stable_hash(event_id)}"


# --- our own tracking: the open pixel and click redirects ------------------------------


def record_engagement(
    store: SqlStore,
    message: MessageRef,
    kind: str,
    now: datetime,
    *,
    url: str | None = None,
    user_agent: str | None = None,
    automated_within: timedelta = AUTOMATED_OPEN,
) -> Recorded:
    """Record an open (pixel) or a click (redirect); every hit counts, the engine hears
    of the first of each kind (of an open, the first that is not automated)."""
    if kind not in ("opened", "clicked"):
        raise ValueError(f"not an engagement: {kind!r}")
    source = "pixel" if kind == "opened" else "redirect"
    detail = {"source": source, "url": url, "user_agent": _clip(user_agent)}
    extra: dict[str, Any] = {"source": source}
    if url is not None:
        extra["url"] = url
    status, status_from = _STATUS[kind]
    automated = None
    if kind == "opened":
        automated = automated_open(
            machine=None,
            user_agent=user_agent,
            at=now,
            sent_at=message.sent_at,
            within=automated_within,
        )
    change = Change(
        message=message,
        kind=kind,
        at=now,
        detail=_marked({k: v for k, v in detail.items() if v is not None}, automated),
        status=status,
        status_from=status_from,
        inbox=engine_event(message, kind, now, extra) if automated is None else None,
    )
    return sql.record_changes(store, [change], now)[0]


# --- unsubscribing ---------------------------------------------------------------------


def unsubscribe(
    store: SqlStore,
    workspace_id: str,
    contact_id: str,
    topics: Sequence[str],
    now: datetime,
    *,
    everything: bool = False,
    address: str | None = None,
    message: MessageRef | None = None,
    source: str = "unsubscribe link",
) -> list[str]:
    """A recipient leaves ``topics`` (consent rows), or with ``everything`` every email
    (a suppression of ``address``, reason ``unsubscribed``). Returns what changed; a
    repeat changes nothing and feeds nothing."""
    topics = sorted(set(topics))
    properties: dict[str, Any] = {
        "topics": topics,
        "scope": "all" if everything else "topic",
        "source": source,
    }
    if message is not None:
        properties.update(message_id=message.id, workflow=message.workflow_id, step=message.step_id)
    event_id = stable_hash("unsubscribe", workspace_id, contact_id, topics, everything, now)
    opt_out = OptOut(
        workspace_id=workspace_id,
        contact_id=contact_id,
        topics=tuple(topics),
        source=source,
        address=address if everything else None,
        message=message,
        inbox=InboundEvent(
            contact_id=contact_id,
            name="email_unsubscribed",
            at=now,
            properties=properties,
            id=f"fm:email_unsubscribed:{event_id}",
            workspace_id=workspace_id,
        ),
        detail={"scope": properties["scope"]},
    )
    return sql.record_opt_out(store, opt_out, now)


# --- complaint rates -------------------------------------------------------------------


def check_complaints(
    store: SqlStore,
    workspace_id: str,
    workflow_id: str,
    now: datetime,
    options: FeedbackOptions,
) -> ComplaintRate:
    """The workflow's complaint rate over the window; alert, or pause it (drain)."""
    sent, complained = sql.complaint_counts(store, workspace_id, workflow_id, now - options.window)
    days = options.window / timedelta(days=1)
    rate = complained / sent if sent else 0.0
    summary = (
        f"complaint rate of workflow {workflow_id!r} is {rate:.2%} "
        f"({complained} of {sent:,} emails in {days:g} days)"
    )
    if sent < options.min_volume:
        return ComplaintRate(
            workspace_id,
            workflow_id,
            sent,
            complained,
            "ok",
            False,
            f"{summary}; below the minimum volume of {options.min_volume:,}",
        )
    if rate >= options.pause_rate:
        reason = f"{summary}: at or above the pause line of {options.pause_rate:.2%}"
        paused = _pause_if_active(store, workspace_id, workflow_id, reason, now)
        log.error("%s%s", reason, "; workflow paused (drain)" if paused else "")
        return ComplaintRate(workspace_id, workflow_id, sent, complained, "pause", paused, reason)
    if rate >= options.alert_rate:
        message = f"{summary}: at or above the alert line of {options.alert_rate:.2%}"
        log.warning("%s", message)
        return ComplaintRate(workspace_id, workflow_id, sent, complained, "alert", False, message)
    return ComplaintRate(workspace_id, workflow_id, sent, complained, "ok", False, summary)


def _pause_if_active(
    store: SqlStore, workspace_id: str, workflow_id: str, reason: str, now: datetime
) -> bool:
    rows = [r for r in store.workflow_rows(workspace_id) if r.id == workflow_id]
    if not rows or rows[0].mode != str(Mode.ACTIVE):
        return False
    return pause(store, workspace_id, workflow_id, Mode.DRAIN, now, reason)
