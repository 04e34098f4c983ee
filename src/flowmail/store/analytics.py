"""The SQL of analytics: reading the hourly counters, live counts of runs, and folding old
counter rows together.

The ``stats`` table is written by database triggers only (migration 0006), in the same
transaction as the journal, message and delivery-event rows they count. A counter row is
(workspace, workflow, version, step, metric, label, hour, shard) -> value; a page reads a
few hundred of them, never the journal or the delivery events. Metrics:

``run:<action>``
    journal rows by action at their step: ``run:enrolled`` (step ""), ``run:email`` (label
    ``held_out`` or ``no_address`` when it queued nothing), ``run:wait``, ``run:branch``
    (label: the target taken), ``run:split`` (label: the
    arm), ``run:completed`` / ``converted`` / ``exited`` / ``failed`` (at the step the run
    ended on; label ``arrived`` when it ended on arriving there: an exit step, a step that
    failed), ``run:held``, ``run:event``, ``run:timeout``, ``run:opened``, ``run:clicked``
    (a run's first engagement with a step's email), ``run:warning`` ...
``run:dwell_us``
    microseconds runs spent at a step before their next row, summed;
``run:edge``
    moves from a step (``""``: enrolment) to the step named by the label;
``msg:queued``, ``msg:<kind>``
    messages queued per email step, and their delivery events by kind (``sent``,
    ``delivered``, ``bounced`` (label hard or soft), ``skipped`` and ``deferred`` (label:
    the policy code), ``failed``, ``dead``, ``complained``, ``unsubscribed``, ...);
``msg:opened`` / ``msg:opened_auto`` / ``msg:opened_unique``
    opens by people, opens that look automated, messages opened (or clicked) by a person;
``msg:clicked`` / ``msg:clicked_unique`` / ``msg:link`` / ``msg:link_unique``
    clicks, clicked messages, clicks per URL (label) and messages clicked per URL;
``now:active`` / ``now:waiting``
    gauges, not counts: the runs at a step now, kept in hour 0 (the epoch) and read by
    :func:`live` alone.

Times select whole hours: ``since`` counts from the start of its hour, ``until`` up to
(not including) the first hour starting at or after it. :func:`compact` folds the rows of
different writers (shards) of an hour into one once the hour is past, and hours into days
after ``daily_after``: older ranges are read to the day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.store import schema as t
from flowmail.store.schema import from_micros, to_micros
from flowmail.store.sql import SqlStore

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
GAUGES = ("now:active", "now:waiting")
NOW = datetime(1970, 1, 1, tzinfo=UTC)  # the hour of the gauges
COMPACT_BATCH = 10_000  # counter rows folded per statement
COMPACT_ROUNDS = 100  # statements per call, at most
_LOCK = 0x666C6F77  # the advisory lock that keeps two compactions apart (PostgreSQL)


@dataclass(frozen=True)
class Count:
    """One counter summed over its hours and shards."""

    workflow_id: str
    version: int
    step_id: str  # "" for the workflow as a whole
    metric: str
    label: str
    value: int


@dataclass(frozen=True)
class LiveCount:
    """Runs at a step right now."""

    workflow_id: str
    version: int
    step_id: str  # "" for a run that has not reached a step
    status: str  # active or waiting
    runs: int


def hour_of(moment: datetime) -> datetime:
    """The start of the hour ``moment`` falls in (UTC)."""
    micros = to_micros(moment)
    return from_micros(micros - micros % HOUR_US)


def _window(query: Any, since: datetime | None, until: datetime | None) -> Any:
    s = t.stats
    if since is not None:
        query = query.where(s.c.bucket >= hour_of(since))
    if until is not None:
        query = query.where(s.c.bucket < until)
    return query


def counts(
    store: SqlStore,
    workspace_id: str,
    *,
    workflow_id: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Count]:
    """Every counter of the workspace (or one workflow, or one version of it), summed over
    the hours from ``since`` to ``until`` and over shards; one row per workflow, version,
    step, metric and label."""
    s = t.stats
    total = sa.func.sum(s.c.value)
    keys = (s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric, s.c.label)
    query = sa.select(*keys, total).where(s.c.workspace_id == workspace_id)
    if workflow_id is not None:
        query = query.where(s.c.workflow_id == workflow_id)
    if version is not None:
        query = query.where(s.c.version == version)
    query = _window(query.where(s.c.bucket > NOW), since, until)  # not the gauges
    query = query.group_by(*keys).order_by(*keys)
    with store.reader.connect() as conn:
        return [
            Count(wf, int(number), step, metric, label, int(value))
            for wf, number, step, metric, label, value in conn.execute(query)
        ]


def live(
    store: SqlStore,
    workspace_id: str,
    workflow_ids: Sequence[str] | None = None,
    *,
    version: int | None = None,
) -> list[LiveCount]:
    """Runs active or waiting now, per workflow, version, step and status (of the given
    workflows, or all): read from the ``now:`` gauges, so it costs the same for ten runs
    or ten million."""
    s = t.stats
    total = sa.func.sum(s.c.value)
    keys = (s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric)
    query = sa.select(*keys, total).where(
        s.c.workspace_id == workspace_id, s.c.metric.in_(GAUGES), s.c.bucket == NOW
    )
    if workflow_ids is not None:
        query = query.where(s.c.workflow_id.in_(list(workflow_ids)))
    if version is not None:
        query = query.where(s.c.version == version)
    query = query.group_by(*keys).having(total != 0).order_by(*keys)
    with store.reader.connect() as conn:
        return [
            LiveCount(wf, int(number), step, metric.removeprefix("now:"), int(runs))
            for wf, number, step, metric, runs in conn.execute(query)
        ]


def series(
    store: SqlStore,
    workspace_id: str,
    metrics: Sequence[str],
    since: datetime,
    until: datetime,
    workflow_id: str | None = None,
) -> list[tuple[datetime, str, int]]:
    """(hour, metric, count) for charts, oldest first: the ``metrics`` summed over every
    step and label (and workflow, unless one is given). Hours with no count are left out;
    ranges older than :func:`compact`'s ``daily_after`` come one point a day."""
    if not metrics:
        return []
    s = t.stats
    query = sa.select(s.c.bucket, s.c.metric, sa.func.sum(s.c.value)).where(
        s.c.workspace_id == workspace_id, s.c.metric.in_(list(metrics))
    )
    if workflow_id is not None:
        query = query.where(s.c.workflow_id == workflow_id)
    query = _window(query, since, until).group_by(s.c.bucket, s.c.metric)
    with store.reader.connect() as conn:
        rows = conn.execute(query.order_by(s.c.bucket, s.c.metric))
        return [(bucket, metric, int(value)) for bucket, metric, value in rows]


