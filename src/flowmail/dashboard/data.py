"""What the pages show, from the analytics modules: figures over a period, health and
its samples, alerts and the report. The pages call these; the SQL is elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowmail.analytics import alerts as alert_log
from flowmail.analytics import report as reporting
from flowmail.analytics.figures import collect
from flowmail.analytics.health import from_json, snapshot
from flowmail.analytics.model import Alert, HealthFigures, Report, WorkflowFigures
from flowmail.language.durations import format_duration, parse_duration
from flowmail.settings import Settings
from flowmail.store import analytics as counters
from flowmail.store import health as samples_sql
from flowmail.store.sql import SqlStore

PERIODS = ("1h", "6h", "24h", "7d", "30d")
MAX_PERIOD = timedelta(days=400)
MAX_POINTS = 720  # health samples drawn per chart, at most (older ones are thinned)
CHARTED = ("events_per_minute", "sent_per_minute", "lag_seconds", "pending_events",
           "due_messages", "dead_messages", "error_rate")  # fmt: skip


@dataclass(frozen=True)
class Period:
    text: str
    since: datetime
    until: datetime


def period(text: str | None, now: datetime, default: str = "24h") -> Period:
    """``24h``, ``7d``, ``90m`` ... back from now; a bad or huge value gives the default."""
    try:
        length = parse_duration(text or default)
    except ValueError:
        text, length = default, parse_duration(default)
    if length > MAX_PERIOD:
        text, length = format_duration(MAX_PERIOD), MAX_PERIOD
    return Period((text or default).replace(" ", ""), now - length, now)


def figures(
    store: SqlStore,
    workspace_id: str,
    span: Period,
    workflow_id: str | None = None,
    version: int | None = None,
) -> list[WorkflowFigures]:
    return collect(
        store,
        workspace_id,
        workflow_id=workflow_id,
        version=version,
        since=span.since,
        until=span.until,
    )


def health(store: SqlStore, settings: Settings, now: datetime) -> HealthFigures:
    return snapshot(store, settings, now)


def health_series(store: SqlStore, span: Period) -> dict[str, list[float | None]]:
    """Chart columns from the health samples: ``t`` (epoch seconds) and each of
    :data:`CHARTED`, thinned to at most :data:`MAX_POINTS` points."""
    rows = samples_sql.samples(store, span.since, span.until)
    step = max(1, -(-len(rows) // MAX_POINTS))
    columns: dict[str, list[float | None]] = {"t": [], **{name: [] for name in CHARTED}}
    columns["range"] = [span.since.timestamp(), span.until.timestamp()]
    for at, values in rows[::step]:
        sample = from_json(values)
        columns["t"].append(at.timestamp())
        for name in CHARTED:
            value = getattr(sample, name)
            columns[name].append(float(value) if isinstance(value, int | float) else None)
    return columns


def workflow_series(
    store: SqlStore, workspace_id: str, workflow_id: str, span: Period
) -> dict[str, list[float | None]]:
    """Runs entered and emails sent per hour (the hourly counters), for a chart."""
    metrics = {"run:enrolled": "entered", "msg:sent": "sent"}
    rows = counters.series(store, workspace_id, list(metrics), span.since, span.until, workflow_id)
    hours = sorted({at for at, _, _ in rows})
    index = {at: i for i, at in enumerate(hours)}
    columns: dict[str, list[float | None]] = {
        "t": [at.timestamp() for at in hours],
        "range": [span.since.timestamp(), span.until.timestamp()],
    }
    for name in metrics.values():
        columns[name] = [0.0] * len(hours)
    for at, metric, count in rows:
        column = columns[metrics[metric]]
        column[index[at]] = float(count)
    return columns


def active_alerts(store: SqlStore, workspace_id: str) -> list[Alert]:
    return alert_log.active(store, workspace_id)


def report(
    store: SqlStore, settings: Settings, workspace_id: str, span: Period
) -> tuple[Report, dict[str, Any]]:
    """The report of the period (with the alerts firing, or resolved in it), and its JSON
    form: what ``flowmail report`` shows."""
    found = figures(store, workspace_id, span)
    shown = [
        a
        for a in alert_log.recent(store, workspace_id)
        if a.status == "firing"
        or (a.resolved_at is not None and datetime.fromisoformat(a.resolved_at) >= span.since)
    ]
    built = reporting.build(
        found, shown, health(store, settings, span.until), span.since, span.until
    )
    return built, reporting.to_json(built)
