"""Conversions credited to emails and A/B split statistics, through the real worker and
sender (a file provider) on SQLite and PostgreSQL, over virtual time.

Every scenario is counted by hand in its comments: which emails were sent or clicked
when, which goal events fell inside the 72-hour window, which arm each contact took.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conftest import T0
from flowmail.analytics.attribution import fill_conversions
from flowmail.analytics.figures import collect
from flowmail.analytics.model import StepFigures, WorkflowFigures
from flowmail.analytics.splits import decide_winners, fill_variants
from flowmail.clock import Clock, SystemClock, VirtualClock
from flowmail.delivery.compose import Composer, Identity
from flowmail.delivery.providers.console import FileProvider
from flowmail.delivery.sender import Sender
from flowmail.delivery.setup import template_source
from flowmail.engine.state import IDENTIFY, RunStatus, bucket
from flowmail.runtime.feedback import record_engagement
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker, WorkerOptions
from flowmail.store import schema as t
from flowmail.store.conversions import Attribution, conversions_of
from flowmail.store.feedback import find_messages
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.splits import winners_of
from flowmail.store.sql import SqlStore

WS = DEFAULT_WORKSPACE
H = timedelta(hours=1)
IDENTITY = Identity("news@flowmail.test", "Flowmail", "https://mail.flowmail.test", "s3cret",
                    "1 Main St, Town")  # fmt: skip

WELCOME: dict[str, Any] = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "goal": {"event": "trial_started"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {"id": "tips", "email": {"subject": "Tips"}},
        {"id": "rest", "wait": "30d"},
    ],
}
RECEIPTS: dict[str, Any] = {
    "id": "receipts",
    "topic": "transactional",
    "trigger": {"event": "password_reset"},
    "re_entry": "always",
    "steps": [{"id": "reset", "email": {"subject": "Reset your password"}}],
}


class Shop:
    """A store, a virtual clock, one worker and one sender that writes .eml files."""

    def __init__(self, store: SqlStore, tmp: Path, attribution: Attribution | None = None) -> None:
        self.store = store
        self.clock = VirtualClock(T0)
        options = WorkerOptions(attribution=attribution or Attribution())
        self.worker = Worker(store, self.clock, options, "test-worker")
        self.sender = _sender(store, self.clock, tmp)
        self._ids = 0

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def settle(self) -> None:
        """Process what is due, send what was queued, process what that fed back."""
        self.worker.drain()
        asyncio.run(self.sender.drain())
        self.worker.drain()

    def at(self, moment: datetime) -> None:
        """Fire every timer up to ``moment`` at its own time, sending as we go."""
        self.settle()
        while (due := self.store.next_due()) is not None and due <= moment:
            self.clock.set(due)
            self.settle()
        self.clock.set(moment)
        self.settle()

    def people(self, *names: str) -> None:
        events = [
            InboundEvent(n, IDENTIFY, self.now, traits={"email": f"{n}@example.com"},
                         id=f"i-{n}", kind="identify")
            for n in names
        ]  # fmt: skip
        self.store.ingest(events, self.now)
        self.settle()

    def track(self, contact: str, name: str, at: datetime, **properties: Any) -> str:
        self.at(at)
        self._ids += 1
        event_id = f"e{self._ids}"
        self.store.ingest([InboundEvent(contact, name, at, properties, id=event_id)], at)
        self.settle()
        return event_id

    def click(self, contact: str, step: str, at: datetime) -> None:
        self.at(at)
        [ref] = find_messages(self.store, key=self.message_id(contact, step))
        record_engagement(self.store, ref, "clicked", at, url="https://example.com/shop")
        self.settle()

    def message_id(self, contact: str, step: str) -> str:
        messages = self.store.messages()
        [found] = [m["id"] for m in messages if (m["contact_id"], m["step_id"]) == (contact, step)]
        return str(found)


def _sender(store: SqlStore, clock: Clock, tmp: Path) -> Sender:
    composer = Composer(IDENTITY, template_source(store, tmp / "templates"))
    provider = FileProvider(tmp / "out", clock=clock)
    return Sender(store, clock, {"file": provider}, composer, primary="file")


def _credited(store: SqlStore) -> list[tuple[Any, ...]]:
    keys = ("contact_id", "name", "at", "value", "workflow_id", "step_id", "touch")
    return [tuple(c[k] for k in keys) for c in conversions_of(store, WS)]


def _timeline(shop: Shop) -> dict[str, str]:
    """The hand-counted story shared by the last- and first-touch tests.

    Everyone signs up at T0: "hello" is sent at T0, "tips" at T0+24h.
    - ana clicks hello at T0+25h, gets a transactional reset email at T0+30h, buys for
      40 at T0+31h (window from T0-41h: every touch is in), and again for "12.5" at
      T0+120h (window from T0+48h: only the reset email, which takes no credit).
    - bob starts a trial (the workflow's goal) worth value 7 at T0+96h: the window starts
      at T0+24h exactly, so tips (sent at T0+24h) is in and hello is out.
    - cy buys at T0+96h and 1 s: the window starts 1 s after tips was sent: nothing.
    - eve clicks hello at T0+20h and buys for 15 at T0+80h: the window starts at T0+8h,
      so hello's send is out but its click is in; tips (T0+24h) is the last touch.
    - dee views a page: not a conversion.
    """
    for definition in (WELCOME, RECEIPTS):
        apply_workflow(shop.store, WS, definition, shop.now)
    shop.people("ana", "bob", "cy", "dee", "eve")
    for name in ("ana", "bob", "cy", "dee", "eve"):
        shop.track(name, "signed_up", T0)
    ids = {}
    shop.click("eve", "hello", T0 + 20 * H)
    shop.click("ana", "hello", T0 + 25 * H)
    shop.track("ana", "password_reset", T0 + 30 * H)
    ids["ana"] = shop.track("ana", "purchase", T0 + 31 * H, revenue=40)
    ids["dee"] = shop.track("dee", "page_viewed", T0 + 50 * H)
    ids["eve"] = shop.track("eve", "purchase", T0 + 80 * H, revenue=15)
    ids["bob"] = shop.track("bob", "trial_started", T0 + 96 * H, value=7)
    ids["cy"] = shop.track("cy", "purchase", T0 + 96 * H + timedelta(seconds=1), value=7)
    ids["ana2"] = shop.track("ana", "purchase", T0 + 120 * H, revenue="12.5")
    sent = {(m["contact_id"], m["step_id"]): m["sent_at"] for m in shop.store.messages()}
    assert sent[("ana", "hello")] == T0 and sent[("ana", "tips")] == T0 + 24 * H
    assert sent[("ana", "reset")] == T0 + 30 * H
    return ids


def test_the_last_touch_takes_the_credit_within_the_window(store: SqlStore, tmp_path: Path) -> None:
    shop = Shop(store, tmp_path)
    _timeline(shop)
    assert _credited(store) == [
        ("ana", "purchase", T0 + 31 * H, 40.0, "welcome", "hello", "click"),
        ("eve", "purchase", T0 + 80 * H, 15.0, "welcome", "tips", "sent"),
        ("bob", "trial_started", T0 + 96 * H, 7.0, "welcome", "tips", "sent"),
    ]
    credited = {c["contact_id"]: c["message_id"] for c in conversions_of(store, WS)}
    assert credited["ana"] == shop.message_id("ana", "hello")
    # bob's trial was also the workflow's goal: his run converted
    [bob] = store.runs(WS, contact_id="bob", workflow_id="welcome")
    assert bob.status == RunStatus.CONVERTED


def test_the_first_touch_model_credits_the_earliest_email(store: SqlStore, tmp_path: Path) -> None:
    shop = Shop(store, tmp_path, Attribution(timedelta(hours=72), "first"))
    _timeline(shop)
    # ana's first touch is hello's send at T0; eve's is her click on hello at T0+20h (its
    # send, at T0, is outside her window); bob has only tips in his
    assert _credited(store) == [
        ("ana", "purchase", T0 + 31 * H, 40.0, "welcome", "hello", "sent"),
        ("eve", "purchase", T0 + 80 * H, 15.0, "welcome", "hello", "click"),
        ("bob", "trial_started", T0 + 96 * H, 7.0, "welcome", "tips", "sent"),
    ]


def test_a_shorter_window_credits_less(store: SqlStore, tmp_path: Path) -> None:
    # 12 hours: ana's touches at T0+25h (click) and T0+24h (tips) are within 12 h of
    # T0+31h; eve's (T0+20h, T0+24h) are not within 12 h of T0+80h; nor is bob's
    shop = Shop(store, tmp_path, Attribution(timedelta(hours=12), "last"))
    _timeline(shop)
    assert _credited(store) == [
        ("ana", "purchase", T0 + 31 * H, 40.0, "welcome", "hello", "click"),
    ]


def test_figures_get_conversions_and_revenue_per_workflow_and_step(
    store: SqlStore, tmp_path: Path
) -> None:
    shop = Shop(store, tmp_path)
    _timeline(shop)

    def figures(version: int | None) -> WorkflowFigures:
        kinds = [("hello", "email"), ("pause", "wait"), ("tips", "email"), ("rest", "wait")]
        steps = [StepFigures(step_id, kind) for step_id, kind in kinds]
        return WorkflowFigures("welcome", version, steps=steps)

    every, first, second, receipts = figures(None), figures(1), figures(2), figures(None)
    receipts.workflow_id = "receipts"
    fill_conversions(store, WS, [every, first, second, receipts], None, None)
    for figure in (every, first):  # hello: ana 40; tips: eve 15 + bob 7
        assert (figure.conversions, figure.revenue) == (3, 62.0)
        by_step = {s.step_id: (s.conversions, s.revenue) for s in figure.steps}
        assert by_step == {"hello": (1, 40.0), "pause": (0, 0), "tips": (2, 22.0), "rest": (0, 0)}
    assert (second.conversions, second.revenue) == (0, 0.0)
    assert (receipts.conversions, receipts.revenue) == (0, 0.0)  # transactional: no credit
    # a time window: conversions at T0+40h and later are eve's and bob's
    later = figures(1)
    fill_conversions(store, WS, [later], T0 + 40 * H, None)
    assert (later.conversions, later.revenue) == (2, 22.0)
    fill_conversions(store, WS, [later], T0, T0 + 96 * H)  # until is exclusive: not bob's
    assert (later.conversions, later.revenue) == (2, 55.0)
    fill_conversions(store, WS, [later], T0, T0 + 96 * H)  # filling again sets, not adds
    assert (later.conversions, later.revenue) == (2, 55.0)


def test_the_collected_figures_carry_conversions_and_split_arms(
    store: SqlStore, tmp_path: Path
) -> None:
    shop = Shop(store, tmp_path)
    _timeline(shop)
    apply_workflow(store, WS, SUBJECT_TEST, shop.now)
    figures = {f.workflow_id: f for f in collect(store, WS)}
    welcome = figures["welcome"]
    assert (welcome.conversions, welcome.revenue) == (3, 62.0)
    assert {s.step_id: s.conversions for s in welcome.steps if s.kind == "email"} == {
        "hello": 1,
        "tips": 2,
    }
    assert welcome.variants == []
    assert [(v.split_step, v.target, v.entered) for v in figures["subject_test"].variants] == [
        ("ab", "email_a", 0),
        ("ab", "email_b", 0),
    ]


def test_a_batch_retried_after_its_worker_died_credits_once(
    store: SqlStore, tmp_path: Path
) -> None:
    shop = Shop(store, tmp_path)
    apply_workflow(store, WS, WELCOME, shop.now)
    shop.people("ana")
    shop.track("ana", "signed_up", T0)
    shop.at(T0 + 2 * H)
    store.ingest([InboundEvent("ana", "purchase", shop.now, {"revenue": 40}, id="p1")], shop.now)
    # worker "a" claims and handles the purchase, then dies before its commit
    dead = Worker(store, shop.clock, WorkerOptions(), "dead-worker")
    keys = store.claim(dead.id, shop.now, 10, timedelta(seconds=30))
    results = [dead.handle(unit, shop.now) for unit in store.load(keys, shop.now)]
    assert sum(len(r.conversions) for r in results) == 1
    # its lease runs out; another worker does the same work from the start
    shop.clock.advance(timedelta(seconds=31))
    shop.worker.drain()
    # the dead worker wakes and commits what it had: its lease is gone, nothing is written
    assert store.commit(dead.id, results, shop.now) == []
    assert _credited(store) == [("ana", "purchase", T0 + 2 * H, 40.0, "welcome", "hello", "sent")]


# --- A/B splits ----------------------------------------------------------------------------

SUBJECT_TEST: dict[str, Any] = {
    "id": "subject_test",
    "trigger": {"event": "signed_up"},
    "goal": {"event": "purchase"},
    "steps": [
        {
            "id": "ab",
            "split": [{"weight": 50, "then": "email_a"}, {"weight": 50, "then": "email_b"}],
            "winner": {"metric": "converted", "confidence": 0.95, "min_runs": 20},
        },
        {"id": "email_a", "email": {"subject": "Ten percent off"}, "next": "hold"},
        {"id": "email_b", "email": {"subject": "Free shipping"}},
        {"id": "hold", "wait": "7d"},
    ],
}


def _arm(contact: str) -> str:
    """The arm the engine's hash gives a contact (weights 50/50)."""
    return "email_a" if bucket("subject_test", "ab", contact) < 50 else "email_b"


def _groups() -> tuple[list[str], list[str]]:
    names = [f"c{i}" for i in range(200)]
    a = [n for n in names if _arm(n) == "email_a"][:20]
    b = [n for n in names if _arm(n) == "email_b"][:20]
    return a, b


def _variants(
    store: SqlStore,
    version: int | None = 1,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[tuple[Any, ...]]:
    figure = WorkflowFigures("subject_test", version)
    fill_variants(store, WS, [figure], since, until)
    return [
        (v.target, v.entered, v.converted, v.clicked, round(v.rate, 4),
         None if v.z is None else round(v.z, 3),
         None if v.p_value is None else round(v.p_value, 4), v.significant, v.winner)
        for v in figure.variants
    ]  # fmt: skip


def _split_test(shop: Shop) -> tuple[list[str], list[str]]:
    """20 contacts per arm sign up at T0. At T0+1h 9 of arm a and 5 of arm b click their
    email; at T0+2h 4 of arm a (2 of whom clicked) and 12 of arm b buy (their runs
    convert); at T0+3h b's 20th contact, converted and not a clicker, clicks: her run has
    ended, the click still counts. So a: 20 runs, 4 converted, 9 clicked; b: 20, 12, 6."""
    apply_workflow(shop.store, WS, SUBJECT_TEST, shop.now)
    a, b = _groups()
    shop.people(*a, *b)
    for name in a + b:
        shop.track(name, "signed_up", T0)
    for name in a[:9]:
        shop.click(name, "email_a", T0 + H)
    for name in b[:5]:
        shop.click(name, "email_b", T0 + H)
    assert _variants(shop.store)[0][:4] == ("email_a", 20, 0, 9)
    assert decide_winners(shop.store, shop.now) == []  # 0/20 against 0/20: no winner yet
    for name in a[7:11] + b[8:20]:
        shop.track(name, "purchase", T0 + 2 * H, revenue=10)
    shop.click(b[19], "email_b", T0 + 3 * H)
    return a, b


def test_split_arms_are_counted_and_tested(store: SqlStore, tmp_path: Path) -> None:
    shop = Shop(store, tmp_path)
    a, b = _split_test(shop)
    runs = {r.contact_id: r for r in store.runs(WS, workflow_id="subject_test")}
    assert {n: runs[n].variants["ab"] for n in a + b} == {n: _arm(n) for n in a + b}
    assert runs[b[19]].status == RunStatus.CONVERTED and "email_b" in runs[b[19]].engaged
    # b against the control a: 12/20 vs 4/20, pooled 0.4, se = sqrt(.4 * .6 * .1) = 0.1549,
    # z = 0.4 / 0.1549 = 2.582, p = 0.0098: significant at 95 %; b is the winner to be
    assert _variants(store) == [
        ("email_a", 20, 4, 9, 0.2, None, None, False, False),
        ("email_b", 20, 12, 6, 0.6, 2.582, 0.0098, True, True),
    ]
    # counts fall in the hour they happened: from T0+2h on, the purchases and b[19]'s click
    assert [v[:4] for v in _variants(store, 1, T0 + 2 * H)] == [
        ("email_a", 0, 4, 0),
        ("email_b", 0, 12, 1),
    ]
    # until T0+1h30m: the hours that start before it, T0's and T0+1h's: the sign-ups and
    # the first clicks, no purchase
    assert [v[:4] for v in _variants(store, 1, None, T0 + 90 * timedelta(minutes=1))] == [
        ("email_a", 20, 0, 9),
        ("email_b", 20, 0, 5),
    ]
    assert [v[:4] for v in _variants(store, 1, None, T0 + H)] == [
        ("email_a", 20, 0, 0),
        ("email_b", 20, 0, 0),
    ]
    # a new version counts afresh; all versions together still count the first's runs
    split = {**SUBJECT_TEST["steps"][0], "name": "subject lines"}
    apply_workflow(store, WS, {**SUBJECT_TEST, "steps": [split, *SUBJECT_TEST["steps"][1:]]}, T0)
    assert _variants(store, 2) == [
        ("email_a", 0, 0, 0, 0.0, None, None, False, False),
        ("email_b", 0, 0, 0, 0.0, None, None, False, False),
    ]
    assert _variants(store, None) == _variants(store, 1)
    assert _variants(store, 3) == []  # no such version


def test_a_winner_is_decided_once_and_new_runs_take_it(store: SqlStore, tmp_path: Path) -> None:
    shop = Shop(store, tmp_path)
    _split_test(shop)
    before = {r.contact_id: dict(r.variants) for r in store.runs(WS, workflow_id="subject_test")}
    assert shop.worker.maintain(shop.now) is not None  # prunes and decides
    [winner] = winners_of(store, WS)
    assert (winner.workflow_id, winner.version, winner.step_id, winner.target) == (
        "subject_test", 1, "ab", "email_b"
    )  # fmt: skip
    assert winner.decided_at == T0 + 3 * H
    assert winner.detail["arms"] == [
        {"target": "email_a", "runs": 20, "converted": 4, "rate": 0.2},
        {"target": "email_b", "runs": 20, "converted": 12, "rate": 0.6},
    ]
    assert round(winner.detail["tests"][0]["p_value"], 4) == 0.0098
    assert shop.worker.decide(shop.now + timedelta(seconds=59)) is None  # once a minute
    assert shop.worker.decide(shop.now + timedelta(seconds=60)) == []  # nothing new
    assert decide_winners(store, shop.now + H) == []  # decided: never again
    # ten new contacts: every one takes b, the journal says the winner sent them
    late = [f"n{i}" for i in range(10)]
    shop.people(*late)
    assert any(_arm(n) == "email_a" for n in late)  # the hash alone would have sent some to a
    for name in late:
        shop.track(name, "signed_up", T0 + 4 * H)
    with store.engine.connect() as conn:
        details = conn.execute(
            sa.select(t.journal.c.contact_id, t.journal.c.detail).where(
                t.journal.c.action == "split", t.journal.c.contact_id.in_(late)
            )
        ).all()
    assert sorted(details) == [(n, {"then": "email_b", "winner": True}) for n in sorted(late)]
    after = {r.contact_id: dict(r.variants) for r in store.runs(WS, workflow_id="subject_test")}
    assert {n: after[n] for n in before} == before  # runs in flight keep their arm
    assert {after[n]["ab"] for n in late} == {"email_b"}
    assert [m["step_id"] for m in store.messages() if m["contact_id"] in late] == ["email_b"] * 10
    assert _variants(store)[1][:2] == ("email_b", 30)
    assert _variants(store)[1][-1] is True


def test_a_winner_on_clicks(store: SqlStore, tmp_path: Path) -> None:
    # metric clicked, min_runs 20: 15 of arm a's 20 contacts click, 3 of b's
    split = {**SUBJECT_TEST["steps"][0], "winner": {"metric": "clicked", "min_runs": 20}}
    on_clicks = {**SUBJECT_TEST, "steps": [split, *SUBJECT_TEST["steps"][1:]]}
    shop = Shop(store, tmp_path)
    apply_workflow(store, WS, on_clicks, shop.now)
    a, b = _groups()
    shop.people(*a, *b)
    for name in a + b:
        shop.track(name, "signed_up", T0)
    for name in a[:15] + b[:3]:  # 15/20 against 3/20
        shop.click(name, "email_a" if name in a else "email_b", T0 + H)
    # pooled 18/40 = 0.45, se = sqrt(.45 * .55 * .1) = 0.15732, z = 0.6 / 0.15732 = 3.814
    [figure] = [WorkflowFigures("subject_test", 1)]
    fill_variants(store, WS, [figure], None, None)
    a_arm, b_arm = figure.variants
    assert (a_arm.metric, a_arm.clicked, b_arm.clicked) == ("clicked", 15, 3)
    assert round(b_arm.z or 0, 3) == -3.814 and a_arm.winner and not b_arm.winner
    assert decide_winners(store, shop.now) == [(WS, "subject_test", 1, "ab", "email_a")]


# --- SIGKILLed workers credit once and count once ----------------------------------------

SPLIT_SALE: dict[str, Any] = {**SUBJECT_TEST, "id": "split_sale"}


def _start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWMAIL_DATABASE_URL": url, "FLOWMAIL_LEASE_SECONDS": "1",
           "FLOWMAIL_POLL_SECONDS": "0.05", "FLOWMAIL_WORKER_BATCH": "32"}  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "flowmail", "worker"], env=env, stdout=subprocess.DEVNULL,
            stderr=sink,
        )  # fmt: skip


