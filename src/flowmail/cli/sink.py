"""``flowmail sink``: a local SMTP server that keeps every email in the dev mailbox."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from flowmail.cli.common import settings
from flowmail.cli.output import console, fail
from flowmail.delivery.sink import DEFAULT_KEEP, Sink


def sink(
    port: Annotated[
        int, typer.Option(help="Port to listen on.", envvar="FLOWMAIL_SMTP_PORT")
    ] = 1025,
    host: Annotated[str, typer.Option(help="Address to listen on (keep it loopback).")] = (
        "127.0.0.1"
    ),
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Folder the emails are kept in (default: FLOWMAIL_DEV_MAILBOX, else ./mailbox).",
        ),
    ] = None,
    keep: Annotated[
        int, typer.Option(min=1, help="Emails kept; the oldest are removed past this.")
    ] = DEFAULT_KEEP,
) -> None:
    """Catch every email sent to HOST:PORT and keep it in the dev mailbox (/ui/mailbox)."""
    if folder is None:
        folder = Path(settings().dev_mailbox or "mailbox")
    folder = folder.resolve()
    server = Sink(folder, host, port, keep)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    console.print(f"SMTP sink on {host}:{port}, keeping emails in {folder}")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    console.print(f"stopped after {server.handler.received} email(s)")
