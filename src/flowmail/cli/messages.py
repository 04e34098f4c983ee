"""``flowmail messages``: look at the outbox, the dead letters, and send them again."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from flowmail.cli.common import store_session
from flowmail.cli.output import console, fail, print_json
from flowmail.clock import SystemClock
from flowmail.simulate.runner import iso
from flowmail.store import messages as queue
from flowmail.store.schema import DEFAULT_WORKSPACE

app = typer.Typer(help="The outbox: messages, dead letters, retries.", no_args_is_help=True)

Workspace = Annotated[str, typer.Option(help="Workspace id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
Limit = Annotated[int, typer.Option(min=1, help="At most this many, newest first.")]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON: times as ISO 8601, lease bookkeeping left out."""
    return {
        k: iso(v) if isinstance(v, datetime) else v
        for k, v in row.items()
        if k not in ("lease_owner", "lease_until", "workspace_id")
    }


def _line(row: dict[str, Any]) -> str:
    when = row["sent_at"] or row["send_after"]
    reason = f"  {row['reason']}" if row.get("reason") else ""
    return (
        f"{row['id']}  {row['status']:<8} {iso(when)}  {row['contact_id']}  "
        f"{row['workflow_id']}/{row['step_id']}  tries {row['attempts']}{reason}"
    )


def _show_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json([_plain(r) for r in rows])
        return
    if not rows:
        console.print("no messages")
    for row in rows:
        console.print(_line(row), soft_wrap=True, markup=False)


@app.command("list")
def list_messages(
    status: Annotated[
        str | None, typer.Option(help="Only this status: queued, sent, skipped, dead, ...")
    ] = None,
    contact: Annotated[str | None, typer.Option(help="Only this contact.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    limit: Limit = 50,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """List messages, newest first."""
    with store_session() as (_config, store):
        rows = queue.list_messages(
            store, workspace, status=status, contact_id=contact, workflow_id=workflow, limit=limit
        )
    _show_rows(rows, as_json)


@app.command()
def dead(
    limit: Limit = 100, workspace: Workspace = DEFAULT_WORKSPACE, as_json: AsJson = False
) -> None:
    """List dead letters: messages whose retries ran out."""
    with store_session() as (_config, store):
        rows = queue.list_messages(store, workspace, status="dead", limit=limit)
    _show_rows(rows, as_json)


@app.command()
def retry(
    ids: Annotated[
        list[str], typer.Argument(help="Message ids (dead, failed, unknown or skipped).")
    ],
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Queue messages again, with a fresh count of attempts; they keep their Message-ID."""
    with store_session() as (_config, store):
        done = queue.requeue(store, workspace, ids, SystemClock().now())
    left = [i for i in ids if i not in done]
    if as_json:
        print_json({"requeued": done, "not_requeued": left})
    else:
        for message_id in done:
            console.print(f"{message_id}: queued")
    if left:
        if not as_json:
            missing = ", ".join(left)
            console.print(f"not requeued (missing, or not dead/failed/unknown/skipped): {missing}")
        raise typer.Exit(1)


@app.command()
def show(
    message_id: Annotated[str, typer.Argument(help="Message id.")],
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """One message and everything that happened to it."""
    with store_session() as (_config, store):
        row = queue.get_message(store, workspace, message_id)
        if row is None:
            fail(f"no message {message_id!r}")
        events = queue.message_events(store, workspace, message_id)
    history = [{"at": iso(e["at"]), "kind": e["kind"], "detail": e["detail"]} for e in events]
    if as_json:
        print_json({**_plain(row), "events": history})
        return
    console.print(_line(row), soft_wrap=True, markup=False)
    console.print(
        f"to {row['to_address']}  subject {row['subject']!r}  topic {row['topic']}  "
        f"Message-ID {row['rfc_message_id'] or '-'}",
        soft_wrap=True,
        markup=False,
    )
    for event in history:
        detail = ", ".join(f"{k}={v}" for k, v in (event["detail"] or {}).items())
        console.print(f"  {event['at']}  {event['kind']:<9} {detail}", soft_wrap=True, markup=False)
