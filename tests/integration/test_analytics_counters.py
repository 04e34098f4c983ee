"""The analytics counters, kept by database triggers, read back as figures.

Every test runs on SQLite and on PostgreSQL: a real worker and sender on a virtual clock,
real SMTP (aiosmtpd), provider webhooks through their ``normalize`` and the pixel and
redirect through :func:`record_engagement`. Every expected figure is counted by hand in
the comment above it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from mailsink import MailSink

from conftest import T0
from flowmail.analytics.funnels import workflow_figures
from flowmail.analytics.model import LinkFigures, StepFigures, WorkflowFigures
from flowmail.clock import VirtualClock
from flowmail.delivery.breaker import Breakers
from flowmail.delivery.compose import Composer, Identity
from flowmail.delivery.providers.smtp import SmtpProvider
from flowmail.delivery.sender import Sender, SenderOptions
from flowmail.delivery.setup import template_source
from flowmail.engine.catalog import Mode
from flowmail.runtime.actions import RetryPolicy
from flowmail.runtime.feedback import apply_events, record_engagement
from flowmail.runtime.service import apply_workflow, migrate_runs, pause, resume
from flowmail.runtime.worker import Worker
from flowmail.store import analytics
from flowmail.store import schema as t
from flowmail.store.feedback import MessageRef, erase_contact, find_messages
from flowmail.store.migrate import alembic_config
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore
from flowmail.webhooks import generic, sendgrid

WS = "default"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
IDENTITY = Identity(
    "news@flowmail.test", "Flowmail", "https://mail.flowmail.test", "s3cret", "1 Main St, Town"
)
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"
URL1 = "https://shop.example.com/start"
URL2 = "https://shop.example.com/pricing"

ONBOARD: dict[str, Any] = {
    "id": "onboard",
    "trigger": {"event": "signed_up"},
    "goal": {"event": "purchase"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {"id": "check", "branch": [{"if": {"opened": "hello"}, "then": "tips"}, {"else": "nudge"}]},
        {"id": "tips", "email": {"subject": "Tips"}, "next": "end"},
        {"id": "nudge", "email": {"subject": "We miss you"}},
    ],
}


class Journey:
    """A store, a virtual clock, a worker, a sender into an SMTP sink, and feedback."""

    def __init__(self, store: SqlStore, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.clock = VirtualClock(T0)
        self.worker = Worker(store, self.clock)
        self.ids = 0

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def at(self, moment: datetime) -> None:
        """Move the clock, firing every timer due on the way, each at its own time."""
        self.worker.drain()
        while (due := self.store.next_due()) is not None and due <= moment:
            self.clock.set(due)
            self.worker.drain()
        self.clock.set(moment)
        self.worker.drain()

    def people(self, **emails: str | None) -> None:
        self.store.ingest(
            [
                InboundEvent(c, "identify", self.now, traits={"email": e}, id=f"i-{c}",
                             kind="identify")
                for c, e in emails.items()
            ],
            self.now,
        )  # fmt: skip
        self.worker.drain()

    def track(self, contact: str, name: str) -> None:
        self.ids += 1
        self.store.ingest([InboundEvent(contact, name, self.now, id=f"t{self.ids}")], self.now)
        self.worker.drain()

    def send(self) -> int:
        composer = Composer(IDENTITY, template_source(self.store, self.tmp / "templates"))
        with MailSink() as sink:
            provider = SmtpProvider(host="127.0.0.1", port=sink.port, connections=2, timeout=1)
            sender = Sender(
                self.store,
                self.clock,
                {"smtp": provider},
                composer,
                primary="smtp",
                options=SenderOptions(
                    retry=RetryPolicy(max_attempts=3, base=MINUTE, cap=HOUR),
                    lease=timedelta(seconds=30),
                ),
                breakers=Breakers(threshold=3, cooldown=timedelta(seconds=60)),
            )

            async def drain() -> int:
                try:
                    return await sender.drain()
                finally:
                    await sender.close()

            return asyncio.run(drain())

    def message(self, contact: str, step: str) -> MessageRef:
        [key] = [
            m["id"]
            for m in self.store.messages(WS)
            if m["contact_id"] == contact and m["step_id"] == step
        ]
        [ref] = find_messages(self.store, key=key, workspace_id=WS)
        return ref

    def pixel(self, contact: str, step: str, agent: str = PHONE) -> None:
        record_engagement(self.store, self.message(contact, step), "opened", self.now,
                          user_agent=agent)  # fmt: skip
        self.worker.drain()

    def click(self, contact: str, step: str, url: str) -> None:
        record_engagement(self.store, self.message(contact, step), "clicked", self.now,
                          url=url, user_agent=PHONE)  # fmt: skip
        self.worker.drain()

    def generic(self, contact: str, step: str, kind: str, **extra: Any) -> None:
        self.ids += 1
        body = {
            "type": kind,
            "id": f"g{self.ids}",
            "message_id": self.message(contact, step).id,
            "email": f"{contact}@example.com",
            "at": self.now.isoformat(),
            **extra,
        }
        apply_events(self.store, generic.normalize(json.dumps(body).encode()), self.now)
        self.worker.drain()

    def sendgrid(self, contact: str, step: str, event: str, **extra: Any) -> None:
        self.ids += 1
        body = [
            {
                "email": f"{contact}@example.com",
                "timestamp": int(self.now.timestamp()),
                "event": event,
                "sg_event_id": f"sg{self.ids}",
                "sg_message_id": f"sgm-{contact}",
                "flowmail_message": self.message(contact, step).id,
                **extra,
            }
        ]
        apply_events(self.store, sendgrid.normalize(json.dumps(body).encode()), self.now)
        self.worker.drain()


@pytest.fixture
def journey(store: SqlStore, tmp_path: Path) -> Journey:
    return Journey(store, tmp_path)


def figures(store: SqlStore, **options: Any) -> WorkflowFigures:
    [found] = workflow_figures(store, WS, **options)
    return found


def steps(found: WorkflowFigures) -> dict[str, StepFigures]:
    return {step.step_id: step for step in found.steps}


def funnel(found: WorkflowFigures) -> dict[str, tuple[Any, ...]]:
    """step -> (kind, entered, active, waiting, completed, converted, exited, failed,
    dwell seconds, edges)"""
    return {
        s.step_id: (s.kind, s.entered, s.active, s.waiting, s.completed, s.converted,
                    s.exited, s.failed, s.dwell_seconds, s.edges)
        for s in found.steps
    }  # fmt: skip


def totals(found: WorkflowFigures) -> tuple[int, ...]:
    """(entered, active, waiting, completed, converted, exited, failed)"""
    f = found
    return (f.entered, f.active, f.waiting, f.completed, f.converted, f.exited, f.failed)


def email_counts(found: WorkflowFigures, step: str) -> dict[str, Any]:
    email = steps(found)[step].email
    assert email is not None
    return {k: v for k, v in asdict(email).items() if k != "links"}


def day_one(j: Journey) -> None:
    """Five people sign up at T0; ``e`` has no address. What happens to ``hello``:

    * +5m: four sent (a b c d)              * +5m1s: a's phone fetches the pixel (too soon)
    * +10m: four delivered                  * +20m: b opened per SendGrid (sg_machine_open)
    * +30m, 31m, 32m: c clicks URL1, URL2, URL1 (no open seen: images off)
    * +1h, +2h: a opens (a person)          * +2h: b reports spam (SendGrid)
    * +3h: a clicks URL1                    * +12h: d buys: converted while waiting
    """
    j.store.ensure_workspace(WS, T0)
    apply_workflow(j.store, WS, ONBOARD, T0)
    j.people(**{c: f"{c}@example.com" for c in "abcd"}, e=None)
    for contact in "abcde":
        j.track(contact, "signed_up")
    j.at(T0 + 5 * MINUTE)
    assert j.send() == 4
    j.at(T0 + 5 * MINUTE + timedelta(seconds=1))
    j.pixel("a", "hello")
    j.at(T0 + 10 * MINUTE)
    for contact in "abcd":
        j.generic(contact, "hello", "delivered")
    j.at(T0 + 20 * MINUTE)
    j.sendgrid("b", "hello", "open", useragent=PHONE, sg_machine_open=True)
    for minutes, url in ((30, URL1), (31, URL2), (32, URL1)):
        j.at(T0 + minutes * MINUTE)
        j.click("c", "hello", url)
    j.at(T0 + HOUR)
    j.pixel("a", "hello")
    j.at(T0 + 2 * HOUR)
    j.pixel("a", "hello")
    j.sendgrid("b", "hello", "spamreport")
    j.at(T0 + 3 * HOUR)
    j.click("a", "hello", URL1)
    j.at(T0 + 12 * HOUR)
    j.track("d", "purchase")


def day_two(j: Journey) -> None:
    """+1d: a and c opened hello (c's click proves it) -> tips; b and e -> nudge.
    +1d5m: tips to a and c sent; b's nudge skipped (the complaint suppressed b); e has no
    address. +1d10m: c's tips bounces, hard."""
    j.at(T0 + DAY + 5 * MINUTE)
    assert j.send() == 3
    j.at(T0 + DAY + 10 * MINUTE)
    j.generic("c", "tips", "bounced", bounce_type="hard", reason="550 5.1.1 user unknown")


def test_five_contacts_through_two_emails_a_wait_and_a_branch(journey: Journey) -> None:
    day_one(journey)
    journey.at(T0 + 13 * HOUR)
    middle = figures(journey.store)
    # a b c e wait at pause; d converted there
    assert totals(middle) == (5, 0, 4, 0, 1, 0, 0)
    assert steps(middle)["pause"].waiting == 4
    # d: 12 h at pause, then converted; the others have not left it yet
    assert steps(middle)["pause"].dwell_seconds == 12 * 3600

    day_two(journey)
    found = figures(journey.store)
    assert (found.workflow_id, found.version, found.mode) == ("onboard", None, "active")
    # 5 enrolled; a c end after tips, b e after nudge; d converted
    assert totals(found) == (5, 0, 0, 4, 1, 0, 0)
    # pause: a b c e 1 d each and d 12 h, over 5 visits that left (4 moved on, d ended)
    assert funnel(found) == {
        "hello": ("email", 5, 0, 0, 0, 0, 0, 0, 0.0, {"pause": 5}),
        "pause": ("wait", 5, 0, 0, 0, 1, 0, 0, (4 * 86400 + 43200) / 5, {"check": 4}),
        "check": ("branch", 4, 0, 0, 0, 0, 0, 0, 0.0, {"nudge": 2, "tips": 2}),
        "tips": ("email", 2, 0, 0, 2, 0, 0, 0, 0.0, {}),
        "nudge": ("email", 2, 0, 0, 2, 0, 0, 0, 0.0, {}),
    }
    assert email_counts(found, "hello") == {
        "queued": 4,  # a b c d; e has no address
        "sent": 4,
        "delivered": 4,
        "opened": 2,  # a (a person, at +1h) and c (a click proves the open)
        "opened_total": 2,  # a's opens at +1h and +2h
        "opened_automated": 2,  # a's at +5m1s (1 s after sending), b's (SendGrid's flag)
        "clicked": 2,  # a and c
        "clicked_total": 4,  # c three times, a once
        "bounced": 0,
        "complained": 1,  # b
        "unsubscribed": 0,
        "failed": 0,
        "skipped": {"no_address": 1},  # e
    }
    assert steps(found)["hello"].email.links == [  # type: ignore[union-attr]
        LinkFigures(URL1, unique=2, total=3),  # c twice, a once
        LinkFigures(URL2, unique=1, total=1),
    ]
    tips = email_counts(found, "tips")
    assert (tips["queued"], tips["sent"], tips["bounced"], tips["skipped"]) == (2, 2, 1, {})
    nudge = email_counts(found, "nudge")
    # b's address was suppressed by the complaint; e has none
    assert (nudge["queued"], nudge["sent"]) == (1, 0)
    assert nudge["skipped"] == {"suppressed": 1, "no_address": 1}


def test_since_and_until_count_what_happened_in_those_hours(journey: Journey) -> None:
    day_one(journey)
    day_two(journey)
    first = figures(journey.store, until=T0 + DAY)
    # the first day: 5 enrolled, d converted at +12h; nobody left pause yet but d
    assert totals(first) == (5, 0, 0, 0, 1, 0, 0)
    assert funnel(first)["pause"] == ("wait", 5, 0, 0, 0, 1, 0, 0, 43200.0, {})
    assert funnel(first)["check"][1] == 0
    assert email_counts(first, "hello")["opened_automated"] == 2
    assert email_counts(first, "tips")["queued"] == 0

    second = figures(journey.store, since=T0 + DAY)
    # the second day: nobody enrolled; 4 left pause after 1 d each; 4 completed
    assert totals(second) == (0, 0, 0, 4, 0, 0, 0)
    assert funnel(second)["hello"][1] == 0
    assert funnel(second)["pause"] == ("wait", 0, 0, 0, 0, 0, 0, 0, 86400.0, {"check": 4})
    assert funnel(second)["check"][1] == 4
    assert email_counts(second, "hello")["sent"] == 0
    assert email_counts(second, "tips")["sent"] == 2

    # a window inside an hour counts that whole hour: the opens at +1h and +2h
    inside = figures(journey.store, since=T0 + HOUR + 30 * MINUTE, until=T0 + 2 * HOUR + MINUTE)
    assert email_counts(inside, "hello")["opened_total"] == 2


def test_series_gives_hourly_points_for_charts(journey: Journey) -> None:
    day_one(journey)
    day_two(journey)
    points = analytics.series(
        journey.store, WS, ["msg:sent", "msg:opened", "run:enrolled"], T0, T0 + 2 * DAY,
        workflow_id="onboard",
    )  # fmt: skip
    assert points == [
        (T0, "msg:sent", 4),
        (T0, "run:enrolled", 5),
        (T0 + HOUR, "msg:opened", 1),
        (T0 + 2 * HOUR, "msg:opened", 1),
        (T0 + DAY, "msg:sent", 2),
    ]
    assert analytics.series(journey.store, WS, ["msg:sent"], T0 + HOUR, T0 + DAY) == []
    everywhere = analytics.series(journey.store, WS, ["msg:sent"], T0, T0 + 2 * DAY)
    assert everywhere == [(T0, "msg:sent", 4), (T0 + DAY, "msg:sent", 2)]


def test_raw_counters_of_the_engine_observations(journey: Journey) -> None:
    day_one(journey)
    found = {
        (c.step_id, c.metric, c.label): c.value
        for c in analytics.counts(journey.store, WS, workflow_id="onboard")
        if c.metric in ("run:opened", "run:clicked", "run:email", "msg:opened_unique")
    }
    # the engine heard of a's open and click and of c's first click; never of b's
    # automated open; e's email queued nothing
    assert found == {
        ("hello", "run:opened", ""): 1,
        ("hello", "run:clicked", ""): 2,
        ("hello", "run:email", ""): 4,
        ("hello", "run:email", "no_address"): 1,
        ("hello", "msg:opened_unique", ""): 2,
    }


# --- versions, exits, holds ----------------------------------------------------------

TWO_STEPS: dict[str, Any] = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [{"id": "hello", "email": {"subject": "Hi"}}, {"id": "pause", "wait": "1d"}],
}
TWO_STEPS_V2: dict[str, Any] = {
    **TWO_STEPS,
    "steps": [{"id": "hello", "email": {"subject": "Hi"}}, {"id": "soon", "wait": "2h"}],
}


