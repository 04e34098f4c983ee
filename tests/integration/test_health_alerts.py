"""Health snapshots, samples and alerts on SQLite and PostgreSQL, with stores filled by
hand (the counts below are counted by hand) and a real HTTP server for the webhook."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import T0
from flowmail.analytics import alerts
from flowmail.analytics.health import sample, slot_of, snapshot
from flowmail.analytics.model import EmailFigures, HealthFigures, StepFigures, WorkflowFigures
from flowmail.analytics.monitor import tick
from flowmail.clock import VirtualClock
from flowmail.runtime.actions import ActionDispatcher, RetryPolicy
from flowmail.runtime.service import apply_workflow
from flowmail.settings import Settings
from flowmail.store import health as db
from flowmail.store import schema as t
from flowmail.store.sql import SqlStore

WELCOME: dict[str, Any] = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {"id": "call", "webhook": {"url": "https://crm.example/hook"}},
        {"id": "bye", "email": {"subject": "Bye"}},
    ],
}
S = timedelta(seconds=1)


def _insert(store: SqlStore, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        for row in rows:  # one at a time: seq follows the order given
            conn.execute(sa.insert(table).values(row))


def _event(eid: str, received: datetime, processed: datetime | None) -> dict[str, Any]:
    return {
        "workspace_id": "default",
        "id": eid,
        "contact_id": "c1",
        "kind": "track",
        "name": "signed_up",
        "at": received,
        "properties": {},
        "received_at": received,
        "processed_at": processed,
    }


def _message(mid: str, status: str, send_after: datetime = T0) -> dict[str, Any]:
    return {
        "workspace_id": "default",
        "id": mid,
        "run_id": "r0",
        "contact_id": "c1",
        "workflow_id": "welcome",
        "version": 1,
        "step_id": "hello",
        "subject": "Hello",
        "topic": "marketing",
        "priority": 0,
        "on_capped": "skip",
        "status": status,
        "created_at": T0 - timedelta(hours=1),
        "send_after": send_after,
        "attempts": 1,
    }


def _delivery(mid: str, kind: str, at: datetime, **detail: Any) -> dict[str, Any]:
    return {
        "workspace_id": "default",
        "message_id": mid,
        "contact_id": "c1",
        "kind": kind,
        "at": at,
        "detail": detail,
    }


def _run(rid: str, status: str, step: str) -> dict[str, Any]:
    return {
        "workspace_id": "default",
        "id": rid,
        "workflow_id": "welcome",
        "version": 1,
        "contact_id": "c1",
        "status": status,
        "step": step,
        "started_at": T0 - timedelta(hours=2),
        "ended_at": T0 - timedelta(minutes=5),
        "state": {},
    }


def _journal(rid: str, step: str, action: str, at: datetime) -> dict[str, Any]:
    return {
        "workspace_id": "default",
        "run_id": rid,
        "contact_id": "c1",
        "workflow_id": "welcome",
        "step_id": step,
        "at": at,
        "action": action,
        "detail": {},
    }


def _fill(store: SqlStore) -> None:
    """Three pending events (received 10, 5 and 1 minutes ago), two of three processed
    ones inside the last minute, one due wake, queued/due/dead messages, deliveries of
    two providers, and a run that failed at the webhook step."""
    apply_workflow(store, "default", WELCOME, T0 - timedelta(days=1))
    old = T0 - timedelta(minutes=20)
    _insert(
        store,
        t.events,
        [
            _event("e6", old, T0 - timedelta(minutes=2)),
            _event("e5", old, T0 - 45 * S),
            _event("e4", old, T0 - 30 * S),
            _event("e1", T0 - timedelta(minutes=10), None),
            _event("e2", T0 - timedelta(minutes=5), None),
            _event("e3", T0 - timedelta(minutes=1), None),
        ],
    )
    contact = {"workspace_id": "default", "attributes": {}, "created_at": old, "updated_at": old}
    _insert(
        store,
        t.contacts,
        [
            {**contact, "id": "c1", "wake_at": T0 - S},
            {**contact, "id": "c2", "wake_at": T0 + timedelta(hours=1)},
            {**contact, "id": "c3", "wake_at": None},
        ],
    )
    _insert(
        store,
        t.messages,
        [
            _message("q1", "queued", T0 - timedelta(minutes=1)),
            _message("q2", "queued", T0 + timedelta(hours=1)),
            _message("m2", "queued", T0 + timedelta(minutes=1)),
            _message("d1", "dead"),
            _message("d2", "dead"),
            _message("m1", "sent"),
            _message("m3", "failed"),
            _message("m4", "sent"),
        ],
    )
    _insert(
        store,
        t.message_events,
        [
            _delivery("m4", "sending", T0 - timedelta(minutes=5, seconds=1), provider="smtp"),
            _delivery("m4", "sent", T0 - timedelta(minutes=5), provider="smtp"),
            _delivery("m1", "sending", T0 - 40 * S, provider="smtp"),
            _delivery("m1", "sent", T0 - timedelta(seconds=39.8), provider="smtp"),
            _delivery("m2", "sending", T0 - 30 * S, provider="smtp"),
            _delivery("m2", "retry", T0 - 29 * S, provider="smtp", code="421"),
            _delivery("m3", "sending", T0 - 20 * S, provider="ses"),
            _delivery("m3", "failed", T0 - timedelta(seconds=19.5), provider="ses",
                      hard_bounce=True),
            _delivery("d1", "sending", T0 - 15 * S, provider="smtp"),
            _delivery("d1", "dead", T0 - 10 * S, provider="smtp"),
        ],
    )  # fmt: skip
    _insert(store, t.runs, [_run("r1", "failed", "call"), _run("r2", "completed", "bye")])
    _insert(
        store,
        t.journal,
        [
            _journal("r1", "call", "failed", T0 - timedelta(minutes=5)),
            _journal("r2", "bye", "completed", T0 - timedelta(minutes=3)),
        ],
    )


def test_snapshot_counts_queues_lag_throughput_errors_and_providers(store: SqlStore) -> None:
    _fill(store)
    health = snapshot(store, Settings(health_sample_seconds=60), T0)
    assert health.at == T0.isoformat()
    assert (health.pending_events, health.due_wakes) == (3, 1)
    assert (health.queued_messages, health.due_messages, health.dead_messages) == (3, 1, 2)
    assert health.lag_seconds == 600.0  # e1, received 10 minutes ago
    assert health.events_per_minute == 2.0  # e4 and e5; e6 was 2 minutes ago
    assert health.sent_per_minute == 1.0  # m1; m4 was 5 minutes ago
    # smtp: m1 0.2 s, m2 1 s (retry), d1 5 s (dead); ses: m3 0.5 s, a hard bounce
    assert health.provider_latency_ms == {"ses": 500.0, "smtp": 2066.7}
    assert health.provider_error_rate == {"ses": 0.0, "smtp": 0.6667}
    # runs ended: r1 failed, r2 completed; messages finished: m4, m1 sent, m3 failed, d1
    # dead: 3 failures in 6; by workflow and step kind
    assert health.error_rate == 0.5
    assert health.errors == {"welcome/email": 2, "welcome/webhook": 1}


def test_errors_come_from_the_last_hours_counters_of_every_workspace(store: SqlStore) -> None:
    apply_workflow(store, "acme", WELCOME, T0 - timedelta(days=1))
    key = {"workspace_id": "acme", "workflow_id": "welcome", "version": 1, "label": "", "shard": 0}
    _insert(
        store,
        t.stats,
        [
            {**key, "step_id": "hello", "metric": "msg:sent", "bucket": T0 - timedelta(hours=1),
             "value": 5},
            {**key, "step_id": "hello", "metric": "msg:sent", "bucket": T0, "value": 3},
            {**key, "step_id": "hello", "metric": "msg:dead", "bucket": T0, "value": 2},
            {**key, "step_id": "hello", "metric": "msg:failed",
             "bucket": T0 - timedelta(hours=2), "value": 7},  # before the window
            {**key, "step_id": "hello", "metric": "msg:opened", "bucket": T0, "value": 9},
            {**key, "version": 9, "step_id": "gone", "metric": "run:failed", "bucket": T0,
             "value": 1},  # a version whose definition is not stored
        ],
    )  # fmt: skip
    health = snapshot(store, Settings(), T0 + timedelta(minutes=30))
    assert health.errors == {"acme:welcome/email": 2, "acme:welcome/unknown": 1}
    assert health.error_rate == 3 / 11
    assert (health.pending_events, health.lag_seconds, health.provider_latency_ms) == (0, 0.0, {})


# --- samples ----------------------------------------------------------------------------


def test_one_sample_per_interval_even_with_two_callers(db_url: str) -> None:
    settings = Settings(health_sample_seconds=60, retention_days=1)
    stores = [SqlStore.from_url(db_url), SqlStore.from_url(db_url)]
    try:
        stale = T0 - timedelta(days=2)
        assert db.save_sample(stores[0], stale, {"pending_events": 99})
        now = T0 + 30 * S
        barrier = threading.Barrier(2)
        taken: list[HealthFigures | None] = []

        def take(store: SqlStore) -> None:
            barrier.wait()
            taken.append(sample(store, settings, now))

        threads = [threading.Thread(target=take, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(x is None for x in taken) == [False, True]
        assert sample(stores[0], settings, T0 + 59 * S) is None  # same minute: taken
        assert sample(stores[1], settings, T0 + 61 * S) is not None  # the next one
        rows = db.samples(stores[0], stale, T0 + timedelta(hours=1))
        assert [at for at, _ in rows] == [T0, T0 + 60 * S]  # the stale one was pruned
        assert rows[0][1]["at"] == now.isoformat() and rows[0][1]["pending_events"] == 0
        assert db.samples(stores[0], T0 + S, T0 + 59 * S) == []
        assert not db.save_sample(stores[0], T0, {})  # the slot's first insert won
    finally:
        for store in stores:
            store.close()


def test_slots_round_down_to_the_interval() -> None:
    assert slot_of(T0 + timedelta(seconds=59.9), 60) == T0
    assert slot_of(T0 + timedelta(minutes=7, seconds=1), 300) == T0 + timedelta(minutes=5)
    assert slot_of(T0 + timedelta(seconds=2.5), 0.5) == T0 + timedelta(seconds=2.5)


# --- alerts -----------------------------------------------------------------------------


def _health(**values: Any) -> HealthFigures:
    return HealthFigures(at=T0.isoformat(), **values)


def _firing_rows(store: SqlStore) -> list[tuple[str, str, str]]:
    a = t.alerts
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.workspace_id, a.c.kind, a.c.subject)
            .where(a.c.status == "firing")
            .order_by(a.c.seq)
        )
        return [(r[0], r[1], r[2]) for r in rows]


def test_an_alert_fires_resolves_and_fires_again_with_one_open_row(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings()  # queue depth 10,000
    caplog.set_level(logging.INFO, logger="flowmail.alerts")
    [fired] = alerts.evaluate(store, settings, T0, _health(pending_events=12_000), [])
    assert (fired.kind, fired.subject, fired.status, fired.value) == (
        "queue_depth",
        "",
        "firing",
        12_000,
    )
    assert fired.started_at == T0.isoformat() and fired.resolved_at is None
    assert fired.message.startswith("queue depth 12,000: 12,000 events pending")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    later = T0 + timedelta(minutes=1)
    assert alerts.evaluate(store, settings, later, _health(due_messages=15_000), []) == []
    assert _firing_rows(store) == [("*", "queue_depth", "")]
    [current] = alerts.active(store, "default")
    assert current.value == 15_000 and "15,000 messages due" in current.message
    [resolved] = alerts.evaluate(store, settings, T0 + timedelta(minutes=2), _health(), [])
    assert (resolved.status, resolved.resolved_at) == (
        "resolved",
        (T0 + timedelta(minutes=2)).isoformat(),
    )
    assert resolved.started_at == T0.isoformat() and resolved.value == 0
    assert _firing_rows(store) == [] and alerts.active(store, "default") == []
    assert caplog.records[-1].levelname == "INFO"
    assert "alert resolved: queue depth 0" in caplog.records[-1].getMessage()
    [again] = alerts.evaluate(
        store, settings, T0 + timedelta(minutes=3), _health(pending_events=10_000), []
    )
    assert again.status == "firing" and again.started_at == (T0 + timedelta(minutes=3)).isoformat()
    assert _firing_rows(store) == [("*", "queue_depth", "")]
    history = alerts.recent(store, "default")
    assert [(a.status, a.started_at) for a in history] == [
        ("firing", (T0 + timedelta(minutes=3)).isoformat()),
        ("resolved", T0.isoformat()),
    ]
    assert len(alerts.recent(store, "default", limit=1)) == 1


def test_lag_and_error_rate_alerts_need_their_thresholds_and_volume(store: SqlStore) -> None:
    settings = Settings(alert_lag_seconds=300, alert_error_rate=0.05, alert_min_volume=100)
    # 2 failures in 4: 50 %, but too few to judge; lag exactly at the threshold fires
    quiet = _health(lag_seconds=300.0, error_rate=0.5, errors={"welcome/email": 2})
    [lag] = alerts.evaluate(store, settings, T0, quiet, [])
    assert (lag.kind, lag.value, lag.threshold) == ("lag", 300.0, 300.0)
    assert lag.message.startswith("the oldest unprocessed event is 5m old (alert at 5m)")
    # 12 failures in 200 (6 %): judged, fires; the lag is back under
    busy = _health(lag_seconds=10.0, error_rate=0.06, errors={"welcome/email": 8, "x/webhook": 4})
    changes = alerts.evaluate(store, settings, T0 + timedelta(minutes=1), busy, [])
    assert [(a.kind, a.status) for a in changes] == [("lag", "resolved"), ("error_rate", "firing")]
    assert changes[1].message == (
        "error rate 6.0%: 12 failures in 200 runs ended and messages finished since the "
        "previous hour (alert at 5.0%); most: welcome/email (8), x/webhook (4)"
    )
    assert alerts.error_volume(busy) == 200


def _workflow(workflow_id: str, version: int, **email: int) -> WorkflowFigures:
    hello = StepFigures("hello", "email", email=EmailFigures(**email))  # type: ignore[arg-type]
    return WorkflowFigures(workflow_id, version, steps=[hello])


def test_workflow_bounce_and_complaint_alerts_over_the_last_day(store: SqlStore) -> None:
    settings = Settings(alert_bounce_rate=0.05, complaint_alert_rate=0.001, alert_min_volume=100)
    figures = [
        # welcome, two versions: 200 sent and delivered, 12 bounces (6 %), 1 complaint (0.5 %)
        _workflow("welcome", 1, sent=120, delivered=120, bounced=8, complained=1),
        _workflow("welcome", 2, sent=80, delivered=80, bounced=4),
        # under the minimum volume: half bounce, no alert
        _workflow("small", 1, sent=50, delivered=50, bounced=25),
    ]
    changes = alerts.evaluate(store, settings, T0, _health(), figures)
    assert [(a.kind, a.subject, round(a.value, 4)) for a in changes] == [
        ("bounce_rate", "welcome", 0.06),
        ("complaint_rate", "welcome", 0.005),
    ]
    assert changes[0].message == (
        "workflow 'welcome': bounce rate 6.00% over the last 24 h (12 bounces, 200 emails; "
        "alert at 5.00%)"
    )
    # another workspace's evaluation leaves these alone
    assert alerts.evaluate(store, settings, T0, _health(), [], workspace_id="acme") == []
    assert alerts.active(store, "acme") == []
    assert [a.kind for a in alerts.active(store, "default")] == ["complaint_rate", "bounce_rate"]
    # bounces back to 2 in 200 (1 %): resolved; the complaint stays
    better = [_workflow("welcome", 2, sent=200, delivered=200, bounced=2, complained=1)]
    [resolved] = alerts.evaluate(store, settings, T0 + timedelta(hours=1), _health(), better)
    assert (resolved.kind, resolved.status, resolved.value) == ("bounce_rate", "resolved", 0.01)
    # no figures for welcome any more (nothing sent in the last day): resolved
    [gone] = alerts.evaluate(store, settings, T0 + timedelta(hours=2), _health(), [])
    assert (gone.kind, gone.status) == ("complaint_rate", "resolved")
    assert gone.message.endswith("; no longer measured")
    assert _firing_rows(store) == []


def test_an_evaluation_waits_for_one_in_progress_and_opens_no_second_row(db_url: str) -> None:
    first, second = SqlStore.from_url(db_url), SqlStore.from_url(db_url)
    try:
        changes: list[list[str]] = []
        with first.engine.begin() as conn:  # another process, halfway through evaluating
            db.lock_alerts(first, conn)
            db.open_alert(conn, "*", "queue_depth", "", 50_000, 10_000, "queue depth 50,000", T0)

            def run() -> None:
                found = alerts.evaluate(second, Settings(), T0, _health(pending_events=50_000), [])
                changes.append([a.kind for a in found])

            waiting = threading.Thread(target=run)
            waiting.start()
            waiting.join(timeout=0.5)
            assert waiting.is_alive()  # held by the lock until the first one commits
        waiting.join(timeout=30)
        assert changes == [[]]  # it found the alert already firing
        assert _firing_rows(first) == [("*", "queue_depth", "")]
    finally:
        first.close()
        second.close()


# --- the webhook ------------------------------------------------------------------------


class Receiver:
    """A local HTTP server that answers the queued statuses (then 200) and keeps bodies."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_alert_changes_are_posted_reliably_to_the_webhook(db_url: str, receiver: Receiver) -> None:
    settings = Settings(alert_webhook_url=receiver.url)
    clock = VirtualClock(T0)
    store = SqlStore.from_url(db_url)
    alerts.evaluate(store, settings, T0, _health(lag_seconds=900.0), [])
    alerts.evaluate(store, settings, T0 + timedelta(minutes=5), _health(), [])
    store.close()  # "a crash": the calls are rows, not memory
    assert receiver.bodies == []
    receiver.statuses = [500]  # the first call fails and is retried
    store = SqlStore.from_url(db_url)
    try:
        clock.set(T0 + timedelta(minutes=5))
        policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=10))
        dispatcher = ActionDispatcher(store, clock, "test", policy=policy)
        assert dispatcher.step() == 2
        clock.advance(timedelta(seconds=10))
        assert dispatcher.step() == 1
        assert dispatcher.step() == 0
        dispatcher.close()
        calls = store.actions("*")
    finally:
        store.close()
    assert [(c["kind"], c["status"], c["attempts"]) for c in calls] == [
        ("alert", "done", 2),
        ("alert", "done", 1),
    ]
    delivered = sorted(receiver.bodies[1:], key=lambda b: b["status"])
    assert receiver.bodies[0]["type"] in ("alert.firing", "alert.resolved")
    firing, resolved = delivered[0], delivered[1]
    assert firing == {
        "type": "alert.firing",
        "workspace_id": "*",
        "kind": "lag",
        "subject": "",
        "status": "firing",
        "value": 900.0,
        "threshold": 300.0,
        "message": "the oldest unprocessed event is 15m old (alert at 5m); are the workers "
        "running and keeping up?",
        "started_at": T0.isoformat(),
        "resolved_at": None,
        "text": "[flowmail] FIRING lag: the oldest unprocessed event is 15m old (alert at 5m); "
        "are the workers running and keeping up?",
    }
    assert (resolved["type"], resolved["resolved_at"]) == (
        "alert.resolved",
        (T0 + timedelta(minutes=5)).isoformat(),
    )


