"""``flowmail contacts``: import from CSV, export and erase one (GDPR), and explain why a
contact got, or did not get, an email."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from flowmail.analytics.explain import Trigger
from flowmail.analytics.explain import explain as explain_contact
from flowmail.api.fields import check_email, check_timezone
from flowmail.cli.common import store_session
from flowmail.cli.output import console, errors, fail, print_json
from flowmail.clock import SystemClock
from flowmail.simulate.runner import iso
from flowmail.store import feedback
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

app = typer.Typer(help="Import, export, erase and explain contacts.", no_args_is_help=True)

Workspace = Annotated[str, typer.Option(help="Workspace id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
ContactId = Annotated[str, typer.Argument(help="The contact's id.")]

_ID_COLUMNS = ("id", "user_id", "userid", "contact_id")
_IDENTIFY = "identify"


def _cell(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) else text


def _traits(row: dict[str, str | None], number: int) -> tuple[str, dict[str, Any]]:
    """The contact id and traits of one CSV row; ValueError with the reason if invalid."""
    cells = {k.strip().lower(): v for k, v in row.items() if k is not None and v not in (None, "")}
    contact_id = next((cells.pop(c) for c in _ID_COLUMNS if c in cells), None)
    if not contact_id:
        raise ValueError(f"line {number}: no id (a column named one of {', '.join(_ID_COLUMNS)})")
    traits: dict[str, Any] = {}
    for name, text in cells.items():
        assert text is not None
        if name == "email":
            traits[name] = check_email(text)
        elif name == "timezone":
            traits[name] = check_timezone(text)
        else:
            traits[name] = _cell(text)
    return str(contact_id), traits


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    found, problems = [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            try:
                found.append(_traits(row, number))
            except ValueError as exc:
                message = str(exc)
                problems.append(
                    message if message.startswith("line") else f"line {number}: {message}"
                )
    if problems:
        for problem in problems[:20]:
            errors.print(f"[red]✗[/] {escape(problem)}", soft_wrap=True)
        fail(f"{len(problems)} rows are not valid; nothing was imported")
    return found


@app.command("import")
def import_contacts(
    file: Annotated[Path, typer.Argument(help="CSV with a header: id, email, timezone, ...")],
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Contacts per write.")] = 1000,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Create or update contacts from CSV.

    Columns: ``id`` (or user_id), ``email``, ``timezone``; every other column is an
    attribute. Each row is an identify event, applied in order with the contact's other
    events. Every row is checked first: one bad row and nothing is written."""
    if not file.is_file():
        fail(f"{file}: no such file", 2)
    try:
        rows = _rows(file)
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{file}: cannot be read as CSV: {exc}")
    accepted = 0
    with store_session() as (_config, store):
        now = SystemClock().now()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            disable=as_json or len(rows) < batch,
        ) as progress:
            task = progress.add_task("importing", total=len(rows))
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                events = [
                    InboundEvent(cid, _IDENTIFY, now, {}, traits, None, "identify", workspace)
                    for cid, traits in chunk
                ]
                accepted += store.ingest(events, now).accepted
                progress.advance(task, len(chunk))
    if as_json:
        print_json({"rows": len(rows), "accepted": accepted})
    else:
        console.print(f"[green]✓[/] {len(rows)} contacts queued for update")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return iso(value) if hasattr(value, "isoformat") else value


@app.command()
def export(
    contact_id: ContactId,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
) -> None:
    """Everything held about a contact, as JSON (the right of access)."""
    with store_session() as (_config, store):
        data = feedback.export_contact(store, workspace, contact_id)
    if data is None:
        fail(f"no contact {contact_id!r}", 3)
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"[green]✓[/] written to {out}")


@app.command()
def erase(
    contact_id: ContactId,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Delete a contact and everything about it (the right to erasure).

    Opt-outs are kept as hashes so the address stays suppressed."""
    if not yes and not typer.confirm(f"Erase {contact_id} and everything about them?"):
        fail("not erased", 1)
    with store_session() as (_config, store):
        counts = feedback.erase_contact(store, workspace, contact_id, SystemClock().now())
    if counts is None:
        fail(f"no contact {contact_id!r}", 3)
    if as_json:
        print_json(counts)
        return
    kept = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    console.print(f"[green]✓[/] erased {contact_id}: {kept}")


def _triggers(store: SqlStore, workspace: str) -> list[Trigger]:
    found = []
    for row in store.workflow_rows(workspace):
        definition = store.workflow_definition(workspace, row.id, row.version) or {}
        trigger = definition.get("trigger")
        if isinstance(trigger, dict) and isinstance(trigger.get("event"), str):
            found.append(Trigger(row.id, trigger["event"], row.mode, row.reason))
    return found


@app.command()
def explain(
    contact_id: ContactId,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Why did this contact get, or not get, each email: runs, paths, skips, deferrals."""
    with store_session() as (_config, store):
        data = feedback.export_contact(store, workspace, contact_id)
        triggers = _triggers(store, workspace)
    if data is None:
        fail(f"no contact {contact_id!r}", 3)
    story = explain_contact(data, triggers)
    if as_json:
        print_json(story)
        return
    person = story["contact"]
    console.print(
        f"[bold]{escape(person['id'])}[/] <{escape(person['email'] or 'no email')}> "
        f"{escape(person['timezone'] or '')}"
    )
    for sup in story["suppressions"]:
        console.print(f"  suppressed: {escape(sup['reason'])} since {sup['since']}")
    for consent in story["consents"]:
        console.print(f"  topic {escape(consent['topic'])}: {consent['status']} ({consent['at']})")
    for run in story["runs"]:
        console.print(
            f"\n[bold]{escape(run['workflow'])}[/] v{run['version']}  run {run['id']}  "
            f"[cyan]{run['status']}[/]  started {run['started_at']}"
        )
        console.print(f"  path: {' → '.join(run['path']) or '(none)'}", markup=False)
        for line in run["steps"]:
            extra = {k: v for k, v in line.items() if k not in ("at", "step", "action")}
            shown = " ".join(f"{k}={v}" for k, v in extra.items())
            console.print(
                f"  {line['at']}  {line['step'] or '-'}  {line['action']}  {shown}", markup=False
            )
        for email in run["emails"]:
            console.print(
                f"  email {email['step']}: {email['subject']!r} → {email['status']}"
                + (f" ({email['reason']})" if email["reason"] else ""),
                markup=False,
            )
            for event in email["events"]:
                why = event.get("reason") or event.get("code") or ""
                console.print(f"    {event['at']}  {event['kind']}  {why}", markup=False)
    if story["notes"]:
        console.print("\n[bold]Why:[/]")
        for note in story["notes"]:
            console.print(f"  • {note}", markup=False)