def test_versions_are_counted_apart_and_summed(journey: Journey) -> None:
    j = journey
    j.store.ensure_workspace(WS, T0)
    apply_workflow(j.store, WS, TWO_STEPS, T0)
    j.people(a="a@example.com", b="b@example.com", c="c@example.com")
    j.track("a", "signed_up")
    j.track("b", "signed_up")
    apply_workflow(j.store, WS, TWO_STEPS_V2, T0)
    j.track("c", "signed_up")
    j.at(T0 + 30 * MINUTE)

    one = figures(j.store, version=1)
    assert (one.version, one.entered, one.waiting) == (1, 2, 2)
    assert funnel(one)["pause"][:4] == ("wait", 2, 0, 2)
    assert list(steps(one)) == ["hello", "pause"]
    two = figures(j.store, version=2)
    assert (two.version, two.entered, two.waiting) == (2, 1, 1)
    assert list(steps(two)) == ["hello", "soon"]
    assert funnel(two)["soon"][:4] == ("wait", 1, 0, 1)
    every = figures(j.store)
    # the latest version's steps, then those only version 1 had
    assert [(s.step_id, s.kind, s.entered) for s in every.steps] == [
        ("hello", "email", 3),
        ("soon", "wait", 1),
        ("pause", "wait", 2),
    ]
    assert (every.entered, every.waiting) == (3, 3)

    j.at(T0 + 3 * HOUR)
    # c left soon after 2 h and completed there
    assert funnel(figures(j.store, version=2))["soon"] == (
        "wait", 1, 0, 0, 1, 0, 0, 0, 7200.0, {}
    )  # fmt: skip
    assert workflow_figures(j.store, WS, workflow_id="nothing") == []


