"""stats triggers: the hourly counters of ``stats`` kept by the database, in the same
transaction as the journal, message and delivery-event rows they count; wider indexes for
the previous-row lookup (journal by run and seq), live counts (runs by workflow, status,
version and step) and charts (stats by metric and hour)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

What is counted (see :mod:`flowmail.store.analytics` for how it is read):

* a journal row: ``run:<action>`` at its step ("" for none; label: the target of a
  branch or split, ``held_out`` or ``no_address`` for an email step that queued nothing,
  ``arrived`` for a run that ended on arriving at a step); and, unless it is an
  engagement observation (opened, clicked) or a warning, against the run's previous row
  that is neither: ``run:dwell_us`` (microseconds between the two) at the previous row's
  step, and ``run:edge`` (label: the new step) when the run moved to another step or
  visited the same one again. Warnings about no workflow are not counted;
* a run: ``now:active`` / ``now:waiting`` at its version and step, in hour 0 (the epoch):
  gauges, +1 when a run arrives in that state and place, -1 when it leaves it (started
  from the runs live at the upgrade);
* a message: ``msg:queued``;
* a delivery event: ``msg:<kind>`` (label: the policy code of a skip or deferral, hard or
  soft for a bounce); an open is ``msg:opened_auto`` when ``detail.automated`` is true,
  else ``msg:opened``; ``msg:opened_unique`` for a message's first open by a person or
  first click (a click proves the open); ``msg:clicked``, ``msg:clicked_unique``,
  ``msg:link`` and ``msg:link_unique`` (label: the URL, at most 500 characters).

Counts go to the hour (UTC) of the row's own time. PostgreSQL: one statement-level
trigger per table (the worker writes a batch in one statement, so the batch's counts are
summed before they are written) and one counter row per server process (``shard`` =
``pg_backend_pid()``): two transactions never update the same counter row, so they neither
wait for nor deadlock with each other. SQLite (one writer): row triggers, shard 0.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HOUR = 3_600_000_000  # microseconds
ASIDE = "('opened', 'clicked', 'warning')"  # journal rows that do not move a run
ENGAGED = "('opened', 'clicked')"
EXECUTING = (
    "('email', 'wait', 'wait_for', 'branch', 'split', 'update', 'tag', 'untag', "
    "'webhook', 'enroll')"
)
ENDED = "('completed', 'converted', 'exited', 'failed')"
_KEY = "workspace_id, workflow_id, version, step_id, metric, label, bucket, shard"
_COLUMNS = f"{_KEY}, value"

# --- SQLite: row triggers ----------------------------------------------------------------

_SQLITE_PREV = f"""(SELECT j.step_id, j.at, j.action FROM journal AS j
      WHERE j.workspace_id = NEW.workspace_id AND j.run_id = NEW.run_id AND j.seq < NEW.seq
        AND j.action NOT IN {ASIDE}
      ORDER BY j.seq DESC LIMIT 1)"""
_SQLITE_UPSERT = f"ON CONFLICT ({_KEY}) DO UPDATE SET value = stats.value + excluded.value"
_SQLITE_VERSION = """COALESCE((SELECT r.version FROM runs AS r
    WHERE r.workspace_id = NEW.workspace_id AND r.id = NEW.run_id), 0)"""
_SQLITE_HOUR = f"NEW.at / {HOUR} * {HOUR}"

# One statement per count, the previous row read as the only FROM item of the two that
# need it: measured cheaper than one statement joining it (which SQLite materializes).
_SQLITE_JOURNAL = f"""
CREATE TRIGGER stats_journal AFTER INSERT ON journal
WHEN NEW.workflow_id <> ''
BEGIN
  INSERT INTO stats ({_COLUMNS})
  SELECT NEW.workspace_id, NEW.workflow_id, {_SQLITE_VERSION}, COALESCE(NEW.step_id, ''),
    substr('run:' || NEW.action, 1, 32),
    CASE
      WHEN NEW.action IN ('branch', 'split')
        THEN substr(COALESCE(CAST(json_extract(NEW.detail, '$.then') AS TEXT), ''), 1, 500)
      WHEN NEW.action = 'email' AND json_extract(NEW.detail, '$.held_out') IS 1
        THEN 'held_out'
      WHEN NEW.action = 'email' AND json_extract(NEW.detail, '$.skipped') IS NOT NULL
        THEN 'no_address'
      WHEN NEW.action IN {ENDED}
        AND EXISTS (SELECT 1 FROM {_SQLITE_PREV} AS p WHERE p.step_id IS NOT NEW.step_id)
        THEN 'arrived'
      ELSE ''
    END,
    {_SQLITE_HOUR}, 0, 1
  WHERE true
  {_SQLITE_UPSERT};
  INSERT INTO stats ({_COLUMNS})
  SELECT NEW.workspace_id, NEW.workflow_id, {_SQLITE_VERSION}, COALESCE(p.step_id, ''),
    'run:dwell_us', '', {_SQLITE_HOUR}, 0, NEW.at - p.at
  FROM {_SQLITE_PREV} AS p
  WHERE NEW.action NOT IN {ASIDE} AND NEW.at > p.at
  {_SQLITE_UPSERT};
  INSERT INTO stats ({_COLUMNS})
  SELECT NEW.workspace_id, NEW.workflow_id, {_SQLITE_VERSION}, COALESCE(p.step_id, ''),
    'run:edge', NEW.step_id, {_SQLITE_HOUR}, 0, 1
  FROM {_SQLITE_PREV} AS p
  WHERE NEW.action NOT IN {ASIDE} AND NEW.step_id IS NOT NULL
    AND (p.step_id IS NOT NEW.step_id OR (NEW.action IN {EXECUTING} AND p.action <> 'held'))
  {_SQLITE_UPSERT};
