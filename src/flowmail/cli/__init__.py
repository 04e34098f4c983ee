"""The ``flowmail`` command line: thin calls into the library."""

from __future__ import annotations

import typer

from flowmail.cli import db as db_cmd
from flowmail.cli import simulate as simulate_cmd
from flowmail.cli import worker as worker_cmd
from flowmail.cli import workflows as workflows_cmd

app = typer.Typer(
    name="flowmail",
    help="Self-hosted email automation: events in, journeys, emails out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(workflows_cmd.app, name="workflows")
app.add_typer(db_cmd.app, name="db")
app.add_typer(__import__("flowmail.cli.templates", fromlist=["app"]).app, name="templates")
app.command("simulate")(simulate_cmd.simulate)
app.command("worker")(worker_cmd.worker)
app.add_typer(__import__("flowmail.cli.keys", fromlist=["app"]).app, name="keys")
app.command("serve")(__import__("flowmail.cli.serve", fromlist=["serve"]).serve)
app.add_typer(__import__("flowmail.cli.messages", fromlist=["app"]).app, name="messages")
app.command("sender")(__import__("flowmail.cli.sender", fromlist=["sender"]).sender)


def main() -> None:
    app()
