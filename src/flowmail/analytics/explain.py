"""Why a contact got (or did not get) an email: each run, the path it took, every email
step and what became of its message, with the reasons the runtime recorded.

Works on :func:`flowmail.store.feedback.export_contact`'s data, so it reads nothing the
contact's export would not show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Trigger:
    """A workflow started by an event, and whether it starts runs now."""

    workflow: str
    event: str
    mode: str
    reason: str | None = None


_NOT_SENT = {"skipped", "dead", "failed", "cancelled"}
_STEP_ACTIONS_SHOWN = {
    "enrolled",
    "email",
    "wait",
    "branch",
    "split",
    "event",
    "timeout",
    "held",
    "enroll",
    "webhook",
}


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def _step_line(row: dict[str, Any]) -> dict[str, Any]:
    detail = {k: _iso(v) for k, v in (row.get("detail") or {}).items()}
    return {"at": _iso(row["at"]), "step": row["step_id"], "action": row["action"], **detail}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message["id"],
        "step": message["step_id"],
        "subject": message["subject"],
        "status": message["status"],
        "reason": message.get("reason"),
        "sent_at": _iso(message.get("sent_at")),
        "events": [
            {
                "at": _iso(e["at"]),
                "kind": e["kind"],
                **({"reason": e["detail"]["reason"]} if e["detail"].get("reason") else {}),
                **({"code": e["detail"]["code"]} if e["detail"].get("code") else {}),
            }
            for e in message.get("events", [])
        ],
    }


def _because(text: str, reason: Any) -> str:
    return f"{text}: {reason}" if reason else text


def _notes(
    run: dict[str, Any], steps: list[dict[str, Any]], emails: list[dict[str, Any]]
) -> list[str]:
    """The sentences that answer "why not?" for one run."""
    notes = []
    where = f"{run['workflow']} v{run['version']}"
    for line in steps:
        if line["action"] == "email" and line.get("skipped"):
            notes.append(f"{where}: email step {line['step']} was not queued: {line['skipped']}")
        if line["action"] == "email" and line.get("held_out"):
            notes.append(
                f"{where}: email step {line['step']} held back (the run is in the holdout)"
            )
        if line["action"] == "held":
            notes.append(_because(f"{where}: held at {line['step']}", line.get("reason")))
    for email in emails:
        deferred = [e for e in email["events"] if e["kind"] == "deferred"]
        if email["status"] in _NOT_SENT:
            why = email["reason"] or next(
                (e.get("reason") for e in reversed(email["events"]) if e.get("reason")), None
            )
            notes.append(
                f"{where}: email {email['step']} ({email['subject']!r}) was {email['status']}"
                + (f": {why}" if why else "")
            )
        elif email["status"] == "queued" and deferred:
            last = deferred[-1]
            notes.append(
                f"{where}: email {email['step']} is deferred"
                + (f": {last['reason']}" if last.get("reason") else "")
            )
    status = run["status"]
    if status in ("exited", "failed"):
        notes.append(
            f"{where}: run {status} at {run['step']}: {run.get('reason') or ''}".rstrip(": ")
        )
    elif status == "waiting":
        until = run.get("wake_at") or run.get("waiting_for")
        notes.append(f"{where}: waiting at {run['step']}" + (f" (until {until})" if until else ""))
    return notes


def _paused(events: list[dict[str, Any]], triggers: Sequence[Trigger]) -> list[str]:
    """Workflows the contact's events would start, that start nothing while paused."""
    names = {e["name"] for e in events}
    return [
        f"{t.workflow} is {t.mode}"
        + (f" ({t.reason})" if t.reason else "")
        + f": its trigger {t.event} starts no new runs"
        for t in triggers
        if t.event in names and t.mode != "active"
    ]


def explain(export: dict[str, Any], triggers: Sequence[Trigger] = ()) -> dict[str, Any]:
    """The story of a contact, run by run, with the notes that explain missing emails.
    ``triggers``: the workspace's event-triggered workflows, to tell of paused ones."""
    contact = export["contact"]
    journal_by_run: dict[str, list[dict[str, Any]]] = {}
    for row in export["journal"]:
        journal_by_run.setdefault(row["run_id"], []).append(row)
    messages_by_run: dict[str, list[dict[str, Any]]] = {}
    for message in export["messages"]:
        messages_by_run.setdefault(message["run_id"], []).append(message)
    runs = []
    notes: list[str] = []
    for row in export["runs"]:
        state = row.get("state") or {}
        run = {
            "id": row["id"],
            "workflow": row["workflow_id"],
            "version": row["version"],
            "status": row["status"],
            "step": row["step"],
            "started_at": _iso(row["started_at"]),
            "ended_at": _iso(row.get("ended_at")),
            "reason": state.get("reason"),
            "waiting_for": state.get("waiting_for"),
            "wake_at": state.get("wake_at"),
            "path": list(state.get("path") or []),
        }
        steps = [
            _step_line(r)
            for r in journal_by_run.get(row["id"], [])
            if r["action"] in _STEP_ACTIONS_SHOWN or r["action"] == row["status"]
        ]
        emails = [_message(m) for m in messages_by_run.get(row["id"], [])]
        run_notes = _notes(run, steps, emails)
        notes += run_notes
        runs.append({**run, "steps": steps, "emails": emails, "notes": run_notes})
    suppressions = [
        {"reason": s["reason"], "source": s.get("source"), "since": _iso(s["created_at"])}
        for s in export.get("suppressions", [])
    ]
    if suppressions:
        notes.insert(0, f"the address is suppressed: {suppressions[0]['reason']}")
    if not contact.get("email"):
        notes.insert(0, "the contact has no email address")
    notes += _paused(export.get("events", []), triggers)
    if not runs:
        names = sorted({e["name"] for e in export.get("events", [])})
        notes.append(
            "no runs: no workflow was triggered"
            + (f" by the events received ({', '.join(names)})" if names else " (no events)")
        )
    return {
        "contact": {
            "id": contact["id"],
            "email": contact.get("email"),
            "timezone": contact.get("timezone"),
        },
        "suppressions": suppressions,
        "consents": [
            {"topic": c["topic"], "status": c["status"], "at": _iso(c["at"])}
            for c in export.get("consents", [])
        ],
        "runs": runs,
        "notes": notes,
    }
