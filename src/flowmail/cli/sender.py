"""``flowmail sender``: deliver queued messages until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from flowmail.bootstrap import load_plugins
from flowmail.cli.common import store_session
from flowmail.cli.output import console, fail
from flowmail.delivery.sender import Sender
from flowmail.delivery.setup import make_sender


def sender(
    drain: Annotated[
        bool, typer.Option("--drain", help="Send what is due now, then exit (tests, cron).")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(min=1, help="Messages per claim.", envvar="FLOWMAIL_SENDER_BATCH"),
    ] = None,
) -> None:
    """Run the sender. SIGTERM or Ctrl-C finishes the messages in hand, then exits."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with store_session() as (config, store):
        try:
            load_plugins(config)  # content and recommendation providers render here
            runner = make_sender(config, store, batch=batch)
        except (ValueError, KeyError, ImportError) as exc:
            fail(f"cannot start the sender: {exc}")
        asyncio.run(_main(runner, drain))
        counts = runner.counts
        console.print(
            f"sent {counts.sent}, retrying {counts.retried}, failed {counts.failed}, "
            f"dead {counts.dead}, skipped {counts.skipped}, deferred {counts.deferred}"
        )


async def _main(runner: Sender, drain: bool) -> None:
    try:
        if drain:
            await runner.drain()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runner.run(stop)
    finally:
        await runner.close()
