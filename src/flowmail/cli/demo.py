"""``flowmail demo``: realistic traffic for the example workflows, through the HTTP API.

The key, the API's address and the webhook secret default to what ``flowmail up`` left
in the working folder (``.flowmail-up.json``) and to the settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from flowmail.cli.common import settings
from flowmail.cli.output import console, fail, print_json
from flowmail.cli.up import STATE_FILE
from flowmail.clock import SystemClock
from flowmail.demo import ApiClient, Demo, DemoError, DemoOptions, Quiet, Reporter, Summary
from flowmail.webhooks import generic

KINDS = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")


def demo(
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help="The API's base URL (default: the public_url setting).",
            envvar="FLOWMAIL_DEMO_API",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help=f"An admin API key (default: the admin_key in {STATE_FILE}).",
            envvar="FLOWMAIL_API_KEY",
        ),
    ] = None,
    contacts: Annotated[
        int,
        typer.Option(
            min=1, max=1_000_000, help="Contacts to make.", envvar="FLOWMAIL_DEMO_CONTACTS"
        ),
    ] = 1000,
    days: Annotated[
        float,
        typer.Option(
            min=0.5, max=365, help="Days of traffic before now.", envvar="FLOWMAIL_DEMO_DAYS"
        ),
    ] = 14.0,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime",
            help="Send events stamped now at --rate a second, instead of the past --days "
            "in compressed time.",
            envvar="FLOWMAIL_DEMO_REALTIME",
        ),
    ] = False,
    rate: Annotated[
        float,
        typer.Option(min=0.1, help="Events a second with --realtime.", envvar="FLOWMAIL_DEMO_RATE"),
    ] = 50.0,
    seed: Annotated[
        int,
        typer.Option(
            min=0, help="The same seed gives the same traffic.", envvar="FLOWMAIL_DEMO_SEED"
        ),
    ] = 1,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait for the worker and the sender before the feedback.",
            envvar="FLOWMAIL_DEMO_WAIT",
        ),
    ] = 300.0,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            help=f"The generic webhook's secret (whsec_...; default: {STATE_FILE}, then "
            "the settings).",
            envvar="FLOWMAIL_GENERIC_WEBHOOK_SECRET",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fill a running flowmail with realistic traffic for the example workflows."""
    state = _state()
    config = settings()
    token = key or state.get("admin_key")
    if not token:
        fail(
            "no API key: give an admin key with --key or FLOWMAIL_API_KEY, or run "
            "`flowmail up` in this folder first"
        )
    secret = webhook_secret or state.get("webhook_secret") or config.generic_webhook_secret
    if secret:
        try:
            generic.decode_secret(secret)
        except ValueError as exc:
            fail(f"--webhook-secret: {exc}")
    options = DemoOptions(
        contacts=contacts,
        days=days,
        realtime=realtime,
        rate=rate,
        seed=seed,
        wait=wait,
        webhook_secret=secret or None,
    )
    client = ApiClient(api or config.public_url, token)
    try:
        summary = _run(client, options, as_json)
    except DemoError as exc:
        fail(str(exc))
    finally:
        client.close()
    if as_json:
        print_json(summary.to_json())
    else:
        _show(summary)
    if summary.api_errors:
        raise typer.Exit(1)


def _state() -> dict[str, str]:
    try:
        found = json.loads((Path.cwd() / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


def _run(client: ApiClient, options: DemoOptions, quiet: bool) -> Summary:
    if quiet:
        return Demo(client, options, SystemClock(), Quiet()).run()
    with _progress(console) as progress:
        bar = Bar(progress)
        reporter: Reporter = bar
        try:
            return Demo(client, options, SystemClock(), reporter).run()
        finally:
            bar.finish()


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        if not task.fields.get("counted", True):
            return Text("")
        if task.total is None:
            return Text(f"{task.completed:,.0f}" if task.completed else "")
        return Text(f"{task.completed:,.0f}/{task.total:,.0f}")


def _progress(out: Console) -> Progress:
    return Progress(
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}", table_column=Column(width=28, no_wrap=True)),
        BarColumn(bar_width=30),
        _Count(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[status]}", table_column=Column(no_wrap=True)),
        console=out,
    )


class Bar:
    """The demo's phases as rich progress bars, one line each."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, description: str, total: int | None = None) -> None:
        self.finish()
        self.task = self.progress.add_task(description, total=total, status="")

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def status(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, status=text)

    def finish(self) -> None:
        if self.task is not None:
            task = next(t for t in self.progress.tasks if t.id == self.task)
            done, counted = task.completed, task.total is not None or task.completed > 0
            self.progress.update(
                self.task, total=done or 1, completed=done or 1, status="", counted=counted
            )


def _show(summary: Summary) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("contacts", f"{summary.contacts:,}")
    table.add_row(
        "events sent",
        f"{summary.events_sent:,} ({summary.accepted:,} new, {summary.duplicates:,} already there)",
    )
    table.add_row("API errors", f"{summary.api_errors:,}" + _retried(summary.retries))
    settled = "caught up" if summary.settled else "not caught up"
    table.add_row("worker and sender", f"{settled} after {summary.waited_seconds:,.0f} s")
    table.add_row("sent emails seen", f"{summary.messages_seen:,}")
    kinds = [k for k in KINDS if summary.webhooks[k]] + sorted(set(summary.webhooks) - set(KINDS))
    posted = ", ".join(f"{kind} {summary.webhooks[kind]:,}" for kind in kinds)
    table.add_row("webhooks posted", posted or "none")
    table.add_row("purchases after clicks", f"{summary.purchases:,} (${summary.revenue:,.2f})")
    if summary.mode == "compressed":
        mode = f"{summary.days:g} days in compressed time"
    else:
        mode = "real time"
    console.rule(f"flowmail demo: seed {summary.seed}, {mode}")
    console.print(table)
    for note in summary.notes:
        console.print(f"[yellow]note:[/] {note}")


def _retried(retries: int) -> str:
    return f" ({retries:,} requests retried)" if retries else ""
