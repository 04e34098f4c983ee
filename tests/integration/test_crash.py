"""Nothing lost: workers SIGKILLed at random while events stream in; several workers at once.

Invariants checked afterwards, from the database:
- every event was processed, without error;
- every event entered the engine exactly once (each run has one "enrolled" journal row,
  and a run is created per event of a re_entry: always workflow);
- no contact has two runs of a re_entry: never workflow;
- no message is missing or duplicated;
- per-contact order held (each contact's runs started in the order of its events).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowmail.runtime.service import apply_workflow
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore

EVERY_PING = {
    "id": "every_ping",
    "trigger": {"event": "ping"},
    "re_entry": "always",
    "steps": [
        {"id": "note", "email": {"subject": "ping {{ event.n }}"}},
        {"id": "remember", "update": {"last_n": "{{ event.n }}"}},
    ],
}
FIRST_PING = {
    "id": "first_ping",
    "trigger": {"event": "ping"},
    "steps": [
        {"id": "hello", "email": {"subject": "hello"}},
        {"id": "pause", "wait": "2s"},
        {"id": "again", "email": {"subject": "again"}},
    ],
}


def _start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLOWMAIL_DATABASE_URL": url,
        "FLOWMAIL_LEASE_SECONDS": "1",
        "FLOWMAIL_POLL_SECONDS": "0.05",
        "FLOWMAIL_WORKER_BATCH": "64",
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "flowmail", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def _feed(store: SqlStore, contacts: int, per_contact: int, seed: int) -> int:
    """Events in shuffled batches; each contact's events carry n = 1, 2, ... in time order."""
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(minutes=5)
    people = [
        InboundEvent(
            f"c{c}",
            "identify",
            base,
            traits={"email": f"c{c}@example.com"},
            id=f"id{c}",
            kind="identify",
        )
        for c in range(contacts)
    ]
    store.ingest(people, datetime.now(UTC))
    events = [
        InboundEvent(
            f"c{c}", "ping", base + timedelta(seconds=n), {"n": n}, traits=None, id=f"e{c}-{n}"
        )
        for c in range(contacts)
        for n in range(1, per_contact + 1)
    ]
    # contacts arrive interleaved, but one contact's events keep their order
    rng.shuffle(events)
    events.sort(key=lambda e: int(e.id.split("-")[1]) if e.id else 0)
    for start in range(0, len(events), 500):
        store.ingest(events[start : start + 500], datetime.now(UTC))
        time.sleep(0.01)
    return len(events)


def _settled(store: SqlStore, contacts: int) -> bool:
    with store.engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).where(t.events.c.processed_at.is_(None))
        ).scalar_one()
        waiting = conn.execute(
            sa.select(sa.func.count()).where(
                t.runs.c.workflow_id == "first_ping", t.runs.c.status != "completed"
            )
        ).scalar_one()
        first = conn.execute(
            sa.select(sa.func.count()).where(t.runs.c.workflow_id == "first_ping")
        ).scalar_one()
    return pending == 0 and waiting == 0 and first == contacts


def _check(store: SqlStore, contacts: int, per_contact: int) -> None:
    total = contacts * per_contact
    with store.engine.connect() as conn:
        events = conn.execute(
            sa.select(t.events.c.processed_at, t.events.c.error).where(t.events.c.kind == "track")
        ).all()
        assert len(events) == total
        assert all(p is not None for p, _ in events), "an event was never processed"
        assert [e for _, e in events if e] == [], "an event failed"

        enrolled = Counter(
            row[0]
            for row in conn.execute(
                sa.select(t.journal.c.run_id).where(t.journal.c.action == "enrolled")
            )
        )
        assert enrolled and max(enrolled.values()) == 1, "a run was enrolled twice"

        runs = conn.execute(
            sa.select(t.runs.c.workflow_id, t.runs.c.contact_id, t.runs.c.state)
        ).all()
        every = [r for r in runs if r.workflow_id == "every_ping"]
        first = Counter(r.contact_id for r in runs if r.workflow_id == "first_ping")
        assert len(every) == total, "an event did not start its run"
        assert len(first) == contacts and set(first.values()) == {1}, "re_entry never broken"

        messages = Counter(
            (row.workflow_id, row.contact_id)
            for row in conn.execute(sa.select(t.messages.c.workflow_id, t.messages.c.contact_id))
        )
        for c in range(contacts):
            assert messages[("every_ping", f"c{c}")] == per_contact
            assert messages[("first_ping", f"c{c}")] == 2

        # per-contact order: journal order of "enrolled" follows each contact's n
        order: dict[str, list[int]] = defaultdict(list)
        n_of = {r.state["id"]: r.state["trigger"]["properties"]["n"] for r in every}
        rows = conn.execute(
            sa.select(t.journal.c.run_id, t.journal.c.contact_id)
            .where(t.journal.c.action == "enrolled", t.journal.c.workflow_id == "every_ping")
            .order_by(t.journal.c.seq)
        )
        for run_id, contact_id in rows:
            order[contact_id].append(n_of[run_id])
        assert all(ns == sorted(ns) for ns in order.values()), "per-contact order broken"
        last = dict(conn.execute(sa.select(t.contacts.c.id, t.contacts.c.attributes)).all())
        assert all(str(last[f"c{c}"]["last_n"]) == str(per_contact) for c in range(contacts))


def _run_chaos(
    url: str, logs: Path, workers: int, contacts: int, per_contact: int, kills: bool
) -> int:
    store = SqlStore.from_url(url)
    now = datetime.now(UTC)
    for definition in (EVERY_PING, FIRST_PING):
        apply_workflow(store, "default", definition, now)
    procs = [_start_worker(url, logs / "worker.log") for _ in range(workers)]
    stop = threading.Event()
    killed = 0

    def chaos() -> None:
        nonlocal killed
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.2, 0.6)):
            index = rng.randrange(len(procs))
            procs[index].send_signal(signal.SIGKILL)
            procs[index].wait()
            killed += 1
            procs[index] = _start_worker(url, logs / "worker.log")

    killer = threading.Thread(target=chaos, daemon=True)
    if kills:
        killer.start()
    try:
        _feed(store, contacts, per_contact, seed=1)
        deadline = time.monotonic() + (25 if kills else 15)
        while kills and time.monotonic() < deadline and not _settled(store, contacts):
            time.sleep(0.2)  # keep killing while work remains
        stop.set()
        if kills:
            killer.join()
        deadline = time.monotonic() + 120
        while not _settled(store, contacts):
            assert time.monotonic() < deadline, "workers did not finish the work"
            time.sleep(0.2)
        log = logs / "worker.log"
        while not all(f":{proc.pid}:" in log.read_text() for proc in procs):
            assert time.monotonic() < deadline, "a worker never started"
            time.sleep(0.1)  # a worker still importing has no SIGTERM handler yet
        for proc in procs:  # SIGTERM: finish the batch in hand, exit cleanly
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=30) == 0, (logs / "worker.log").read_text()[-3000:]
        _check(store, contacts, per_contact)
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
    return killed


def test_sigkilled_workers_lose_nothing(db_url: str, tmp_path: Path) -> None:
    killed = _run_chaos(db_url, tmp_path, 2, contacts=1500, per_contact=3, kills=True)
    assert killed >= 5, "the test did not kill enough workers to mean anything"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_four_workers_on_postgres_share_work_without_overlap(db_url: str, tmp_path: Path) -> None:
    _run_chaos(db_url, tmp_path, 4, contacts=2500, per_contact=4, kills=False)
