"""A/B split counters and decided winners.

Per split step and arm (the arm's target step), the worker's commit adds to ``stats``,
in the transaction that writes the runs, so a retried batch never counts twice:

- ``split:entered``: runs that took the arm (once per run, even if a loop passes again;
  runs in the workflow's holdout get no email and are not counted);
- ``split:converted``: those runs that ended converted (reached the workflow's goal);
- ``split:clicked``: those runs that clicked an email after the split (once per run; a
  click after the run ended counts too).

Rows are keyed by workflow, version, split step, metric, arm and hour (the hour the run
entered, converted or clicked) and by shard, as the database triggers of migration 0006
key theirs: on PostgreSQL the shard is the server process (``pg_backend_pid()``), so two
transactions never update the same counter row; SQLite has one writer and uses shard 0.
Reading is a GROUP BY over a few rows per hour and arm.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowmail.engine.decisions import Record
from flowmail.engine.state import Run
from flowmail.store import hot
from flowmail.store import schema as t
from flowmail.store.records import UnitResult
from flowmail.store.schema import to_micros

if TYPE_CHECKING:
    from flowmail.store.sql import SqlStore

VersionKey = tuple[str, int]  # workflow id, version
SplitKey = tuple[str, int, str]  # workflow id, version, split step id
ENTERED, CONVERTED, CLICKED = "split:entered", "split:converted", "split:clicked"
METRICS = (ENTERED, CONVERTED, CLICKED)
_ACTIONS = frozenset({"split", "converted", "clicked"})
_HOUR = 3_600_000_000


@dataclass
class ArmCounts:
    entered: int = 0
    converted: int = 0
    clicked: int = 0


# --- counting (the worker's commit) ----------------------------------------------------


def counter_rows(results: Sequence[UnitResult]) -> list[hot.Row]:
    """The ``stats`` increments a batch makes, from its journal records and final runs."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for result in results:
        touched: dict[str, list[Record]] = {}
        for record in result.journal:
            if record.action in _ACTIONS:
                touched.setdefault(record.run_id, []).append(record)
        for run_id, records in touched.items():
            saved = result.runs.get(run_id)
            if saved is None or not saved[0].variants or saved[0].holdout:
                continue  # a held-out run gets no email: it is no arm's
            run = saved[0]
            for metric, step_id, target, at in _run_counts(run, records):
                bucket = to_micros(at) // _HOUR * _HOUR
                key = (result.workspace_id, run.workflow_id, run.version, step_id, metric)
                counts[(*key, target, bucket)] += 1
    return [(*key, value) for key, value in sorted(counts.items())]


def _run_counts(run: Run, records: Sequence[Record]) -> Iterator[tuple[str, str, str, datetime]]:
    """What one run's records in this batch add, per split the run took."""
    converted = next((r for r in records if r.action == "converted"), None)
    for step_id, target in run.variants.items():
        if step_id not in run.path:
            continue
        visits = [r for r in records if r.action == "split" and r.step_id == step_id]
        if visits and run.path.count(step_id) == len(visits):  # the first visit is in here
            yield ENTERED, step_id, target, visits[0].at
        if converted is not None:
            yield CONVERTED, step_id, target, converted.at
        after = set(run.path[run.path.index(step_id) + 1 :])
        clicks = [r for r in records if r.action == "clicked" and r.step_id in after]
        if clicks:
            now = {r.step_id for r in clicks}
            ever = {s for s, kinds in run.engaged.items() if "clicked" in kinds and s in after}
            if not ever - now:  # the run's first click after the split
                yield CLICKED, step_id, target, clicks[0].at


_KEY = "workspace_id, workflow_id, version, step_id, metric, label, bucket"
_ADD = f"""ON CONFLICT ({_KEY}, shard) DO UPDATE SET value = stats.value + excluded.value"""
STATS_ADD = hot.HotQuery(
    sqlite=f"INSERT INTO stats ({_KEY}, shard, value) VALUES ({', '.join('?' * 7)}, 0, ?) {_ADD}",
    postgres=f"""INSERT INTO stats ({_KEY}, shard, value)
SELECT {_KEY}, pg_backend_pid(), value FROM json_populate_recordset(NULL::stats, %s) {_ADD}""",
    columns=(*(name.strip() for name in _KEY.split(",")), "value"),
)


