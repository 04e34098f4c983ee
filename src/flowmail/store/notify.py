"""LISTEN/NOTIFY on PostgreSQL: workers wake when work arrives instead of only polling."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

CHANNEL = "flowmail_work"


class Listener:
    """A dedicated autocommit connection listening on the work channel."""

    def __init__(self, url: sa.URL) -> None:
        import psycopg

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = psycopg.connect(conninfo, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives or ``timeout`` passes; True if one came."""
        got = False
        for _ in self._conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
            got = True
        if got:  # take any others already queued, without waiting
            for _ in self._conn.notifies(timeout=0):
                pass
        return got

    def close(self) -> None:
        self._conn.close()
