"""The durable runtime: a real store and a worker, driven over virtual time.

Every test runs on SQLite and on PostgreSQL. Time only moves when a test moves the
:class:`VirtualClock`; the worker handles what is due at that moment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import T0
from flowmail.clock import VirtualClock
from flowmail.engine.catalog import Mode
from flowmail.engine.predicates import PREDICATES, register
from flowmail.engine.state import IDENTIFY, Run, RunStatus
from flowmail.runtime.service import apply_workflow, migrate_runs, pause, resume
from flowmail.runtime.worker import Worker, WorkerOptions
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

WS = DEFAULT_WORKSPACE


class Rig:
    """A store, a virtual clock and one worker."""

    def __init__(self, store: SqlStore, default_timezone: str = "UTC") -> None:
        self.store = store
        self.clock = VirtualClock(T0)
        self.default_timezone = default_timezone
        self.worker = Worker(
            store, self.clock, WorkerOptions(default_timezone=default_timezone), "test-worker"
        )
        self._ids = 0

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def apply(self, definition: dict[str, Any]) -> int:
        _, applied = apply_workflow(store=self.store, workspace_id=WS, definition=definition,
                                    now=self.now, default_tz=self.default_timezone)  # fmt: skip
        return applied.version

    def ingest(self, *events: InboundEvent) -> None:
        self.store.ingest(list(events), self.now)

    def track(self, contact: str, name: str, at: datetime | None = None, **props: Any) -> None:
        self._ids += 1
        self.ingest(InboundEvent(contact, name, at or self.now, props, id=f"t{self._ids}"))
        self.worker.drain()

    def identify(self, contact: str, **traits: Any) -> None:
        self._ids += 1
        self.ingest(
            InboundEvent(contact, IDENTIFY, self.now, traits=traits, id=f"i{self._ids}",
                         kind="identify")
        )  # fmt: skip
        self.worker.drain()

    def advance(self, delta: timedelta) -> None:
        self.run_until(self.now + delta)

    def run_until(self, moment: datetime) -> None:
        """Fire every timer up to ``moment``, each at its own time, like a live worker."""
        self.worker.drain()
        while (due := self.store.next_due()) is not None and due <= moment:
            self.clock.set(due)
            self.worker.drain()
            assert self.store.next_due() != due, f"the timer due at {due} did not move on"
        self.clock.set(moment)
        self.worker.drain()

    def runs(self, workflow: str | None = None, contact: str | None = None) -> list[Run]:
        return self.store.runs(WS, contact_id=contact, workflow_id=workflow)

    def run_of(self, contact: str, workflow: str) -> Run:
        [run] = self.runs(workflow, contact)
        return run

    def sent(self, contact: str | None = None) -> list[tuple[str, str, str]]:
        """(contact, step, subject) of queued messages, oldest first."""
        return [
            (m["contact_id"], m["step_id"], m["subject"])
            for m in self.store.messages()
            if contact is None or m["contact_id"] == contact
        ]

    def sent_at(self) -> list[tuple[str, datetime]]:
        return [(m["contact_id"], m["created_at"]) for m in self.store.messages()]


@pytest.fixture
def rig(store: SqlStore) -> Rig:
    return Rig(store)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


WELCOME: dict[str, Any] = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello {{ contact.first_name }}"}},
        {"id": "pause", "wait": "1d"},
        {"id": "bye", "email": {"subject": "Day two"}},
    ],
}


def _people(rig: Rig, *names: str, **traits: Any) -> None:
    for name in names:
        rig.identify(name, email=f"{name}@example.com", first_name=name.title(), **traits)


# --- waits -------------------------------------------------------------------------------


def test_a_wait_holds_the_run_until_the_clock_passes_it(rig: Rig) -> None:
    rig.apply(WELCOME)
    _people(rig, "ana")
    rig.track("ana", "signed_up")
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.step, run.wake_at) == (
        RunStatus.WAITING,
        "pause",
        T0 + timedelta(days=1),
    )
    assert rig.sent() == [("ana", "hello", "Hello Ana")]
    assert rig.store.next_due() == T0 + timedelta(days=1)

    rig.clock.set(T0 + timedelta(hours=23, minutes=59))
    assert rig.worker.drain() == 0
    assert len(rig.sent()) == 1

    rig.clock.set(T0 + timedelta(days=1))
    assert rig.worker.drain() == 1
    assert rig.sent() == [("ana", "hello", "Hello Ana"), ("ana", "bye", "Day two")]
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.path) == (RunStatus.COMPLETED, ["hello", "pause", "bye"])
    assert rig.store.next_due() is None
    assert rig.sent_at()[1] == ("ana", T0 + timedelta(days=1))


# --- versions and migration --------------------------------------------------------------


def _edit(definition: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**definition, **changes}


WELCOME_V2 = _edit(
    WELCOME,
    steps=[
        {"id": "hello", "email": {"subject": "Hello {{ contact.first_name }}"}},
        {"id": "pause", "wait": "1d"},
        {"id": "bye", "email": {"subject": "Day two, version two"}},
    ],
)


def test_runs_in_flight_finish_on_their_version_and_new_runs_take_the_new_one(rig: Rig) -> None:
    assert rig.apply(WELCOME) == 1
    _people(rig, "ana", "ben")
    rig.track("ana", "signed_up")
    assert rig.apply(WELCOME_V2) == 2
    assert rig.apply(WELCOME_V2) == 2, "the same definition again is no new version"
    rig.track("ben", "signed_up")
    assert rig.run_of("ana", "welcome").version == 1
    assert rig.run_of("ben", "welcome").version == 2

    rig.advance(timedelta(days=2))
    assert rig.sent("ana")[-1] == ("ana", "bye", "Day two")
    assert rig.sent("ben")[-1] == ("ben", "bye", "Day two, version two")
    versions = {(m["contact_id"], m["step_id"]): m["version"] for m in rig.store.messages()}
    assert versions == {("ana", "hello"): 1, ("ana", "bye"): 1, ("ben", "hello"): 2,
                        ("ben", "bye"): 2}  # fmt: skip


BRANCHY = {
    "id": "nurture",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "route", "branch": [{"if": {"contact.vip": True}, "then": "long_pause"},
                                   {"else": "pause"}]},
        {"id": "pause", "wait": "1d", "next": "bye"},
        {"id": "long_pause", "wait": "2d"},
        {"id": "bye", "email": {"subject": "v1 bye"}},
    ],
}  # fmt: skip
BRANCHY_V2 = _edit(
    BRANCHY,
    steps=[
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {"id": "bye", "email": {"subject": "v2 bye"}},
    ],
)


def test_migrate_moves_runs_by_step_id_and_reports_runs_it_cannot_move(rig: Rig) -> None:
    rig.apply(BRANCHY)
    _people(rig, "ana")
    _people(rig, "vic", vip=True)
    rig.track("ana", "signed_up")
    rig.track("vic", "signed_up")
    assert rig.run_of("ana", "nurture").step == "pause"
    assert rig.run_of("vic", "nurture").step == "long_pause"
    rig.apply(BRANCHY_V2)
    _people(rig, "new")
    rig.track("new", "signed_up")  # starts on v2: nothing to move

    with pytest.raises(LookupError):
        migrate_runs(rig.store, WS, "nurture", 7, rig.now)

    dry = migrate_runs(rig.store, WS, "nurture", 2, rig.now, dry_run=True)
    by_contact = {m.contact_id: m for m in dry}
    assert set(by_contact) == {"ana", "vic"}
    assert by_contact["ana"].moved and by_contact["ana"].problem is None
    assert not by_contact["vic"].moved
    assert "long_pause" in (by_contact["vic"].problem or "")
    assert [r.version for r in rig.runs("nurture")] == [1, 1, 2], "a dry run moves nothing"

    moves = migrate_runs(rig.store, WS, "nurture", 2, rig.now)
    assert {m.contact_id: m.moved for m in moves} == {"ana": True, "vic": False}
    assert rig.run_of("ana", "nurture").version == 2
    assert rig.run_of("vic", "nurture").version == 1, "a run on a removed step stays put"
    assert rig.store.contact(WS, "ana") is not None
    with rig.store.engine.connect() as conn:
        leases = conn.execute(sa.select(t.contacts.c.lease_owner)).scalars().all()
    assert set(leases) == {None}, "migration gives its leases back"

    rig.advance(timedelta(days=3))
    assert rig.sent("ana")[-1] == ("ana", "bye", "v2 bye")
    assert rig.sent("vic")[-1] == ("vic", "bye", "v1 bye")
    assert rig.sent("new")[-1] == ("new", "bye", "v2 bye")
    assert {r.status for r in rig.runs("nurture")} == {RunStatus.COMPLETED}


# --- pause modes -------------------------------------------------------------------------


def test_drain_stops_new_runs_and_lets_runs_in_flight_finish(rig: Rig) -> None:
    rig.apply(WELCOME)
    _people(rig, "ana", "ben", "cy")
    rig.track("ana", "signed_up")
    assert pause(rig.store, WS, "welcome", Mode.DRAIN, rig.now)
    rig.track("ben", "signed_up")
    assert rig.runs(contact="ben") == []

    rig.advance(timedelta(days=1))
    assert rig.run_of("ana", "welcome").status == RunStatus.COMPLETED
    assert [s for _, s, _ in rig.sent("ana")] == ["hello", "bye"]
    assert rig.sent("ben") == []

    assert resume(rig.store, WS, "welcome", rig.now)
    rig.track("cy", "signed_up")
    assert rig.run_of("cy", "welcome").status == RunStatus.WAITING
    assert rig.runs(contact="ben") == [], "events seen while draining do not enrol later"


def test_freeze_holds_runs_and_resume_continues_them_without_sending_twice(rig: Rig) -> None:
    rig.apply(WELCOME)
    _people(rig, "ana", "ben")
    rig.track("ana", "signed_up")
    assert pause(rig.store, WS, "welcome", Mode.FREEZE, rig.now, reason="copy review")
    assert rig.store.workflow_rows()[0].reason == "copy review"
    rig.track("ben", "signed_up")
    assert rig.runs(contact="ben") == []

    rig.advance(timedelta(days=3))
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.step, run.wake_at) == (RunStatus.ACTIVE, "bye", None)
    assert run.path == ["hello", "pause"], "the held step has not run"
    assert rig.sent() == [("ana", "hello", "Hello Ana")], "a frozen run sends nothing"

    rig.advance(timedelta(days=1))  # more handling while frozen changes nothing
    assert rig.run_of("ana", "welcome") == run

    assert resume(rig.store, WS, "welcome", rig.now)
    rig.worker.drain()
    rig.advance(timedelta(days=2))
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.path) == (RunStatus.COMPLETED, ["hello", "pause", "bye"])
    assert Counter(s for _, s, _ in rig.sent()) == {"hello": 1, "bye": 1}
    assert rig.sent_at()[-1] == ("ana", T0 + timedelta(days=4)), "sent on resume"
    held = [row for row in _journal(rig.store) if row[1] == "held"]
    assert held == [("bye", "held")]


def test_cancel_ends_runs_in_flight_as_exited(rig: Rig) -> None:
    rig.apply(WELCOME)
    _people(rig, "ana", "ben")
    rig.track("ana", "signed_up")
    assert rig.store.next_due() == T0 + timedelta(days=1)
    assert pause(rig.store, WS, "welcome", Mode.CANCEL, rig.now)
    rig.worker.drain()
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.reason, run.ended_at) == (RunStatus.EXITED, "workflow cancelled", T0)
    assert rig.store.next_due() is None, "the cancelled run's wake is gone"
    rig.track("ben", "signed_up")
    rig.advance(timedelta(days=2))
    assert rig.sent() == [("ana", "hello", "Hello Ana")]
    assert rig.runs(contact="ben") == []
    with pytest.raises(ValueError):
        pause(rig.store, WS, "welcome", Mode.ACTIVE, rig.now)


def _journal(store: SqlStore) -> list[tuple[str | None, str]]:
    j = t.journal
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(j.c.step_id, j.c.action).order_by(j.c.seq))
        return [(step, action) for step, action in rows]


# --- schedules and date triggers ---------------------------------------------------------


MORNING = {
    "id": "morning",
    "trigger": {"schedule": {"cron": "0 9 * * *"}},
    "re_entry": "always",
    "steps": [{"id": "digest", "email": {"subject": "Good morning"}}],
}


def test_a_cron_schedule_fires_at_nine_in_each_contacts_zone(rig: Rig) -> None:
    _people(rig, "ber", timezone="Europe/Berlin")
    _people(rig, "nyc", timezone="America/New_York")
    _people(rig, "utc")  # no zone: the default, UTC
    rig.apply(MORNING)  # at T0, 09:00 UTC: that tick is due at once
    rig.run_until(T0 + timedelta(hours=1))
    _people(rig, "tok", timezone="Asia/Tokyo")  # a zone first seen after the apply

    rig.run_until(_utc("2025-09-02T14:00:00Z"))
    assert sorted(rig.sent_at(), key=lambda s: (s[1], s[0])) == [
        ("utc", T0),
        ("nyc", _utc("2025-09-01T13:00:00Z")),  # 09:00 EDT
        ("tok", _utc("2025-09-02T00:00:00Z")),  # 09:00 JST
        ("ber", _utc("2025-09-02T07:00:00Z")),  # 09:00 CEST
        ("utc", _utc("2025-09-02T09:00:00Z")),
        ("nyc", _utc("2025-09-02T13:00:00Z")),
    ]
    starts = {(r.contact_id, r.trigger.at) for r in rig.runs("morning")}
    assert ("ber", _utc("2025-09-02T07:00:00Z")) in starts
    assert len(rig.runs("morning")) == 6


def test_a_one_off_schedule_broadcasts_once_to_everyone(rig: Rig) -> None:
    _people(rig, "ana", "ben", timezone="Asia/Tokyo")
    _people(rig, "cy")
    at = "2025-09-03T12:00:00Z"
    rig.apply({
        "id": "launch",
        "trigger": {"schedule": {"at": at}},
        "steps": [{"id": "news", "email": {"subject": "We launched"}}],
    })  # fmt: skip
    assert rig.store.next_due() == _utc(at)
    rig.run_until(_utc(at) - timedelta(seconds=1))
    assert rig.sent() == []
    rig.run_until(_utc("2025-09-10T00:00:00Z"))
    assert sorted(rig.sent_at()) == [(c, _utc(at)) for c in ("ana", "ben", "cy")]
    _people(rig, "late")
    rig.advance(timedelta(days=1))
    assert len(rig.sent()) == 3


TRIAL = {
    "id": "trial",
    "trigger": {"date": {"attribute": "trial_ends_at", "offset": "-3d", "at": "10:00"}},
    "steps": [{"id": "reminder", "email": {"subject": "3 days left"}}],
}


def test_a_date_trigger_backfills_at_apply_and_plans_contacts_identified_later(
    rig: Rig,
) -> None:
    _people(rig, "ivy", timezone="America/New_York", trial_ends_at="2025-09-10")
    _people(rig, "jun", timezone="Asia/Tokyo", trial_ends_at="2025-09-10")
    _people(rig, "old", trial_ends_at="2025-09-02")  # fired before the workflow existed
    _people(rig, "max")  # no trial
    rig.apply(TRIAL)
    with rig.store.engine.connect() as conn:
        planned = dict(
            conn.execute(sa.select(t.date_triggers.c.contact_id, t.date_triggers.c.fire_at)).all()
        )
    assert planned == {
        "ivy": _utc("2025-09-07T14:00:00Z"),  # 10:00 EDT
        "jun": _utc("2025-09-07T01:00:00Z"),  # 10:00 JST
    }

    rig.clock.set(T0 + timedelta(days=1))
    _people(rig, "kai", timezone="Europe/Berlin", trial_ends_at="2025-09-12")
    _people(rig, "lea", timezone="Europe/Berlin", trial_ends_at="2025-09-11")
    rig.identify("lea", trial_ends_at="2025-09-20")  # moved: plan again
    _people(rig, "zed", trial_ends_at="2025-09-15")
    rig.identify("zed", trial_ends_at=None)  # no trial after all: unplanned
    rig.run_until(_utc("2025-09-30T00:00:00Z"))
    assert sorted(rig.sent_at(), key=lambda s: s[1]) == [
        ("jun", _utc("2025-09-07T01:00:00Z")),
        ("ivy", _utc("2025-09-07T14:00:00Z")),
        ("kai", _utc("2025-09-09T08:00:00Z")),  # 10:00 CEST
        ("lea", _utc("2025-09-17T08:00:00Z")),
    ]
    assert [r.trigger.properties["value"] for r in rig.runs("trial", "lea")] == ["2025-09-20"]


# --- steps that reach out ----------------------------------------------------------------


def test_an_enroll_step_starts_the_other_workflow_through_the_inbox(rig: Rig) -> None:
    rig.apply({
        "id": "onboard",
        "trigger": {"event": "signed_up"},
        "steps": [{"id": "hand_over", "enroll": "nurture"}],
    })  # fmt: skip
    rig.apply({
        "id": "nurture",
        "trigger": {"event": "never_sent"},
        "steps": [{"id": "tip", "email": {"subject": "A tip"}}],
    })  # fmt: skip
    _people(rig, "ana")
    rig.track("ana", "signed_up")
    assert rig.run_of("ana", "onboard").status == RunStatus.COMPLETED
    nurture = rig.run_of("ana", "nurture")
    assert nurture.status == RunStatus.COMPLETED
    assert nurture.trigger.name == "signed_up"
    assert rig.sent() == [("ana", "tip", "A tip")]
    e = t.events
    with rig.store.engine.connect() as conn:
        inbox = conn.execute(
            sa.select(e.c.name, e.c.processed_at, e.c.error).where(e.c.kind == "enroll")
        ).all()
    assert inbox == [("nurture", T0, None)]


def test_a_webhook_step_is_outboxed_as_an_action(rig: Rig) -> None:
    rig.apply({
        "id": "crm",
        "trigger": {"event": "signed_up"},
        "steps": [{"id": "notify", "webhook": {
            "url": "https://hooks.example.com/new",
            "headers": {"X-Token": "t"},
            "body": {"contact": "{{ contact.id }}", "plan": "{{ event.plan }}"},
        }}],
    })  # fmt: skip
    rig.track("ana", "signed_up", plan="pro")
    with rig.store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.actions)).all()
    [row] = rows
    run = rig.run_of("ana", "crm")
    assert (row.kind, row.run_id, row.step_id, row.status) == (
        "webhook",
        run.id,
        "notify",
        "queued",
    )
    assert row.payload == {
        "url": "https://hooks.example.com/new",
        "method": "POST",
        "headers": {"X-Token": "t"},
        "body": {"contact": "ana", "plan": "pro"},
    }
    assert row.next_attempt_at == T0


# --- events ------------------------------------------------------------------------------


def test_a_goal_event_ends_a_waiting_run_as_converted(rig: Rig) -> None:
    rig.apply(_edit(WELCOME, goal={"event": "purchased"}))
    _people(rig, "ana")
    rig.track("ana", "signed_up")
    rig.clock.set(T0 + timedelta(hours=5))
    rig.track("ana", "purchased", total=10)
    run = rig.run_of("ana", "welcome")
    assert (run.status, run.reason) == (RunStatus.CONVERTED, "goal: purchased")
    assert run.ended_at == T0 + timedelta(hours=5)
    assert rig.store.next_due() is None
    rig.advance(timedelta(days=3))
    assert [s for _, s, _ in rig.sent()] == ["hello"]


def test_one_contacts_events_are_handled_in_event_time_order(rig: Rig) -> None:
    rig.apply({
        "id": "count",
        "trigger": {"event": "ping"},
        "re_entry": "always",
        "steps": [{"id": "note", "update": {"last_n": "{{ event.n }}"}}],
    })  # fmt: skip
    at = [T0 + timedelta(minutes=m) for m in range(4)]
    rig.ingest(InboundEvent("ana", "ping", at[3], {"n": 3}, id="a3"))
    rig.ingest(InboundEvent("bo", "ping", at[2], {"n": 2}, id="b2"))
    rig.ingest(
        InboundEvent("ana", "ping", at[1], {"n": 1}, id="a1"),
        InboundEvent("bo", "ping", at[1], {"n": 1}, id="b1"),
    )
    rig.ingest(InboundEvent("ana", "ping", at[2], {"n": 2}, id="a2"))
    rig.worker.drain()
    for contact, count in (("ana", 3), ("bo", 2)):
        runs = sorted(rig.runs("count", contact), key=lambda r: r.id)
        assert len(runs) == count
        contact_row = rig.store.contact(WS, contact)
        assert contact_row is not None and contact_row.attributes["last_n"] == str(count)
    j = t.journal
    with rig.store.engine.connect() as conn:
        order = conn.execute(
            sa.select(j.c.contact_id, j.c.detail).where(j.c.action == "update").order_by(j.c.seq)
        ).all()
    seen: dict[str, list[str]] = {}
    for contact, detail in order:
        seen.setdefault(contact, []).append(detail["values"]["last_n"])
    assert seen == {"ana": ["1", "2", "3"], "bo": ["1", "2"]}
    assert rig.store.pending_events() == 0


def test_identify_changes_attributes_and_fires_an_attribute_trigger(rig: Rig) -> None:
    rig.apply({
        "id": "upgraded",
        "trigger": {"attribute": {"name": "plan", "becomes": "pro"}},
        "steps": [{"id": "thanks", "email": {"subject": "Welcome to Pro"}}],
    })  # fmt: skip
    rig.identify("ana", email="ana@example.com", plan="free", timezone="Europe/Paris")
    assert rig.runs("upgraded") == []
    contact = rig.store.contact(WS, "ana")
    assert contact is not None
    assert (contact.email, contact.timezone, contact.attributes) == (
        "ana@example.com", "Europe/Paris", {"plan": "free"}
    )  # fmt: skip
    rig.identify("ana", plan="pro", seats=3)
    assert rig.run_of("ana", "upgraded").status == RunStatus.COMPLETED
    assert rig.sent() == [("ana", "thanks", "Welcome to Pro")]
    contact = rig.store.contact(WS, "ana")
    assert contact is not None and contact.attributes == {"plan": "pro", "seats": 3}
    rig.identify("ana", plan="pro")  # not a change
    assert len(rig.runs("upgraded")) == 1


def test_re_entry_never_gives_one_run_however_often_the_trigger_comes(rig: Rig) -> None:
    rig.apply({
        "id": "once",
        "trigger": {"event": "ping"},
        "steps": [{"id": "hi", "email": {"subject": "Hi"}}],
    })  # fmt: skip
    _people(rig, "ana")
    rig.ingest(
        InboundEvent("ana", "ping", T0, id="p1"),
        InboundEvent("ana", "ping", T0 + timedelta(seconds=1), id="p2"),
    )
    rig.worker.drain()
    rig.advance(timedelta(days=40))
    rig.track("ana", "ping")
    assert len(rig.runs("once", "ana")) == 1
    assert len(rig.sent()) == 1
    assert rig.store.pending_events() == 0


@pytest.fixture
def exploding() -> Iterator[str]:
    name = "test_runtime_explodes"

    @register(name)
    def explodes(scope: object) -> bool:
        raise RuntimeError("kaboom")

    try:
        yield name
    finally:
        PREDICATES.pop(name, None)


def test_an_event_the_engine_fails_on_is_marked_and_does_not_block(
    rig: Rig, exploding: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig.apply({
        "id": "risky",
        "trigger": {"event": "risky", "where": {"predicate": exploding}},
        "steps": [{"id": "never", "email": {"subject": "never"}}],
    })  # fmt: skip
    rig.apply({
        "id": "safe",
        "trigger": {"event": "ping"},
        "steps": [{"id": "pong", "email": {"subject": "pong"}}],
    })  # fmt: skip
    _people(rig, "ana", "ben")
    rig.ingest(
        InboundEvent("ana", "risky", T0, id="r1"),
        InboundEvent("ana", "ping", T0 + timedelta(seconds=1), id="p1"),
        InboundEvent("ben", "ping", T0, id="p2"),
    )
    with caplog.at_level("ERROR", logger="flowmail.worker"):
        assert rig.worker.drain() == 2
    assert "r1" in caplog.text
    e = t.events
    with rig.store.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(e.c.id, e.c.error).where(e.c.kind == "track")).all())
    assert rows == {"r1": "RuntimeError: kaboom", "p1": None, "p2": None}
    assert rig.store.pending_events() == 0
    assert sorted(c for c, _, _ in rig.sent()) == ["ana", "ben"]
    assert rig.runs("risky") == []


def test_a_timer_the_engine_fails_on_fails_its_run_and_does_not_block(
    rig: Rig, exploding: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig.apply({
        "id": "fragile",
        "trigger": {"event": "signed_up"},
        "steps": [
            {"id": "pause", "wait": "1h"},
            {"id": "route", "branch": [{"if": {"predicate": exploding}, "then": "yes"},
                                       {"else": "no"}]},
            {"id": "yes", "email": {"subject": "yes"}, "next": "end"},
            {"id": "no", "email": {"subject": "no"}},
        ],
    })  # fmt: skip
    rig.apply(_edit(WELCOME, steps=[{"id": "hello", "email": {"subject": "Hello"}}]))
    _people(rig, "ana", "ben")
    rig.track("ana", "signed_up")
    rig.track("ben", "signed_up")
    with caplog.at_level("ERROR", logger="flowmail.worker"):
        rig.advance(timedelta(hours=2))
    fragile = rig.runs("fragile")
    assert [(r.status, r.reason) for r in fragile] == [
        (RunStatus.FAILED, "RuntimeError: kaboom")
    ] * 2
    assert "kaboom" in caplog.text
    assert rig.store.next_due() is None
    rig.track("ana", "signed_up", at=rig.now)  # the contact still takes events
    assert rig.store.pending_events() == 0
    assert sorted(s for _, s, _ in rig.sent()) == ["hello", "hello"]


def test_workspaces_run_their_own_workflows_for_their_own_contacts(rig: Rig) -> None:
    rig.store.ensure_workspace("acme", rig.now)
    apply_workflow(rig.store, "acme", _edit(WELCOME, steps=WELCOME["steps"][:1]), rig.now)
    rig.apply(_edit(WELCOME, id="default_only", steps=WELCOME["steps"][:1]))
    rig.ingest(
        InboundEvent("ana", "identify", T0, traits={"email": "ana@acme.test"}, id="x1",
                     kind="identify", workspace_id="acme"),
        InboundEvent("ana", "signed_up", T0, id="x2", workspace_id="acme"),
        InboundEvent("ana", "identify", T0, traits={"email": "ana@default.test"}, id="x1",
                     kind="identify"),
        InboundEvent("ana", "signed_up", T0, id="x2"),
    )  # fmt: skip
    assert rig.worker.drain() == 2
    assert [(r.workflow_id, r.status) for r in rig.store.runs("acme")] == [
        ("welcome", RunStatus.COMPLETED)
    ]
    assert [r.workflow_id for r in rig.store.runs(WS)] == ["default_only"]
    assert [m["to_address"] for m in rig.store.messages("acme")] == ["ana@acme.test"]
    assert [m["to_address"] for m in rig.store.messages(WS)] == ["ana@default.test"]
    acme = rig.store.contact("acme", "ana")
    assert acme is not None and acme.email == "ana@acme.test"


def test_a_late_worker_handles_timers_and_events_in_time_order(rig: Rig) -> None:
    """Work that piled up is handled as a punctual worker would have: the 10:00 wake sends
    its email before the 10:30 goal event ends the run."""
    rig.apply(_edit(WELCOME, goal={"event": "purchased"}))
    _people(rig, "ana")
    rig.track("ana", "signed_up")  # waits until T0 + 1 day
    wake = T0 + timedelta(days=1)
    rig.ingest(InboundEvent("ana", "purchased", wake + timedelta(minutes=30), id="late"))
    rig.clock.set(wake + timedelta(hours=1))  # the worker was down meanwhile
    assert rig.worker.drain() == 1
    run = rig.run_of("ana", "welcome")
    assert run.path == ["hello", "pause", "bye"]
    assert run.status == RunStatus.COMPLETED, "the run ended before the goal came"
    assert [s for _, s, _ in rig.sent()] == ["hello", "bye"]