GATE: dict[str, Any] = {
    "id": "gate",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "pause", "wait": "1h"},
        {"id": "vip", "branch": [{"if": {"contact.plan": "pro"}, "then": "out"}, {"else": "tag"}]},
        {"id": "tag", "tag": "regular", "next": "end"},
        {"id": "out", "exit": True},
    ],
}


def test_an_exit_step_is_entered_and_exited_and_a_held_run_enters_when_resumed(
    journey: Journey,
) -> None:
    j = journey
    j.store.ensure_workspace(WS, T0)
    apply_workflow(j.store, WS, GATE, T0)
    j.store.ingest(
        [InboundEvent("p", "identify", T0, traits={"plan": "pro"}, id="i-p", kind="identify")],
        T0,
    )
    for contact in "pqr":
        j.track(contact, "signed_up")
    j.at(T0 + 30 * MINUTE)
    assert pause(j.store, WS, "gate", Mode.FREEZE, j.now)
    j.at(T0 + 2 * HOUR)
    held = figures(j.store)
    # the wait ended at +1h for all three; frozen, each is held at vip, which has not run
    assert funnel(held)["pause"] == ("wait", 3, 0, 0, 0, 0, 0, 0, 3600.0, {"vip": 3})
    assert funnel(held)["vip"][:4] == ("branch", 0, 3, 0)
    assert (held.entered, held.active, held.waiting) == (3, 3, 0)

    assert resume(j.store, WS, "gate", j.now)
    j.at(T0 + 3 * HOUR)
    found = figures(j.store)
    # p (pro) exits at out; q and r are tagged and reach the end at tag
    assert totals(found) == (3, 0, 0, 2, 0, 1, 0)
    # vip: held from +1h until the resume at +2h, then ran at once: 1 h per visit
    assert funnel(found)["vip"] == ("branch", 3, 0, 0, 0, 0, 0, 0, 3600.0, {"tag": 2, "out": 1})
    # out: entered by ending there (an exit step records only its exit)
    assert funnel(found)["out"] == ("exit", 1, 0, 0, 0, 0, 1, 0, 0.0, {})
    assert funnel(found)["tag"] == ("tag", 2, 0, 0, 2, 0, 0, 0, 0.0, {})