# --- the monitor ------------------------------------------------------------------------


def test_tick_samples_and_evaluates_once_per_interval(store: SqlStore) -> None:
    apply_workflow(store, "default", WELCOME, T0 - timedelta(days=1))
    apply_workflow(store, "acme", WELCOME, T0 - timedelta(days=1))
    settings = Settings(health_sample_seconds=60, alert_min_volume=100, retention_days=90)
    long_ago = T0 - timedelta(days=91)
    alerts.evaluate(store, settings, long_ago, _health(lag_seconds=600.0), [])
    alerts.evaluate(store, settings, long_ago + timedelta(minutes=1), _health(), [])
    alerts.evaluate(store, settings, T0 - timedelta(days=89), _health(lag_seconds=600.0), [])
    alerts.evaluate(store, settings, T0 - timedelta(days=88), _health(), [])
    bounced = {"default": 20, "acme": 0}
    asked: list[tuple[str, datetime, datetime]] = []

    def figures(
        store: SqlStore, workspace_id: str, *, since: datetime, until: datetime
    ) -> list[WorkflowFigures]:
        asked.append((workspace_id, since, until))
        email = {"sent": 200, "delivered": 200, "bounced": bounced[workspace_id]}
        return [_workflow("welcome", 1, **email)]

    tick(store, settings, T0, figures=figures)
    assert sorted(asked) == [
        ("acme", T0 - timedelta(days=1), T0),
        ("default", T0 - timedelta(days=1), T0),
    ]
    assert _firing_rows(store) == [("default", "bounce_rate", "welcome")]
    # of the two lag alerts, the one resolved more than 90 days ago was pruned
    assert [(a.kind, a.status) for a in alerts.recent(store, "default")] == [
        ("bounce_rate", "firing"),
        ("lag", "resolved"),
    ]
    bounced["default"] = 0
    tick(store, settings, T0 + 30 * S, figures=figures)  # the same interval: nothing
    assert len(asked) == 2 and _firing_rows(store) == [("default", "bounce_rate", "welcome")]
    tick(store, settings, T0 + 60 * S, figures=figures)
    assert len(asked) == 4 and _firing_rows(store) == []
    assert len(db.samples(store, T0, T0 + 60 * S)) == 2


def test_tick_reads_the_real_figures_of_the_last_day(store: SqlStore) -> None:
    """Delivery events counted by the database's triggers, read back by ``collect``: 120
    emails sent, 110 delivered, 10 bounced (9.1 %) in the last day raise an alert."""
    apply_workflow(store, "default", WELCOME, T0 - timedelta(days=1))
    at = T0 - timedelta(hours=2)
    _insert(store, t.messages, [_message(f"m{n}", "sent") for n in range(120)])
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.message_events),
            [_delivery(f"m{n}", "sent", at) for n in range(120)]
            + [_delivery(f"m{n}", "delivered", at + S) for n in range(110)]
            + [_delivery(f"m{n}", "bounced", at + S, bounce_type="hard") for n in range(110, 120)],
        )
    tick(store, Settings(alert_min_volume=100), T0)
    [alert] = alerts.active(store, "default")
    assert (alert.kind, alert.subject, round(alert.value, 4)) == ("bounce_rate", "welcome", 0.0909)
    assert "(10 bounces, 110 emails; alert at 5.00%)" in alert.message
