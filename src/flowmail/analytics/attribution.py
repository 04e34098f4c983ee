"""Conversions and revenue credited to emails, added to the workflow and step figures.

A conversion is a goal event (an event named in ``conversion_events``, or a workflow's
goal event) credited, when the worker processed it, to one email of the contact: the
last one sent or clicked within ``attribution_hours`` before it (or the first, with
``attribution_model = "first"``); transactional emails take no credit. The rule and its
SQL live in :mod:`flowmail.store.conversions`; here the credited rows are summed.
"""

from __future__ import annotations

from datetime import datetime

from flowmail.analytics.model import WorkflowFigures
from flowmail.store.conversions import credited
from flowmail.store.sql import SqlStore


def fill_conversions(
    store: SqlStore,
    workspace_id: str,
    figures: list[WorkflowFigures],
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Set ``conversions`` and ``revenue`` of each workflow (its version, or all versions
    when ``version`` is None) and of its email steps, from conversions ``since <= at <
    until``."""
    totals = credited(store, workspace_id, [f.workflow_id for f in figures], since, until)
    for figure in figures:
        figure.conversions, figure.revenue = 0, 0.0
        steps = {step.step_id: step for step in figure.steps}
        for step in steps.values():
            step.conversions, step.revenue = 0, 0.0
        for (workflow_id, version, step_id), found in totals.items():
            if workflow_id != figure.workflow_id:
                continue
            if figure.version is not None and version != figure.version:
                continue
            figure.conversions += found.conversions
            figure.revenue += found.revenue
            if step_id in steps:
                steps[step_id].conversions += found.conversions
                steps[step_id].revenue += found.revenue