# --- the counters themselves: concurrency, folding, migrations -------------------------


RUNS = itertools.count()


def live_run() -> dict[str, Any]:
    return {"workspace_id": WS, "id": f"r-{next(RUNS)}", "workflow_id": "w", "version": 1,
            "contact_id": "c1", "status": "waiting", "step": "s", "started_at": T0,
            "state": {}}  # fmt: skip


def journal_row(
    at: datetime, step: str = "s", run: str | None = None, action: str = "tag"
) -> dict[str, Any]:
    """A journal row of a run of its own (unless ``run`` is given): only ``run:<action>``."""
    return {
        "workspace_id": WS,
        "run_id": run or f"r-{next(RUNS)}",
        "contact_id": "c1",
        "workflow_id": "w",
        "step_id": step,
        "at": at,
        "action": action,
        "detail": {},
    }


def stat_rows(store: SqlStore, metric: str = "run:tag") -> list[tuple[datetime, str, int, int]]:
    """(hour, step, shard, value) of one metric's counter rows."""
    s = t.stats
    query = sa.select(s.c.bucket, s.c.step_id, s.c.shard, s.c.value).where(s.c.metric == metric)
    with store.engine.connect() as conn:
        return sorted((r[0], r[1], r[2], r[3]) for r in conn.execute(query))


