"""Benchmarks of the durable runtime (issue 3): ingestion, engine, latency, timers, memory."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    Databases,
    Row,
    apply_welcome,
    open_store,
    percentile,
    processed_count,
    seed_contacts,
    seed_waiting_runs,
    signup_events,
    start_workers,
    stop_workers,
    wait_for,
)

from flowmail.clock import SystemClock, VirtualClock
from flowmail.runtime.worker import Worker, WorkerOptions


def ingestion(dbs: Databases, backend: str, total: int) -> Row:
    store = open_store(dbs.new(backend))
    now = datetime.now(UTC)
    events = signup_events(0, total, now)
    start = time.perf_counter()
    for i in range(0, total, 1000):
        store.ingest(events[i : i + 1000], now)
    rate = total / (time.perf_counter() - start)
    store.close()
    target = "50,000/s" if backend == "sqlite" else "30,000/s"
    return Row("ingestion, batches of 1,000 (Python API)", backend, rate, "events/s", target)


def engine_in_process(dbs: Databases, backend: str, total: int, contacts_in_store: int) -> float:
    """Events/s through one in-process worker: signup -> run -> email + wait."""
    store = open_store(dbs.new(backend))
    now = datetime.now(UTC)
    seed_contacts(store, max(total, contacts_in_store), now)
    apply_welcome(store, now)
    store.ingest(signup_events(0, total, now), now)
    worker = Worker(store, SystemClock(), WorkerOptions(batch=500))
    start = time.perf_counter()
    worker.drain()
    elapsed = time.perf_counter() - start
    assert worker.processed == total, (worker.processed, total)
    store.close()
    return total / elapsed


def engine_processes(dbs: Databases, backend: str, workers: int, total: int, log: Path) -> float:
    """Steady-state events/s with ``workers`` worker processes sharing one database."""
    url = dbs.new(backend)
    store = open_store(url)
    now = datetime.now(UTC)
    seed_contacts(store, total, now)
    apply_welcome(store, now)
    store.ingest(signup_events(0, total, now), now)
    procs = start_workers(url, workers, log, {"FLOWMAIL_WORKER_BATCH": "256"})
    try:
        wait_for(lambda: processed_count(store) > total * 0.05, 120)
        first, t1 = processed_count(store), time.perf_counter()
        wait_for(lambda: processed_count(store) > total * 0.85, 600)
        last, t2 = processed_count(store), time.perf_counter()
    finally:
        stop_workers(procs)
        store.close()
    return (last - first) / (t2 - t1)


def latency(
    dbs: Databases, backend: str, rate: int, seconds: float, log: Path
) -> tuple[float, float]:
    """Event accepted -> decision committed at a steady ``rate``, one worker process."""
    url = dbs.new(backend)
    store = open_store(url)
    now = datetime.now(UTC)
    total = int(rate * seconds)
    seed_contacts(store, total, now)
    apply_welcome(store, now)
    procs = start_workers(url, 1, log)
    try:
        wait_for(lambda: bool(store.workflow_rows()) and _heartbeat(store), 60)
        tick = 0.05
        per_tick = max(1, int(rate * tick))
        start = time.perf_counter()
        for n, first in enumerate(range(0, total, per_tick)):
            at = datetime.now(UTC)
            store.ingest(signup_events(first, min(per_tick, total - first), at, "l"), at)
            pause = start + (n + 1) * tick - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        wait_for(lambda: processed_count(store) >= total, 120)
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT processed_at - received_at FROM events WHERE processed_at IS NOT NULL"
            ).all()
    finally:
        stop_workers(procs)
        store.close()
    lags = [row[0] / 1e6 for row in rows]
    return percentile(lags, 0.5), percentile(lags, 0.99)


def _heartbeat(store: object) -> bool:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return bool(conn.exec_driver_sql("SELECT count(*) FROM heartbeats").scalar_one())


def timers(dbs: Databases, backend: str, waiting: int, due: int) -> tuple[float, float]:
    """``waiting`` runs wait; ``due`` of them fall due at once. Seconds until all fired,
    and events/s of new signups with that many contacts and runs in the store."""
    store = open_store(dbs.new(backend))
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    seed_contacts(store, waiting, now)
    due_at = now + timedelta(hours=1)
    seed_waiting_runs(store, waiting, now, due, due_at)
    apply_welcome(store, now)
    clock = VirtualClock(due_at)
    worker = Worker(store, clock, WorkerOptions(batch=500))
    start = time.perf_counter()
    worker.drain()
    fired = time.perf_counter() - start
    with store.engine.connect() as conn:
        sent = conn.exec_driver_sql("SELECT count(*) FROM messages").scalar_one()
    assert sent == due, (sent, due)
    store.close()
    return fired, due / fired


def lone_timer_lag(dbs: Databases, backend: str, samples: int, log: Path) -> float:
    """p99 lag of single timers under no load: wake_at -> the run moved on."""
    url = dbs.new(backend)
    store = open_store(url)
    now = datetime.now(UTC)
    store.close()
    store = open_store(url)
    seed_contacts(store, samples, now)
    apply_welcome(store, now)
    procs = start_workers(url, 1, log)
    lags = []
    try:
        wait_for(lambda: _heartbeat(store), 60)
        for i in range(samples):
            due_at = datetime.now(UTC) + timedelta(seconds=0.5)
            seed_waiting_runs_one(store, i, now, due_at)
            wait_for(lambda i=i: _message_count(store, f"c{i}") >= 1, 30, step=0.005)
            with store.engine.connect() as conn:
                created = conn.exec_driver_sql(
                    f"SELECT created_at FROM messages WHERE contact_id = 'c{i}'"
                ).scalar_one()
            lags.append(created / 1e6 - due_at.timestamp())
    finally:
        stop_workers(procs)
        store.close()
    return percentile(lags, 0.99)


def seed_waiting_runs_one(store: object, index: int, now: datetime, due_at: datetime) -> None:
    """Contact c{index}: one waiting run that falls due at ``due_at``."""
    from common import hot, waiting_run

    row = waiting_run(index, now, due_at, "lone")
    dialect = store.dialect  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        hot.RUN_UPSERT.run(conn, [row])
        conn.exec_driver_sql(
            hot.for_dialect("UPDATE contacts SET wake_at = ? WHERE id = ?", dialect),
            (row[7], row[4]),
        )


def _message_count(store: object, contact: str) -> int:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM messages WHERE contact_id = '{contact}'"
            ).scalar_one()
        )


def memory_and_cost(
    dbs: Databases, backend: str, waiting: int, new_events: int, log: Path
) -> tuple[float, float]:
    """With ``waiting`` runs in the store: a worker process's peak RSS while handling
    ``new_events`` signups of new contacts (events/s measured in the same process)."""
    url = dbs.new(backend)
    store = open_store(url)
    now = datetime.now(UTC)
    seed_contacts(store, waiting + new_events, now)
    seed_waiting_runs(store, waiting, now, 0, now)
    apply_welcome(store, now)
    store.ingest(signup_events(waiting, new_events, now, "m"), now)
    rss, elapsed = worker_peak_rss_isolated(url, log)
    store.close()
    return rss, new_events / elapsed


def worker_peak_rss_isolated(url: str, log: Path) -> tuple[float, float]:
    """A `flowmail worker --drain` in its own process: its peak RSS (MB) and drain seconds."""
    import os

    code = (
        "import resource, time\n"
        "from flowmail.cli import app\n"
        "start = time.perf_counter()\n"
        "try:\n    app(['worker', '--drain'])\nexcept SystemExit:\n    pass\n"
        "elapsed = time.perf_counter() - start\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed)\n"
    )
    env = {**os.environ, "FLOWMAIL_DATABASE_URL": url}
    with log.open("ab") as sink:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=sink,
            check=True,
            text=True,
        )
    rss, elapsed = out.stdout.strip().splitlines()[-1].split()
    return int(rss) / 1024, float(elapsed)
