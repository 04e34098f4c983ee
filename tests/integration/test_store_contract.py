"""The storage contract: every test runs against SQLite and against PostgreSQL.

These call :class:`SqlStore` directly (no worker), so that each promise of the store's
interface is checked on its own: idempotent ingest, workspace isolation, leases,
event-time order, fenced commits, the one-send-per-visit key, versions, modes,
date triggers, schedules and retention.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from conftest import T0
from flowmail.engine.decisions import Record, SendEmail
from flowmail.engine.state import Contact, Event, Run, RunStatus
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent, UnitResult
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

LEASE = timedelta(seconds=30)
OTHER = "acme"

WELCOME = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [{"id": "hello", "email": {"subject": "Hello"}}],
}


def _event(contact: str, name: str, at: datetime, **kw: object) -> InboundEvent:
    return InboundEvent(contact, name, at, **kw)  # type: ignore[arg-type]


def _count(store: SqlStore, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


def _contact_row(store: SqlStore, contact_id: str, ws: str = DEFAULT_WORKSPACE) -> sa.Row[object]:
    c = t.contacts
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(c).where(c.c.workspace_id == ws, c.c.id == contact_id)).one()
    return row


def _run(contact: str, at: datetime, workflow: str = "welcome", **kw: object) -> Run:
    trigger = Event(contact, "signed_up", at, id=f"trigger-{contact}")
    return Run(f"run-{contact}", workflow, 1, contact, at, trigger, **kw)  # type: ignore[arg-type]


def _send(run: Run, key: str, at: datetime) -> SendEmail:
    return SendEmail(
        key, run.id, run.contact_id, run.workflow_id, run.version, "hello",
        f"{run.contact_id}@example.com", None, "Hello", "marketing", 0, "defer", None, at,
    )  # fmt: skip


def _result(key: tuple[str, str], contact: Contact, **kw: object) -> UnitResult:
    return UnitResult(key[0], contact, **kw)  # type: ignore[arg-type]


# --- the inbox ---------------------------------------------------------------------------


def test_ingest_counts_accepted_and_duplicates_and_a_repeat_changes_nothing(
    store: SqlStore,
) -> None:
    first = store.ingest(
        [
            _event("ana", "signed_up", T0, properties={"plan": "free"}, id="m-1"),
            _event("ana", "page_viewed", T0, id="m-2"),
        ],
        T0,
    )
    assert (first.accepted, first.duplicates, first.duplicate_ids) == (2, 0, [])

    again = store.ingest(
        [
            _event(
                "ana", "signed_up", T0 + timedelta(hours=1), properties={"plan": "pro"}, id="m-1"
            ),
            _event("ana", "page_viewed", T0, id="m-3"),
        ],
        T0 + timedelta(hours=1),
    )
    assert (again.accepted, again.duplicates, again.duplicate_ids) == (1, 1, ["m-1"])

    e = t.events
    assert _count(store, e) == 3
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(e).where(e.c.id == "m-1")).one()
    assert row.properties == {"plan": "free"}  # the first copy stands
    assert row.at == T0
    assert row.received_at == T0


def test_ingest_creates_the_contact_once(store: SqlStore) -> None:
    assert store.contact(DEFAULT_WORKSPACE, "bea") is None
    store.ingest([_event("bea", "signed_up", T0, id="b-1")], T0)
    store.ingest([_event("bea", "clicked", T0, id="b-2")], T0 + timedelta(minutes=5))
    contact = store.contact(DEFAULT_WORKSPACE, "bea")
    assert contact == Contact("bea", None, None, {})
    assert _count(store, t.contacts) == 1
    row = _contact_row(store, "bea")
    assert row.created_at == T0
    assert row.wake_at is None and row.lease_owner is None


def test_ingest_without_an_id_makes_one_up(store: SqlStore) -> None:
    result = store.ingest([_event("cy", "ping", T0), _event("cy", "ping", T0)], T0)
    assert result.accepted == 2
    assert _count(store, t.events) == 2


# --- workspaces --------------------------------------------------------------------------


def test_workspaces_do_not_see_each_other(store: SqlStore) -> None:
    store.ensure_workspace(OTHER, T0, "Acme Inc.")
    store.ingest(
        [
            _event("dan", "signed_up", T0, properties={"ws": "default"}, id="same"),
            _event("dan", "signed_up", T0, properties={"ws": OTHER}, id="same",
                   workspace_id=OTHER),
        ],
        T0,
    )  # fmt: skip
    assert _count(store, t.events) == 2, "the same event id in two workspaces is two events"
    assert _count(store, t.contacts) == 2, "the same contact id in two workspaces is two contacts"

    keys = store.claim("w1", T0, 10, LEASE)
    assert sorted(keys) == [(OTHER, "dan"), (DEFAULT_WORKSPACE, "dan")]
    units = {u.key: u for u in store.load(keys, T0)}
    assert set(units) == set(keys)
    for ws, unit in units.items():
        assert unit.workspace_id == ws[0]
        assert [p.event.properties for p in unit.events] == [{"ws": ws[0]}]

    mine = _run("dan", T0)
    results = [
        _result((OTHER, "dan"), units[(OTHER, "dan")].contact, runs={mine.id: (mine, True)}),
        _result((DEFAULT_WORKSPACE, "dan"), units[(DEFAULT_WORKSPACE, "dan")].contact),
    ]
    assert sorted(store.commit("w1", results, T0)) == sorted(keys)
    assert [r.id for r in store.runs(OTHER)] == [mine.id]
    assert store.runs(DEFAULT_WORKSPACE) == []
    assert store.runs(DEFAULT_WORKSPACE, contact_id="dan") == []

    store.apply_workflow(OTHER, "welcome", WELCOME, T0)
    assert [r.id for r in store.workflow_rows(OTHER)] == ["welcome"]
    assert store.workflow_rows(DEFAULT_WORKSPACE) == []
    assert store.workflow_definition(DEFAULT_WORKSPACE, "welcome", 1) is None


# --- claims and leases -------------------------------------------------------------------


def test_a_claimed_contact_is_not_claimed_again_until_its_lease_expires(store: SqlStore) -> None:
    store.ingest([_event("eve", "signed_up", T0, id="e-1")], T0)
    assert store.claim("w1", T0, 10, LEASE) == [(DEFAULT_WORKSPACE, "eve")]
    row = _contact_row(store, "eve")
    assert (row.lease_owner, row.lease_until) == ("w1", T0 + LEASE)

    assert store.claim("w2", T0, 10, LEASE) == []
    assert store.claim("w2", T0 + LEASE - timedelta(seconds=1), 10, LEASE) == []
    later = T0 + LEASE + timedelta(seconds=1)
    assert store.claim("w2", later, 10, LEASE) == [(DEFAULT_WORKSPACE, "eve")]
    assert _contact_row(store, "eve").lease_owner == "w2"


def test_claim_respects_its_limit_and_release_frees_only_the_owners_leases(
    store: SqlStore,
) -> None:
    store.ingest([_event(f"c{i}", "ping", T0, id=f"p{i}") for i in range(5)], T0)
    first = store.claim("w1", T0, 3, LEASE)
    assert len(first) == 3
    rest = store.claim("w2", T0, 10, LEASE)
    assert len(rest) == 2 and not set(first) & set(rest)
    store.release("w2", first)  # not w2's: nothing happens
    assert store.claim("w3", T0, 10, LEASE) == []
    store.release("w1", first)
    assert sorted(store.claim("w3", T0, 10, LEASE)) == sorted(first)


def test_a_contact_with_nothing_due_is_not_claimed(store: SqlStore) -> None:
    store.ingest([_event("fay", "ping", T0, id="f-1")], T0)
    key = (DEFAULT_WORKSPACE, "fay")
    [unit] = store.load(store.claim("w1", T0, 10, LEASE), T0)
    done = _result(key, unit.contact, processed=[(unit.events[0].seq, None)])
    done.wake_at = T0 + timedelta(hours=1)
    assert store.commit("w1", [done], T0) == [key]
    assert store.claim("w1", T0 + timedelta(minutes=59), 10, LEASE) == []
    assert store.claim("w1", T0 + timedelta(hours=1), 10, LEASE) == [key]


def test_load_gives_pending_events_in_event_time_order(store: SqlStore) -> None:
    store.ingest([_event("gus", "third", T0 + timedelta(minutes=3), id="g-3")], T0)
    store.ingest([_event("gus", "first", T0 + timedelta(minutes=1), id="g-1")], T0)
    store.ingest(
        [
            _event("gus", "fourth", T0 + timedelta(minutes=4), id="g-4"),
            _event("gus", "second", T0 + timedelta(minutes=2), id="g-2"),
        ],
        T0,
    )
    keys = store.claim("w1", T0, 10, LEASE)
    [unit] = store.load(keys, T0)
    assert [p.event.name for p in unit.events] == ["first", "second", "third", "fourth"]
    assert [p.event.id for p in unit.events] == ["g-1", "g-2", "g-3", "g-4"]
    assert all(p.kind == "track" for p in unit.events)


# --- commits -----------------------------------------------------------------------------


def test_a_commit_after_the_lease_was_taken_over_writes_nothing(store: SqlStore) -> None:
    store.ingest([_event("hal", "signed_up", T0, id="h-1")], T0)
    key = (DEFAULT_WORKSPACE, "hal")
    [unit] = store.load(store.claim("slow", T0, 10, LEASE), T0)
    later = T0 + LEASE + timedelta(seconds=1)
    assert store.claim("fast", later, 10, LEASE) == [key]

    run = _run("hal", T0)
    stale = _result(
        key,
        unit.contact.with_attributes({"seen": True}),
        runs={run.id: (run, True)},
        messages=[_send(run, "k-hal", T0)],
        journal=[Record(T0, "hal", "welcome", run.id, "hello", "email")],
        processed=[(unit.events[0].seq, None)],
        contact_changed=True,
    )
    assert store.commit("slow", [stale], later) == []
    assert store.runs() == []
    assert store.messages() == []
    assert _count(store, t.journal) == 0
    assert store.pending_events() == 1
    assert store.contact(DEFAULT_WORKSPACE, "hal") == Contact("hal")
    assert _contact_row(store, "hal").lease_owner == "fast", "the new owner keeps its lease"


def test_a_commit_writes_everything_and_releases_the_lease(store: SqlStore) -> None:
    store.ingest([_event("ida", "signed_up", T0, id="i-1")], T0)
    key = (DEFAULT_WORKSPACE, "ida")
    [unit] = store.load(store.claim("w1", T0, 10, LEASE), T0)
    wake = T0 + timedelta(days=1)
    run = _run("ida", T0, status=RunStatus.WAITING, step="pause", path=["hello", "pause"])
    run.wake_at = wake
    result = _result(
        key,
        unit.contact.with_attributes({"email": "ida@example.com", "plan": "pro"}),
        runs={run.id: (run, True)},
        messages=[_send(run, "k-ida", T0)],
        journal=[
            Record(T0, "ida", "welcome", run.id, None, "enrolled"),
            Record(T0, "ida", "welcome", run.id, "hello", "email", {"message": "k-ida"}),
        ],
        processed=[(unit.events[0].seq, None)],
        contact_changed=True,
        wake_at=wake,
    )
    assert store.commit("w1", [result], T0) == [key]

    assert store.pending_events() == 0
    with store.engine.connect() as conn:
        processed_at = conn.execute(sa.select(t.events.c.processed_at)).scalar_one()
        actions = (
            conn.execute(sa.select(t.journal.c.action).order_by(t.journal.c.seq)).scalars().all()
        )
    assert processed_at == T0
    assert actions == ["enrolled", "email"]
    [stored] = store.runs()
    assert stored == run
    [message] = store.messages()
    assert (message["id"], message["run_id"], message["status"]) == ("k-ida", run.id, "queued")
    assert message["to_address"] == "ida@example.com"
    row = _contact_row(store, "ida")
    assert (row.lease_owner, row.lease_until, row.wake_at) == (None, None, wake)
    assert store.contact(DEFAULT_WORKSPACE, "ida") == Contact(
        "ida", "ida@example.com", None, {"plan": "pro"}
    )
    assert store.next_due() == wake


def test_one_message_per_run_step_and_visit(store: SqlStore) -> None:
    store.ingest([_event("jo", "signed_up", T0, id="j-1")], T0)
    key = (DEFAULT_WORKSPACE, "jo")
    run = _run("jo", T0)
    for attempt in range(2):
        now = T0 + timedelta(minutes=attempt)
        [unit] = store.load(store.claim("w1", now, 10, LEASE), now)
        send = _send(run, "k-jo", now)
        assert store.commit("w1", [_result(key, unit.contact, messages=[send, send])], now)
        store.ingest([_event("jo", "again", now, id=f"j-again-{attempt}")], now)
    assert [m["id"] for m in store.messages()] == ["k-jo"]
    assert store.messages()[0]["created_at"] == T0, "the first copy stands"

    row = {**{k: v for k, v in store.messages()[0].items()}, "subject": "Other"}
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(t.messages), [row])
    assert len(store.messages()) == 1


# --- workflows ---------------------------------------------------------------------------


def test_apply_workflow_makes_versions_only_for_changes(store: SqlStore) -> None:
    first = store.apply_workflow(DEFAULT_WORKSPACE, "welcome", WELCOME, T0)
    assert (first.version, first.changed) == (1, True)
    same = store.apply_workflow(DEFAULT_WORKSPACE, "welcome", dict(WELCOME), T0)
    assert (same.version, same.changed) == (1, False)

    edited = {**WELCOME, "steps": [{"id": "hello", "email": {"subject": "Hi there"}}]}
    second = store.apply_workflow(DEFAULT_WORKSPACE, "welcome", edited, T0 + timedelta(hours=1))
    assert (second.version, second.changed) == (2, True)
    assert store.workflow_definition(DEFAULT_WORKSPACE, "welcome", 1) == WELCOME
    assert store.workflow_definition(DEFAULT_WORKSPACE, "welcome", 2) == edited
    assert store.workflow_definition(DEFAULT_WORKSPACE, "welcome", 3) is None
    [row] = store.workflow_rows()
    assert (row.id, row.version, row.mode) == ("welcome", 2, "active")
    assert row.updated_at == T0 + timedelta(hours=1)

    back = store.apply_workflow(DEFAULT_WORKSPACE, "welcome", WELCOME, T0 + timedelta(hours=2))
    assert (back.version, back.changed) == (3, True), "going back to v1's text is a new version"


def test_set_mode_changes_the_mode_and_wakes_runs_that_must_react(store: SqlStore) -> None:
    assert not store.set_mode(DEFAULT_WORKSPACE, "welcome", "drain", None, T0)
    store.apply_workflow(DEFAULT_WORKSPACE, "welcome", WELCOME, T0)
    store.ingest([_event("kim", "signed_up", T0, id="k-1")], T0)
    key = (DEFAULT_WORKSPACE, "kim")
    [unit] = store.load(store.claim("w1", T0, 10, LEASE), T0)
    waiting = _run("kim", T0, status=RunStatus.WAITING, step="pause")
    waiting.wake_at = T0 + timedelta(days=3)
    result = _result(
        key, unit.contact, runs={waiting.id: (waiting, True)},
        processed=[(unit.events[0].seq, None)], wake_at=waiting.wake_at,
    )  # fmt: skip
    store.commit("w1", [result], T0)

    later = T0 + timedelta(hours=1)
    assert store.set_mode(DEFAULT_WORKSPACE, "welcome", "freeze", "holiday", later)
    [row] = store.workflow_rows()
    assert (row.mode, row.reason, row.updated_at) == ("freeze", "holiday", later)
    assert _contact_row(store, "kim").wake_at == waiting.wake_at, "freeze wakes nobody"

    assert store.set_mode(DEFAULT_WORKSPACE, "welcome", "cancel", None, later)
    assert store.workflow_rows()[0].mode == "cancel"
    assert _contact_row(store, "kim").wake_at == later, "cancel wakes live runs now"
    assert store.claim("w1", later, 10, LEASE) == [key]


# --- date triggers, schedules ------------------------------------------------------------


def test_date_fires_pull_the_contact_wake_forward_and_show_in_next_due(store: SqlStore) -> None:
    assert store.next_due() is None
    store.ingest([_event("lu", "ping", T0, id="l-1"), _event("mo", "ping", T0, id="m-1")], T0)
    soon, later = T0 + timedelta(days=2), T0 + timedelta(days=5)
    store.schedule_date_fires(DEFAULT_WORKSPACE, "trial", {"lu": later, "mo": soon})
    assert store.next_due() == soon
    assert _contact_row(store, "lu").wake_at == later
    assert _contact_row(store, "mo").wake_at == soon

    store.schedule_date_fires(DEFAULT_WORKSPACE, "trial", {"lu": soon + timedelta(days=1)})
    assert _contact_row(store, "lu").wake_at == soon + timedelta(days=1), "earlier wins"
    store.schedule_date_fires(DEFAULT_WORKSPACE, "other", {"mo": later})
    assert _contact_row(store, "mo").wake_at == soon, "a later fire keeps the earlier wake"
    assert _count(store, t.date_triggers) == 3

    keys = store.claim("w1", T0, 10, LEASE)
    units = {u.contact.id: u for u in store.load(keys, T0)}
    assert units["lu"].date_fires == {"trial": soon + timedelta(days=1)}
    assert units["mo"].date_fires == {"trial": soon, "other": later}

    # a worker that fired mo's trial trigger deletes it and keeps the other
    done = _result(
        (DEFAULT_WORKSPACE, "mo"), units["mo"].contact,
        date_fires={"trial": None}, wake_at=later,
    )  # fmt: skip
    store.commit("w1", [done], soon)
    assert _count(store, t.date_triggers, t.date_triggers.c.contact_id == "mo") == 1
    assert store.load([(DEFAULT_WORKSPACE, "mo")], soon)[0].date_fires == {"other": later}


def test_contacts_with_attribute_pages_through_contacts_by_id(store: SqlStore) -> None:
    store.ingest([_event(f"p{i}", "ping", T0, id=f"x{i}") for i in (3, 1, 4, 2, 5)], T0)
    with store.engine.begin() as conn:  # p5 has no trial date: the backfill skips it
        conn.execute(
            sa.update(t.contacts)
            .where(t.contacts.c.id != "p5")
            .values(attributes={"trial_ends_at": "2025-10-01"})
        )
    page = store.contacts_with_attribute(DEFAULT_WORKSPACE, "trial_ends_at", None, 2)
    assert [c.id for c in page] == ["p1", "p2"]
    page = store.contacts_with_attribute(DEFAULT_WORKSPACE, "trial_ends_at", "p2", 2)
    assert [c.id for c in page] == ["p3", "p4"]
    assert store.contacts_with_attribute(DEFAULT_WORKSPACE, "trial_ends_at", "p4", 2) == []


def test_a_schedule_tick_is_enqueued_once_per_contact_in_its_zone(store: SqlStore) -> None:
    store.ingest([_event(c, "ping", T0, id=f"s-{c}") for c in ("ny1", "ny2", "be1", "nz")], T0)
    zones = {"ny1": "America/New_York", "ny2": "America/New_York", "be1": "Europe/Berlin"}
    with store.engine.begin() as conn:
        for cid, zone in zones.items():
            conn.execute(sa.update(t.contacts).where(t.contacts.c.id == cid).values(timezone=zone))
        conn.execute(sa.update(t.events).values(processed_at=T0))
    assert store.contact_zones(DEFAULT_WORKSPACE, "UTC") == {
        "America/New_York", "Europe/Berlin", "UTC"
    }  # fmt: skip

    tick_ny, tick_be = T0 + timedelta(hours=4), T0 + timedelta(hours=22)
    store.set_schedules(
        DEFAULT_WORKSPACE, "daily", {"America/New_York": tick_ny, "Europe/Berlin": tick_be}
    )
    assert store.next_due() == tick_ny
    assert store.due_schedules(tick_ny - timedelta(seconds=1)) == []
    assert store.due_schedules(tick_ny) == [
        (DEFAULT_WORKSPACE, "daily", "America/New_York", tick_ny)
    ]

    following = tick_ny + timedelta(days=1)
    args = ("America/New_York", tick_ny, following, "UTC", tick_ny)
    assert store.enqueue_tick(DEFAULT_WORKSPACE, "daily", *args) == 2
    assert store.enqueue_tick(DEFAULT_WORKSPACE, "daily", *args) == 0, "the tick moved on"
    assert store.due_schedules(tick_ny) == []
    assert store.next_due() == tick_be

    e = t.events
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.c.contact_id, e.c.kind, e.c.name, e.c.at).where(e.c.kind == "schedule")
        ).all()
    assert sorted(rows) == [
        ("ny1", "schedule", "daily", tick_ny),
        ("ny2", "schedule", "daily", tick_ny),
    ]

    # the same tick coming round again (another worker's stale view) adds no event
    store.set_schedules(DEFAULT_WORKSPACE, "daily", {"America/New_York": tick_ny})
    assert store.enqueue_tick(DEFAULT_WORKSPACE, "daily", *args) == 2
    assert _count(store, e, e.c.kind == "schedule") == 2

    # "*" is every contact of the workspace, zone or not; the default zone covers nz
    store.set_schedules(DEFAULT_WORKSPACE, "blast", {"*": tick_be, "UTC": tick_be})
    assert store.enqueue_tick(DEFAULT_WORKSPACE, "blast", "*", tick_be, None, "UTC", tick_be) == 4
    assert store.enqueue_tick(DEFAULT_WORKSPACE, "blast", "UTC", tick_be, None, "UTC", tick_be) == 1


def test_add_schedule_zone_keeps_an_existing_zone(store: SqlStore) -> None:
    tick = T0 + timedelta(hours=3)
    store.add_schedule_zone(DEFAULT_WORKSPACE, "daily", "Asia/Tokyo", tick)
    store.add_schedule_zone(DEFAULT_WORKSPACE, "daily", "Asia/Tokyo", tick + timedelta(days=9))
    assert store.due_schedules(tick) == [(DEFAULT_WORKSPACE, "daily", "Asia/Tokyo", tick)]


# --- retention, heartbeats ---------------------------------------------------------------


def test_prune_drops_old_processed_events_and_journal_rows_only(store: SqlStore) -> None:
    old, recent = T0, T0 + timedelta(days=100)
    store.ingest(
        [
            _event("ned", "old_done", old, id="n-1"),
            _event("ned", "old_pending", old, id="n-2"),
            _event("ned", "new_done", recent, id="n-3"),
        ],
        old,
    )
    e, j = t.events, t.journal
    with store.engine.begin() as conn:
        conn.execute(sa.update(e).where(e.c.id == "n-1").values(processed_at=old))
        conn.execute(sa.update(e).where(e.c.id == "n-3").values(processed_at=recent))
        conn.execute(
            sa.insert(j),
            [
                {"workspace_id": DEFAULT_WORKSPACE, "run_id": "r", "contact_id": "ned",
                 "workflow_id": "w", "step_id": None, "at": at, "action": "email", "detail": {}}
                for at in (old, recent)
            ],
        )  # fmt: skip
    assert store.prune(old + timedelta(days=90)) == {"events": 1, "journal": 1}
    with store.engine.connect() as conn:
        left = sorted(conn.execute(sa.select(e.c.id)).scalars())
        journal = conn.execute(sa.select(j.c.at)).scalars().all()
    assert left == ["n-2", "n-3"], "pending events are never pruned"
    assert journal == [recent]
    assert store.prune(old + timedelta(days=90)) == {"events": 0, "journal": 0}


def test_heartbeat_upserts_one_row_per_worker(store: SqlStore) -> None:
    store.heartbeat("w1", "worker", T0, {"processed": 1})
    store.heartbeat("w1", "worker", T0 + timedelta(seconds=5), {"processed": 7})
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.heartbeats)).all()
    assert [(r.id, r.seen_at, r.info) for r in rows] == [
        ("w1", T0 + timedelta(seconds=5), {"processed": 7})
    ]