END
"""

_SQLITE_MESSAGES = f"""
CREATE TRIGGER stats_messages AFTER INSERT ON messages
BEGIN
  INSERT INTO stats ({_COLUMNS})
  SELECT NEW.workspace_id, NEW.workflow_id, NEW.version, NEW.step_id, 'msg:queued', '',
    NEW.created_at / {HOUR} * {HOUR}, 0, 1
  WHERE true
  {_SQLITE_UPSERT};
END
"""


def _sqlite_earlier(condition: str) -> str:
    return f"""EXISTS (SELECT 1 FROM message_events AS e
      WHERE e.workspace_id = NEW.workspace_id AND e.message_id = NEW.message_id
        AND e.seq < NEW.seq AND ({condition}))"""


_SQLITE_AUTO = "json_extract(NEW.detail, '$.automated') IS 1"
_SQLITE_URL = "substr(CAST(json_extract(NEW.detail, '$.url') AS TEXT), 1, 500)"
_SQLITE_HUMAN_BEFORE = _sqlite_earlier(
    "e.kind = 'clicked' OR (e.kind = 'opened' AND json_extract(e.detail, '$.automated') IS NOT 1)"
)

_SQLITE_MESSAGE_EVENTS = f"""
CREATE TRIGGER stats_message_events AFTER INSERT ON message_events
WHEN NEW.kind <> 'queued'
BEGIN
  INSERT INTO stats ({_COLUMNS})
  SELECT m.workspace_id, m.workflow_id, m.version, m.step_id, x.metric, x.label,
    NEW.at / {HOUR} * {HOUR}, 0, 1
  FROM messages AS m, (
    SELECT substr('msg:' || NEW.kind, 1, 32) AS metric,
      CASE
        WHEN NEW.kind IN ('skipped', 'deferred')
          THEN COALESCE(CAST(json_extract(NEW.detail, '$.code') AS TEXT), '')
        WHEN NEW.kind = 'bounced'
          THEN COALESCE(CAST(json_extract(NEW.detail, '$.bounce_type') AS TEXT), '')
        ELSE ''
      END AS label
    WHERE NEW.kind NOT IN {ENGAGED}
    UNION ALL SELECT 'msg:opened_auto', '' WHERE NEW.kind = 'opened' AND {_SQLITE_AUTO}
    UNION ALL SELECT 'msg:opened', '' WHERE NEW.kind = 'opened' AND NOT ({_SQLITE_AUTO})
    UNION ALL SELECT 'msg:opened_unique', ''
      WHERE (NEW.kind = 'clicked' OR (NEW.kind = 'opened' AND NOT ({_SQLITE_AUTO})))
        AND NOT {_SQLITE_HUMAN_BEFORE}
    UNION ALL SELECT 'msg:clicked', '' WHERE NEW.kind = 'clicked'
    UNION ALL SELECT 'msg:clicked_unique', ''
      WHERE NEW.kind = 'clicked' AND NOT {_sqlite_earlier("e.kind = 'clicked'")}
    UNION ALL SELECT 'msg:link', {_SQLITE_URL}
      WHERE NEW.kind = 'clicked' AND {_SQLITE_URL} IS NOT NULL
    UNION ALL SELECT 'msg:link_unique', {_SQLITE_URL}
      WHERE NEW.kind = 'clicked' AND {_SQLITE_URL} IS NOT NULL
        AND NOT {
    _sqlite_earlier(
        "e.kind = 'clicked' AND substr(CAST(json_extract(e.detail, '$.url') AS TEXT), 1, 500) = "
        + _SQLITE_URL
    )
}
  ) AS x
  WHERE m.workspace_id = NEW.workspace_id AND m.id = NEW.message_id
  {_SQLITE_UPSERT};
