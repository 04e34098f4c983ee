"""Dashboard and report pages on a big store: 1M contacts, 10M events.

The store is filled directly (as the worker and sender would have written it) with the
example workflows, contacts, processed events, runs with their journal lines, messages
and their delivery events; the journal, messages and delivery rows go in through the
analytics triggers, so the counters are what a real installation would hold. Then each
page is asked for several times through the real app (FastAPI's test client, logged in
with an admin key) and the median and worst times are reported.

    python bench/dashboard_bench.py --contacts 1000000 --events-per-contact 10
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from common import ROOT, Databases, Row, postgres
from fastapi.testclient import TestClient

from flowmail.api.app import create_app
from flowmail.clock import VirtualClock
from flowmail.language.loader import read_document
from flowmail.runtime.service import apply_workflow
from flowmail.settings import Settings
from flowmail.store import hot
from flowmail.store.keys import Role, create_key
from flowmail.store.schema import to_micros
from flowmail.store.sql import SqlStore

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
CHUNK = 20_000
# (workflow, share of runs, the steps a run passes, in order)
JOURNEYS = [
    ("welcome_series", 0.6, ["welcome_immediate", "wait_1_day", "educational_email_1"]),
    ("cart_abandonment", 0.25, ["wait_for_purchase", "reminder", "pause"]),
    ("post_purchase", 0.15, ["thank_you_split", "thanks_plain", "wait_for_delivery"]),
]
STATUSES = ["completed"] * 6 + ["waiting"] * 3 + ["exited"]
NAMES = ["user_registered", "page_viewed", "cart_abandoned", "purchase_completed", "email_opened"]

_CONTACT = hot.HotQuery(
    sqlite="INSERT INTO contacts (workspace_id, id, email, timezone, attributes, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    postgres="INSERT INTO contacts (workspace_id, id, email, timezone, attributes, created_at, "
    "updated_at) SELECT workspace_id, id, email, timezone, attributes, created_at, updated_at "
    "FROM json_populate_recordset(NULL::contacts, %s)",
    columns=("workspace_id", "id", "email", "timezone", "attributes", "created_at", "updated_at"),
    json_columns=frozenset({"attributes"}),
)
_EVENT_COLUMNS = (
    "workspace_id",
    "id",
    "contact_id",
    "kind",
    "name",
    "at",
    "properties",
    "received_at",
    "processed_at",
)
_EVENT = hot.HotQuery(
    sqlite=f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' * 9)})",
    postgres=f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) SELECT {', '.join(_EVENT_COLUMNS)}"
    " FROM json_populate_recordset(NULL::events, %s)",
    columns=_EVENT_COLUMNS,
    json_columns=frozenset({"properties"}),
)
_DELIVERY_COLUMNS = ("workspace_id", "message_id", "contact_id", "kind", "at", "detail")
_DELIVERY = hot.HotQuery(
    sqlite=f"INSERT INTO message_events ({', '.join(_DELIVERY_COLUMNS)}) VALUES "
    f"({', '.join('?' * 6)})",
    postgres=f"INSERT INTO message_events ({', '.join(_DELIVERY_COLUMNS)}) SELECT "
    f"{', '.join(_DELIVERY_COLUMNS)} FROM json_populate_recordset(NULL::message_events, %s)",
    columns=_DELIVERY_COLUMNS,
    json_columns=frozenset({"detail"}),
)
_SENT = hot.HotQuery(
    sqlite="UPDATE messages SET status = ?, sent_at = ?, provider = 'smtp' WHERE workspace_id "
    "= 'default' AND id = ?",
    postgres="UPDATE messages SET status = v.status, sent_at = v.sent_at, provider = 'smtp' "
    "FROM json_populate_recordset(NULL::messages, %s) AS v WHERE messages.workspace_id = "
    "'default' AND messages.id = v.id",
    columns=("status", "sent_at", "id"),
)


def _chunks(total: int) -> Iterator[range]:
    for start in range(0, total, CHUNK):
        yield range(start, min(total, start + CHUNK))


def _journey(i: int) -> tuple[str, list[str]]:
    share = (i * 7919 % 1000) / 1000
    for workflow, weight, steps in JOURNEYS:
        if share < weight:
            return workflow, steps
        share -= weight
    return JOURNEYS[-1][0], JOURNEYS[-1][2]


def seed(store: SqlStore, contacts: int, per_contact: int, log: Callable[[str], None]) -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if not path.name.endswith(".scenario.yaml"):
            apply_workflow(store, "default", read_document(path), NOW)
    started = time.perf_counter()
    base = to_micros(NOW - timedelta(days=14))
    for block in _chunks(contacts):
        rows = [
            (
                "default",
                f"c{i:07d}",
                f"c{i}@example.com",
                "Europe/Paris" if i % 3 else None,
                hot.dumps({"first_name": f"N{i}", "plan": "pro" if i % 5 == 0 else "free"}),
                base,
                base,
            )
            for i in block
        ]
        with store.engine.begin() as conn:
            _CONTACT.run(conn, rows)
    log(f"contacts {contacts:,} in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    step_us = 14 * 86_400_000_000 // max(1, per_contact)
    for block in _chunks(contacts):
        rows = [
            (
                "default",
                f"e{i}-{n}",
                f"c{i:07d}",
                "track",
                NAMES[(i + n) % len(NAMES)],
                base + n * step_us + i,
                '{"plan":"pro"}',
                base + n * step_us + i,
                base + n * step_us + i + 1000,
            )
            for i in block
            for n in range(per_contact)
        ]
        with store.engine.begin() as conn:
            _EVENT.run(conn, rows)
    log(f"events {contacts * per_contact:,} in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    messages = 0
    for block in _chunks(contacts):
        runs, journal, outbox, sent, delivery = [], [], [], [], []
        for i in block:
            workflow, steps = _journey(i)
            status = STATUSES[i % len(STATUSES)]
            at = base + i * 1000
            run_id = f"r{i}"
            contact = f"c{i:07d}"
            path = steps if status != "waiting" else steps[:-1]
            state = {"id": run_id, "path": path, "status": status, "reason": None}
            ended = at + 86_400_000_000 if status != "waiting" else None
            runs.append(
                (
                    "default",
                    run_id,
                    workflow,
                    1,
                    contact,
                    status,
                    path[-1],
                    None if ended else at + 2 * 86_400_000_000,
                    at,
                    ended,
                    hot.dumps(state),
                )
            )
            journal.append(("default", run_id, contact, workflow, None, at, "enrolled", "{}"))
            for n, step in enumerate(path):
                action = "wait" if "wait" in step or step == "pause" else "email"
                if step.endswith("_split"):
                    action = "split"
                journal.append(("default", run_id, contact, workflow, step, at + n, action, "{}"))
                if action == "email":
                    key = f"m{i}-{n}"
                    outbox.append(
                        (
                            "default",
                            key,
                            run_id,
                            contact,
                            workflow,
                            1,
                            step,
                            f"c{i}@example.com",
                            step,
                            f"Subject {step}",
                            "marketing",
                            5,
                            "drop",
                            None,
                            at + n,
                            at + n,
                        )
                    )
                    sent.append(("sent" if i % 97 else "dead", at + n + 1000, key))
                    delivery.append(("default", key, contact, "sent", at + n + 1000, "{}"))
                    if i % 97:
                        delivery.append(("default", key, contact, "delivered", at + n + 2000, "{}"))
                    if i % 3 == 0:
                        delivery.append(("default", key, contact, "opened", at + n + 60e6, "{}"))
                    if i % 20 == 0:
                        url = '{"url":"https://example.com/start"}'
                        delivery.append(("default", key, contact, "clicked", at + n + 90e6, url))
            if ended:
                journal.append(
                    ("default", run_id, contact, workflow, path[-1], ended, status, "{}")
                )
        messages += len(outbox)
        with store.engine.begin() as conn:
            hot.RUN_UPSERT.run(conn, runs)
            hot.JOURNAL_INSERT.run(conn, journal)
            hot.MESSAGE_INSERT.run(conn, outbox)
            _SENT.run(conn, sent)
            _DELIVERY.run(conn, [(*r[:4], int(r[4]), r[5]) for r in delivery])
    log(f"runs {contacts:,} and messages {messages:,} in {time.perf_counter() - started:.0f} s")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _login(client: TestClient, token: str) -> None:
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text[:500]
    done = client.post(
        "/ui/login", data={"key": token, "csrf": csrf[1], "next": "/ui/"}, follow_redirects=False
    )
    assert done.status_code in (302, 303), done.text[:500]


PAGES = [
    ("overview", "/ui/"),
    ("workflows, 30 days", "/ui/workflows?period=30d"),
    ("a workflow: diagram, funnel, runs", "/ui/workflows/welcome_series"),
    ("contact search", "/ui/contacts?q=c00050"),
    ("a contact's timeline", "/ui/contacts/c0000500"),
    ("messages, newest", "/ui/messages"),
    ("dead letters", "/ui/messages?status=dead"),
    ("a contact's messages", "/ui/messages?contact=c0000501"),
    ("report, 24 h", "/ui/report?since=24h"),
    ("report, 30 days", "/ui/report?since=30d"),
    ("API GET /health", "/health"),
]


def time_pages(store: SqlStore, backend: str, repeat: int = 5) -> list[Row]:
    settings = Settings(database_url="sqlite://", secret_key="bench")
    _key, token = create_key(store, "default", Role.ADMIN, "bench", NOW)
    app = create_app(settings, store, VirtualClock(NOW))
    rows = []
    with TestClient(app) as client:
        _login(client, token)
        for name, path in PAGES:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            rows.append(
                Row(
                    f"page {name}",
                    backend,
                    statistics.median(times),
                    "ms median",
                    "< 500 ms",
                    f"worst {max(times):.0f} ms",
                )
            )
    return rows


def _log(backend: str, text: str) -> None:
    print(f"  {backend}: {text}", flush=True)


def rows(dbs: Databases, contacts: int, per_contact: int, backends: tuple[str, ...]) -> list[Row]:
    found: list[Row] = []
    for backend in backends:
        url = dbs.new(backend)
        store = SqlStore.from_url(url)
        try:
            started = time.perf_counter()
            seed(store, contacts, per_contact, partial(_log, backend))
            found.append(
                Row(
                    f"seed {contacts:,} contacts, {contacts * per_contact:,} events",
                    backend,
                    time.perf_counter() - started,
                    "s",
                    "",
                )
            )
            found += time_pages(store, backend)
        finally:
            store.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events-per-contact", type=int, default=10)
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    backends = tuple(args.backend or ("sqlite", "postgres"))
    with tempfile.TemporaryDirectory() as folder:
        if "postgres" in backends:
            with postgres() as pg_url:
                found = rows(
                    Databases(Path(folder), pg_url),
                    args.contacts,
                    args.events_per_contact,
                    backends,
                )
        else:
            found = rows(
                Databases(Path(folder), None), args.contacts, args.events_per_contact, backends
            )
    print(f"{'measure':<52} {'backend':<9} {'result':>12}  note")
    for row in found:
        print(f"{row.what:<52} {row.backend:<9} {row.value:>9.1f} {row.unit:<10} {row.note}")


if __name__ == "__main__":
    sys.exit(main())