def count(conn: Connection, results: Sequence[UnitResult]) -> None:
    """Add a batch's split counts, in the batch's transaction (rows in key order)."""
    STATS_ADD.run(conn, counter_rows(results))


# --- reading ---------------------------------------------------------------------------


def arm_counts(
    store: SqlStore,
    workspace_id: str,
    splits: Sequence[tuple[str, int | None, str]],
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[SplitKey, dict[str, ArmCounts]]:
    """Counts per (workflow, version, split step) and arm; a version of None reads every
    version of the workflow. Counts fall in hours: ``since`` counts from the start of its
    hour, ``until`` up to (not including) the first hour starting at or after it."""
    s = t.stats
    if not splits:
        return {}
    wanted = []
    for workflow_id, version, step_id in splits:
        match = [s.c.workflow_id == workflow_id, s.c.step_id == step_id]
        if version is not None:
            match.append(s.c.version == version)
        wanted.append(sa.and_(*match))
    query = sa.select(
        s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric, s.c.label, sa.func.sum(s.c.value)
    ).where(s.c.workspace_id == workspace_id, s.c.metric.in_(METRICS), sa.or_(*wanted))
    if since is not None:
        query = query.where(s.c.bucket >= t.from_micros(to_micros(since) // _HOUR * _HOUR))
    if until is not None:
        query = query.where(s.c.bucket < until)
    query = query.group_by(s.c.workflow_id, s.c.version, s.c.step_id, s.c.metric, s.c.label)
    found: dict[SplitKey, dict[str, ArmCounts]] = {}
    with store.reader.connect() as conn:
        for workflow_id, version, step_id, metric, label, value in conn.execute(query):
            arm = found.setdefault((workflow_id, int(version), step_id), {})
            counts = arm.setdefault(label, ArmCounts())
            name = metric.removeprefix("split:")
            setattr(counts, name, getattr(counts, name) + int(value))
    return found


# --- winners ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Winner:
    workspace_id: str
    workflow_id: str
    version: int
    step_id: str
    target: str
    decided_at: datetime
    detail: dict[str, Any]


def load_winners(
    store: SqlStore, workspace_id: str | None = None
) -> dict[str, dict[VersionKey, dict[str, str]]]:
    """Decided winners: workspace -> (workflow, version) -> split step -> target."""
    w = t.split_winners
    query = sa.select(w.c.workspace_id, w.c.workflow_id, w.c.version, w.c.step_id, w.c.target)
    if workspace_id is not None:
        query = query.where(w.c.workspace_id == workspace_id)
    found: dict[str, dict[VersionKey, dict[str, str]]] = {}
    with store.reader.connect() as conn:
        for ws, workflow_id, version, step_id, target in conn.execute(query):
            found.setdefault(ws, {}).setdefault((workflow_id, version), {})[step_id] = target
    return found


def winners_of(store: SqlStore, workspace_id: str) -> list[Winner]:
    w = t.split_winners
    query = (
        sa.select(w)
        .where(w.c.workspace_id == workspace_id)
        .order_by(w.c.decided_at, w.c.workflow_id, w.c.version, w.c.step_id)
    )
    with store.reader.connect() as conn:
        return [
            Winner(
                r.workspace_id,
                r.workflow_id,
                r.version,
                r.step_id,
                r.target,
                r.decided_at,
                dict(r.detail),
            )
            for r in conn.execute(query)
        ]


def save_winner(store: SqlStore, winner: Winner) -> bool:
    """Record a decided winner; False if the split had one already (it never changes)."""
    stmt = store._insert(t.split_winners).values(
        workspace_id=winner.workspace_id,
        workflow_id=winner.workflow_id,
        version=winner.version,
        step_id=winner.step_id,
        target=winner.target,
        decided_at=winner.decided_at,
        detail=winner.detail,
    )
    stmt = stmt.on_conflict_do_nothing(
        index_elements=["workspace_id", "workflow_id", "version", "step_id"]
    ).returning(t.split_winners.c.target)
    with store.engine.begin() as conn:  # RETURNING: PostgreSQL's rowcount is no guide here
        return conn.execute(stmt).first() is not None