# --- folding old rows together ---------------------------------------------------------


def compact(
    store: SqlStore,
    now: datetime,
    *,
    merge_after: timedelta = timedelta(hours=2),
    daily_after: timedelta = timedelta(days=35),
) -> int:
    """Fold counter rows together; returns how many rows were folded away.

    Rows of hours that ended ``merge_after`` ago become one row per hour (shard 0: the
    writers' own rows, one per PostgreSQL server process, are only needed while they
    write); rows older than ``daily_after`` become one row per day. Sums are unchanged.
    Run it now and then (hourly is plenty). On PostgreSQL rows a writer holds are left
    for the next call, and two calls never run at once.
    """
    hourly_cutoff = to_micros(hour_of(now - merge_after))
    daily_cutoff = to_micros(now - daily_after)
    daily_cutoff -= daily_cutoff % DAY_US
    folded = 0
    for cutoff, width in ((hourly_cutoff, HOUR_US), (daily_cutoff, DAY_US)):
        for _ in range(COMPACT_ROUNDS):
            with store.engine.begin() as conn:
                if (
                    store.postgres
                    and not conn.execute(
                        sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK}
                    ).scalar()
                ):
                    return folded
                moved = (_fold_pg if store.postgres else _fold_sqlite)(conn, cutoff, width)
            folded += moved
            if moved < COMPACT_BATCH:
                break
    return folded


_FOLDABLE = "bucket < :cutoff AND (shard <> 0 OR bucket <> bucket / :width * :width)"
_KEY = "workspace_id, workflow_id, version, step_id, metric, label, bucket, shard"
_FOLDED = (
    "workspace_id, workflow_id, version, step_id, metric, label, "
    "bucket / :width * :width, 0, sum(value)"
)
_UPSERT = f"ON CONFLICT ({_KEY}) DO UPDATE SET value = stats.value + excluded.value"

_FOLD_PG = f"""
WITH moved AS (
  DELETE FROM stats WHERE ctid IN (
    SELECT ctid FROM stats WHERE {_FOLDABLE} LIMIT :batch FOR UPDATE SKIP LOCKED)
  RETURNING {_KEY}, value
), added AS (
  INSERT INTO stats ({_KEY}, value)
  SELECT {_FOLDED} FROM moved GROUP BY 1, 2, 3, 4, 5, 6, 7
  {_UPSERT}
  RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM added)
"""


def _fold_pg(conn: Connection, cutoff: int, width: int) -> int:
    params = {"cutoff": cutoff, "width": width, "batch": COMPACT_BATCH}
    moved, _ = conn.execute(sa.text(_FOLD_PG), params).one()
    return int(moved)


def _fold_sqlite(conn: Connection, cutoff: int, width: int) -> int:
    """SQLite has one writer: no one else can touch the rows in between."""
    params = {"cutoff": cutoff, "width": width}
    rowids = f"SELECT rowid FROM stats WHERE {_FOLDABLE} ORDER BY rowid LIMIT {COMPACT_BATCH}"
    conn.execute(
        sa.text(
            f"INSERT INTO stats ({_KEY}, value) SELECT {_FOLDED} FROM stats "
            f"WHERE rowid IN ({rowids}) GROUP BY 1, 2, 3, 4, 5, 6, 7 {_UPSERT}"
        ),
        params,
    )
    return int(
        conn.execute(sa.text(f"DELETE FROM stats WHERE rowid IN ({rowids})"), params).rowcount
    )
