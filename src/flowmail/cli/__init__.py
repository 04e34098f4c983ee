"""The ``flowmail`` command line: thin calls into the library."""

from __future__ import annotations

import typer

from flowmail.cli import simulate as simulate_cmd
from flowmail.cli import workflows as workflows_cmd

app = typer.Typer(
    name="flowmail",
    help="Self-hosted email automation: events in, journeys, emails out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(workflows_cmd.app, name="workflows")
app.command("simulate")(simulate_cmd.simulate)


def main() -> None:
    app()