END
"""

# --- PostgreSQL: statement triggers over the transition table -------------------------

_PG_UPSERT = f"ON CONFLICT ({_KEY}) DO UPDATE SET value = s.value + excluded.value"

_PG_JOURNAL = f"""
CREATE FUNCTION flowmail_stats_journal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats AS s ({_COLUMNS})
  SELECT n.workspace_id, n.workflow_id, COALESCE(r.version, 0), x.step_id, x.metric, x.label,
    n.at / {HOUR} * {HOUR}, pg_backend_pid(), sum(x.value)
  FROM new_rows AS n
  LEFT JOIN runs AS r ON r.workspace_id = n.workspace_id AND r.id = n.run_id
  LEFT JOIN LATERAL (
    SELECT j.step_id, j.at, j.action FROM journal AS j
    WHERE j.workspace_id = n.workspace_id AND j.run_id = n.run_id AND j.seq < n.seq
      AND j.action NOT IN {ASIDE}
    ORDER BY j.seq DESC LIMIT 1
  ) AS p ON n.action NOT IN {ASIDE}
  CROSS JOIN LATERAL (VALUES
    (COALESCE(n.step_id, ''), left('run:' || n.action, 32),
     CASE
       WHEN n.action IN ('branch', 'split') THEN left(COALESCE(n.detail ->> 'then', ''), 500)
       WHEN n.action = 'email' AND COALESCE(n.detail ->> 'held_out', '') = 'true'
         THEN 'held_out'
       WHEN n.action = 'email' AND n.detail ->> 'skipped' IS NOT NULL THEN 'no_address'
       WHEN n.action IN {ENDED} AND p.action IS NOT NULL
         AND p.step_id IS DISTINCT FROM n.step_id THEN 'arrived'
       ELSE ''
     END,
     1::bigint),
    (COALESCE(p.step_id, ''), 'run:dwell_us', '',
     CASE WHEN n.at > p.at THEN n.at - p.at END),
    (COALESCE(p.step_id, ''), 'run:edge', COALESCE(n.step_id, ''),
     CASE WHEN p.action IS NOT NULL AND n.step_id IS NOT NULL
       AND (p.step_id IS DISTINCT FROM n.step_id
            OR (n.action IN {EXECUTING} AND p.action <> 'held')) THEN 1::bigint END)
  ) AS x(step_id, metric, label, value)
  WHERE x.value IS NOT NULL AND n.workflow_id <> ''
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  {_PG_UPSERT};
  RETURN NULL;
END
$$
"""

_PG_MESSAGES = f"""
CREATE FUNCTION flowmail_stats_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats AS s ({_COLUMNS})
  SELECT n.workspace_id, n.workflow_id, n.version, n.step_id, 'msg:queued', '',
    n.created_at / {HOUR} * {HOUR}, pg_backend_pid(), count(*)
  FROM new_rows AS n
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  {_PG_UPSERT};
  RETURN NULL;
