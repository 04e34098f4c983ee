"""The data commands end to end on a SQLite file: events send/import, contacts
import/export/erase/explain, workflows diff."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from typer.testing import Result

from flowmail.clock import VirtualClock
from flowmail.runtime.worker import Worker
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore

DRIP: dict[str, Any] = {
    "id": "drip",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {"id": "bye", "email": {"subject": "Bye"}},
    ],
}

Invoke = Callable[..., Result]  # the `cli` fixture (tests/conftest.py)


def _events(url: str) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any] | None]]:
    store = SqlStore.from_url(url)
    try:
        with store.engine.connect() as conn:
            e = t.events
            rows = conn.execute(
                sa.select(e.c.id, e.c.contact_id, e.c.name, e.c.properties, e.c.traits).order_by(
                    e.c.seq
                )
            ).all()
    finally:
        store.close()
    return [tuple(r) for r in rows]


def _flat(result: Result) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_events_send_puts_one_event_in_the_inbox(cli: Invoke, url: str) -> None:
    cli("db", "upgrade")
    out = cli("events", "send", "signed_up", "-c", "alice", "-p", "plan=pro", "-p", "seats=3")
    assert "signed_up for alice is in the inbox" in _flat(out)
    again = cli("events", "send", "signed_up", "-c", "alice", "--id", "e1", "--json")
    assert json.loads(again.stdout) == {"accepted": 1, "duplicates": 0}
    repeat = cli("events", "send", "signed_up", "-c", "alice", "--id", "e1", "--json")
    assert json.loads(repeat.stdout) == {"accepted": 0, "duplicates": 1}
    rows = _events(url)
    assert len(rows) == 2
    assert rows[0][1:4] == ("alice", "signed_up", {"plan": "pro", "seats": 3})


def test_events_send_refuses_a_bad_property(cli: Invoke) -> None:
    cli("db", "upgrade")
    out = cli("events", "send", "x", "-c", "a", "-p", "novalue", code=2)
    assert "is not name=value" in _flat(out)


def test_events_import_ndjson_and_csv_once(cli: Invoke, url: str, tmp_path: Path) -> None:
    cli("db", "upgrade")
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text(
        json.dumps({"userId": "a", "event": "signed_up", "properties": {"plan": "pro"}})
        + "\n\n"
        + json.dumps({"type": "identify", "userId": "a", "traits": {"email": "a@example.com"}})
        + "\n"
        + json.dumps({"userId": "b", "event": "purchase", "messageId": "m-1"})
        + "\n"
    )
    first = cli("events", "import", str(ndjson), "--json")
    assert json.loads(first.stdout) == {"lines": 3, "accepted": 3, "duplicates": 0}
    second = cli("events", "import", str(ndjson), "--json")
    assert json.loads(second.stdout) == {"lines": 3, "accepted": 0, "duplicates": 3}
    table = tmp_path / "orders.csv"
    table.write_text("user_id,event,total,coupon\nc,purchase,49.5,\nd,purchase,10,SPRING\n")
    third = cli("events", "import", str(table), "--batch", "1", "--json")
    assert json.loads(third.stdout) == {"lines": 2, "accepted": 2, "duplicates": 0}
    rows = _events(url)
    assert [r[1:3] for r in rows] == [
        ("a", "signed_up"),
        ("a", "identify"),
        ("b", "purchase"),
        ("c", "purchase"),
        ("d", "purchase"),
    ]
    assert rows[1][4] == {"email": "a@example.com"}
    assert rows[2][0] == "m-1"
    assert rows[3][3] == {"total": 49.5}
    assert rows[4][3] == {"total": 10, "coupon": "SPRING"}


def test_a_file_with_a_bad_line_imports_nothing(cli: Invoke, url: str, tmp_path: Path) -> None:
    cli("db", "upgrade")
    path = tmp_path / "events.ndjson"
    path.write_text(
        json.dumps({"userId": "a", "event": "ok"})
        + "\n{not json\n"
        + json.dumps({"userId": "b"})
        + "\n"
        + json.dumps({"type": "identify", "userId": "c", "traits": {"email": "nope"}})
        + "\n"
    )
    out = cli("events", "import", str(path), code=1)
    text = _flat(out)
    assert "line 2: not JSON" in text
    assert "line 4: traits.email" in text
    assert "3 of 4 lines are not valid events; nothing was imported" in text
    assert _events(url) == []
    missing = cli("events", "import", str(tmp_path / "nope.ndjson"), code=2)
    assert "no such file" in _flat(missing)


def test_contacts_import_export_erase(cli: Invoke, url: str, tmp_path: Path) -> None:
    cli("db", "upgrade")
    table = tmp_path / "people.csv"
    table.write_text(
        "id,email,timezone,plan,seats\n"
        "alice,alice@example.com,Europe/Paris,pro,3\n"
        "bob,bob@example.com,,free,1\n"
    )
    out = cli("contacts", "import", str(table), "--json")
    assert json.loads(out.stdout) == {"rows": 2, "accepted": 2}
    rows = _events(url)
    assert [(r[1], r[2], r[4]) for r in rows] == [
        (
            "alice",
            "identify",
            {"email": "alice@example.com", "timezone": "Europe/Paris", "plan": "pro", "seats": 3},
        ),
        ("bob", "identify", {"email": "bob@example.com", "plan": "free", "seats": 1}),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,email\ncarol,not-an-address\n,dan@example.com\n")
    refused = cli("contacts", "import", str(bad), code=1)
    assert "line 2" in _flat(refused) and "line 3: no id" in _flat(refused)
    assert "2 rows are not valid; nothing was imported" in _flat(refused)

    exported = json.loads(cli("contacts", "export", "alice").stdout)
    assert exported["contact"]["id"] == "alice"
    assert [e["name"] for e in exported["events"]] == ["identify"]
    target = tmp_path / "alice.json"
    cli("contacts", "export", "alice", "--out", str(target))
    assert json.loads(target.read_text())["contact"]["id"] == "alice"

    cli("contacts", "erase", "alice", given="n\n", code=1)
    erased = json.loads(cli("contacts", "erase", "alice", "--yes", "--json").stdout)
    assert erased["contacts"] == 1 and erased["events"] == 1
    cli("contacts", "export", "alice", code=3)
    cli("contacts", "erase", "alice", "--yes", code=3)


def test_contacts_explain_tells_why_an_email_did_not_go(cli: Invoke, url: str) -> None:
    cli("db", "upgrade")
    store = SqlStore.from_url(url)
    try:
        workflow = {
            "id": "welcome",
            "trigger": {"event": "signed_up"},
            "steps": [
                {"id": "hello", "email": {"subject": "Hello"}},
                {"id": "pause", "wait": "1d"},
                {"id": "bye", "email": {"subject": "Bye"}},
            ],
        }
        now = datetime(2026, 3, 2, 9, tzinfo=UTC)
        store.apply_workflow("default", "welcome", workflow, now)
        store.ingest([InboundEvent("nomail", "signed_up", now)], now)
        Worker(store, VirtualClock(now)).drain()
    finally:
        store.close()
    story = json.loads(cli("contacts", "explain", "nomail", "--json").stdout)
    assert story["contact"] == {"id": "nomail", "email": None, "timezone": None}
    [run] = story["runs"]
    assert run["workflow"] == "welcome" and run["status"] == "waiting"
    assert run["path"][:2] == ["hello", "pause"]
    assert "the contact has no email address" in story["notes"]
    assert "welcome v1: email step hello was not queued: no email address" in story["notes"]
    assert any(n.startswith("welcome v1: waiting at pause") for n in story["notes"])
    shown = _flat(cli("contacts", "explain", "nomail"))
    assert "Why:" in shown and "hello was not queued: no email address" in shown
    cli("contacts", "explain", "nobody", code=3)

    cli("workflows", "pause", "welcome", "--reason", "copy review")
    cli("events", "send", "signed_up", "-c", "late")
    late = json.loads(cli("contacts", "explain", "late", "--json").stdout)
    assert late["runs"] == []
    assert late["notes"][-2:] == [
        "welcome is drain (copy review): its trigger signed_up starts no new runs",
        "no runs: no workflow was triggered by the events received (signed_up)",
    ]


def test_workflows_diff(cli: Invoke, tmp_path: Path) -> None:
    cli("db", "upgrade")
    path = tmp_path / "drip.yaml"
    path.write_text(yaml.safe_dump(DRIP, sort_keys=False))
    new = _flat(cli("workflows", "diff", str(path), code=1))
    assert "+ step hello" in new and "(nothing stored)" in new
    cli("workflows", "apply", str(path))
    same = _flat(cli("workflows", "diff", str(path)))
    assert "are the same" in same
    changed = {**DRIP, "steps": [*DRIP["steps"][:2], {"id": "bye", "email": {"subject": "Ciao"}}]}
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    out = cli("workflows", "diff", str(path), code=1).stdout
    assert "~ step bye" in out and "-    subject: Bye\n" in out and "+    subject: Ciao\n" in out
    cli("workflows", "apply", str(path))
    versions = cli("workflows", "diff", "drip", code=1).stdout
    assert "--- drip v1" in versions and "+++ drip v2" in versions
    assert "are the same" in _flat(cli("workflows", "diff", "drip", "--from", "2"))
    cli("workflows", "diff", "drip", "--from", "7", code=2)
    cli("workflows", "diff", "nothing-here", code=2)


def test_bench_needs_a_checkout(cli: Invoke, tmp_path: Path) -> None:
    out = cli("bench", "--script", str(tmp_path / "run.py"), code=2)
    assert "run this from a flowmail source checkout" in _flat(out)
    script = tmp_path / "run.py"
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n")
    ran = cli("bench", "--quick", "--only", "api", "--script", str(script), code=3)
    assert ran.exit_code == 3
