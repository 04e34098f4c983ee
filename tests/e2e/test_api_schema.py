"""schemathesis against /openapi.json: generated requests (valid and invalid) to every
operation, on both databases, with an admin key; no answer may be a server error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from flowmail.api.app import create_app
from flowmail.clock import VirtualClock
from flowmail.settings import Settings
from flowmail.store.keys import Role, create_key
from flowmail.store.sql import SqlStore

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
WORKFLOW = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [{"id": "x", "exit": True}],
}


@pytest.fixture
def app(store: SqlStore) -> FastAPI:
    app = create_app(
        Settings(rate_limit_per_key=0, postal_address="1 Main St"), store, VirtualClock(T0)
    )
    app.state.admin_key = create_key(store, "default", Role.ADMIN, "schemathesis", T0)[1]
    return app


# The document does not depend on the database: load it from an app on a store that is
# never queried, then send each generated request to the ``app`` fixture's (each back end).
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(), SqlStore.from_url("sqlite://"), VirtualClock(T0))
)


@schema.parametrize()
@settings(
    max_examples=20,
    derandomize=True,  # the same examples every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, app: FastAPI) -> None:
    case.call_and_validate(
        app=app,
        headers={"Authorization": f"Bearer {app.state.admin_key}"},
        checks=[not_a_server_error],
    )