END
$$
"""


def _pg_earlier(condition: str) -> str:
    return f"""EXISTS (SELECT 1 FROM message_events AS e
      WHERE e.workspace_id = n.workspace_id AND e.message_id = n.message_id
        AND e.seq < n.seq AND ({condition}))"""


_PG_HUMAN_BEFORE = _pg_earlier(
    "e.kind = 'clicked' OR (e.kind = 'opened' AND COALESCE(e.detail ->> 'automated', '') <> 'true')"
)

_PG_MESSAGE_EVENTS = f"""
CREATE FUNCTION flowmail_stats_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats AS s ({_COLUMNS})
  SELECT m.workspace_id, m.workflow_id, m.version, m.step_id, x.metric, x.label,
    n.at / {HOUR} * {HOUR}, pg_backend_pid(), count(*)
  FROM new_rows AS n
  JOIN messages AS m ON m.workspace_id = n.workspace_id AND m.id = n.message_id
  CROSS JOIN LATERAL (
    SELECT COALESCE(n.detail ->> 'automated', '') = 'true' AS auto,
      left(n.detail ->> 'url', 500) AS url
  ) AS f
  CROSS JOIN LATERAL (
    SELECT left('msg:' || n.kind, 32),
      CASE
        WHEN n.kind IN ('skipped', 'deferred') THEN COALESCE(n.detail ->> 'code', '')
        WHEN n.kind = 'bounced' THEN COALESCE(n.detail ->> 'bounce_type', '')
        ELSE ''
      END
    WHERE n.kind NOT IN {ENGAGED}
    UNION ALL SELECT 'msg:opened_auto', '' WHERE n.kind = 'opened' AND f.auto
    UNION ALL SELECT 'msg:opened', '' WHERE n.kind = 'opened' AND NOT f.auto
    UNION ALL SELECT 'msg:opened_unique', ''
      WHERE (n.kind = 'clicked' OR (n.kind = 'opened' AND NOT f.auto))
        AND NOT {_PG_HUMAN_BEFORE}
    UNION ALL SELECT 'msg:clicked', '' WHERE n.kind = 'clicked'
    UNION ALL SELECT 'msg:clicked_unique', ''
      WHERE n.kind = 'clicked' AND NOT {_pg_earlier("e.kind = 'clicked'")}
    UNION ALL SELECT 'msg:link', f.url WHERE n.kind = 'clicked' AND f.url IS NOT NULL
    UNION ALL SELECT 'msg:link_unique', f.url
      WHERE n.kind = 'clicked' AND f.url IS NOT NULL
        AND NOT {_pg_earlier("e.kind = 'clicked' AND left(e.detail ->> 'url', 500) = f.url")}
  ) AS x(metric, label)
  WHERE n.kind <> 'queued'
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  {_PG_UPSERT};
  RETURN NULL;
END
$$
"""

# --- runs: gauges of the runs at each step now ---------------------------------------

LIVE = "('active', 'waiting')"
_GAUGE = "'now:' || {row}.status"  # metric now:active / now:waiting, bucket 0, label ""


def _sqlite_gauge(row: str, delta: int) -> str:
    return f"""INSERT INTO stats ({_COLUMNS})
  SELECT {row}.workspace_id, {row}.workflow_id, {row}.version, COALESCE({row}.step, ''),
    {_GAUGE.format(row=row)}, '', 0, 0, {delta}
  WHERE {row}.status IN {LIVE}
  {_SQLITE_UPSERT};"""


_SQLITE_RUNS = [
    f"""
CREATE TRIGGER stats_runs_insert AFTER INSERT ON runs
BEGIN
  {_sqlite_gauge("NEW", 1)}
END
""",
    f"""
CREATE TRIGGER stats_runs_update AFTER UPDATE OF workflow_id, version, status, step ON runs
WHEN OLD.workflow_id IS NOT NEW.workflow_id OR OLD.version IS NOT NEW.version
  OR OLD.status IS NOT NEW.status OR OLD.step IS NOT NEW.step
