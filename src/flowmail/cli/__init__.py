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
app.command("simulate")(simulate_cmd.simulate)
app.command("worker")(worker_cmd.worker)


def main() -> None:
    app()
