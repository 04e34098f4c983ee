"""Contacts, workflows, templates, messages and suppressions over HTTP (admin keys)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from api_support import Api, add_message, running_api

from flowmail.runtime.worker import Worker
from flowmail.store.sql import SqlStore

WELCOME: dict[str, Any] = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"template": "hello", "subject": "Hi {{contact.first_name}}"}},
        {"id": "pause", "wait": "1d"},
        {"id": "later", "email": {"template": "hello", "subject": "Still there?"}},
    ],
}


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store, postal_address="1 Main St, Springfield") as api:
        yield api


def drain(api: Api) -> None:
    Worker(api.store, api.clock).drain()


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["field"]: p["problem"] for p in response.json()["problems"]}


# --- contacts ------------------------------------------------------------------------------


def test_a_contact_upsert_goes_through_the_inbox(api: Api) -> None:
    body = {
        "email": "Ann@Example.com",
        "timezone": "Europe/Paris",
        "attributes": {"plan": "pro", "first_name": "Ann"},
        "messageId": "up-1",
    }
    response = api.put("/v1/contacts/ann", json=body)
    assert response.status_code == 202
    assert response.json() == {"contact_id": "ann", "accepted": 1, "duplicates": 0}
    assert api.put("/v1/contacts/ann", json=body).json()["duplicates"] == 1
    drain(api)
    contact = api.get("/v1/contacts/ann").json()
    assert contact["email"] == "Ann@example.com"
    assert contact["timezone"] == "Europe/Paris"
    assert contact["attributes"] == {"plan": "pro", "first_name": "Ann"}
    api.put("/v1/contacts/ann", json={"attributes": {"plan": "free"}, "email": None})
    drain(api)
    contact = api.get("/v1/contacts/ann").json()
    assert contact["email"] is None
    assert contact["attributes"] == {"plan": "free", "first_name": "Ann"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "no-at-sign"}, "email"),
        ({"timezone": "Europe"}, "timezone"),
        ({"attributes": {"email": "a@b.test"}}, "attributes"),
        ({"attributes": []}, "attributes"),
        ({"name": "Ann"}, "name"),
    ],
)
def test_a_bad_upsert_names_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in problems(api.put("/v1/contacts/ann", json=body))


def test_contacts_are_listed_a_page_at_a_time_with_filters(api: Api) -> None:
    batch = [
        {
            "type": "identify",
            "userId": f"c{n}",
            "traits": {
                "email": f"c{n}@example.com",
                "plan": "pro" if n % 2 else "free",
                "age": 30 + n % 2,
            },
        }
        for n in range(5)
    ]
    api.post("/v1/batch", json={"batch": batch})
    drain(api)
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/contacts", params=params).json()
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    assert pages == 3

    def ids(**params: Any) -> list[str]:
        response = api.get("/v1/contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert ids(email="C3@EXAMPLE.COM") == []  # the local part keeps its case
    assert ids(email="c3@EXAMPLE.com") == ["c3"]
    assert ids(attribute="plan=pro") == ["c1", "c3"]
    assert ids(attribute=["plan=free", "age=30"]) == ["c0", "c2", "c4"]
    assert ids(attribute='age="30"') == []  # a string is not the number
    assert ids(attribute="missing=1") == []


def test_bad_list_parameters_are_422s(api: Api) -> None:
    assert "cursor" in problems(api.get("/v1/contacts", params={"cursor": "%%%"}))
    assert "attribute" in problems(api.get("/v1/contacts", params={"attribute": "no-equals"}))
    assert "limit" in problems(api.get("/v1/contacts", params={"limit": 0}))
    assert "email" in problems(api.get("/v1/contacts", params={"email": "x"}))


def test_a_missing_contact_is_a_404(api: Api) -> None:
    response = api.get("/v1/contacts/nobody")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "no contact 'nobody'"}


# --- workflows -----------------------------------------------------------------------------


def test_put_makes_a_new_version_only_when_the_definition_changes(api: Api) -> None:
    first = api.put("/v1/workflows/welcome", json=WELCOME)
    assert first.json() == {"id": "welcome", "version": 1, "changed": True, "mode": "active"}
    again = api.put("/v1/workflows/welcome", json=WELCOME)
    assert again.json() == {"id": "welcome", "version": 1, "changed": False, "mode": "active"}
    edited = {**WELCOME, "steps": [*WELCOME["steps"][:2]]}
    assert api.put("/v1/workflows/welcome", json=edited).json()["version"] == 2
    shown = api.get("/v1/workflows/welcome").json()
    assert (shown["version"], shown["mode"], shown["definition"]) == (2, "active", edited)
    assert [w["id"] for w in api.get("/v1/workflows").json()] == ["welcome"]


def test_an_invalid_workflow_is_a_422_with_its_problems(api: Api) -> None:
    broken = {**WELCOME, "steps": [{"id": "hello", "wait": "1d", "next": "nowhere"}]}
    found = problems(api.put("/v1/workflows/welcome", json=broken))
    assert "steps.hello" in found and "nowhere" in found["steps.hello"]
    assert "id" in problems(api.put("/v1/workflows/other", json=WELCOME))
    assert "definition" in problems(api.put("/v1/workflows/welcome", json={"id": "welcome"}))
    assert api.get("/v1/workflows/welcome").status_code == 404


def test_pause_resume_archive_and_activate(api: Api) -> None:
    api.put("/v1/workflows/welcome", json=WELCOME)
    paused = api.post("/v1/workflows/welcome/pause", json={"mode": "freeze", "reason": "typo"})
    assert (paused.json()["mode"], paused.json()["reason"]) == ("freeze", "typo")
    assert api.post("/v1/workflows/welcome/pause").json()["mode"] == "drain"
    assert "mode" in problems(api.post("/v1/workflows/welcome/pause", json={"mode": "stop"}))
    assert api.post("/v1/workflows/welcome/resume").json()["mode"] == "active"
    assert api.post("/v1/workflows/welcome/archive", json={"reason": "old"}).json()["mode"] == (
        "archived"
    )
    assert [w["id"] for w in api.get("/v1/workflows", params={"mode": "archived"}).json()] == [
        "welcome"
    ]
    conflict = api.post("/v1/workflows/welcome/resume")
    assert conflict.status_code == 409
    assert api.post("/v1/workflows/welcome/activate").json()["mode"] == "active"
    assert api.post("/v1/workflows/nothing/activate").status_code == 404


def test_stats_count_runs_steps_and_messages(api: Api) -> None:
    api.put("/v1/workflows/welcome", json=WELCOME)
    api.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}}
                for u in ("ann", "bob")
            ]
            + [{"type": "track", "userId": u, "event": "signed_up"} for u in ("ann", "bob")]
        },
    )
    drain(api)
    api.clock.advance(timedelta(days=1, minutes=1))
    api.post("/v1/track", json={"userId": "cat", "event": "signed_up"})
    drain(api)
    stats = api.get("/v1/workflows/welcome/stats").json()
    assert stats["runs"] == {"completed": 2, "waiting": 1}
    assert stats["steps"]["hello"]["reached"] == 3
    assert stats["steps"]["later"]["reached"] == 2
    assert stats["steps"]["pause"] == {"reached": 3, "current": 1}
    assert stats["messages"] == {"queued": 4}


# --- templates -----------------------------------------------------------------------------

TEMPLATE = {
    "subject": "Hello {{ contact.first_name | default: 'there' }}",
    "html": "<p>Hi!</p><p>{{ postal_address }} <a href='{{ unsubscribe_url }}'>unsubscribe</a></p>",
    "text": "Hi!\n{{ postal_address }}\nUnsubscribe: {{ unsubscribe_url }}",
}


def test_templates_are_versioned_and_checked(api: Api) -> None:
    saved = api.put("/v1/templates/hello", json=TEMPLATE)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"name": "hello", "version": 1, "changed": True}
    assert api.put("/v1/templates/hello", json=TEMPLATE).json()["changed"] is False
    api.put("/v1/templates/hello", json={**TEMPLATE, "subject": "Hey"})
    latest = api.get("/v1/templates/hello").json()
    assert (latest["version"], latest["subject"], latest["topic"]) == (2, "Hey", "marketing")
    assert (
        api.get("/v1/templates/hello", params={"version": 1}).json()["subject"]
        == (TEMPLATE["subject"])
    )
    assert api.get("/v1/templates/hello", params={"version": 9}).status_code == 404
    assert [(t["name"], t["version"], t["versions"]) for t in api.get("/v1/templates").json()] == [
        ("hello", 2, 2)
    ]


def test_an_invalid_template_is_a_422(api: Api) -> None:
    no_unsubscribe = {"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"}
    assert problems(api.put("/v1/templates/promo", json=no_unsubscribe))
    broken = {"subject": "Hi {{ name", "text": "x", "topic": "transactional"}
    assert "subject" in problems(api.put("/v1/templates/receipt", json=broken))
    fallback = {"subject": "Hi", "text": "x", "topic": "transactional", "fallback": "nothing"}
    assert "fallback" in problems(api.put("/v1/templates/receipt", json=fallback))
    assert api.get("/v1/templates/receipt").status_code == 404


# --- messages ------------------------------------------------------------------------------


def test_messages_with_their_events_and_dead_letters(api: Api) -> None:
    add_message(api.store, "m1", status="sent")
    add_message(api.store, "m2", status="dead", contact_id="bob")
    assert {m["id"] for m in api.get("/v1/messages").json()} == {"m1", "m2"}
    assert [m["id"] for m in api.get("/v1/messages", params={"status": "sent"}).json()] == ["m1"]
    assert [m["id"] for m in api.get("/v1/messages", params={"contact_id": "bob"}).json()] == ["m2"]
    one = api.get("/v1/messages/m1").json()
    assert one["status"] == "sent"
    assert [e["kind"] for e in one["events"]] == ["sent"]
    assert [m["id"] for m in api.get("/v1/dead-letters").json()] == ["m2"]
    assert api.get("/v1/messages/nope").status_code == 404


def test_retry_requeues_a_dead_letter_once(api: Api) -> None:
    add_message(api.store, "m2", status="dead")
    api.clock.advance(timedelta(hours=1))
    retried = api.post("/v1/messages/m2/retry")
    assert retried.status_code == 200
    body = retried.json()
    assert (body["status"], body["attempts"]) == ("queued", 0)
    assert body["send_after"] == api.clock.now().isoformat().replace("+00:00", "Z")
    assert api.get("/v1/dead-letters").json() == []
    again = api.post("/v1/messages/m2/retry")
    assert again.status_code == 409
    kinds = [e["kind"] for e in api.get("/v1/messages/m2").json()["events"]]
    assert kinds == ["dead", "requeued"]


# --- suppressions --------------------------------------------------------------------------


def test_suppressions_are_added_listed_and_removed(api: Api) -> None:
    added = api.post("/v1/suppressions", json={"email": "Ann@Example.com"})
    assert added.status_code == 201
    assert (added.json()["email"], added.json()["reason"]) == ("ann@example.com", "manual")
    assert api.post("/v1/suppressions", json={"email": "ann@example.com"}).status_code == 200
    for n in range(3):
        api.post("/v1/suppressions", json={"email": f"z{n}@example.com", "source": "import"})
    page = api.get("/v1/suppressions", params={"limit": 3}).json()
    assert [s["email"] for s in page["items"]] == [
        "ann@example.com",
        "z0@example.com",
        "z1@example.com",
    ]
    rest = api.get("/v1/suppressions", params={"limit": 3, "after": page["next"]}).json()
    assert [s["email"] for s in rest["items"]] == ["z2@example.com"]
    assert rest["next"] is None
    assert api.delete("/v1/suppressions/ANN@example.com").status_code == 204
    assert api.delete("/v1/suppressions/ann@example.com").status_code == 404
    assert "email" in problems(api.post("/v1/suppressions", json={"email": "nope"}))
    assert "reason" in problems(
        api.post("/v1/suppressions", json={"email": "a@example.com", "reason": "bounce"})
    )
