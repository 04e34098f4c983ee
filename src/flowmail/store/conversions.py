"""Conversions: goal events credited to the one email that earned them.

The rule (:func:`credit`, run by the worker in the transaction that processes the event):
a conversion is a ``track`` event named in ``conversion_events`` or the goal event of a
workflow. Its touches are the contact's emails sent (``messages.sent_at``) and clicked
(``message_events`` of kind ``clicked``, a touch at the click's time) within the window
``[at - attribution_hours, at]``; transactional emails (topic ``transactional``) are no
touches. The last touch (or the first, with ``attribution_model = "first"``) takes the
credit; at one instant a click beats a send for last touch and a send beats a click for
first touch, then the smaller message id wins. No touch, no conversion row. The row
keeps the event's value (``properties.revenue``, else ``properties.value``, else 0).

One set-based statement credits a whole batch; the unique ``(workspace_id, event_id)``
makes a retried batch (a worker killed mid-way) credit nothing twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.store import schema as t
from flowmail.store.base import chunks
from flowmail.store.records import UnitResult
from flowmail.store.schema import to_micros

if TYPE_CHECKING:
    from flowmail.store.sql import SqlStore

Model = Literal["last", "first"]
StepKey = tuple[str, int, str]  # workflow id, version, step id


@dataclass(frozen=True)
class Attribution:
    """Which email a conversion is credited to: the window, and last or first touch."""

    window: timedelta = timedelta(hours=72)
    model: Model = "last"


@dataclass(frozen=True)
class Conversion:
    """A goal event to credit, with the rule it is credited by."""

    event_id: str
    contact_id: str
    name: str
    at: datetime
    value: float
    rule: Attribution = Attribution()


@dataclass
class ConvertingResult(UnitResult):
    """A :class:`UnitResult` that also credits goal events, in the same transaction."""

    conversions: list[Conversion] = field(default_factory=list)


def event_value(properties: Mapping[str, Any]) -> float:
    """``revenue``, else ``value``, as a number (a numeric string counts), else 0."""
    for key in ("revenue", "value"):
        raw = properties.get(key)
        if isinstance(raw, bool) or raw is None:
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return 0.0


# --- crediting (the worker's commit) ---------------------------------------------------

_COLUMNS = ("workspace_id", "event_id", "contact_id", "name", "at", "value", "since", "model")
_TYPES = ("text", "text", "text", "text", "bigint", "float8", "bigint", "text")

_CREDIT = """
{candidates},
touches AS (
  SELECT c.workspace_id, c.event_id, m.sent_at AS touch_at, 0 AS touch_rank, 'sent' AS touch,
    m.id AS message_id, m.workflow_id, m.version, m.step_id
  FROM c JOIN messages m ON m.workspace_id = c.workspace_id AND m.contact_id = c.contact_id
  WHERE m.created_at <= c.at AND m.sent_at >= c.since AND m.sent_at <= c.at
    AND m.topic <> 'transactional'
  UNION ALL
  SELECT c.workspace_id, c.event_id, e.at, 1, 'click', m.id, m.workflow_id, m.version, m.step_id
  FROM c
  JOIN message_events e ON e.workspace_id = c.workspace_id AND e.contact_id = c.contact_id
  JOIN messages m ON m.workspace_id = e.workspace_id AND m.id = e.message_id
  WHERE e.kind = 'clicked' AND e.at >= c.since AND e.at <= c.at
    AND m.topic <> 'transactional'
),
ranked AS (
  SELECT touches.*, ROW_NUMBER() OVER (
    PARTITION BY touches.workspace_id, touches.event_id
    ORDER BY
      CASE WHEN c.model = 'first' THEN touch_at ELSE -touch_at END,
      CASE WHEN c.model = 'first' THEN touches.touch_rank ELSE -touches.touch_rank END,
      message_id
  ) AS n
  FROM touches
  JOIN c ON c.workspace_id = touches.workspace_id AND c.event_id = touches.event_id
)
INSERT INTO conversions (workspace_id, event_id, contact_id, name, at, value, message_id,
  workflow_id, version, step_id, touch)
SELECT c.workspace_id, c.event_id, c.contact_id, c.name, c.at, c.value, r.message_id,
  r.workflow_id, r.version, r.step_id, r.touch
FROM c JOIN ranked r ON r.workspace_id = c.workspace_id AND r.event_id = c.event_id
WHERE r.n = 1
ON CONFLICT (workspace_id, event_id) DO NOTHING
"""

_SQLITE_CANDIDATES = "WITH c({columns}) AS (VALUES {rows})"
_POSTGRES_CANDIDATES = "WITH c AS (SELECT * FROM json_to_recordset(%s) AS x({typed}))"


def credit(conn: Connection, results: Sequence[UnitResult]) -> int:
    """Credit the goal events of ``results`` (those that carry conversions); returns the
    number of conversion rows written."""
    rows = [
        (
            result.workspace_id,
            c.event_id,
            c.contact_id,
            c.name,
            to_micros(c.at),
            c.value,
            to_micros(c.at - c.rule.window),
            c.rule.model,
        )
        for result in results
        if isinstance(result, ConvertingResult)
        for c in result.conversions
    ]
    written = 0
    for chunk in chunks(rows, 100):
        if conn.dialect.name == "postgresql":
            typed = ", ".join(f"{n} {k}" for n, k in zip(_COLUMNS, _TYPES, strict=True))
            head = _POSTGRES_CANDIDATES.format(typed=typed)
            document = json.dumps([dict(zip(_COLUMNS, row, strict=True)) for row in chunk])
            result = conn.exec_driver_sql(_CREDIT.format(candidates=head), (document,))
        else:
            values = ", ".join(["(" + ", ".join("?" * len(_COLUMNS)) + ")"] * len(chunk))
            head = _SQLITE_CANDIDATES.format(columns=", ".join(_COLUMNS), rows=values)
            params = tuple(value for row in chunk for value in row)
            result = conn.exec_driver_sql(_CREDIT.format(candidates=head), params)
        written += max(result.rowcount, 0)
    return written


# --- reading ---------------------------------------------------------------------------


@dataclass
class Credited:
    conversions: int = 0
    revenue: float = 0.0


def credited(
    store: SqlStore,
    workspace_id: str,
    workflow_ids: Sequence[str],
    since: datetime | None,
    until: datetime | None,
) -> dict[StepKey, Credited]:
    """Conversions and revenue per (workflow, version, step), conversions ``since <= at <
    until`` (one GROUP BY on the workflow index)."""
    c = t.conversions
    if not workflow_ids:
        return {}
    query = sa.select(
        c.c.workflow_id,
        c.c.version,
        c.c.step_id,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(c.c.value), 0.0),
    ).where(c.c.workspace_id == workspace_id, c.c.workflow_id.in_(sorted(set(workflow_ids))))
    if since is not None:
        query = query.where(c.c.at >= since)
    if until is not None:
        query = query.where(c.c.at < until)
    query = query.group_by(c.c.workflow_id, c.c.version, c.c.step_id)
    with store.reader.connect() as conn:
        return {
            (row[0], int(row[1]), row[2]): Credited(int(row[3]), float(row[4]))
            for row in conn.execute(query)
        }


def conversions_of(store: SqlStore, workspace_id: str) -> list[dict[str, Any]]:
    """Every conversion row of a workspace, oldest first (for tests and exports)."""
    c = t.conversions
    query = sa.select(c).where(c.c.workspace_id == workspace_id).order_by(c.c.at, c.c.seq)
    with store.reader.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
