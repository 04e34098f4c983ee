"""/v1/track, /v1/identify and /v1/batch over HTTP, on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import T0, Api, event_count, running_api

from flowmail.runtime.worker import Worker
from flowmail.store import schema as t
from flowmail.store.sql import SqlStore


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store) as api:
        yield api


def events(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(sa.select(t.events).order_by(t.events.c.seq))
        ]


def test_a_track_call_puts_an_event_in_the_inbox(api: Api) -> None:
    body = {
        "userId": "ann",
        "event": "Order Completed",
        "properties": {"total": 42.5, "items": [{"sku": "A"}]},
        "timestamp": "2025-09-01T11:00:00+02:00",
        "messageId": "m-1",
        "context": {"library": {"name": "analytics-python"}},
        "anonymousId": "anon-1",
        "type": "track",
    }
    response = api.post("/v1/track", json=body, headers=api.ingest)
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [row] = events(api.store)
    assert (row["id"], row["contact_id"], row["kind"], row["name"]) == (
        "m-1",
        "ann",
        "track",
        "Order Completed",
    )
    assert row["at"] == T0  # 11:00+02:00 is 09:00 UTC
    assert row["properties"] == {"total": 42.5, "items": [{"sku": "A"}]}
    assert api.store.contact("default", "ann") is not None


def test_without_a_timestamp_the_event_happened_when_received(api: Api) -> None:
    api.clock.advance(timedelta(minutes=5))
    api.post("/v1/track", json={"userId": "ann", "event": "x"})
    assert events(api.store)[0]["at"] == T0 + timedelta(minutes=5)


def test_identify_sets_traits_that_the_worker_applies(api: Api) -> None:
    body = {"userId": "ann", "traits": {"email": "Ann@Example.COM", "plan": "pro"}}
    assert api.post("/v1/identify", json=body).json() == {"accepted": 1, "duplicates": 0}
    [row] = events(api.store)
    assert (row["kind"], row["name"], row["traits"]) == ("identify", "identify", body["traits"])
    Worker(api.store, api.clock).drain()
    contact = api.store.contact("default", "ann")
    assert contact is not None
    assert contact.email == "Ann@example.com"
    assert contact.attributes == {"plan": "pro"}


def test_a_repeated_message_id_answers_200_and_changes_nothing(api: Api) -> None:
    first = {"userId": "ann", "event": "paid", "properties": {"n": 1}, "messageId": "m-9"}
    again = {**first, "properties": {"n": 2}}
    assert api.post("/v1/track", json=first).json() == {"accepted": 1, "duplicates": 0}
    response = api.post("/v1/track", json=again)
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert [e["properties"] for e in events(api.store)] == [{"n": 1}]


def test_a_batch_is_written_whole_and_counts_repeats(api: Api) -> None:
    api.post("/v1/track", json={"userId": "bob", "event": "x", "messageId": "old"})
    batch = [
        {"type": "identify", "userId": "ann", "traits": {"plan": "pro"}, "messageId": "b1"},
        {"type": "track", "userId": "ann", "event": "paid", "messageId": "b2"},
        {"type": "track", "userId": "ann", "event": "paid", "messageId": "b2"},  # repeat within
        {"type": "track", "userId": "bob", "event": "x", "messageId": "old"},  # repeat of before
        {"type": "track", "userId": "cat", "event": "x"},  # no messageId: always new
    ]
    response = api.post("/v1/batch", json={"batch": batch, "sentAt": "2025-09-01T09:00:00Z"})
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 2}
    assert event_count(api.store) == 4


def test_one_bad_item_refuses_the_whole_batch(api: Api) -> None:
    future = (T0 + timedelta(days=3)).isoformat()
    batch = [
        {"type": "track", "userId": "ann", "event": "ok"},
        {"type": "track", "userId": "ann", "event": "late", "timestamp": future},
        {"type": "identify", "userId": "ann", "traits": {"email": "not-an-address"}},
    ]
    response = api.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 422
    fields = [p["field"] for p in response.json()["problems"]]
    assert fields == ["batch[1].timestamp", "batch[2].traits.email"]
    assert event_count(api.store) == 0


def test_an_empty_batch_accepts_nothing(api: Api) -> None:
    assert api.post("/v1/batch", json={"batch": []}).json() == {"accepted": 0, "duplicates": 0}


# --- every way a call can be wrong ---------------------------------------------------------

DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]

BAD_CALLS = [
    ("/v1/track", {"event": "x"}, "userId", "is required"),
    ("/v1/track", {"userId": "ann"}, "event", "is required"),
    ("/v1/track", {"userId": 5, "event": "x"}, "userId", "string"),
    ("/v1/track", {"userId": "", "event": "x"}, "userId", "at least 1"),
    ("/v1/track", {"userId": "a" * 201, "event": "x"}, "userId", "at most 200"),
    ("/v1/track", {"userId": "ann", "event": "x", "color": "red"}, "color", "unknown field"),
    ("/v1/track", {"userId": "ann", "event": "x", "properties": []}, "properties", "dictionary"),
    ("/v1/track", {"userId": "ann", "event": "x", "timestamp": "yesterday"}, "timestamp", "date"),
    (
        "/v1/track",
        {"userId": "ann", "event": "x", "timestamp": "2025-09-01T09:00:00"},
        "timestamp",
        "timezone",
    ),
    (
        "/v1/track",
        {"userId": "ann", "event": "x", "timestamp": "2025-09-03T09:00:01Z"},
        "timestamp",
        "in the future",
    ),
    (
        "/v1/track",
        {"userId": "ann", "event": "x", "messageId": "tick:w:1"},
        "messageId",
        "must not start with",
    ),
    ("/v1/track", {"userId": "ann", "event": "a\u0000b"}, "event", "NUL"),
    (
        "/v1/track",
        {"userId": "ann", "event": "x", "properties": {"k\u0000": 1}},
        "properties",
        "NUL",
    ),
    (
        "/v1/track",
        {"userId": "ann", "event": "x", "properties": {"a": DEEP}},
        "properties",
        "nested",
    ),
    ("/v1/track", ["not", "an", "object"], "body", "valid dictionary"),
    (
        "/v1/identify",
        {"userId": "ann", "traits": {"email": "nope"}},
        "traits.email",
        "not a valid email address",
    ),
    ("/v1/identify", {"userId": "ann", "traits": {"email": 7}}, "traits.email", "string or null"),
    (
        "/v1/identify",
        {"userId": "ann", "traits": {"timezone": "Mars/Base"}},
        "traits.timezone",
        "unknown time zone",
    ),
    ("/v1/identify", {"userId": "ann", "event": "x"}, "event", "unknown field"),
    ("/v1/batch", {"batch": [{"userId": "ann", "event": "x"}]}, "batch[0].type", "is required"),
    (
        "/v1/batch",
        {"batch": [{"type": "page", "userId": "ann"}]},
        "batch[0].type",
        "must be one of",
    ),
    ("/v1/batch", {"batch": [{"type": "track", "event": "x"}]}, "batch[0].userId", "is required"),
    ("/v1/batch", {"events": []}, "batch", "is required"),
]


@pytest.mark.parametrize(
    ("path", "body", "field", "why"), BAD_CALLS, ids=[f"{c[0]}:{c[2]}:{c[3]}" for c in BAD_CALLS]
)
def test_a_bad_call_is_a_422_naming_the_field_and_why(
    api: Api, path: str, body: Any, field: str, why: str
) -> None:
    response = api.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid"
    found = {p["field"]: p["problem"] for p in error["problems"]}
    assert field in found, found
    assert why in found[field]
    assert all(p["in"] == "body" for p in error["problems"])
    assert event_count(api.store) == 0


@pytest.mark.parametrize(
    "raw", [b"{bad json", b"", b'{"userId": "ann", "event": "x", "properties": {"n": NaN}}']
)
def test_malformed_json_is_a_400_or_refused(api: Api, raw: bytes) -> None:
    response = api.post(
        "/v1/track", content=raw, headers={**api.admin, "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    body = response.json()
    assert body["error"] in ("bad_request", "invalid")
    if raw == b"{bad json":
        assert response.status_code == 400
        assert body["message"].startswith("the body is not valid JSON")
    assert event_count(api.store) == 0


# --- sizes ---------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(api: Api) -> None:
    oversized = b"{" + b" " * 40_000  # not JSON either: a 400 would mean it was parsed
    response = api.post(
        "/v1/track", content=oversized, headers={**api.admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert "32,768" in response.json()["message"]


def test_a_chunked_body_is_counted_while_it_is_read(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1000

    response = api.post(
        "/v1/identify", content=chunks(), headers={**api.admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "more than 32,768" in response.json()["message"]


def test_the_limits_follow_the_settings(store: SqlStore) -> None:
    with running_api(store, max_batch_bytes=2048, max_event_bytes=1024) as api:
        batch = [
            {"type": "track", "userId": "u", "event": "e", "messageId": str(n)} for n in range(40)
        ]
        assert len(json.dumps({"batch": batch})) > 2048
        assert api.post("/v1/batch", json={"batch": batch}).status_code == 413
        big = {"type": "track", "userId": "u", "event": "e", "properties": {"x": "y" * 1100}}
        response = api.post("/v1/batch", json={"batch": [big]}, headers=api.ingest)
        assert response.status_code == 413
        assert response.json()["problems"][0]["field"] == "batch[0]"
        assert api.post("/v1/track", json=big).status_code == 413
        assert event_count(api.store) == 0


def test_segment_sized_batches_are_accepted(api: Api) -> None:
    batch = [
        {
            "type": "track",
            "userId": f"u{n % 50}",
            "event": "viewed",
            "properties": {"n": n},
            "messageId": f"m{n}",
        }
        for n in range(2000)
    ]
    assert len(json.dumps({"batch": batch})) < 500 * 1024
    assert api.post("/v1/batch", json={"batch": batch}).json() == {
        "accepted": 2000,
        "duplicates": 0,
    }
