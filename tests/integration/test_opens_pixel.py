"""The open pixel over HTTP tells machine-made opens apart, with the configured window.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from api_support import T0, Api, add_message, running_api

from flowmail.signing import sign
from flowmail.store import analytics
from flowmail.store import schema as t
from flowmail.store.sql import SqlStore

SECRET = "opens-test-secret-0123456789abcdef"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"


def _sent(store: SqlStore) -> None:
    add_message(store, "m-1", status="sent")
    with store.engine.begin() as conn:
        conn.execute(sa.update(t.messages).values(sent_at=T0))


def _open(api: Api, agent: str) -> None:
    response = api.client.get(f"/o/{sign(SECRET, 'open', {'m': 'm-1'})}.gif",
                              headers={"user-agent": agent})  # fmt: skip
    assert response.status_code == 200


def _rows(store: SqlStore, table: sa.Table, where: Any) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(where))]


def _opened(store: SqlStore) -> dict[str, int]:
    found = {}
    for count in analytics.counts(store, "default", workflow_id="welcome"):
        if count.metric.startswith("msg:opened"):
            found[count.metric] = count.value
    return found


def test_opens_too_soon_or_by_a_proxy_are_automated_and_never_fed(store: SqlStore) -> None:
    with running_api(store, secret_key=SECRET) as api:
        _sent(store)
        api.clock.set(T0 + timedelta(seconds=1))
        _open(api, PHONE)  # 1 s after sending: a gateway, not a person
        api.clock.set(T0 + timedelta(hours=1))
        _open(api, "Mozilla/5.0")  # Apple's privacy proxy
        opens = _rows(store, t.message_events, t.message_events.c.kind == "opened")
        assert [o["detail"]["automated_by"] for o in opens] == [
            "opened 1s after sending",
            "user agent 'Mozilla/5.0'",
        ]
        assert _rows(store, t.events, t.events.c.name == "email_opened") == []
        _open(api, PHONE)  # a person, an hour later
        [fed] = _rows(store, t.events, t.events.c.name == "email_opened")
        assert fed["properties"]["message_id"] == "m-1"
    assert _opened(store) == {"msg:opened_auto": 2, "msg:opened": 1, "msg:opened_unique": 1}


def test_the_window_comes_from_the_settings(store: SqlStore) -> None:
    with running_api(store, secret_key=SECRET, automated_open_seconds=0) as api:
        _sent(store)
        _open(api, PHONE)  # at the very instant of sending, but the timing rule is off
        [opened] = _rows(store, t.message_events, t.message_events.c.kind == "opened")
        assert "automated" not in opened["detail"]
        assert len(_rows(store, t.events, t.events.c.name == "email_opened")) == 1
    assert _opened(store) == {"msg:opened": 1, "msg:opened_unique": 1}
