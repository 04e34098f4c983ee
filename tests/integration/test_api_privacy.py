"""Privacy over HTTP: a contact's export, erasure (proved by searching the whole
database), consent per topic and double opt-in. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import Api, running_api

from flowmail.engine.state import IDENTIFY
from flowmail.runtime.feedback import apply_events, record_engagement, unsubscribe
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store import schema as t
from flowmail.store.feedback import find_messages, hash_address, is_suppressed
from flowmail.store.keys import Role
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore
from flowmail.webhooks import DeliveryEvent

WS = "default"
SECRET = "privacy-test-secret-0123456789"
CONTACT = "erase-me-7f3a"
ADDRESS = "Erase.Me+News@Example.org"
STORED = "Erase.Me+News@example.org"  # the domain in lower case, as contacts keep it
KEEP = "keep-me-1b2c"
KEEP_ADDRESS = "keep@example.net"

JOURNEY = {
    "id": "welcome",
    "topic": "news",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello {{ contact.first_name }}"}},
        {
            "id": "notify",
            "webhook": {
                "url": "https://hooks.example.com/crm",
                "body": {"email": "{{ contact.email }}", "who": "{{ contact.id }}"},
            },
        },
        {"id": "pause", "wait": "3d"},
        {"id": "later", "email": {"subject": "Three days in"}},
    ],
}
BIRTHDAYS = {
    "id": "birthday",
    "trigger": {"date": {"attribute": "birthday"}},
    "steps": [{"id": "card", "email": {"subject": "Happy birthday"}}],
}


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store, secret_key=SECRET, public_url="https://mail.example.com") as api:
        yield api


def populate(api: Api, contact: str, address: str) -> str:
    """A contact with something in every table a contact can reach; returns its first
    message's key."""
    store, clock = api.store, api.clock
    apply_workflow(store, WS, JOURNEY, clock.now())
    store.ingest(
        [
            InboundEvent(
                contact, IDENTIFY, clock.now(), id=f"id-{contact}", kind="identify",
                traits={"email": address, "first_name": "Erin", "birthday": "2025-12-24"},
            ),
            InboundEvent(
                contact, "signed_up", clock.now(), {"plan": "pro", "contact_email": address},
                id=f"signup-{contact}",
            ),
        ],
        clock.now(),
    )  # fmt: skip
    Worker(store, clock, worker_id="test-worker").drain()
    apply_workflow(store, WS, BIRTHDAYS, clock.now())  # backfills the birthday's fire time
    [hello] = [m for m in store.messages(WS) if m["contact_id"] == contact]
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(t.messages)
            .where(t.messages.c.id == hello["id"])
            .values(
                status="sent", sent_at=clock.now(), rfc_message_id=f"{hello['id']}@mail.example"
            )
        )
    [ref] = find_messages(store, key=hello["id"], workspace_id=WS)
    opened_at = clock.now() + timedelta(minutes=5)  # at the instant of sending: automated
    record_engagement(store, ref, "opened", opened_at, user_agent="Mail/1.0")
    bounce = DeliveryEvent(
        provider="generic",
        provider_event_id=f"bounce-{contact}",
        kind="bounced",
        at=clock.now(),
        recipient=address,
        message_id=hello["id"],
        bounce_type="hard",
        reason=f"550 5.1.1 <{address}>: user unknown",
    )
    apply_events(store, [bounce], clock.now())
    unsubscribe(store, WS, contact, ["offers"], clock.now(), message=ref)
    response = api.post(f"/v1/contacts/{contact}/consents", json={"topic": "tips"})
    assert response.status_code == 200, response.text
    response = api.post(
        f"/v1/contacts/{contact}/consents", json={"topic": "digest", "double_opt_in": True}
    )
    assert response.status_code == 202, response.text
    return str(hello["id"])


# --- export ----------------------------------------------------------------------------


