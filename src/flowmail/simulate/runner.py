"""The journey simulator: workflows over virtual time, in memory, deterministic.

The same engine as production, driven by a priority queue of timed inputs instead
of a database. At one instant: events first (in the order given), then enrolments
asked by ``enroll`` steps, then run timers, then date and schedule triggers, then the
emails due (most important workflow first).

Emails go through the same send-time policy as the real sender
(:mod:`flowmail.delivery.policy`): suppressions, topic consent, the frequency cap and
quiet hours. A deferred email is sent at the time it was deferred to; a skipped one is
not in ``emails`` but is in the timeline (``email_skipped``) and the warnings.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flowmail.delivery import policy as rules
from flowmail.delivery.addresses import clean_email
from flowmail.engine.catalog import StaticCatalog, Version
from flowmail.engine.conditions import PredicateFn
from flowmail.engine.decisions import (
    CallWebhook,
    Decision,
    EnrollContact,
    Record,
    SaveRun,
    SendEmail,
    UpdateContact,
    Warn,
)
from flowmail.engine.journeys import Context, on_enroll, on_event, on_time_trigger, on_wake
from flowmail.engine.predicates import PREDICATES
from flowmail.engine.state import IDENTIFY, Contact, Event, ListHistory, Run, stable_hash
from flowmail.engine.timing import utc
from flowmail.engine.triggers import date_fire, next_tick
from flowmail.language.models import DateTrigger, ScheduleTrigger, Workflow

DEFAULT_HORIZON = timedelta(days=90)

# queue priorities at one instant
_EVENT, _ENROLL, _WAKE, _DATE, _TICK, _SEND = range(6)


@dataclass(frozen=True)
class SimulatedEmail:
    at: datetime
    contact: str
    to: str | None
    workflow: str
    step: str
    subject: str
    template: str | None = None
    key: str = ""


@dataclass
class SimulationResult:
    emails: list[SimulatedEmail]
    runs: list[Run]
    contacts: dict[str, Contact]
    timeline: list[Record]
    warnings: list[Warn]
    webhooks: list[CallWebhook]

    def emails_to(self, contact: str) -> list[SimulatedEmail]:
        return [e for e in self.emails if e.contact == contact]

    def runs_of(self, contact: str, workflow: str | None = None) -> list[Run]:
        return [
            r
            for r in self.runs
            if r.contact_id == contact and (workflow is None or r.workflow_id == workflow)
        ]

    def to_json(self) -> dict[str, Any]:
        """Exactly ``{"emails": [...], "runs": [...], "contacts": {...}}``."""
        return {
            "emails": [
                {
                    "at": iso(e.at),
                    "contact": e.contact,
                    "to": e.to,
                    "workflow": e.workflow,
                    "step": e.step,
                    "subject": e.subject,
                }
                for e in self.emails
            ],
            "runs": [
                {
                    "contact": r.contact_id,
                    "workflow": r.workflow_id,
                    "status": str(r.status),
                    "path": list(r.path),
                }
                for r in self.runs
            ],
            "contacts": {cid: dict(c.attributes) for cid, c in self.contacts.items()},
        }


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, seconds unless there are fractions."""
    text = utc(moment).isoformat()
    return text.removesuffix("+00:00") + "Z"


@dataclass(frozen=True)
class _Pending:
    """An email waiting for the send-time policy."""

    decision: SendEmail
    subject: str
    due: datetime  # when it was first due: ties at one priority go oldest first


def _as_of(entries: list[tuple[datetime, str]], now: datetime) -> str | None:
    """The value in force at ``now`` of a time-ordered list of (from, value)."""
    value = None
    for at, entry in entries:
        if at > now:
            break
        value = entry
    return value


@dataclass(order=True)
class _Item:
    at: datetime
    priority: int
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)


