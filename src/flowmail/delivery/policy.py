"""The send-time policy: may this email go now, later, or never? Pure; ``now`` is given.

Checks run in this order, and the first that objects decides:

1. an address to send to at all;
2. the suppression list (``unsubscribed``, ``hard_bounce``, ``complaint``, ``manual``) and
   the contact's consent for the email's topic -> **skipped**;
3. the global frequency cap (at most ``max_daily_sends`` capped emails per contact in a
   rolling 24 h, across all workflows) -> **deferred** until a slot frees, or skipped when
   the step says ``on_capped: skip``;
4. quiet hours in the contact's zone -> **deferred** to the end of the quiet window.

Topic ``transactional`` is exempt from the cap, from quiet hours, from topic consent and
from an ``unsubscribed`` suppression (a receipt still reaches someone who left the
newsletter); a hard bounce, a complaint or a manual suppression stops every email.

When the cap bites, the contact's due emails compete by workflow priority (highest
first), then by due time: :func:`decide_all` hands the free slots out in that order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from flowmail.engine.timing import next_time_of_day, zone

TRANSACTIONAL = "transactional"
UNSUBSCRIBED = "unsubscribed"
HARD_BOUNCE = "hard_bounce"
COMPLAINT = "complaint"
MANUAL = "manual"
SUPPRESSION_REASONS = (UNSUBSCRIBED, HARD_BOUNCE, COMPLAINT, MANUAL)
WINDOW = timedelta(hours=24)
_EARLIEST = datetime.min.replace(tzinfo=UTC)

# consent statuses that stop an email of their topic (no row means "not opted out")
_NO_CONSENT = ("unsubscribed", "pending")
_QUIET = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*-\s*(\d{1,2})(?::(\d{2}))?\s*$")


# --- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """Local hours without capped email, like 21:00-08:00 (may wrap past midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``"21-8"`` or ``"21:30-07:00"``; None for an empty string. ValueError otherwise."""
        if not text.strip():
            return None
        found = _QUIET.match(text)
        if found is None:
            raise ValueError(f"quiet hours {text!r}: write them like 21-8 or 21:30-07:00")
        h1, m1, h2, m2 = found.groups()
        try:
            start, end = time(int(h1), int(m1 or 0)), time(int(h2), int(m2 or 0))
        except ValueError:
            raise ValueError(f"quiet hours {text!r}: hours 0-23, minutes 0-59") from None
        if start == end:
            raise ValueError(f"quiet hours {text!r}: start and end are the same")
        return cls(start, end)

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class PolicyConfig:
    max_daily_sends: int = 5  # 0: no cap
    quiet_hours: QuietHours | None = None
    default_timezone: str = "UTC"
    window: timedelta = WINDOW


# --- inputs and verdicts ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What the policy needs to know about one queued message."""

    key: str
    to: str | None
    topic: str
    priority: int = 0
    on_capped: str = "defer"  # or "skip"
    due: datetime | None = None  # when it became due: ties at one priority go oldest first


@dataclass(frozen=True)
class Recipient:
    """What the policy needs to know about the contact the message is for."""

    timezone: str | None = None
    suppression: str | None = None  # the reason the address is suppressed, if it is
    consents: Mapping[str, str] = field(default_factory=dict)  # topic -> status
    recent: tuple[datetime, ...] = ()  # hand-off times of capped emails, recent ones at least


@dataclass(frozen=True)
class Send:
    pass


@dataclass(frozen=True)
class Skip:
    code: str  # no_address, suppressed, no_consent, capped
    reason: str


@dataclass(frozen=True)
class Defer:
    until: datetime
    code: str  # capped, quiet_hours
    reason: str


Verdict = Send | Skip | Defer
SEND = Send()


def capped(topic: str) -> bool:
    """Whether emails of ``topic`` count against the cap (and respect quiet hours)."""
    return topic != TRANSACTIONAL


# --- the checks -------------------------------------------------------------------------


def decide(
    candidate: Candidate, recipient: Recipient, config: PolicyConfig, now: datetime
) -> Verdict:
    """The verdict for one message, given everything already sent to its contact."""
    if not candidate.to:
        return Skip("no_address", "the contact has no email address")
    refusal = _refused(candidate, recipient)
    if refusal is not None:
        return refusal
    if not capped(candidate.topic):
        return SEND
    slot = _cap_frees_at(recipient.recent, config, now)
    if slot is not None:
        reason = f"frequency cap: {config.max_daily_sends} emails in {_span(config.window)}"
        if candidate.on_capped == "skip":
            return Skip("capped", reason)
        return Defer(_after_quiet(slot, recipient, config), "capped", reason)
    quiet = config.quiet_hours
    if quiet is not None:
        tz = zone(recipient.timezone, config.default_timezone)
        if quiet.contains(now.astimezone(tz).time()):
            until = next_time_of_day(now, quiet.end, None, tz)
            return Defer(until, "quiet_hours", f"quiet hours {quiet} in {tz.key}")
    return SEND


def decide_all(
    candidates: Iterable[Candidate], recipient: Recipient, config: PolicyConfig, now: datetime
) -> list[tuple[Candidate, Verdict]]:
    """Verdicts for one contact's due messages: by priority, then due time, each send
    taking a slot under the cap before the next message is looked at."""
    recent = list(recipient.recent)
    verdicts: list[tuple[Candidate, Verdict]] = []
    for candidate in sorted(candidates, key=_order):
        verdict = decide(candidate, _with_recent(recipient, recent), config, now)
        if isinstance(verdict, Send) and capped(candidate.topic):
            recent.append(now)
        verdicts.append((candidate, verdict))
    return verdicts


def _order(candidate: Candidate) -> tuple[int, datetime, str]:
    return (-candidate.priority, candidate.due or _EARLIEST, candidate.key)


def _with_recent(recipient: Recipient, recent: Sequence[datetime]) -> Recipient:
    return Recipient(recipient.timezone, recipient.suppression, recipient.consents, tuple(recent))


def _refused(candidate: Candidate, recipient: Recipient) -> Skip | None:
    reason = recipient.suppression
    if reason is not None and not (reason == UNSUBSCRIBED and not capped(candidate.topic)):
        return Skip("suppressed", f"the address is suppressed: {reason}")
    if not capped(candidate.topic):
        return None
    status = recipient.consents.get(candidate.topic)
    if status in _NO_CONSENT:
        return Skip("no_consent", f"no consent for topic {candidate.topic!r}: {status}")
    return None


def _cap_frees_at(
    recent: Sequence[datetime], config: PolicyConfig, now: datetime
) -> datetime | None:
    """None if under the cap now; else when the oldest counted send leaves the window."""
    cap = config.max_daily_sends
    if cap <= 0:
        return None
    inside = sorted(at for at in recent if now - config.window < at <= now)
    if len(inside) < cap:
        return None
    return inside[len(inside) - cap] + config.window


def _after_quiet(moment: datetime, recipient: Recipient, config: PolicyConfig) -> datetime:
    quiet = config.quiet_hours
    if quiet is None:
        return moment
    tz = zone(recipient.timezone, config.default_timezone)
    if quiet.contains(moment.astimezone(tz).time()):
        return next_time_of_day(moment, quiet.end, None, tz)
    return moment


def _span(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} h"
