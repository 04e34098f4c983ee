"""All of a workspace's workflow figures in one call: funnels and email engagement from
the counters, then the conversions credited to emails, then the split results."""

from __future__ import annotations

from datetime import datetime

from flowmail.analytics import attribution, funnels, splits
from flowmail.analytics.model import WorkflowFigures
from flowmail.store.sql import SqlStore


def collect(
    store: SqlStore,
    workspace_id: str,
    *,
    workflow_id: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[WorkflowFigures]:
    figures = funnels.workflow_figures(
        store, workspace_id, workflow_id=workflow_id, version=version, since=since, until=until
    )
    attribution.fill_conversions(store, workspace_id, figures, since, until)
    splits.fill_variants(store, workspace_id, figures, since, until)
    return figures
