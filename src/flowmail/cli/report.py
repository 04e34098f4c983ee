"""``flowmail report``: each workflow's figures over a window, with recommendations, the
alerts and the machinery's health."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from flowmail.analytics import alerts
from flowmail.analytics.figures import collect
from flowmail.analytics.health import snapshot
from flowmail.analytics.model import Alert
from flowmail.analytics.report import build, render, to_json
from flowmail.cli.common import store_session
from flowmail.cli.output import console, fail, print_json
from flowmail.clock import SystemClock
from flowmail.language.durations import parse_duration
from flowmail.store.schema import DEFAULT_WORKSPACE


def _window(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def report(
    since: Annotated[
        str,
        typer.Option(
            help="How far back the report looks: 90m, 24h, 7d, 1w.",
            callback=_window,
            envvar="FLOWMAIL_REPORT_SINCE",
        ),
    ] = "24h",
    workflow: Annotated[
        str | None, typer.Option("--workflow", help="Only this workflow (its id).")
    ] = None,
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Report each workflow's performance with recommendations, alerts and health."""
    window: timedelta = parse_duration(since)
    with store_session() as (config, store):
        if workflow is not None and workflow not in {r.id for r in store.workflow_rows(workspace)}:
            fail(f"no workflow {workflow!r} in workspace {workspace!r}")
        now = SystemClock().now()
        start = now - window
        figures = collect(store, workspace, workflow_id=workflow, since=start, until=now)
        shown = [a for a in alerts.recent(store, workspace) if _relevant(a, start, workflow)]
        health = snapshot(store, config, now)
    result = build(figures, shown, health, start, now)
    if as_json:
        print_json(to_json(result))
    else:
        console.print(render(result))


def _relevant(alert: Alert, since: datetime, workflow: str | None) -> bool:
    """Alerts firing now or resolved inside the window; with ``--workflow``, that
    workflow's and the installation's."""
    if workflow is not None and alert.subject not in ("", workflow):
        return False
    return alert.status == "firing" or (
        alert.resolved_at is not None and datetime.fromisoformat(alert.resolved_at) >= since
    )
