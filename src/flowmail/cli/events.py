"""``flowmail events``: send one event, or import many from NDJSON or CSV, into the inbox.

Both go through the same checks as ``POST /v1/track`` and ``/v1/identify`` and are
written straight to the database (no API server needed). An imported line without a
``messageId`` gets one made from its content, so importing a file twice adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from flowmail.api.segment import Call, check_call, to_event
from flowmail.cli.common import store_session
from flowmail.cli.output import console, errors, fail, print_json
from flowmail.clock import SystemClock
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE

app = typer.Typer(help="Put events in the inbox: one, or a file of them.", no_args_is_help=True)

Workspace = Annotated[str, typer.Option(help="Workspace id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

_CALL: TypeAdapter[Any] = TypeAdapter(Call)
_MAX_PROBLEMS = 20


class Format(StrEnum):
    AUTO = "auto"
    NDJSON = "ndjson"
    CSV = "csv"


@dataclass(frozen=True)
class Line:
    number: int
    raw: str
    body: dict[str, Any] | None  # None: not an object
    problem: str | None = None


def _value(text: str) -> Any:
    """A CSV cell: JSON numbers, booleans and null as such; anything else as text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) or value is None else text


def _property(raw: str) -> tuple[str, Any]:
    name, sep, text = raw.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"{raw!r} is not name=value")
    return name, _value(text)


def _ndjson(path: Path) -> Iterator[Line]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                body = json.loads(raw)
            except ValueError as exc:
                yield Line(number, raw, None, f"not JSON: {exc}")
                continue
            if not isinstance(body, dict):
                yield Line(number, raw, None, "not a JSON object")
                continue
            yield Line(number, raw, body)


_CSV_FIELDS = {
    "user_id": "userId",
    "userid": "userId",
    "contact_id": "userId",
    "event": "event",
    "type": "type",
    "timestamp": "timestamp",
    "message_id": "messageId",
    "messageid": "messageId",
}


def _csv(path: Path) -> Iterator[Line]:
    """A header row, then one event per row: ``user_id`` and ``event`` (or ``type`` =
    identify), optional ``timestamp`` and ``message_id``; every other column is a
    property (a trait for identify rows)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, 2):
            body: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for column, cell in row.items():
                if column is None or cell is None or cell == "":
                    continue
                known = _CSV_FIELDS.get(column.strip().lower())
                if known:
                    body[known] = cell
                else:
                    extra[column.strip()] = _value(cell)
            body.setdefault("type", "track")
            body["traits" if body["type"] == "identify" else "properties"] = extra
            yield Line(number, json.dumps(row, sort_keys=True), body)


def _lines(path: Path, fmt: Format) -> Iterator[Line]:
    if fmt == Format.AUTO:
        fmt = Format.CSV if path.suffix.lower() == ".csv" else Format.NDJSON
    return _csv(path) if fmt == Format.CSV else _ndjson(path)


def _event(line: Line, workspace: str, now: datetime, max_future: timedelta) -> InboundEvent:
    """The inbox event of ``line``; ValueError with the reason when it is not valid."""
    if line.body is None:
        raise ValueError(line.problem or "not an event")
    body = dict(line.body)
    body.setdefault("type", "identify" if "traits" in body and "event" not in body else "track")
    if "messageId" not in body and "message_id" not in body:
        body["messageId"] = "import-" + hashlib.sha256(line.raw.encode()).hexdigest()[:32]
    try:
        call = _CALL.validate_python(body)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'line'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    problems = check_call(call, "", now, max_future)
    if problems:
        raise ValueError("; ".join(f"{p['field']}: {p['problem']}" for p in problems))
    return to_event(call, workspace, now)


def _batched(events: Iterator[InboundEvent], size: int) -> Iterator[list[InboundEvent]]:
    chunk: list[InboundEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@app.command()
def send(
    name: Annotated[str, typer.Argument(help="The event's name, e.g. signed_up.")],
    contact: Annotated[str, typer.Option("--contact", "-c", help="The contact's id.")],
    prop: Annotated[
        list[str] | None,
        typer.Option("--property", "-p", help="name=value (repeat); numbers stay numbers."),
    ] = None,
    message_id: Annotated[
        str | None, typer.Option("--id", help="messageId: a repeat is ignored.")
    ] = None,
    at: Annotated[
        datetime | None, typer.Option(help="When it happened (ISO 8601; default now).")
    ] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Send one track event, like POST /v1/track."""
    body: dict[str, Any] = {"type": "track", "userId": contact, "event": name}
    body["properties"] = dict(_property(p) for p in prop or [])
    if message_id:
        body["messageId"] = message_id
    if at is not None:
        body["timestamp"] = at.isoformat() if at.tzinfo else at.isoformat() + "Z"
    with store_session() as (config, store):
        now = SystemClock().now()
        line = Line(0, json.dumps(body), body)
        try:
            event = _event(line, workspace, now, timedelta(seconds=config.max_future_seconds))
        except ValueError as exc:
            fail(str(exc), 2)
        result = store.ingest([event], now)
    if as_json:
        print_json({"accepted": result.accepted, "duplicates": result.duplicates})
    elif result.duplicates:
        console.print(f"duplicate: an event with id {result.duplicate_ids[0]} was already in")
    else:
        console.print(f"[green]✓[/] {name} for {contact} is in the inbox")


@app.command("import")
def import_events(
    file: Annotated[Path, typer.Argument(help="NDJSON (one Segment call per line) or CSV.")],
    fmt: Annotated[Format, typer.Option("--format", help="Default: by the file's suffix.")] = (
        Format.AUTO
    ),
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per write.")] = 1000,
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: AsJson = False,
) -> None:
    """Import events from NDJSON or CSV, with a progress bar.

    Every line is checked first: if any is bad, nothing is written and the bad lines
    are listed (exit 1)."""
    if not file.is_file():
        fail(f"{file}: no such file", 2)
    with store_session() as (config, store):
        now = SystemClock().now()
        max_future = timedelta(seconds=config.max_future_seconds)
        problems: list[str] = []
        total = 0
        try:
            for line in _lines(file, fmt):
                total += 1
                try:
                    _event(line, workspace, now, max_future)
                except ValueError as exc:
                    problems.append(f"line {line.number}: {exc}")
        except (UnicodeDecodeError, csv.Error) as exc:
            fail(f"{file}: cannot be read as {fmt.value}: {exc}")
        if problems:
            for problem in problems[:_MAX_PROBLEMS]:
                errors.print(f"[red]✗[/] {escape(problem)}", soft_wrap=True)
            more = len(problems) - _MAX_PROBLEMS
            if more > 0:
                errors.print(f"... and {more} more")
            fail(f"{len(problems)} of {total} lines are not valid events; nothing was imported")
        accepted = duplicates = 0
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            disable=as_json or total < batch,
        ) as progress:
            task = progress.add_task("importing", total=total)
            events = (_event(line, workspace, now, max_future) for line in _lines(file, fmt))
            for chunk in _batched(events, batch):
                result = store.ingest(chunk, now)
                accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
                progress.advance(task, len(chunk))
    if as_json:
        print_json({"lines": total, "accepted": accepted, "duplicates": duplicates})
    else:
        console.print(
            f"[green]✓[/] {total} event{'' if total == 1 else 's'} read: {accepted} new, "
            f"{duplicates} already in the inbox"
        )
