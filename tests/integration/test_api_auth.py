"""API keys over HTTP: who may call what, and only in their own workspace."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from api_support import T0, Api, add_message, bearer, event_count, running_api

from flowmail.store import schema as t
from flowmail.store.keys import Role, create_key, list_keys, revoke_key, split_token
from flowmail.store.sql import SqlStore

TRACK = {"userId": "ann", "event": "signed_up"}


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store) as api:
        yield api


def basic(user: str, password: str = "") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer fm_0000000000000000_wrong"},
        {"Authorization": "Token fm_x_y"},
        {"Authorization": "Basic !!!not-base64"},
    ],
    ids=["none", "empty", "malformed", "unknown", "other-scheme", "bad-basic"],
)
def test_a_missing_or_wrong_key_is_a_401_with_a_challenge(
    api: Api, headers: dict[str, str]
) -> None:
    response = api.client.post("/v1/track", json=TRACK, headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert response.json()["error"] == "unauthorized"
    assert event_count(api.store) == 0


def test_a_wrong_secret_for_a_real_key_id_is_a_401(api: Api) -> None:
    key_id, _secret = split_token(api.admin_key) or ("", "")
    response = api.client.get("/v1/contacts", headers=bearer(f"fm_{key_id}_guessed"))
    assert response.status_code == 401


def test_bearer_and_basic_with_the_key_as_user_name_both_work(api: Api) -> None:
    assert api.client.post("/v1/track", json=TRACK, headers=api.ingest).status_code == 200
    segment_style = basic(api.ingest_key)  # what Segment's libraries send: "key:"
    assert api.client.post("/v1/track", json=TRACK, headers=segment_style).status_code == 200
    assert api.client.get("/v1/contacts", headers=basic(api.admin_key)).status_code == 200
    assert api.client.get("/v1/contacts", headers=basic("", api.admin_key)).status_code == 200
    assert api.client.get("/v1/contacts", headers=basic("fm_nope_nope")).status_code == 401


def test_ingest_keys_only_send_events(api: Api) -> None:
    for path, body in [
        ("/v1/track", TRACK),
        ("/v1/identify", {"userId": "ann", "traits": {"plan": "pro"}}),
        ("/v1/batch", {"batch": [{"type": "track", **TRACK}]}),
    ]:
        assert api.client.post(path, json=body, headers=api.ingest).status_code == 200
    for method, path in [
        ("GET", "/v1/contacts"),
        ("GET", "/v1/contacts/ann"),
        ("PUT", "/v1/contacts/ann"),
        ("GET", "/v1/workflows"),
        ("GET", "/v1/messages"),
        ("GET", "/v1/suppressions"),
        ("POST", "/v1/suppressions"),
        ("GET", "/v1/templates"),
    ]:
        response = api.client.request(method, path, json={}, headers=api.ingest)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"


def test_admin_keys_may_send_events_too(api: Api) -> None:
    assert api.client.post("/v1/track", json=TRACK, headers=api.admin).status_code == 200


def test_a_revoked_key_is_refused_once_the_cache_forgets_it(store: SqlStore) -> None:
    with running_api(store, api_key_cache_seconds=0.3) as api:
        token = api.key(Role.ADMIN)
        assert api.client.get("/v1/contacts", headers=bearer(token)).status_code == 200
        key_id = (split_token(token) or ("", ""))[0]
        assert revoke_key(api.store, key_id, api.clock.now())
        assert not revoke_key(api.store, key_id, api.clock.now())  # already revoked
        time.sleep(0.35)
        assert api.client.get("/v1/contacts", headers=bearer(token)).status_code == 401


def test_without_a_cache_revoking_takes_effect_at_once(store: SqlStore) -> None:
    with running_api(store, api_key_cache_seconds=0) as api:
        token = api.key(Role.INGEST)
        body = {"userId": "ann", "event": "x"}
        assert api.client.post("/v1/track", json=body, headers=bearer(token)).status_code == 200
        revoke_key(api.store, (split_token(token) or ("", ""))[0], api.clock.now())
        assert api.client.post("/v1/track", json=body, headers=bearer(token)).status_code == 401


def test_only_a_hash_of_the_secret_is_stored(store: SqlStore) -> None:
    key, token = create_key(store, "acme", Role.INGEST, "site", T0)
    _, secret = split_token(token) or ("", "")
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key.id)).one()
    assert secret not in str(tuple(row))
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert [k.id for k in list_keys(store, "acme")] == [key.id]
    with store.engine.connect() as conn:
        assert "acme" in conn.execute(sa.select(t.workspaces.c.id)).scalars().all()


def test_the_rate_limit_is_per_key_with_retry_after(store: SqlStore) -> None:
    with running_api(store, rate_limit_per_key=0.5, rate_limit_burst=2) as api:
        codes = [api.client.get("/v1/contacts", headers=api.admin).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = api.client.get("/v1/contacts", headers=api.admin)
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        # another key has its own bucket
        assert api.client.post("/v1/track", json=TRACK, headers=api.ingest).status_code == 200


# --- workspaces --------------------------------------------------------------------------


def test_a_key_never_sees_another_workspace(api: Api) -> None:
    acme = bearer(api.key(Role.ADMIN, "acme"))
    api.client.post("/v1/track", json={**TRACK, "messageId": "m1"}, headers=api.admin)
    add_message(api.store, "msg-default")
    api.post("/v1/suppressions", json={"email": "ann@example.com"})
    workflow = {
        "id": "welcome",
        "trigger": {"event": "signed_up"},
        "steps": [{"id": "bye", "exit": True}],
    }
    assert api.put("/v1/workflows/welcome", json=workflow).status_code == 200

    missing = api.client.get("/v1/contacts/nobody", headers=acme)
    foreign = api.client.get("/v1/contacts/ann", headers=acme)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json().keys() == missing.json().keys()
    for method, path in [
        ("GET", "/v1/workflows/welcome"),
        ("GET", "/v1/workflows/welcome/stats"),
        ("POST", "/v1/workflows/welcome/pause"),
        ("POST", "/v1/workflows/welcome/archive"),
        ("GET", "/v1/messages/msg-default"),
        ("POST", "/v1/messages/msg-default/retry"),
        ("DELETE", "/v1/suppressions/ann@example.com"),
    ]:
        assert api.client.request(method, path, headers=acme).status_code == 404, path
    assert api.client.get("/v1/contacts", headers=acme).json()["items"] == []
    assert api.client.get("/v1/workflows", headers=acme).json() == []
    assert api.client.get("/v1/messages", headers=acme).json() == []
    assert api.client.get("/v1/suppressions", headers=acme).json()["items"] == []
    # the default workspace's things are untouched
    assert api.get("/v1/workflows/welcome").json()["mode"] == "active"
    assert api.get("/v1/suppressions").json()["items"][0]["email"] == "ann@example.com"


def test_message_ids_are_scoped_by_workspace(api: Api) -> None:
    acme = bearer(api.key(Role.INGEST, "acme"))
    body = {**TRACK, "messageId": "same-id"}
    assert api.client.post("/v1/track", json=body, headers=api.ingest).json()["accepted"] == 1
    assert api.client.post("/v1/track", json=body, headers=acme).json()["accepted"] == 1
    assert event_count(api.store, "default") == event_count(api.store, "acme") == 1