def total(store: SqlStore, metric: str = "run:tag") -> dict[str, int]:
    found: dict[str, int] = {}
    for count in analytics.counts(store, WS, workflow_id="w"):
        if count.metric == metric:
            found[count.step_id] = found.get(count.step_id, 0) + count.value
    return found


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_transactions_counting_the_same_keys_neither_wait_nor_deadlock(
    store: SqlStore,
) -> None:
    first, second = store.engine.connect(), store.engine.connect()
    try:
        first.begin()
        first.execute(sa.insert(t.journal), [journal_row(T0, "x"), journal_row(T0, "y")])
        # the first transaction is still open; in the other order, the second must not wait
        second.begin()
        second.exec_driver_sql("SET LOCAL lock_timeout = '500ms'")
        second.execute(sa.insert(t.journal), [journal_row(T0, "y"), journal_row(T0, "x")])
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    assert total(store) == {"x": 2, "y": 2}
    assert len({shard for _, _, shard, _ in stat_rows(store)}) == 2, "one row per process"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_many_concurrent_writers_count_exactly(store: SqlStore) -> None:
    steps_ = ["a", "b", "c", "d"]

    def write(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            rows = [journal_row(T0, rng.choice(steps_), run=f"r{seed}") for _ in range(5)]
            with store.engine.begin() as conn:
                conn.execute(sa.insert(t.journal), rows)

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(write, seed) for seed in range(4)]:
            done.result()  # a deadlock or a lock timeout would raise here
    with store.engine.connect() as conn:
        expected = dict(
            conn.execute(
                sa.select(t.journal.c.step_id, sa.func.count()).group_by(t.journal.c.step_id)
            ).all()
        )
    assert sum(expected.values()) == 4 * 40 * 5
    assert total(store) == expected