def test_the_export_holds_everything_about_the_contact(api: Api) -> None:
    key = populate(api, CONTACT, ADDRESS)
    populate(api, KEEP, KEEP_ADDRESS)
    response = api.get(f"/v1/contacts/{CONTACT}/export")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert data["contact"]["id"] == CONTACT and data["contact"]["email"] == STORED
    assert data["contact"]["attributes"]["first_name"] == "Erin"
    assert {e["name"] for e in data["events"]} >= {"signed_up", "email_opened", "email_bounced"}
    assert [r["workflow_id"] for r in data["runs"]] == ["welcome"]
    assert {j["action"] for j in data["journal"]} >= {"enrolled", "email"}
    hello = next(m for m in data["messages"] if m["id"] == key)
    assert {e["kind"] for e in hello["events"]} >= {"opened", "bounced"}
    assert any(m["topic"] == "transactional" for m in data["messages"])  # the confirmation
    consents = {c["topic"]: c["status"] for c in data["consents"]}
    assert consents == {"offers": "unsubscribed", "tips": "subscribed", "digest": "pending"}
    assert [(s["email"], s["reason"]) for s in data["suppressions"]] == [
        (ADDRESS.lower(), "hard_bounce")
    ]
    assert [d["workflow_id"] for d in data["date_triggers"]] == ["birthday"]
    text = json.dumps(data)
    assert KEEP not in text and KEEP_ADDRESS not in text


def test_export_and_erasure_need_an_admin_key_of_the_contacts_workspace(api: Api) -> None:
    populate(api, CONTACT, ADDRESS)
    ingest = {"Authorization": f"Bearer {api.ingest_key}"}
    foreign = {"Authorization": f"Bearer {api.key(Role.ADMIN, workspace='other')}"}
    for method in ("get", "delete"):
        path = f"/v1/contacts/{CONTACT}" + ("/export" if method == "get" else "")
        assert getattr(api.client, method)(path).status_code == 401
        assert getattr(api.client, method)(path, headers=ingest).status_code == 403
        assert getattr(api.client, method)(path, headers=foreign).status_code == 404
        missing = "/v1/contacts/nobody" + ("/export" if method == "get" else "")
        assert getattr(api, method)(missing).status_code == 404
    assert api.store.contact(WS, CONTACT) is not None


# --- erasure ---------------------------------------------------------------------------


def dump(store: SqlStore) -> dict[str, list[str]]:
    """Every row of every table in the database, as text."""
    metadata = sa.MetaData()
    metadata.reflect(store.engine)
    assert {"contacts", "events", "messages", "suppressions"} <= set(metadata.tables)
    out: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        for name, table in metadata.tables.items():
            out[name] = [
                json.dumps([str(v) for v in row], ensure_ascii=False)
                for row in conn.execute(sa.select(table))
            ]
    return out


def found(store: SqlStore, *needles: str) -> list[tuple[str, str]]:
    pattern = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)
    return [
        (table, row) for table, rows in dump(store).items() for row in rows if pattern.search(row)
    ]


