"""``flowmail serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from flowmail.bootstrap import load_plugins
from flowmail.cli.common import store_session
from flowmail.cli.output import fail
from flowmail.clock import SystemClock


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on.", envvar="FLOWMAIL_API_HOST")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (0: any free one).", envvar="FLOWMAIL_API_PORT"),
    ] = None,
) -> None:
    """Serve the HTTP API (ingest, management, health, metrics) until stopped."""
    import uvicorn  # here: the other commands start faster without the web stack

    from flowmail.api.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with store_session() as (config, store):
        try:
            load_plugins(config)
        except ImportError as exc:
            fail(f"cannot import a plugin from FLOWMAIL_PLUGINS: {exc}")
        app = create_app(config, store, SystemClock())
        host = host or config.api_host
        port = config.api_port if port is None else port
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                access_log=config.api_access_log,
                server_header=False,
                log_config=None,
            )
        )
        server.run()
        if not server.started:
            fail(f"could not listen on {host}:{port}")
