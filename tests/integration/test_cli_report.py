"""``flowmail report`` end to end on a SQLite file, with the real clock (the report looks
back from now, so the events fed to the worker are stamped now)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from typer.testing import Result

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
# every run ends at once by exiting: 0 % of the runs that ended finished
LEAVE: dict[str, Any] = {
    "id": "leave",
    "trigger": {"event": "signed_up"},
    "steps": [{"id": "out", "exit": True}],
}

Invoke = Callable[..., Result]  # the `cli` fixture (tests/conftest.py)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _setup(cli: Invoke, url: str, tmp_path: Path, contacts: int) -> None:
    for definition in (DRIP, LEAVE):
        path = tmp_path / f"{definition['id']}.yaml"
        path.write_text(yaml.safe_dump(definition, sort_keys=False))
        cli("workflows", "apply", path.name)
    at = datetime.now(UTC) - timedelta(seconds=5)
    store = SqlStore.from_url(url)
    try:
        events = []
        for n in range(contacts):
            email = {"email": f"c{n}@example.com"}
            events.append(InboundEvent(f"c{n}", "identify", at, {}, email, f"i{n}", "identify"))
            events.append(InboundEvent(f"c{n}", "signed_up", at + timedelta(seconds=1), id=f"e{n}"))
        store.ingest(events, at)
    finally:
        store.close()
    cli("worker", "--drain")


def test_report_as_json_has_figures_recommendations_and_health(
    cli: Invoke, url: str, tmp_path: Path
) -> None:
    _setup(cli, url, tmp_path, contacts=20)
    data = json.loads(cli("report", "--json").stdout)
    since, until = datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["until"])
    assert until - since == timedelta(hours=24)
    drip, leave = data["workflows"]
    assert (drip["workflow_id"], drip["entered"], drip["waiting"]) == ("drip", 20, 20)
    assert (leave["workflow_id"], leave["entered"], leave["exited"]) == ("leave", 20, 20)
    assert leave["completion_rate"] == 0.0
    [rec] = data["recommendations"]
    assert (rec["workflow_id"], rec["kind"], rec["step_id"]) == ("leave", "low_completion", "out")
    assert (
        "only 0.0% of the runs that ended finished (0 of 20: 20 exited, 0 failed)"
        in (rec["message"])
    )
    assert data["summary"]["workflows"] == 2 and data["summary"]["ended"] == 20
    health = data["health"]
    assert (health["pending_events"], health["queued_messages"]) == (0, 20)  # no sender ran
    assert data["alerts"] == []


def test_report_for_one_workflow_and_window(cli: Invoke, url: str, tmp_path: Path) -> None:
    _setup(cli, url, tmp_path, contacts=2)
    data = json.loads(cli("report", "--since", "90m", "--workflow", "drip", "--json").stdout)
    assert [w["workflow_id"] for w in data["workflows"]] == ["drip"]
    span = datetime.fromisoformat(data["until"]) - datetime.fromisoformat(data["since"])
    assert span == timedelta(minutes=90)
    text = _flat(cli("report", "--since", "7d").stdout)
    assert "flowmail report" in text and "drip" in text and "leave" in text
    assert "2 workflows, 4 runs entered, 2 ended (0.0% finished)" in text
    assert "none: every workflow is within its thresholds" in text  # 2 runs: too few
    assert "Alerts firing: 0" in text and "Health: 0 events pending" in text


def test_report_refuses_a_bad_window_and_an_unknown_workflow(
    cli: Invoke, url: str, tmp_path: Path
) -> None:
    bad = _flat(cli("report", "--since", "7x", code=2).stderr)
    assert "Invalid value for '--since'" in bad and "bad duration" in bad
    assert "use a number and a unit, like 30s, 90m" in bad
    cli("db", "upgrade")
    unknown = cli("report", "--workflow", "nope", code=1)
    assert "no workflow 'nope' in workspace 'default'" in _flat(unknown.stderr)
