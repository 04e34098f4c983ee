"""The monitor: one health sample per interval, and the alerts evaluated on it.

:func:`tick` is meant to be called often (the worker's maintenance loop, ``flowmail
serve``): until the current interval's sample is taken it costs one primary-key lookup;
the process whose sample insert wins then evaluates the alerts, once per interval for
the whole installation.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from flowmail.analytics import alerts
from flowmail.analytics.figures import collect
from flowmail.analytics.health import sample
from flowmail.analytics.model import WorkflowFigures
from flowmail.settings import Settings
from flowmail.store import health as db
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.alerts")


class FiguresSource(Protocol):
    def __call__(
        self, store: SqlStore, workspace_id: str, *, since: datetime, until: datetime
    ) -> list[WorkflowFigures]: ...


def tick(
    store: SqlStore, settings: Settings, now: datetime, *, figures: FiguresSource = collect
) -> None:
    """Sample health once per ``health_sample_seconds`` and evaluate the alerts on it:
    the installation's, then each workspace's workflows over the last 24 hours
    (``figures`` computes those: :func:`flowmail.analytics.figures.collect`). Alerts
    resolved more than ``retention_days`` ago are pruned."""
    health = sample(store, settings, now)
    if health is None:
        return
    db.prune_alerts(store, now - timedelta(days=settings.retention_days))
    for workspace_id in db.workspaces(store) or [DEFAULT_WORKSPACE]:
        try:
            found = figures(store, workspace_id, since=now - alerts.RATE_WINDOW, until=now)
            alerts.evaluate(store, settings, now, health, found, workspace_id=workspace_id)
        except Exception:  # one workspace's trouble must not stop the others' alerts
            log.exception("alerts of workspace %s could not be evaluated", workspace_id)