BEGIN
  {_sqlite_gauge("OLD", -1)}
  {_sqlite_gauge("NEW", 1)}
END
""",
    f"""
CREATE TRIGGER stats_runs_delete AFTER DELETE ON runs
BEGIN
  {_sqlite_gauge("OLD", -1)}
END
""",
]


def _pg_runs_function(name: str, sources: list[tuple[str, int]]) -> str:
    rows = " UNION ALL ".join(
        f"SELECT workspace_id, workflow_id, version, step, status, {delta} AS delta "
        f"FROM {table} WHERE status IN {LIVE}"
        for table, delta in sources
    )
    return f"""
CREATE FUNCTION flowmail_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats AS s ({_COLUMNS})
  SELECT d.workspace_id, d.workflow_id, d.version, COALESCE(d.step, ''),
    {_GAUGE.format(row="d")}, '', 0, pg_backend_pid(), sum(d.delta)
  FROM ({rows}) AS d
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  HAVING sum(d.delta) <> 0
  {_PG_UPSERT};
  RETURN NULL;
END
$$
"""


# trigger (and function) name -> (table, event, transition tables)
_PG_TRIGGERS = {
    "stats_journal": ("journal", "INSERT", "NEW TABLE AS new_rows"),
    "stats_messages": ("messages", "INSERT", "NEW TABLE AS new_rows"),
    "stats_message_events": ("message_events", "INSERT", "NEW TABLE AS new_rows"),
    "stats_runs_insert": ("runs", "INSERT", "NEW TABLE AS new_rows"),
    "stats_runs_update": ("runs", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "stats_runs_delete": ("runs", "DELETE", "OLD TABLE AS old_rows"),
}
_PG_FUNCTIONS = [
    _PG_JOURNAL,
    _PG_MESSAGES,
    _PG_MESSAGE_EVENTS,
    _pg_runs_function("stats_runs_insert", [("new_rows", 1)]),
    _pg_runs_function("stats_runs_update", [("old_rows", -1), ("new_rows", 1)]),
    _pg_runs_function("stats_runs_delete", [("old_rows", -1)]),
]

# the runs live when the triggers arrive start the gauges
_GAUGES_NOW = f"""
INSERT INTO stats ({_COLUMNS})
SELECT workspace_id, workflow_id, version, COALESCE(step, ''), 'now:' || status, '', 0, 0,
  count(*)
FROM runs WHERE status IN {LIVE}
GROUP BY workspace_id, workflow_id, version, COALESCE(step, ''), status
"""


def create_triggers(dialect: str) -> list[str]:
    """The statements that install the counting triggers on ``dialect``."""
    if dialect == "postgresql":
        return _PG_FUNCTIONS + [
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION flowmail_{name}()"
            for name, (table, event, tables) in _PG_TRIGGERS.items()
        ]
    return [_SQLITE_JOURNAL, _SQLITE_MESSAGES, _SQLITE_MESSAGE_EVENTS, *_SQLITE_RUNS]


def drop_triggers(dialect: str) -> list[str]:
    """The statements that remove them again."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {n} ON {t[0]}" for n, t in _PG_TRIGGERS.items()] + [
            f"DROP FUNCTION IF EXISTS flowmail_{n}()" for n in _PG_TRIGGERS
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in (*_PG_TRIGGERS,)]


def upgrade() -> None:
    op.drop_index("ix_journal_run", table_name="journal")
    op.create_index("ix_journal_run", "journal", ["workspace_id", "run_id", "seq"])
    op.create_index("ix_stats_metric", "stats", ["workspace_id", "metric", "bucket"])
    bind = op.get_bind()
    for statement in create_triggers(bind.dialect.name):
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql(_GAUGES_NOW)


def downgrade() -> None:
    bind = op.get_bind()
    for statement in drop_triggers(bind.dialect.name):
        bind.exec_driver_sql(statement)
    op.execute("DELETE FROM stats WHERE substr(metric, 1, 4) = 'now:'")
    op.drop_index("ix_stats_metric", table_name="stats")
    op.drop_index("ix_journal_run", table_name="journal")
    op.create_index("ix_journal_run", "journal", ["workspace_id", "run_id"])
