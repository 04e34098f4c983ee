"""Hand-written SQL for the worker's hot write path, valid on SQLite and PostgreSQL.

Written with ``?`` placeholders; :func:`for_dialect` turns them into ``%s`` for psycopg.
Rows go straight to the driver's executemany: no per-row SQLAlchemy processing.
"""

from __future__ import annotations

import json
from typing import Any

RUN_UPSERT = """
INSERT INTO runs (workspace_id, id, workflow_id, version, contact_id, status, step, wake_at,
                  started_at, ended_at, state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workspace_id, id) DO UPDATE SET
  version = excluded.version, status = excluded.status, step = excluded.step,
  wake_at = excluded.wake_at, ended_at = excluded.ended_at, state = excluded.state
"""

JOURNAL_INSERT = """
INSERT INTO journal (workspace_id, run_id, contact_id, workflow_id, step_id, at, action, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

MESSAGE_INSERT = """
INSERT INTO messages (workspace_id, id, run_id, contact_id, workflow_id, version, step_id,
                      to_address, template, subject, topic, priority, on_capped, content,
                      status, created_at, send_after, attempts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, 0)
ON CONFLICT (workspace_id, id) DO NOTHING
"""

EVENT_DONE = "UPDATE events SET processed_at = ?, error = ? WHERE seq = ?"

CONTACT_SAVE = """
UPDATE contacts SET email = ?, timezone = ?, attributes = ?, updated_at = ?, wake_at = ?,
                    lease_owner = NULL, lease_until = NULL
WHERE workspace_id = ? AND id = ?
"""


def for_dialect(sql: str, dialect: str) -> str:
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
