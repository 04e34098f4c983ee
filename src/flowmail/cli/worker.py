"""``flowmail worker``: process inbox events and due timers until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from flowmail.bootstrap import load_plugins, make_worker
from flowmail.cli.common import store_session
from flowmail.cli.output import console, fail
from flowmail.runtime.actions import ActionDispatcher


def worker(
    drain: Annotated[
        bool, typer.Option("--drain", help="Handle what is due now, then exit (tests, cron).")
    ] = False,
    batch: Annotated[
        int | None, typer.Option(help="Contacts per claim.", envvar="FLOWMAIL_WORKER_BATCH")
    ] = None,
) -> None:
    """Run a worker. SIGTERM or Ctrl-C finishes the batch in hand, then exits."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with store_session() as (config, store):
        if batch is not None:
            config = config.model_copy(update={"worker_batch": batch})
        try:
            load_plugins(config)
        except ImportError as exc:
            fail(f"cannot import a plugin from FLOWMAIL_PLUGINS: {exc}")
        runner = make_worker(config, store)
        if drain:
            handled = runner.drain()
            dispatcher = ActionDispatcher(store, runner.clock, runner.id)
            while dispatcher.step():
                pass
            dispatcher.close()
            console.print(f"handled {handled} contact(s), {runner.processed} event(s)")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        dispatcher = ActionDispatcher(store, runner.clock, runner.id)
        calls = threading.Thread(target=dispatcher.run, args=(stop,), name="webhooks", daemon=True)
        calls.start()
        runner.run(stop)
        calls.join(timeout=15)
