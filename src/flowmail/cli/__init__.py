"""The ``flowmail`` command line: thin calls into the library."""

from __future__ import annotations

import typer

from flowmail.cli import (
    bench,
    contacts,
    db,
    demo,
    events,
    keys,
    messages,
    report,
    sender,
    serve,
    simulate,
    sink,
    templates,
    up,
    worker,
    workflows,
)

app = typer.Typer(
    name="flowmail",
    help="Self-hosted email automation: events in, journeys, emails out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(workflows.app, name="workflows")
app.add_typer(templates.app, name="templates")
app.add_typer(messages.app, name="messages")
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(events.app, name="events")
app.add_typer(contacts.app, name="contacts")
app.command("simulate")(simulate.simulate)
app.command("worker")(worker.worker)
app.command("sender")(sender.sender)
app.command("serve")(serve.serve)
app.command("up")(up.up)
app.command("bench")(bench.bench)
app.command("sink")(sink.sink)
app.command("demo")(demo.demo)
app.command("report")(report.report)


def main() -> None:
    app()
