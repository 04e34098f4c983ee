"""The runtime's commands, end to end on a SQLite file: db, workflows, worker.

The worker command uses the real clock, so the events fed to it are stamped "now".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner, Result

from flowmail.cli import app
from flowmail.store import schema as t
from flowmail.store.migrate import current_revision, head_revision
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


def _write(path: Path, definition: dict[str, Any]) -> str:
    """Write a workflow file; its name relative to the working folder (the test's)."""
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path.name


def _flat(result: Result) -> str:
    """Rich wraps long lines at 80 columns when not on a terminal: read words, not lines."""
    return " ".join(result.stdout.split())


def _listed(cli: Invoke) -> list[dict[str, Any]]:
    return json.loads(cli("workflows", "list", "--json").stdout)  # type: ignore[no-any-return]


def _feed(url: str, *events: InboundEvent) -> None:
    store = SqlStore.from_url(url)
    try:
        store.ingest(list(events), datetime.now(UTC))
    finally:
        store.close()


def _signed_up(*contacts: str) -> list[InboundEvent]:
    at = datetime.now(UTC) - timedelta(seconds=5)
    return [
        event
        for c in contacts
        for event in (
            InboundEvent(c, "identify", at, traits={"email": f"{c}@example.com"},
                         id=f"id-{c}", kind="identify"),
            InboundEvent(c, "signed_up", at + timedelta(seconds=1), id=f"su-{c}"),
        )
    ]  # fmt: skip


def _query(url: str, query: sa.Select[Any]) -> list[Any]:
    store = SqlStore.from_url(url)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        store.close()


def test_db_upgrade_brings_a_new_file_to_the_head_revision(cli: Invoke, url: str) -> None:
    result = cli("db", "upgrade")
    assert result.stdout == f"schema at revision {head_revision()} (sqlite)\n"
    store = SqlStore.from_url(url)
    try:
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()
    assert cli("db", "upgrade").stdout == result.stdout, "upgrading twice is harmless"


def test_apply_makes_a_version_only_when_the_definition_changes(
    cli: Invoke, tmp_path: Path
) -> None:
    path = _write(tmp_path / "drip.yaml", DRIP)
    assert _flat(cli("workflows", "apply", path)) == f"{path}: drip v1 (new version)"
    assert _flat(cli("workflows", "apply", path)) == f"{path}: drip v1 (unchanged)"
    edited = {**DRIP, "steps": [*DRIP["steps"][:2], {"id": "bye", "email": {"subject": "Ciao"}}]}
    _write(tmp_path / path, edited)
    assert _flat(cli("workflows", "apply", path)) == f"{path}: drip v2 (new version)"
    assert _listed(cli) == [{"id": "drip", "version": 2, "mode": "active", "reason": None}]
    assert cli("workflows", "list").stdout == "drip  v2  active\n"
    assert _listed_in(cli, "other") == [], "another workspace has no workflows"


def _listed_in(cli: Invoke, workspace: str) -> list[dict[str, Any]]:
    return json.loads(  # type: ignore[no-any-return]
        cli("workflows", "list", "--json", "--workspace", workspace).stdout
    )


def test_pause_freeze_shows_in_list_and_resume_makes_it_active(cli: Invoke, tmp_path: Path) -> None:
    cli("workflows", "apply", _write(tmp_path / "drip.yaml", DRIP))
    result = cli("workflows", "pause", "drip", "--mode", "freeze", "--reason", "copy review")
    assert result.stdout == "drip: freeze\n"
    assert _listed(cli) == [{"id": "drip", "version": 1, "mode": "freeze", "reason": "copy review"}]
    assert cli("workflows", "list").stdout == "drip  v1  freeze  (copy review)\n"
    assert cli("workflows", "resume", "drip").stdout == "drip: active\n"
    assert _listed(cli) == [{"id": "drip", "version": 1, "mode": "active", "reason": None}]
    cli("workflows", "pause", "drip")  # drain is the default
    assert _listed(cli)[0]["mode"] == "drain"


def test_worker_drain_processes_the_inbox(cli: Invoke, url: str, tmp_path: Path) -> None:
    cli("workflows", "apply", _write(tmp_path / "drip.yaml", DRIP))
    _feed(url, *_signed_up("ana", "ben"))
    result = cli("worker", "--drain")
    assert result.stdout == "handled 2 contact(s), 4 event(s)\n"
    e, m, r = t.events, t.messages, t.runs
    assert _query(url, sa.select(e.c.id).where(e.c.processed_at.is_(None))) == []
    assert _query(url, sa.select(e.c.id).where(e.c.error.is_not(None))) == []
    assert sorted(_query(url, sa.select(m.c.contact_id, m.c.step_id))) == [
        ("ana", "hello"), ("ben", "hello")
    ]  # fmt: skip
    assert sorted(_query(url, sa.select(r.c.contact_id, r.c.status, r.c.step))) == [
        ("ana", "waiting", "pause"), ("ben", "waiting", "pause")
    ]  # fmt: skip
    assert cli("worker", "--drain").stdout == "handled 0 contact(s), 0 event(s)\n"


def test_migrate_dry_run_moves_nothing_and_a_real_run_moves(
    cli: Invoke, url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "drip.yaml", DRIP)
    cli("workflows", "apply", path)
    _feed(url, *_signed_up("ana"))
    cli("worker", "--drain")
    _write(
        tmp_path / path,
        {**DRIP, "steps": [*DRIP["steps"][:2], {"id": "bye", "email": {"subject": "v2"}}]},
    )
    cli("workflows", "apply", path)
    r = t.runs
    versions = sa.select(r.c.contact_id, r.c.version)

    dry = _flat(cli("workflows", "migrate", "drip", "--to", "2", "--dry-run"))
    assert "(ana) v1 at pause: would move to v2" in dry
    assert dry.endswith("1 run(s) to move, 0 left on their version")
    as_json = json.loads(
        cli("workflows", "migrate", "drip", "--to", "2", "--dry-run", "--json").stdout
    )
    assert [(m["contact_id"], m["from_version"], m["step"], m["moved"]) for m in as_json] == [
        ("ana", 1, "pause", True)
    ]
    assert _query(url, versions) == [("ana", 1)], "a dry run moves nothing"

    real = _flat(cli("workflows", "migrate", "drip", "--to", "2"))
    assert "(ana) v1 at pause: moved to v2" in real
    assert _query(url, versions) == [("ana", 2)]


def test_migrate_reports_runs_on_removed_steps_and_exits_3(
    cli: Invoke, url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "drip.yaml", DRIP)
    cli("workflows", "apply", path)
    _feed(url, *_signed_up("ana"))
    cli("worker", "--drain")
    _write(
        tmp_path / path, {**DRIP, "steps": [DRIP["steps"][0], DRIP["steps"][2]]}
    )  # no more pause
    cli("workflows", "apply", path)
    result = _flat(cli("workflows", "migrate", "drip", "--to", "2", code=3))
    assert "(ana) v1 at pause: cannot move to v2: step 'pause' is not in version 2" in result
    assert result.endswith("0 run(s) moved, 1 left on their version")
    r = t.runs
    assert _query(url, sa.select(r.c.version)) == [(1,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["workflows", "pause", "ghost", "--mode", "freeze"], "error: no workflow 'ghost'"),
        (["workflows", "resume", "ghost"], "error: no workflow 'ghost'"),
        (
            ["workflows", "migrate", "ghost", "--to", "2"],
            "error: workflow 'ghost' has no version 2",
        ),
        (["workflows", "migrate", "drip", "--to", "9"], "error: workflow 'drip' has no version 9"),
        (["workflows", "apply", "missing.yaml"], "error: missing.yaml: cannot read"),
    ],
)
def test_errors_exit_non_zero_with_a_message(
    cli: Invoke, tmp_path: Path, args: list[str], message: str
) -> None:
    cli("workflows", "apply", _write(tmp_path / "drip.yaml", DRIP))
    result = cli(*args, code=1)
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""


