"""``flowmail db``: schema migrations."""

from __future__ import annotations

import typer

from flowmail.cli.common import store_session
from flowmail.cli.output import console
from flowmail.store.migrate import current_revision

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply every pending migration (PostgreSQL or SQLite)."""
    with store_session(migrate=True) as (_config, store):
        console.print(f"schema at revision {current_revision(store.engine)} ({store.dialect})")