def test_compact_folds_shards_then_days_and_keeps_every_sum(store: SqlStore) -> None:
    now = T0 + timedelta(days=40)
    # two writers (two PostgreSQL processes: two shards) in T0's hour and in the last hour
    first, second = store.engine.connect(), store.engine.connect()
    try:
        for conn, rows in (
            (first, [journal_row(T0 + 10 * MINUTE), journal_row(T0 + 11 * MINUTE),
                     journal_row(T0 + HOUR), journal_row(now - HOUR)]),
            (second, [journal_row(T0 + 12 * MINUTE), journal_row(now - HOUR)]),
        ):  # fmt: skip
            with conn.begin():
                conn.execute(sa.insert(t.journal), rows)
                conn.execute(sa.insert(t.runs), [live_run()])  # a gauge: +1 waiting at s
    finally:
        first.close()
        second.close()
    assert len(stat_rows(store)) == (5 if store.postgres else 3)
    assert len(stat_rows(store, "now:waiting")) == (2 if store.postgres else 1)
    folded = analytics.compact(store, now)
    # PostgreSQL: 3 shard rows of old hours become 2 hour rows, then 1 day row (3 + 2),
    # and the 2 gauge rows become 1; SQLite: 2 hour rows become 1 day row
    assert folded == (7 if store.postgres else 2)
    assert len(stat_rows(store, "now:waiting")) == 1
    assert analytics.live(store, WS) == [analytics.LiveCount("w", 1, "s", "waiting", 2)]
    day = datetime(2025, 9, 1, tzinfo=UTC)
    recent = analytics.hour_of(now - HOUR)
    assert [(b, v) for b, _, _, v in stat_rows(store) if b == day] == [(day, 4)]
    assert sorted(v for b, _, _, v in stat_rows(store) if b == recent) == (
        [1, 1] if store.postgres else [2]
    )
    assert total(store) == {"s": 6}
    points = analytics.series(store, WS, ["run:tag"], T0 - DAY, now)
    assert points == [(day, "run:tag", 4), (recent, "run:tag", 2)]
    assert analytics.compact(store, now) == 0, "nothing more to fold"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_compact_leaves_a_row_a_writer_holds_and_does_not_wait(store: SqlStore) -> None:
    now = T0 + timedelta(days=40)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(t.journal), [journal_row(T0), journal_row(T0 + HOUR)])
    late = store.engine.connect()
    try:
        late.begin()  # a late event for T0's hour, not yet committed: its row is locked
        late.execute(sa.insert(t.journal), [journal_row(T0 + MINUTE)])
        assert analytics.compact(store, now) == 2  # the T0 + 1h row: to shard 0, then the day
        late.commit()
    finally:
        late.close()
    assert total(store) == {"s": 3}
    assert analytics.compact(store, now) == 2  # the held row: to shard 0, then into the day
    assert [v for _, _, _, v in stat_rows(store)] == [3]