def test_an_invalid_workflow_is_not_applied(cli: Invoke, tmp_path: Path) -> None:
    broken = {**DRIP, "steps": [{"id": "hello", "email": {"subject": "Hi"}, "next": "nowhere"}]}
    good = _write(tmp_path / "good.yaml", {**DRIP, "id": "good"})
    bad = _write(tmp_path / "bad.yaml", broken)
    result = cli("workflows", "apply", good, bad, code=1)
    assert result.stderr.startswith("error: ")
    assert "nowhere" in result.stderr
    assert _listed(cli) == [], "nothing is applied when one file is invalid"
    assert "Invalid value for '--mode'" in (
        cli("workflows", "pause", "drip", "--mode", "active", code=2).stderr
    )


def test_bad_settings_and_an_unopenable_database_are_reported(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        app, ["worker", "--drain"],
        env={"FLOWMAIL_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "FLOWMAIL_LEASE_SECONDS": "0"},
    )  # fmt: skip
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit)
    assert bad.stderr.startswith("error: bad settings: FLOWMAIL_LEASE_SECONDS")
    missing = runner.invoke(
        app, ["workflows", "list"],
        env={"FLOWMAIL_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/x.db"},
    )  # fmt: skip
    assert missing.exit_code == 1 and isinstance(missing.exception, SystemExit)
    assert missing.stderr.startswith("error: cannot open the database")
    assert "Traceback" not in bad.stderr + missing.stderr
