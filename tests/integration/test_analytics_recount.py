"""The counters equal a recount from the rows they count, however those rows were written.

:func:`recount` is the counting rules of migration 0006 written again in plain Python,
over the journal, the messages and the delivery events in ``seq`` order. Two workloads,
on SQLite and on PostgreSQL: the hand-counted journey of ``test_analytics_counters``,
and worker processes SIGKILLed at random while events stream in (a killed worker's
transaction is rolled back whole, its counts with it, and another worker redoes it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from test_analytics_counters import Journey, day_one, day_two

from flowmail.runtime.service import apply_workflow
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.schema import from_micros, to_micros
from flowmail.store.sql import SqlStore

Key = tuple[str, int, str, str, str, datetime]  # workflow, version, step, metric, label, hour
ASIDE = ("opened", "clicked", "warning")
EXECUTING = (
    "email", "wait", "wait_for", "branch", "split", "update", "tag", "untag", "webhook",
    "enroll",
)  # fmt: skip
ENDED = ("completed", "converted", "exited", "failed")


def _hour(moment: datetime) -> datetime:
    micros = to_micros(moment)
    return from_micros(micros - micros % 3_600_000_000)


def _journal_label(row: Any, prev: Any) -> str:
    detail = row.detail or {}
    if row.action in ("branch", "split"):
        return str(detail.get("then", ""))[:500]
    if row.action == "email" and detail.get("held_out") is True:
        return "held_out"
    if row.action == "email" and detail.get("skipped") is not None:
        return "no_address"
    if row.action in ENDED and prev is not None and prev.step_id != row.step_id:
        return "arrived"
    return ""


def _recount_journal(conn: sa.Connection, counts: Counter[Key]) -> None:
    r, j = t.runs, t.journal
    versions = {
        (w, i): v for w, i, v in conn.execute(sa.select(r.c.workspace_id, r.c.id, r.c.version))
    }
    last: dict[tuple[str, str], Any] = {}
    for row in conn.execute(sa.select(j).order_by(j.c.seq)):
        if row.workflow_id == "":
            continue
        run = (row.workspace_id, row.run_id)
        base = (row.workflow_id, versions.get(run, 0))
        hour = _hour(row.at)
        prev = None if row.action in ASIDE else last.get(run)
        step = row.step_id or ""
        metric = f"run:{row.action}"[:32]
        counts[(*base, step, metric, _journal_label(row, prev), hour)] += 1
        if prev is not None:
            if row.at > prev.at:
                dwell = to_micros(row.at) - to_micros(prev.at)
                counts[(*base, prev.step_id or "", "run:dwell_us", "", hour)] += dwell
            moved = row.step_id is not None and (
                prev.step_id != row.step_id or (row.action in EXECUTING and prev.action != "held")
            )
            if moved:
                counts[(*base, prev.step_id or "", "run:edge", row.step_id, hour)] += 1
        if row.action not in ASIDE:
            last[run] = row


def _recount_messages(conn: sa.Connection, counts: Counter[Key]) -> None:
    m, e = t.messages, t.message_events
    where: dict[tuple[str, str], tuple[str, int, str]] = {}
    for row in conn.execute(sa.select(m)):
        where[(row.workspace_id, row.id)] = (row.workflow_id, row.version, row.step_id)
        base = (row.workflow_id, row.version, row.step_id)
        counts[(*base, "msg:queued", "", _hour(row.created_at))] += 1
    human: set[tuple[str, str]] = set()  # messages opened by a person or clicked
    clicked: set[tuple[str, str]] = set()
    links: set[tuple[str, str, str]] = set()
    for row in conn.execute(sa.select(e).order_by(e.c.seq)):
        message = (row.workspace_id, row.message_id)
        if row.kind == "queued" or message not in where:
            continue
        detail, hour = row.detail or {}, _hour(row.at)

        def add(metric: str, label: str = "") -> None:
            counts[(*where[message], metric, label, hour)] += 1  # noqa: B023

        automated = row.kind == "opened" and detail.get("automated") is True
        url = detail.get("url")
        url = str(url)[:500] if row.kind == "clicked" and url is not None else None
        if row.kind not in ("opened", "clicked"):
            code = ""
            if row.kind in ("skipped", "deferred"):
                code = str(detail.get("code") or "")
            elif row.kind == "bounced":
                code = str(detail.get("bounce_type") or "")
            add(f"msg:{row.kind}", code)
        elif automated:
            add("msg:opened_auto")
        else:
            if row.kind == "opened":
                add("msg:opened")
            if message not in human:
                add("msg:opened_unique")
        if row.kind == "clicked":
            add("msg:clicked")
            if message not in clicked:
                add("msg:clicked_unique")
            if url is not None:
                add("msg:link", url)
                if (*message, url) not in links:
                    add("msg:link_unique", url)
                links.add((*message, url))
            clicked.add(message)
        if row.kind == "clicked" or (row.kind == "opened" and not automated):
            human.add(message)


def _recount_runs(conn: sa.Connection, counts: Counter[Key]) -> None:
    r = t.runs
    epoch = from_micros(0)
    for row in conn.execute(sa.select(r).where(r.c.status.in_(("active", "waiting")))):
        counts[(row.workflow_id, row.version, row.step or "", f"now:{row.status}", "", epoch)] += 1


def recount(store: SqlStore) -> dict[Key, int]:
    counts: Counter[Key] = Counter()
    with store.engine.connect() as conn:
        _recount_journal(conn, counts)
        _recount_messages(conn, counts)
        _recount_runs(conn, counts)
    return {key: value for key, value in counts.items() if value}


def counters(store: SqlStore) -> dict[Key, int]:
    s = t.stats
    keys = (s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric, s.c.label, s.c.bucket)
    with store.engine.connect() as conn:
        ours = sa.func.substr(s.c.metric, 1, 4).in_(("run:", "msg:", "now:"))  # not split:
        rows = conn.execute(sa.select(*keys, sa.func.sum(s.c.value)).where(ours).group_by(*keys))
        return {(w, v, st, m, lb, b): int(n) for w, v, st, m, lb, b, n in rows if n}


def test_the_journey_recounts_to_the_counters(store: SqlStore, tmp_path: Path) -> None:
    journey = Journey(store, tmp_path)
    day_one(journey)
    day_two(journey)
    expected = recount(store)
    assert len(expected) > 40, "the journey counts many things"
    assert counters(store) == expected


# --- SIGKILLed workers -----------------------------------------------------------------

PINGS = {
    "id": "pings",
    "trigger": {"event": "ping"},
    "re_entry": "always",
    "steps": [
        {"id": "note", "email": {"subject": "ping {{ event.n }}"}},
        {"id": "which", "branch": [{"if": {"event.n": 1}, "then": "first"}, {"else": "later"}]},
        {"id": "first", "tag": "new", "next": "end"},
        {"id": "later", "wait": "1s"},
        {"id": "done", "update": {"last_n": "{{ event.n }}"}},
    ],
}


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLOWMAIL_DATABASE_URL": url,
        "FLOWMAIL_LEASE_SECONDS": "1",
        "FLOWMAIL_POLL_SECONDS": "0.05",
        "FLOWMAIL_WORKER_BATCH": "32",
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "flowmail", "worker"], env=env,
            stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip


def _settled(store: SqlStore) -> bool:
    """Every event handled and every run ended (a wait of 1 s is real time here)."""
    with store.engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).where(t.events.c.processed_at.is_(None))
        ).scalar_one()
        live = conn.execute(
            sa.select(sa.func.count()).where(t.runs.c.status.in_(("active", "waiting")))
        ).scalar_one()
    return pending == 0 and live == 0


def test_sigkilled_workers_leave_the_counters_exact(db_url: str, tmp_path: Path) -> None:
    store = SqlStore.from_url(db_url)
    log = tmp_path / "worker.log"
    now = datetime.now(UTC)
    apply_workflow(store, "default", PINGS, now)
    contacts, per_contact = 200, 3
    store.ingest(
        [InboundEvent(f"c{c}", "identify", now, traits={"email": f"c{c}@example.com"},
                      id=f"id{c}", kind="identify") for c in range(contacts)],
        now,
    )  # fmt: skip
    procs = [_worker(db_url, log) for _ in range(2)]
    stop, killed = threading.Event(), [0]

    def chaos() -> None:
        rng = random.Random(11)
        while not stop.wait(rng.uniform(0.2, 0.5)):
            index = rng.randrange(len(procs))
            procs[index].send_signal(signal.SIGKILL)
            procs[index].wait()
            killed[0] += 1
            procs[index] = _worker(db_url, log)

    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        base = now - timedelta(minutes=1)
        for n in range(1, per_contact + 1):
            batch = [
                InboundEvent(f"c{c}", "ping", base + timedelta(seconds=n), {"n": n}, id=f"e{c}-{n}")
                for c in range(contacts)
            ]
            store.ingest(batch, datetime.now(UTC))
            time.sleep(1.0)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not _settled(store):
            time.sleep(0.2)
        stop.set()
        killer.join()
        deadline = time.monotonic() + 120
        while not _settled(store):
            assert time.monotonic() < deadline, "the workers did not finish"
            time.sleep(0.2)
    finally:
        stop.set()
        for proc in procs:
            proc.kill()
            proc.wait()
    assert killed[0] >= 3, "the test did not kill enough workers to mean anything"
    expected = recount(store)
    found = counters(store)
    assert found == expected
    totals = Counter[str]()
    for (_, _, step, metric, _, _), value in found.items():
        totals[f"{step}:{metric}"] += value
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(t.runs)).scalar_one()
    store.close()
    # a ping starts a run unless the contact's previous one is still waiting; each run
    # emails; the first ping of a contact ends at first, later ones wait, then end at done
    assert contacts < runs <= contacts * per_contact
    assert totals[":run:enrolled"] == runs
    assert totals["note:run:email"] == totals["which:run:edge"] == runs
    assert totals["first:run:completed"] == contacts
    assert totals["later:run:edge"] == totals["done:run:completed"] == runs - contacts