def _pending(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(t.events.c.processed_at.is_(None))
        return int(conn.execute(query).scalar_one())


def _wait_done(store: SqlStore, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _pending(store):
        assert time.monotonic() < deadline, "the workers did not finish"
        time.sleep(0.1)


def test_sigkilled_workers_credit_and_count_each_conversion_once(
    db_url: str, tmp_path: Path
) -> None:
    """Two worker processes, SIGKILLed at random while they work through a backlog of
    sign-ups (split counters), then one of purchases (conversions, converted counters)."""
    store = SqlStore.from_url(db_url)
    contacts = 1600
    apply_workflow(store, WS, SPLIT_SALE, datetime.now(UTC))
    procs = [_start_worker(db_url, tmp_path / "worker.log") for _ in range(2)]
    stop, budget, killed = threading.Event(), [0], [0]

    def chaos() -> None:
        rng = random.Random(11)
        while not stop.wait(rng.uniform(0.2, 0.5)):
            if budget[0] <= 0 or not _pending(store):
                continue
            index = rng.randrange(len(procs))
            procs[index].send_signal(signal.SIGKILL)
            procs[index].wait()
            budget[0] -= 1
            killed[0] += 1
            procs[index] = _start_worker(db_url, tmp_path / "worker.log")

    def backlog(events: list[InboundEvent]) -> None:
        """A backlog keeps the workers busy: most kills land in the middle of a batch."""
        store.ingest(events, datetime.now(UTC))
        budget[0] = 5
        _wait_done(store, 120)

    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        now = datetime.now(UTC)
        people = [InboundEvent(f"c{i}", IDENTIFY, now, traits={"email": f"c{i}@example.com"},
                               id=f"i{i}", kind="identify") for i in range(contacts)]  # fmt: skip
        store.ingest(people, now)
        backlog([InboundEvent(f"c{i}", "signed_up", now, id=f"s{i}") for i in range(contacts)])
        asyncio.run(_sender(store, SystemClock(), tmp_path).drain())
        now = datetime.now(UTC)
        backlog(
            [
                InboundEvent(f"c{i}", "purchase", now, {"revenue": i}, id=f"p{i}")
                for i in range(0, contacts, 2)
            ]
        )
    finally:
        stop.set()
        killer.join()
        for proc in procs:
            proc.kill()
            proc.wait()
    assert killed[0] >= 6, "the test did not kill enough workers to mean anything"
    credited = conversions_of(store, WS)
    # every second contact bought, for i: 800 conversions worth 0 + 2 + ... + 1598 = 639,200
    assert len(credited) == contacts // 2
    assert sum(c["value"] for c in credited) == sum(range(0, contacts, 2)) == 639_200
    assert {c["touch"] for c in credited} == {"sent"}
    runs = store.runs(WS, workflow_id="split_sale")
    arms = {arm: [r for r in runs if r.variants["ab"] == arm] for arm in ("email_a", "email_b")}
    converted = {arm: sum(r.status == RunStatus.CONVERTED for r in rs) for arm, rs in arms.items()}
    assert sum(converted.values()) == contacts // 2
    figure = WorkflowFigures("split_sale", 1)
    fill_variants(store, WS, [figure], None, None)
    assert [(v.target, v.entered, v.converted) for v in figure.variants] == [
        (arm, len(arms[arm]), converted[arm]) for arm in ("email_a", "email_b")
    ]
    store.close()