def test_erasure_leaves_nothing_but_a_hash_of_the_address(api: Api) -> None:
    populate(api, CONTACT, ADDRESS)
    populate(api, KEEP, KEEP_ADDRESS)
    assert found(api.store, CONTACT, ADDRESS, ADDRESS.lower())  # the search does find them

    response = api.delete(f"/v1/contacts/{CONTACT}")
    assert response.status_code == 200, response.text
    erased = response.json()
    assert erased["deleted"]["contacts"] == 1
    for table in ("events", "runs", "journal", "messages", "message_events", "consents"):
        assert erased["deleted"][table] > 0, table
    assert erased["deleted"]["actions"] == 1 and erased["deleted"]["date_triggers"] == 1
    assert erased["suppressions_hashed"] == 1

    leftovers = found(api.store, CONTACT, ADDRESS, ADDRESS.lower(), "erase.me", "erase-me")
    assert leftovers == []
    hashed = hash_address(ADDRESS)
    assert hashed == hash_address(ADDRESS.lower()) and hashed.startswith("sha256:")
    assert [table for table, _ in found(api.store, hashed)] == ["suppressions"]

    # the opt-out is still honoured, and the other contact is untouched
    assert is_suppressed(api.store, WS, ADDRESS) == "hard_bounce"
    assert is_suppressed(api.store, WS, ADDRESS.upper()) == "hard_bounce"
    assert api.get(f"/v1/contacts/{CONTACT}/export").status_code == 404
    assert api.delete(f"/v1/contacts/{CONTACT}").status_code == 404
    kept = api.get(f"/v1/contacts/{KEEP}/export").json()
    assert kept["messages"] and kept["events"] and kept["runs"] and kept["consents"]
    assert is_suppressed(api.store, WS, KEEP_ADDRESS) == "hard_bounce"


def test_a_topic_opt_out_survives_erasure_as_a_hashed_suppression(api: Api) -> None:
    store, now = api.store, api.clock.now()
    store.ingest(
        [InboundEvent("lea", IDENTIFY, now, traits={"email": "lea@example.com"}, id="i",
                      kind="identify")],
        now,
    )  # fmt: skip
    Worker(store, api.clock, worker_id="test-worker").drain()
    unsubscribe(store, WS, "lea", ["news"], now)
    assert is_suppressed(store, WS, "lea@example.com") is None  # one topic only, so far
    assert api.delete("/v1/contacts/lea").json()["suppressions_hashed"] == 1
    assert is_suppressed(store, WS, "lea@example.com") == "unsubscribed"
    assert found(store, "lea@example.com") == []


def test_erasure_in_one_workspace_leaves_the_other_alone(api: Api) -> None:
    now = api.clock.now()
    for ws in (WS, "other"):
        api.store.ingest(
            [InboundEvent("same-id", "visited", now, id=f"v-{ws}", workspace_id=ws)], now
        )
    assert api.delete("/v1/contacts/same-id").status_code == 200
    assert api.store.contact("other", "same-id") is not None
    assert api.store.contact(WS, "same-id") is None


# --- consent ---------------------------------------------------------------------------


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _contact(api: Api, contact: str = "ann", email: str | None = "ann@example.com") -> None:
    traits = {"email": email} if email else {"plan": "free"}
    now = api.clock.now()
    api.store.ingest(
        [InboundEvent(contact, IDENTIFY, now, traits=traits, id=f"i-{contact}", kind="identify")],
        now,
    )
    Worker(api.store, api.clock, worker_id="test-worker").drain()


def test_consent_is_recorded_per_topic_with_time_and_source(api: Api) -> None:
    _contact(api)
    response = api.post("/v1/contacts/ann/consents", json={"topic": "news"})
    assert response.status_code == 200
    body = response.json()
    assert (body["topic"], body["status"]) == ("news", "subscribed")
    assert body["source"].startswith("api:") and when(body["at"]) == api.clock.now()
    api.clock.advance(timedelta(hours=1))
    change = {"topic": "news", "status": "unsubscribed", "source": "phone call"}
    assert api.post("/v1/contacts/ann/consents", json=change).json()["status"] == "unsubscribed"
    listed = api.get("/v1/contacts/ann/consents").json()
    assert [(c["topic"], c["status"], when(c["at"]), c["source"]) for c in listed] == [
        ("news", "unsubscribed", api.clock.now(), "phone call")
    ]
    bad = [
        {"topic": "Not A Slug"},
        {"topic": "news", "status": "pending"},
        {"topic": "news", "extra": 1},
        {"topic": "news", "status": "unsubscribed", "double_opt_in": True},
    ]
    for body in bad:
        assert api.post("/v1/contacts/ann/consents", json=body).status_code == 422, body
    assert api.post("/v1/contacts/nobody/consents", json={"topic": "news"}).status_code == 404
    assert api.get("/v1/contacts/nobody/consents").status_code == 404


