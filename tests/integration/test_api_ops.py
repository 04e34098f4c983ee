"""Health, metrics, the OpenAPI document, and errors that never show a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from api_support import T0, Api, add_message, running_api
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flowmail.api.app import create_app
from flowmail.clock import VirtualClock
from flowmail.settings import Settings
from flowmail.store.sql import SqlStore


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store) as api:
        yield api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_health_reports_heartbeats_and_queue_depths(api: Api) -> None:
    api.store.heartbeat("host:1:worker", "worker", T0 - timedelta(seconds=5), {})
    api.store.heartbeat("host:2:sender", "sender", T0 - timedelta(seconds=90), {})
    api.post("/v1/track", json={"userId": "ann", "event": "x"})
    add_message(api.store, "m1", status="queued")
    response = api.client.get("/health")  # no key needed
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", True)
    assert {(b["kind"], b["age_seconds"]) for b in body["heartbeats"]} == {
        ("worker", 5.0),
        ("sender", 90.0),
    }
    assert body["queues"] == {
        "pending_events": 1,
        "queued_messages": 1,
        "due_messages": 1,
        "due_wakes": 0,
    }


def test_health_is_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path}/missing-folder/none.db")
    app = create_app(Settings(), store, VirtualClock(T0))
    with TestClient(app) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": False,
            "heartbeats": [],
            "queues": {},
        }
        metrics = samples(client.get("/metrics").text)
        assert metrics[("flowmail_database_up", ())] == 0
        # an endpoint that needs the database answers 503, without a trace
        failed = client.get("/v1/contacts", headers={"Authorization": "Bearer fm_a_b"})
        assert failed.status_code == 503
        assert failed.headers["Retry-After"] == "1"
        assert failed.json() == {
            "error": "unavailable",
            "message": "the database is not available; try again shortly",
        }
    store.close()


def test_metrics_count_events_and_time_requests_by_route(api: Api) -> None:
    api.post("/v1/track", json={"userId": "ann", "event": "x", "messageId": "a"})
    api.post("/v1/track", json={"userId": "ann", "event": "x", "messageId": "a"})
    api.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "identify", "userId": "bob", "traits": {}},
                {"type": "track", "userId": "bob", "event": "y"},
            ]
        },
    )
    api.get("/v1/contacts/ann")
    api.get("/v1/contacts/bob")
    api.get("/nowhere")
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("flowmail_api_events_ingested_total", (("kind", "track"),))] == 2
    assert found[("flowmail_api_events_ingested_total", (("kind", "identify"),))] == 1
    assert found[("flowmail_api_events_duplicate_total", ())] == 1
    route = (("method", "GET"), ("route", "/v1/contacts/{contact_id}"), ("status", "200"))
    assert found[("flowmail_api_request_duration_seconds_count", route)] == 2
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert found[("flowmail_api_request_duration_seconds_count", unmatched)] == 1
    assert found[("flowmail_queue_pending_events", ())] == 3
    assert found[("flowmail_database_up", ())] == 1


def test_each_app_has_its_own_registry(store: SqlStore) -> None:
    with running_api(store) as one, running_api(store) as two:
        one.post("/v1/track", json={"userId": "ann", "event": "x"})
        counted = samples(two.client.get("/metrics").text)
        assert ("flowmail_api_events_ingested_total", (("kind", "track"),)) not in counted


def test_an_unexpected_error_is_a_plain_500_and_is_logged(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = APIRouter()

    @broken.get("/v1/broken")
    def fail() -> None:
        raise RuntimeError("secret internals")

    app = create_app(Settings(), store, VirtualClock(T0), routers=[broken])
    with TestClient(app) as client, caplog.at_level(logging.ERROR, "flowmail.api"):
        response = client.get("/v1/broken")
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internals" in caplog.text


def test_the_openapi_document_describes_the_api(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert document["info"]["title"] == "flowmail"
    for path in (
        "/v1/track",
        "/v1/identify",
        "/v1/batch",
        "/v1/contacts/{contact_id}",
        "/v1/workflows/{workflow_id}/stats",
        "/v1/suppressions/{email}",
        "/health",
    ):
        assert path in document["paths"], path
    assert {"HTTPBearer", "HTTPBasic"} <= set(document["components"]["securitySchemes"])
    track = document["components"]["schemas"]["Track"]
    assert {"userId", "event", "messageId", "timestamp"} <= set(track["properties"])
    assert track["additionalProperties"] is False


def test_unknown_methods_and_paths_use_the_error_shape(api: Api) -> None:
    missing = api.client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = api.client.delete("/v1/track", headers=api.admin)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
