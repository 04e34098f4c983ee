"""The demo against a running installation, through its HTTP API only.

1. Traffic: the plan's identify and track calls go to ``POST /v1/batch``. In compressed
   time (the default) they carry their planned timestamps, spread over the past days,
   and each batch holds whole contacts: the worker then handles each contact's events
   and timers in time order up to now, as a punctual worker would have, so waits of days
   are already over and their emails are queued at once. In real time they are sent at
   ``rate`` calls a second, stamped by the server.
2. Waiting until the worker has handled every event and due timer and the sender has
   sent every due email (``GET /health``), for at most ``wait`` seconds.
3. Feedback: for the demo's sent emails (``GET /v1/messages?status=sent``), provider
   events through the signed generic webhook, then the purchases some clicks led to.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from flowmail.clock import Clock
from flowmail.demo.client import ApiClient, ApiFailure, DemoError
from flowmail.demo.engagement import READ_AFTER, SentMessage, react
from flowmail.demo.traffic import Call, Plan, build_plan

EXAMPLES = ("welcome_series", "cart_abandonment", "trial_ending", "post_purchase", "re_engagement")
MAX_PAGES = 10_000  # of messages per workflow, a bound on the feedback loop
STATS_EVERY = 5.0  # seconds between workflow statistics while waiting
HEARTBEAT_AGE = 60.0  # seconds: a worker or sender heard from more recently is running
MIN_SPAN = READ_AFTER + timedelta(seconds=5)  # from a send to its feedback, at least
OUT = ("sent", "delivered", "bounced", "complained")  # statuses of emails that went out


class Reporter(Protocol):
    """Where the demo says how far it got (a progress bar, or nothing)."""

    def phase(self, description: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def status(self, text: str) -> None: ...


class Quiet:
    def phase(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class DemoOptions:
    contacts: int = 1000
    days: float = 14.0
    realtime: bool = False
    rate: float = 50.0  # calls a second, in real time
    seed: int = 1
    wait: float = 300.0  # seconds, for the worker and the sender
    webhook_secret: str | None = None
    batch_size: int = 250  # calls per POST /v1/batch
    webhook_batch: int = 200  # provider events per webhook request
    poll: float = 0.5


@dataclass
class Summary:
    seed: int
    mode: str  # compressed or realtime
    days: float
    contacts: int = 0  # whose calls the API took
    planned: dict[str, int] = field(default_factory=dict)  # calls by event name
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    api_errors: int = 0
    retries: int = 0
    settled: bool = False  # the worker and the sender caught up within the wait
    waited_seconds: float = 0.0
    messages_seen: int = 0  # the demo's sent emails that got feedback
    webhooks: Counter[str] = field(default_factory=Counter)  # provider events by kind
    purchases: int = 0
    revenue: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "mode": self.mode,
            "days": self.days,
            "contacts": self.contacts,
            "events": {
                "sent": self.events_sent,
                "accepted": self.accepted,
                "duplicates": self.duplicates,
                "by_name": self.planned,
            },
            "api_errors": self.api_errors,
            "retries": self.retries,
            "settled": self.settled,
            "waited_seconds": round(self.waited_seconds, 1),
            "messages_seen": self.messages_seen,
            "webhooks": dict(sorted(self.webhooks.items())),
            "purchases": self.purchases,
            "revenue": round(self.revenue, 2),
            "notes": self.notes,
        }


@dataclass
class Demo:
    client: ApiClient
    options: DemoOptions
    clock: Clock
    reporter: Reporter = field(default_factory=Quiet)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    summary: Summary = field(init=False)
    _first_error: str | None = field(default=None, init=False)
    _contacts: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        mode = "realtime" if self.options.realtime else "compressed"
        self.summary = Summary(self.options.seed, mode, self.options.days)

    def run(self) -> Summary:
        workflows = self.preflight()
        options = self.options
        plan = build_plan(options.seed, options.contacts, self.clock.now(), options.days)
        self.summary.planned = plan.counts()
        self.ingest(plan)
        if self.summary.duplicates and not self.summary.accepted:
            self.summary.notes.append(
                f"every call was already there: seed {options.seed} was sent before "
                "(the same seed gives the same traffic); --seed makes new contacts"
            )
        if options.wait > 0:
            self.wait()
        else:
            self.summary.notes.append("did not wait for the worker and the sender (--wait 0)")
        if options.webhook_secret:
            self.feedback(plan, workflows)
        else:
            self.summary.notes.append(
                "no webhook secret (--webhook-secret or FLOWMAIL_GENERIC_WEBHOOK_SECRET): "
                "no provider feedback was posted"
            )
        self.summary.retries = self.client.retried
        if self._first_error:
            self.summary.notes.append(f"first API error: {self._first_error}")
        return self.summary

    # --- 0. is anyone there? -----------------------------------------------------------

    def preflight(self) -> list[str]:
        health = self.client.health()
        if health.get("status") != "ok":
            raise DemoError(f"the API at {self.client.base_url} answers, but its database does not")
        workflows = self.client.workflows()
        if self.options.webhook_secret:  # an empty, signed delivery: is the secret right?
            stamp = int(self.clock.now().timestamp())
            self.client.webhook([], self.options.webhook_secret, stamp)
        missing = [w for w in EXAMPLES if w not in workflows]
        if missing:
            self.summary.notes.append(
                f"not applied, so their traffic starts no runs: {', '.join(missing)} "
                "(`flowmail workflows apply examples/<name>.yaml`)"
            )
        return workflows

    # --- 1. traffic --------------------------------------------------------------------

    def ingest(self, plan: Plan) -> None:
        options = self.options
        mode = f"{options.rate:g}/s, real time" if options.realtime else "compressed time"
        self.reporter.phase(f"events ({mode})", len(plan.calls))
        if not options.realtime:
            for batch in plan.batches(options.batch_size):
                self._post(batch, stamped=True)
            return
        calls = plan.in_time_order()
        chunk = max(1, min(options.batch_size, round(options.rate / 5)))
        due = self.monotonic()
        for start in range(0, len(calls), chunk):
            pause = due - self.monotonic()
            if pause > 0:
                self.sleep(pause)
            self._post(calls[start : start + chunk], stamped=False)
            due += chunk / options.rate

    def _post(self, calls: Sequence[Call], stamped: bool) -> bool:
        try:
            accepted, duplicates = self.client.batch([c.body(stamped) for c in calls])
        except ApiFailure as exc:
            self._failed(exc)
            return False
        finally:
            self.reporter.advance(len(calls))
        summary = self.summary
        summary.events_sent += len(calls)
        summary.accepted += accepted
        summary.duplicates += duplicates
        self._contacts.update(c.user_id for c in calls)
        summary.contacts = len(self._contacts)
        return True

    def _failed(self, exc: ApiFailure) -> None:
        self.summary.api_errors += 1
        self._first_error = self._first_error or str(exc.message)

    # --- 2. waiting --------------------------------------------------------------------

    def wait(self) -> bool:
        """Until nothing is due for the worker or the sender (twice in a row)."""
        self.reporter.phase("worker and sender")
        started = self.monotonic()
        calm, stats_at, out = 0, -STATS_EVERY, 0
        while True:
            health = self.client.health()
            queues: dict[str, int] = health.get("queues", {})
            due = sum(queues.get(k, 0) for k in ("pending_events", "due_wakes", "due_messages"))
            now = self.monotonic()
            if due == 0 or now - stats_at >= STATS_EVERY:
                statuses = self._message_statuses()
                out, stats_at = sum(statuses[s] for s in OUT), now
                due += statuses["sending"]
            self.reporter.status(_waiting(queues, out, _running(health)))
            calm = calm + 1 if due == 0 else 0
            self.summary.waited_seconds = now - started
            if calm >= 2:
                self.summary.settled = True
                return True
            if now - started >= self.options.wait:
                self.summary.notes.append(_gave_up(self.options.wait, queues, _running(health)))
                return False
            self.sleep(self.options.poll)

    def _message_statuses(self) -> Counter[str]:
        statuses: Counter[str] = Counter()
        for workflow in EXAMPLES:
            try:
                statuses.update(self.client.stats(workflow).get("messages", {}))
            except ApiFailure:
                continue  # not applied here
        return statuses

    # --- 3. feedback -------------------------------------------------------------------

    def feedback(self, plan: Plan, workflows: Sequence[str]) -> None:
        people = plan.by_id()
        self.reporter.phase("provider feedback")
        seen: set[str] = set()
        purchases: list[Call] = []
        for workflow in workflows:
            for _ in range(MAX_PAGES):
                rows = self.client.messages("sent", workflow)
                fresh = [
                    SentMessage.from_api(row)
                    for row in rows
                    if row["id"] not in seen and row["contact_id"] in people
                ]
                seen.update(str(row["id"]) for row in rows)
                if not fresh:
                    break
                until = self._readable(max(m.sent_at for m in fresh))
                reactions = [react(plan.seed, people[m.contact_id], m, until) for m in fresh]
                self._post_events([e for r in reactions for e in r.events])
                purchases += [r.purchase for r in reactions if r.purchase is not None]
                self.summary.messages_seen += len(fresh)
                self.reporter.advance(len(fresh))
        self._purchases(purchases)

    def _readable(self, newest: datetime) -> datetime:
        """Now, once people have had ``MIN_SPAN`` to read the newest email."""
        now = self.clock.now()
        pause = (newest + MIN_SPAN - now).total_seconds()
        if pause > 0:
            self.reporter.status("letting the newest emails be read")
            self.sleep(pause)
            now = self.clock.now()
        return now

    def _post_events(self, events: Sequence[dict[str, Any]]) -> None:
        secret = self.options.webhook_secret
        assert secret is not None
        size = self.options.webhook_batch
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            stamp = int(self.clock.now().timestamp())
            try:
                self.client.webhook(chunk, secret, stamp)
            except ApiFailure as exc:
                self._failed(exc)
                continue
            self.summary.webhooks.update(str(e["type"]) for e in chunk)

    def _purchases(self, purchases: Sequence[Call]) -> None:
        if not purchases:
            return
        self.reporter.phase("purchases after clicks", len(purchases))
        ordered = sorted(purchases, key=lambda c: (c.at, c.message_id))
        for start in range(0, len(ordered), self.options.batch_size):
            chunk = ordered[start : start + self.options.batch_size]
            if self._post(chunk, stamped=True):
                self.summary.purchases += len(chunk)
                self.summary.revenue += sum(float(c.data["total"]) for c in chunk)


def _running(health: dict[str, Any]) -> set[str]:
    """The kinds (worker, sender) heard from lately."""
    return {
        str(beat["kind"])
        for beat in health.get("heartbeats", [])
        if float(beat.get("age_seconds", HEARTBEAT_AGE)) < HEARTBEAT_AGE
    }


def _waiting(queues: dict[str, int], out: int, running: set[str]) -> str:
    text = (
        f"{queues.get('pending_events', 0):,} events and {queues.get('due_wakes', 0):,} "
        f"timers for the worker, {queues.get('due_messages', 0):,} emails due, {out:,} sent"
    )
    missing = [k for k in ("worker", "sender") if k not in running]
    return text + (f" (no {' or '.join(missing)} running?)" if missing else "")


def _gave_up(wait: float, queues: dict[str, int], running: set[str]) -> str:
    missing = [f"`flowmail {k}`" for k in ("worker", "sender") if k not in running]
    hint = f"; is {' and '.join(missing)} running?" if missing else ""
    return (
        f"stopped waiting after {wait:g} s with {queues.get('pending_events', 0):,} events, "
        f"{queues.get('due_wakes', 0):,} timers and {queues.get('due_messages', 0):,} emails "
        f"still due{hint}; feedback covers what was sent by then"
    )