def _confirmation(api: Api) -> tuple[str, str]:
    """(message id, confirmation path) of the newest confirmation email."""
    messages = [m for m in api.store.messages(WS) if m["topic"] == "transactional"]
    newest = max(messages, key=lambda m: m["created_at"])
    link = re.search(r"https://mail\.example\.com(/confirm/\S+)$", newest["subject"])
    assert link is not None, newest["subject"]
    return str(newest["id"]), link.group(1)


def test_double_opt_in_confirms_through_the_emailed_link(api: Api) -> None:
    _contact(api)
    response = api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    message_id, path = _confirmation(api)
    assert body["confirmation_message_id"] == message_id
    [message] = [m for m in api.store.messages(WS) if m["id"] == message_id]
    assert (message["status"], message["to_address"]) == ("queued", "ann@example.com")
    assert message["topic"] == "transactional"

    api.clock.advance(timedelta(hours=2))
    page = api.client.get(path)
    assert page.status_code == 200 and "Subscription confirmed" in page.text
    assert "set-cookie" not in page.headers
    [consent] = api.get("/v1/contacts/ann/consents").json()
    assert consent["status"] == "subscribed"
    assert consent["source"] == "double opt-in confirmed"
    assert when(consent["at"]) == api.clock.now()
    assert api.client.get(path).status_code == 200  # a second visit changes nothing
    assert api.get("/v1/contacts/ann/consents").json() == [consent]
    again = api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    assert again.status_code == 200 and again.json()["status"] == "subscribed"


def test_an_old_confirmation_link_never_subscribes_again(api: Api) -> None:
    _contact(api)
    api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    _, first = _confirmation(api)
    api.clock.advance(timedelta(minutes=10))
    api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    _, second = _confirmation(api)
    assert first != second
    assert api.client.get(first).status_code == 404  # superseded by the second request
    assert api.client.get(second).status_code == 200
    change = {"topic": "news", "status": "unsubscribed", "source": "preference page"}
    api.post("/v1/contacts/ann/consents", json=change)
    assert api.client.get(second).status_code == 404  # no way back in through an old link
    assert api.get("/v1/contacts/ann/consents").json()[0]["status"] == "unsubscribed"


def test_forged_confirmation_links_are_404s(api: Api) -> None:
    _contact(api)
    api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    _, path = _confirmation(api)
    token = path.removeprefix("/confirm/")
    payload, mac = token.split(".")
    for bad in ("/confirm/x", f"/confirm/{payload}.{mac[:-2]}AA", f"/confirm/{payload}"):
        assert api.client.get(bad).status_code == 404
    assert api.get("/v1/contacts/ann/consents").json()[0]["status"] == "pending"


def test_double_opt_in_needs_an_address(api: Api) -> None:
    _contact(api, "nomail", None)
    response = api.post(
        "/v1/contacts/nomail/consents", json={"topic": "news", "double_opt_in": True}
    )
    assert response.status_code == 409
    assert api.get("/v1/contacts/nomail/consents").json() == []


def test_the_confirmation_email_goes_out_despite_the_pending_topic(api: Api) -> None:
    """The confirmation is transactional: the send-time policy lets it through."""
    from flowmail.delivery.policy import Candidate, PolicyConfig, Recipient, Send, decide

    _contact(api)
    api.post("/v1/contacts/ann/consents", json={"topic": "news", "double_opt_in": True})
    message_id, _ = _confirmation(api)
    [message] = [m for m in api.store.messages(WS) if m["id"] == message_id]
    candidate = Candidate(message_id, message["to_address"], message["topic"])
    verdict: Any = decide(
        candidate, Recipient(consents={"news": "pending"}), PolicyConfig(), api.clock.now()
    )
    assert isinstance(verdict, Send)