def _migrate(store: SqlStore, revision: str, *, down: bool = False) -> None:
    config = alembic_config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def test_the_migration_installs_and_removes_the_triggers(store: SqlStore) -> None:
    _migrate(store, "0005", down=True)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(t.journal), [journal_row(T0)])
        conn.execute(sa.insert(t.runs), [live_run()])
    assert stat_rows(store) == []
    _migrate(store, "head")
    # the gauges start from the runs live at the upgrade
    assert analytics.live(store, WS) == [analytics.LiveCount("w", 1, "s", "waiting", 1)]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(t.journal), [journal_row(T0)])
    assert total(store) == {"s": 1}


def test_the_gauges_follow_migrated_erased_and_ended_runs(journey: Journey) -> None:
    j = journey
    j.store.ensure_workspace(WS, T0)
    apply_workflow(j.store, WS, TWO_STEPS, T0)
    j.people(a="a@example.com", b="b@example.com")
    j.track("a", "signed_up")
    j.track("b", "signed_up")
    assert analytics.live(j.store, WS) == [analytics.LiveCount("welcome", 1, "pause", "waiting", 2)]
    changed = {**TWO_STEPS, "steps": [{"id": "hello", "email": {"subject": "Hello!"}},
                                      {"id": "pause", "wait": "1d"}]}  # fmt: skip
    apply_workflow(j.store, WS, changed, T0)
    moves = migrate_runs(j.store, WS, "welcome", 2, T0)
    assert [m.moved for m in moves] == [True, True]
    assert analytics.live(j.store, WS, ["welcome"], version=1) == []
    assert analytics.live(j.store, WS, ["welcome"]) == [
        analytics.LiveCount("welcome", 2, "pause", "waiting", 2)
    ]
    assert erase_contact(j.store, WS, "a", T0) is not None
    assert analytics.live(j.store, WS) == [analytics.LiveCount("welcome", 2, "pause", "waiting", 1)]
    j.at(T0 + DAY)  # b's wait ends: b completes
    assert analytics.live(j.store, WS) == []
    assert figures(j.store).waiting == 0