class Simulation:
    """Drive workflows with contacts and events over virtual time.

    >>> sim = Simulation([workflow], start=datetime(2025, 9, 1, 9, tzinfo=UTC))
    >>> sim.add_contact("u1", email="ana@example.com", attributes={"first_name": "Ana"})
    >>> sim.track("u1", "user_registered", at=datetime(2025, 9, 1, 10, tzinfo=UTC))
    >>> result = sim.run(until=datetime(2025, 9, 10, tzinfo=UTC))
    """

    def __init__(
        self,
        workflows: Iterable[Workflow],
        *,
        start: datetime,
        default_timezone: str = "UTC",
        predicates: Mapping[str, PredicateFn] | None = None,
        policy: rules.PolicyConfig | None = None,
        winners: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.workflows = list(workflows)
        self.catalog = StaticCatalog(self.workflows, winners)
        self.start = utc(start)
        self.now = self.start
        self.default_timezone = default_timezone
        self.predicates = {**PREDICATES, **(predicates or {})}
        self.contacts: dict[str, Contact] = {}
        self.histories: dict[str, ListHistory] = {}
        self.runs: dict[str, Run] = {}
        self._order: list[str] = []
        self._queue: list[_Item] = []
        self._seq = itertools.count()
        self._date_fires: dict[tuple[str, str], datetime] = {}
        self._zones: dict[str, set[str]] = {}  # schedule workflow -> zones with a tick queued
        self.emails: list[SimulatedEmail] = []
        self.timeline: list[Record] = []
        self.warnings: list[Warn] = []
        self.webhooks: list[CallWebhook] = []
        self.policy = policy or rules.PolicyConfig(default_timezone=default_timezone)
        self._suppressions: dict[str, list[tuple[datetime, str]]] = {}
        self._consents: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        self._sent: dict[str, list[datetime]] = {}  # contact -> capped send times
        for workflow in self.workflows:
            spec = workflow.trigger
            at = spec.schedule.at if isinstance(spec, ScheduleTrigger) else None
            if at is not None and at >= self.start:
                self._push(at, _TICK, "tick", (workflow.id, None))

    # --- input -----------------------------------------------------------------------

    def add_contact(
        self,
        contact_id: str,
        *,
        email: str | None = None,
        timezone: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Contact:
        if email is not None:
            checked, warning = clean_email({"email": email}, None)
            email = checked.get("email")
            if warning is not None:
                self.warnings.append(Warn(self.now, f"contact {contact_id!r}: {warning}"))
        contact = Contact(contact_id, email, timezone, dict(attributes or {}))
        self.contacts[contact_id] = contact
        self.histories.setdefault(contact_id, ListHistory())
        self._contact_changed(contact)
        return contact

    def track(
        self,
        contact_id: str,
        name: str,
        *,
        at: datetime,
        properties: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> None:
        event_id = event_id or stable_hash("sim", contact_id, name, at.isoformat(), next(self._seq))
        self._push(
            at, _EVENT, "event", Event(contact_id, name, utc(at), dict(properties or {}), event_id)
        )

    def identify(self, contact_id: str, traits: Mapping[str, Any], *, at: datetime) -> None:
        event_id = stable_hash("sim", contact_id, IDENTIFY, at.isoformat(), next(self._seq))
        self._push(
            at, _EVENT, "event", Event(contact_id, IDENTIFY, utc(at), {}, event_id, dict(traits))
        )

    def suppress(
        self, email: str, reason: str = rules.MANUAL, *, at: datetime | None = None
    ) -> None:
        """Put an address on the suppression list from ``at`` (default: the start)."""
        entries = self._suppressions.setdefault(email.lower(), [])
        entries.append((utc(at) if at else self.start, reason))
        entries.sort()

    def consent(
        self, contact_id: str, topic: str, status: str, *, at: datetime | None = None
    ) -> None:
        """Set a contact's consent for a topic from ``at`` (default: the start)."""
        entries = self._consents.setdefault((contact_id, topic), [])
        entries.append((utc(at) if at else self.start, status))
        entries.sort()

    # --- the loop --------------------------------------------------------------------

    def run(self, until: datetime | None = None) -> SimulationResult:
        """Process everything due up to ``until`` (default: 90 days after the last input)."""
        horizon = utc(until) if until else self._default_horizon()
        while self._queue and self._queue[0].at <= horizon:
            item = heapq.heappop(self._queue)
            self.now = max(self.now, item.at)
            self._handle(item)
        self.now = max(self.now, horizon)
        runs = sorted(self.runs.values(), key=lambda r: (r.started_at, self._order.index(r.id)))
        return SimulationResult(
            sorted(self.emails, key=lambda e: (e.at, e.contact, e.workflow)),  # stable
            runs,
            dict(self.contacts),
            list(self.timeline),
            list(self.warnings),
            list(self.webhooks),
        )

    def _default_horizon(self) -> datetime:
        inputs = [item.at for item in self._queue if item.kind == "event"]
        return max([self.start, *inputs]) + DEFAULT_HORIZON

    def _handle(self, item: _Item) -> None:
        if item.kind == "send":
            self._send_due(item)
        elif item.kind == "event":
            event: Event = item.payload
            contact = self._contact(event.contact_id)
            if event.traits and "email" in event.traits:
                event = replace(event, traits=self._checked(contact, event.traits))
            history = self.histories[contact.id]
            history.append(event)
            self._apply(on_event(contact, self._runs(contact.id), event, self._ctx(history)))
        elif item.kind == "enroll":
            request: EnrollContact = item.payload
            contact = self._contact(request.contact_id)
            ctx = self._ctx(self.histories[contact.id])
            runs = self._runs(contact.id)
            self._apply(on_enroll(contact, runs, request.workflow_id, request.trigger, ctx))
        elif item.kind == "wake":
            run = self.runs.get(item.payload)
            if run is not None and run.wake_at == item.at:
                contact = self.contacts[run.contact_id]
                self._apply(on_wake(contact, run, self._ctx(self.histories[contact.id])))
        elif item.kind == "date":
            workflow_id, contact_id = item.payload
            if self._date_fires.get((workflow_id, contact_id)) == item.at:
                self._fire(workflow_id, self.contacts[contact_id], item.at)
        else:
            self._tick(item)

    def _tick(self, item: _Item) -> None:
        workflow_id, tz = item.payload
        workflow = self.catalog.current(workflow_id)
        assert workflow is not None
        for contact in list(self.contacts.values()):
            if tz is None or (contact.timezone or self.default_timezone) == tz:
                self._fire(workflow_id, contact, item.at)
        if tz is not None:
            following = next_tick(workflow.workflow, tz, item.at)
            if following is not None:
                self._push(following, _TICK, "tick", (workflow_id, tz))

    def _fire(self, workflow_id: str, contact: Contact, at: datetime) -> None:
        version = self.catalog.current(workflow_id)
        assert isinstance(version, Version)
        ctx = self._ctx(self.histories[contact.id])
        self._apply(on_time_trigger(contact, self._runs(contact.id), version, at, ctx))

    # --- carrying out decisions -----------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            match decision:
                case SaveRun(run, new):
                    if new and run.id not in self.runs:
                        self._order.append(run.id)
                    self.runs[run.id] = run
                    if run.wake_at is not None:
                        self._push(run.wake_at, _WAKE, "wake", run.id)
                case SendEmail():
                    self._email(decision)
                case UpdateContact(contact_id, values):
                    values = self._checked(self.contacts[contact_id], values)
                    contact = self.contacts[contact_id].with_attributes(values)
                    self.contacts[contact_id] = contact
                    self._contact_changed(contact)
                case CallWebhook():
                    self.webhooks.append(decision)
                case EnrollContact():
                    self._push(decision.at, _ENROLL, "enroll", decision)
                case Record():
                    self.timeline.append(decision)
                case Warn():
                    self.warnings.append(decision)

    def _email(self, decision: SendEmail) -> None:
        subject = decision.subject
        if not subject:
            self.warnings.append(
                Warn(
                    decision.at,
                    f"email step has no subject, and template {decision.template!r} is not "
                    "available to the simulator",
                    decision.run_id,
                    decision.step_id,
                )
            )
        self._push(decision.at, _SEND, "send", _Pending(decision, subject, utc(decision.at)))

    def _send_due(self, item: _Item) -> None:
        """Every email due at this instant, most important workflow first, through the
        send-time policy: sent, deferred (queued again for later) or skipped."""
        due: list[_Pending] = [item.payload]
        while self._queue and self._queue[0].at == item.at and self._queue[0].kind == "send":
            due.append(heapq.heappop(self._queue).payload)
        due.sort(key=lambda p: (-p.decision.priority, p.due))
        for pending in due:
            self._check(pending)

    def _check(self, pending: _Pending) -> None:
        decision, now = pending.decision, self.now
        contact = self.contacts.get(decision.contact_id)
        candidate = rules.Candidate(
            decision.key,
            decision.to,
            decision.topic,
            decision.priority,
            decision.on_capped,
            pending.due,
        )
        recipient = rules.Recipient(
            contact.timezone if contact else None,
            _as_of(self._suppressions.get((decision.to or "").lower(), []), now),
            {
                topic: status
                for (cid, topic), entries in self._consents.items()
                if cid == decision.contact_id and (status := _as_of(entries, now)) is not None
            },
            tuple(self._sent.get(decision.contact_id, ())),
        )
        verdict = rules.decide(candidate, recipient, self.policy, now)
        if isinstance(verdict, rules.Send):
            if rules.capped(decision.topic):
                self._sent.setdefault(decision.contact_id, []).append(now)
            self.emails.append(
                SimulatedEmail(
                    now,
                    decision.contact_id,
                    decision.to,
                    decision.workflow_id,
                    decision.step_id,
                    pending.subject,
                    decision.template,
                    decision.key,
                )
            )
            return
        detail: dict[str, Any] = {"message": decision.key, "code": verdict.code}
        detail["reason"] = verdict.reason
        if isinstance(verdict, rules.Defer):
            detail["until"] = iso(verdict.until)
            self._record(decision, "email_deferred", detail)
            self._push(verdict.until, _SEND, "send", pending)
            return
        self._record(decision, "email_skipped", detail)
        self.warnings.append(
            Warn(
                now,
                f"email {decision.step_id!r} of workflow {decision.workflow_id!r} to "
                f"{decision.contact_id!r} skipped: {verdict.reason}",
                decision.run_id,
                decision.step_id,
            )
        )

    def _record(self, decision: SendEmail, action: str, detail: dict[str, Any]) -> None:
        self.timeline.append(
            Record(
                self.now,
                decision.contact_id,
                decision.workflow_id,
                decision.run_id,
                decision.step_id,
                action,
                detail,
            )
        )

    def _checked(self, contact: Contact, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` without an invalid email address (warned about instead)."""
        values, warning = clean_email(values, contact.email)
        if warning is not None:
            self.warnings.append(Warn(self.now, f"contact {contact.id!r}: {warning}"))
        return values

    # --- bookkeeping -----------------------------------------------------------------

    def _ctx(self, history: ListHistory) -> Context:
        return Context(self.now, history, self.catalog, self.default_timezone, self.predicates)

    def _runs(self, contact_id: str) -> list[Run]:
        return [r for r in self.runs.values() if r.contact_id == contact_id]

    def _contact(self, contact_id: str) -> Contact:
        if contact_id not in self.contacts:
            self.warnings.append(Warn(self.now, f"contact {contact_id!r} was not declared"))
            self.add_contact(contact_id)
        return self.contacts[contact_id]

    def _push(self, at: datetime, priority: int, kind: str, payload: Any) -> None:
        heapq.heappush(self._queue, _Item(utc(at), priority, next(self._seq), kind, payload))

    def _contact_changed(self, contact: Contact) -> None:
        """Re-plan date triggers and schedule zones after a contact's attributes changed."""
        for workflow in self.workflows:
            trigger = workflow.trigger
            if isinstance(trigger, DateTrigger):
                key = (workflow.id, contact.id)
                fire = date_fire(workflow, contact, self.default_timezone)
                if fire is not None and fire >= self.now and fire != self._date_fires.get(key):
                    self._date_fires[key] = fire
                    self._push(fire, _DATE, "date", key)
            elif isinstance(trigger, ScheduleTrigger) and trigger.schedule.cron is not None:
                tz = contact.timezone or self.default_timezone
                zones = self._zones.setdefault(workflow.id, set())
                if tz not in zones:
                    zones.add(tz)
                    tick = next_tick(workflow, tz, self.now - timedelta(microseconds=1))
                    if tick is not None:
                        self._push(tick, _TICK, "tick", (workflow.id, tz))
