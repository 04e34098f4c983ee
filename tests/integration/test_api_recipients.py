"""What recipients reach over HTTP: one-click unsubscribe (RFC 8058), the preference page,
the open pixel and click redirects. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import T0, Api, running_api

from flowmail.signing import sign
from flowmail.store import schema as t
from flowmail.store.feedback import is_suppressed
from flowmail.store.sql import SqlStore
from flowmail.templates.links import (
    click_token,
    preferences_token,
    unsubscribe_token,
)

SECRET = "recipient-test-secret-0123456789"
WS = "default"
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    with running_api(store, secret_key=SECRET, public_url="https://mail.example.com") as api:
        add_contact(store, "ada", "Ada@Example.com")
        add_message(store, "m-1", "ada")
        yield api


def add_contact(store: SqlStore, contact: str, email: str | None, ws: str = WS) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.contacts).values(
                workspace_id=ws,
                id=contact,
                email=email,
                attributes={},
                created_at=T0,
                updated_at=T0,
            )
        )


def add_message(store: SqlStore, key: str, contact: str, ws: str = WS, at: datetime = T0) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.messages).values(
                workspace_id=ws,
                id=key,
                run_id=f"run-{key}",
                contact_id=contact,
                workflow_id="newsletter",
                version=1,
                step_id="issue_1",
                to_address="ada@example.com",
                subject="Issue 1",
                topic="news",
                priority=0,
                on_capped="defer",
                status="sent",
                created_at=at,
                send_after=at,
                sent_at=at,
                attempts=1,
            )
        )


def unsubscribe_path(contact: str = "ada", topic: str = "news", key: str = "m-1", **kw: Any) -> str:
    token = unsubscribe_token(
        kw.get("secret", SECRET), kw.get("workspace", WS), contact, topic, key
    )
    return f"/u/{token}"


def table(store: SqlStore, name: str) -> list[dict[str, Any]]:
    table = t.metadata.tables[name]
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def snapshot(store: SqlStore) -> dict[str, list[dict[str, Any]]]:
    names = ("consents", "suppressions", "message_events", "events", "messages")
    return {name: table(store, name) for name in names}


def inbox(store: SqlStore, name: str) -> list[dict[str, Any]]:
    return [e for e in table(store, "events") if e["name"] == name]


def assert_plain_answer(response: Any) -> None:
    """RFC 8058: an answer, not a redirect; no cookies; nothing to log in to."""
    assert response.status_code == 200, response.text
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"


# --- one-click unsubscribe -------------------------------------------------------------


def test_one_click_unsubscribes_at_once(api: Api) -> None:
    response = api.client.post(
        unsubscribe_path(), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert_plain_answer(response)
    assert "You are unsubscribed" in response.text
    [consent] = table(api.store, "consents")
    assert (consent["contact_id"], consent["topic"], consent["status"]) == (
        "ada",
        "news",
        "unsubscribed",
    )
    assert consent["at"] == T0 and consent["source"] == "one-click unsubscribe"
    assert table(api.store, "suppressions") == []  # one topic, not every email
    [event] = inbox(api.store, "email_unsubscribed")
    assert event["contact_id"] == "ada"
    assert event["properties"]["message_id"] == "m-1"
    assert event["properties"]["workflow"] == "newsletter"
    assert event["properties"]["step"] == "issue_1"
    assert event["properties"]["topics"] == ["news"]
    kinds = [e["kind"] for e in table(api.store, "message_events")]
    assert kinds == ["unsubscribed"]


def test_a_replayed_one_click_changes_nothing_more(api: Api) -> None:
    path = unsubscribe_path()
    api.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    before = snapshot(api.store)
    api.clock.advance(timedelta(minutes=5))
    for _ in range(3):
        again = api.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert_plain_answer(again)
    assert snapshot(api.store) == before


def test_one_click_as_multipart_form_data(api: Api) -> None:
    boundary = "----flowmail0123"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert_plain_answer(api.client.post(unsubscribe_path(), content=body, headers=headers))
    assert [c["status"] for c in table(api.store, "consents")] == ["unsubscribed"]


def test_a_post_that_asks_nothing_changes_nothing(api: Api) -> None:
    before = snapshot(api.store)
    for body in (b"", b"List-Unsubscribe=Yes-Please", b"scope=topic", b"\xff\xfe"):
        response = api.client.post(unsubscribe_path(), content=body, headers=ONE_CLICK)
        assert response.status_code == 400
        assert "location" not in response.headers
    assert snapshot(api.store) == before


# --- the preference page ---------------------------------------------------------------


def test_get_shows_the_preference_page_and_changes_nothing(api: Api) -> None:
    before = snapshot(api.store)
    path = unsubscribe_path()
    response = api.client.get(path)
    assert_plain_answer(response)
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert f'action="{path.removeprefix("/u/")}"' in page  # POSTs to the same URL
    assert 'name="topic" value="news"' in page
    assert 'name="scope" value="all"' in page
    assert "A•••@Example.com" in page and "Ada@Example.com" not in page
    assert snapshot(api.store) == before


def test_the_page_can_leave_every_email(api: Api) -> None:
    response = api.client.post(unsubscribe_path(), data={"scope": "all"})
    assert_plain_answer(response)
    assert "no more email from us" in response.text
    assert is_suppressed(api.store, WS, "ada@example.com") == "unsubscribed"
    [suppression] = table(api.store, "suppressions")
    assert suppression["source"] == "preference page"
    [event] = inbox(api.store, "email_unsubscribed")
    assert event["properties"]["scope"] == "all"
    page = api.client.get(unsubscribe_path()).text
    assert "You get no email from us" in page


def test_the_page_can_leave_chosen_topics_it_offers(api: Api) -> None:
    m = t.consents
    with api.store.engine.begin() as conn:
        for topic in ("tips", "offers"):
            conn.execute(
                sa.insert(m).values(
                    workspace_id=WS, contact_id="ada", topic=topic, status="subscribed", at=T0
                )
            )
    page = api.client.get(unsubscribe_path()).text
    assert 'value="offers"' in page and 'value="tips"' in page
    data = {"scope": "topic", "topic": ["tips", "not-offered"]}
    assert_plain_answer(api.client.post(unsubscribe_path(), data=data))
    status = {c["topic"]: c["status"] for c in table(api.store, "consents")}
    assert status == {"tips": "unsubscribed", "offers": "subscribed"}
    nothing = api.client.post(unsubscribe_path(), data={"scope": "topic"})
    assert nothing.status_code == 400 and "Choose at least one topic" in nothing.text


def test_the_preferences_link_shows_the_same_page(api: Api) -> None:
    token = preferences_token(SECRET, WS, "ada", "m-1")
    assert api.client.get(f"/p/{token}").status_code == 200
    # a preferences link is not a List-Unsubscribe URL: one-click means nothing there
    response = api.client.post(
        f"/p/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert response.status_code == 400
    assert_plain_answer(api.client.post(f"/p/{token}", data={"scope": "all"}))
    assert is_suppressed(api.store, WS, "ada@example.com") == "unsubscribed"


# --- tokens that are not ours ----------------------------------------------------------


def _altered(path: str) -> str:
    token = path.removeprefix("/u/")
    payload, mac = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return f"/u/{flipped}.{mac}"


def test_forged_altered_and_foreign_tokens_get_the_same_404_as_unknown_ones(api: Api) -> None:
    add_contact(api.store, "bob", "bob@example.com")
    add_contact(api.store, "ada", "ada@example.com", ws="other")
    unknown = api.client.get("/u/not-a-token")
    assert unknown.status_code == 404
    bad = {
        "forged": unsubscribe_path(secret="someone-elses-secret"),
        "altered": _altered(unsubscribe_path()),
        "no such contact": unsubscribe_path(contact="nobody"),
        "another workspace": unsubscribe_path(workspace="nowhere"),
        "another contact's message": unsubscribe_path(contact="bob"),
        "a click token": "/u/" + click_token(SECRET, "https://example.com", "m-1"),
        "truncated": unsubscribe_path()[:-3],
        "not token-shaped": "/u/a%20b.c%00d",
        "too long": "/u/" + "A" * 5000 + ".B",
    }
    before = snapshot(api.store)
    for why, path in bad.items():
        for response in (
            api.client.get(path),
            api.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK),
        ):
            assert response.status_code == 404, why
            assert response.text == unknown.text, why
            assert "set-cookie" not in response.headers
    assert snapshot(api.store) == before


def test_links_keep_working_after_the_workflow_and_message_are_gone(api: Api) -> None:
    path = unsubscribe_path()
    with api.store.engine.begin() as conn:
        for name in ("messages", "workflows", "workflow_versions", "templates"):
            conn.execute(sa.delete(t.metadata.tables[name]))
    api.clock.advance(timedelta(days=400))  # no message left to date the link by
    response = api.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert_plain_answer(response)
    assert [c["status"] for c in table(api.store, "consents")] == ["unsubscribed"]


def test_links_work_for_at_least_30_days_and_until_unsubscribe_link_days(
    store: SqlStore,
) -> None:
    with running_api(store, secret_key=SECRET, unsubscribe_link_days=30) as api:
        add_contact(store, "ada", "ada@example.com")
        add_message(store, "m-1", "ada")
        api.clock.advance(timedelta(days=30))
        assert api.client.get(unsubscribe_path()).status_code == 200
        api.clock.advance(timedelta(seconds=1))
        assert api.client.get(unsubscribe_path()).status_code == 404
    with pytest.raises(ValueError, match="unsubscribe_link_days"):
        running_api(store, unsubscribe_link_days=29).__enter__()


# --- opens and clicks ------------------------------------------------------------------


def _engagements(store: SqlStore, kind: str) -> list[dict[str, Any]]:
    return [e for e in table(store, "message_events") if e["kind"] == kind]


def test_the_open_pixel_records_every_open_and_tells_the_engine_once(api: Api) -> None:
    path = f"/o/{sign(SECRET, 'open', {'m': 'm-1'})}.gif"
    api.clock.advance(timedelta(minutes=5))  # at the instant of sending it looks automated
    for _ in range(2):
        response = api.client.get(path, headers={"user-agent": "MailClient/1.0"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content.startswith(b"GIF89a") and len(response.content) < 100
        assert "no-cache" in response.headers["cache-control"]
        assert "no-store" in response.headers["cache-control"]
        assert "set-cookie" not in response.headers
    opens = _engagements(api.store, "opened")
    assert [o["detail"]["first"] for o in opens] == [True, False]
    assert opens[0]["detail"]["user_agent"] == "MailClient/1.0"
    [event] = inbox(api.store, "email_opened")
    assert event["properties"]["message_id"] == "m-1"
    assert event["properties"]["step"] == "issue_1"
    assert table(api.store, "messages")[0]["status"] == "delivered"


def test_a_bad_pixel_token_is_a_404_that_records_nothing(api: Api) -> None:
    good = sign(SECRET, "open", {"m": "m-1"})
    for token in (sign("other-secret", "open", {"m": "m-1"}), good[:-2], "x"):
        assert api.client.get(f"/o/{token}.gif").status_code == 404
    assert _engagements(api.store, "opened") == []


def test_a_click_redirects_to_the_signed_url_only(api: Api) -> None:
    url = "https://shop.example.com/sale?utm_source=flowmail&x=1"
    token = click_token(SECRET, url, "m-1")
    for _ in range(2):
        response = api.client.get(f"/c/{token}", follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == url
        assert "set-cookie" not in response.headers
    clicks = _engagements(api.store, "clicked")
    assert [(c["detail"]["url"], c["detail"]["first"]) for c in clicks] == [
        (url, True),
        (url, False),
    ]
    [event] = inbox(api.store, "email_clicked")
    assert event["properties"]["url"] == url


def test_altered_or_unsigned_click_tokens_never_redirect(api: Api) -> None:
    token = click_token(SECRET, "https://shop.example.com/", "m-1")
    payload, mac = token.split(".")
    evil = click_token("guessed-secret", "https://evil.example/", "m-1")
    evil_payload = evil.split(".")[0]
    attempts = [
        f"/c/{evil}",  # signed with another secret
        f"/c/{evil_payload}.{mac}",  # our signature on another destination
        f"/c/{payload}",  # no signature
        "/c/https%3A%2F%2Fevil.example%2F",  # a bare URL
        f"/c/{sign(SECRET, 'click', {'u': 'javascript:alert(1)', 'm': 'm-1'})}",
        f"/c/{sign(SECRET, 'open', {'u': 'https://evil.example/', 'm': 'm-1'})}",
    ]
    for path in attempts:
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 404, path
        assert "location" not in response.headers
    assert _engagements(api.store, "clicked") == []


def test_a_click_on_a_link_of_an_erased_message_still_redirects(api: Api) -> None:
    with api.store.engine.begin() as conn:
        conn.execute(sa.delete(t.messages))
    token = click_token(SECRET, "https://shop.example.com/", "m-1")
    response = api.client.get(f"/c/{token}", follow_redirects=False)
    assert response.status_code == 302
    assert _engagements(api.store, "clicked") == []
