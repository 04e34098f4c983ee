"""Shared pieces of the benchmarks: databases, synthetic data, timing helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from flowmail.engine.state import Event, Run, RunStatus, stable_hash  # noqa: E402
from flowmail.runtime.service import apply_workflow  # noqa: E402
from flowmail.store import hot  # noqa: E402
from flowmail.store.migrate import upgrade  # noqa: E402
from flowmail.store.records import InboundEvent  # noqa: E402
from flowmail.store.schema import to_micros  # noqa: E402
from flowmail.store.sql import SqlStore, create_db_engine  # noqa: E402
from pg import cluster  # noqa: E402

WELCOME = {
    "id": "welcome",
    "trigger": {"event": "signup"},
    "steps": [
        {"id": "hello", "email": {"subject": "Welcome {{ contact.first_name }}!"}},
        {"id": "later", "wait": "1d"},
        {"id": "tips", "email": {"subject": "Tips for {{ contact.first_name }}"}},
    ],
}


@dataclass
class Row:
    what: str
    backend: str
    value: float
    unit: str
    target: str
    note: str = ""


class Databases:
    """Fresh databases on demand: SQLite files and PostgreSQL databases in one cluster."""

    def __init__(self, folder: Path, pg_url: str | None) -> None:
        self.folder = folder
        self.pg_url = pg_url
        self.count = 0

    def new(self, backend: str) -> str:
        self.count += 1
        if backend == "sqlite":
            url = f"sqlite:///{self.folder / f'bench-{self.count}.db'}"
        else:
            assert self.pg_url is not None
            name = f"bench_{self.count}"
            engine = sa.create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            engine.dispose()
            url = self.pg_url.replace("/postgres?", f"/{name}?")
        engine = create_db_engine(url)
        upgrade(engine, datetime.now(UTC))
        engine.dispose()
        return url


@contextmanager
def postgres() -> Iterator[str]:
    with cluster(26543) as url:
        yield url


def open_store(url: str) -> SqlStore:
    return SqlStore.from_url(url)


def seed_contacts(store: SqlStore, count: int, now: datetime, chunk: int = 20_000) -> None:
    """``count`` contacts with an email and a first name, written directly."""
    sql = hot.for_dialect(
        "INSERT INTO contacts (workspace_id, id, email, timezone, attributes, created_at, "
        "updated_at) VALUES ('default', ?, ?, NULL, ?, ?, ?)",
        store.dialect,
    )
    micros = to_micros(now)
    for start in range(0, count, chunk):
        rows = [
            (f"c{i}", f"c{i}@example.com", hot.dumps({"first_name": f"N{i}"}), micros, micros)
            for i in range(start, min(count, start + chunk))
        ]
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)


def waiting_run(index: int, now: datetime, wake_at: datetime, prefix: str = "seed") -> hot.Row:
    """A waiting welcome run of contact c{index}, as the worker writes it (a runs row)."""
    contact = f"c{index}"
    trigger = Event(contact, "signup", now, {}, id=f"{prefix}-{index}")
    run = Run(
        id=stable_hash("run", "welcome", contact, trigger.id),
        workflow_id="welcome",
        version=1,
        contact_id=contact,
        started_at=now,
        trigger=trigger,
        status=RunStatus.WAITING,
        step="later",
        path=["hello", "later"],
        wake_at=wake_at,
    )
    return (
        "default",
        run.id,
        "welcome",
        1,
        contact,
        "waiting",
        "later",
        to_micros(wake_at),
        to_micros(now),
        None,
        hot.dumps(run.to_dict()),
    )


def seed_waiting_runs(
    store: SqlStore,
    count: int,
    now: datetime,
    due: int,
    due_at: datetime,
    chunk: int = 20_000,
    prefix: str = "seed",
) -> None:
    """One waiting welcome run per contact c0..c{count-1}; the first ``due`` wake at ``due_at``,
    the others a year later. Written the way the worker writes runs."""
    far = now + timedelta(days=365)
    wake_sql = hot.for_dialect(
        "UPDATE contacts SET wake_at = ? WHERE workspace_id = 'default' AND id = ?", store.dialect
    )
    for start in range(0, count, chunk):
        indexes = range(start, min(count, start + chunk))
        runs = [waiting_run(i, now, due_at if i < due else far, prefix) for i in indexes]
        wakes = [(row[7], row[4]) for row in runs]
        with store.engine.begin() as conn:
            hot.RUN_UPSERT.run(conn, runs)
            conn.exec_driver_sql(wake_sql, wakes)


def signup_events(first: int, count: int, at: datetime, prefix: str = "s") -> list[InboundEvent]:
    return [
        InboundEvent(f"c{i}", "signup", at, {"plan": "pro"}, id=f"{prefix}{i}")
        for i in range(first, first + count)
    ]


def apply_welcome(store: SqlStore, now: datetime) -> None:
    apply_workflow(store, "default", WELCOME, now)


def processed_count(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM events WHERE processed_at IS NOT NULL"
            ).scalar_one()
        )


def start_workers(
    url: str, count: int, log: Path, extra: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "FLOWMAIL_DATABASE_URL": url,
        "FLOWMAIL_POLL_SECONDS": "0.05",
        **(extra or {}),
    }
    procs = []
    for _ in range(count):
        with log.open("ab") as sink:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flowmail", "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
            )
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)


def wait_for(predicate: Any, timeout: float, step: float = 0.05) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(step)
    return time.perf_counter() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]
