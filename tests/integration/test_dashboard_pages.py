"""The dashboard's pages on a real database (both back ends), through the app: logging
in, every page showing what the store holds, the forms (pause, resume, retry, erase)
changing the store, and what is refused (no session, a bad CSRF token, a wrong key)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import Api, running_api

from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store import messages as outbox
from flowmail.store import schema as t
from flowmail.store.keys import Role, revoke_key, split_token
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore

WS = "default"
SECRET = "dashboard-test-secret-0123456789"
JOURNEY = {
    "id": "onboarding",
    "topic": "news",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello {{ contact.first_name }}"}},
        {
            "id": "check_plan",
            "branch": [
                {"if": {"contact.plan": "pro"}, "then": "pro_tips"},
                {"else": "pause"},
            ],
        },
        {"id": "pro_tips", "email": {"subject": "Pro tips"}, "next": "end"},
        {"id": "pause", "wait": "3d"},
        {"id": "later", "email": {"subject": "Three days in"}},
    ],
}
PEOPLE = {"ada": ("ada@example.com", "pro"), "bob": ("bob@example.com", "free")}


def _populate(api: Api) -> None:
    store, clock = api.store, api.clock
    apply_workflow(store, WS, JOURNEY, clock.now())
    events = []
    for contact, (address, plan) in PEOPLE.items():
        traits = {"email": address, "first_name": contact.title(), "plan": plan}
        events += [
            InboundEvent(contact, "identify", clock.now(), id=f"id-{contact}", kind="identify",
                         traits=traits),
            InboundEvent(contact, "signed_up", clock.now(), {"source": "web"},
                         id=f"signup-{contact}"),
        ]  # fmt: skip
    store.ingest(events, clock.now())
    Worker(store, clock, worker_id="test-worker").drain()
    clock.advance(timedelta(minutes=5))  # into the hour whose counters hold all that


@pytest.fixture
def api(store: SqlStore, tmp_path: Any) -> Iterator[Api]:
    with running_api(
        store, secret_key=SECRET, dev_mailbox=str(tmp_path / "mailbox"), dashboard_session_hours=2
    ) as api:
        _populate(api)
        yield api


def login_form(api: Api, next_url: str = "/ui/") -> str:
    """GET the login form (which sets its cookie) as a new visitor; its CSRF token."""
    api.client.cookies.clear()
    page = api.client.get("/ui/login", params={"next": next_url}, headers={})
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found[1]


def log_in(api: Api, key: str | None = None, next_url: str = "/ui/") -> Any:
    token = login_form(api, next_url)
    return api.client.post(
        "/ui/login",
        data={"key": key or api.admin_key, "csrf": token, "next": next_url},
        headers={},
        follow_redirects=False,
    )


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found[1]


def page(api: Api, path: str, **params: Any) -> Any:
    response = api.client.get(path, params=params, headers={}, follow_redirects=False)
    assert response.status_code == 200, (path, response.status_code, response.text[:2000])
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    return response


@pytest.fixture
def ui(api: Api) -> Api:
    """Logged in as the admin key."""
    answer = log_in(api)
    assert answer.status_code == 303, answer.text
    return api


# --- logging in ------------------------------------------------------------------------


def test_pages_send_strangers_to_the_login_page(api: Api) -> None:
    for path in ("/ui/", "/ui/workflows/onboarding", "/ui/contacts/ada", "/ui/mailbox"):
        answer = api.client.get(path, headers={}, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login"), path
    answer = api.client.get("/ui/workflows", headers={}, follow_redirects=False)
    assert answer.headers["location"] == "/ui/login?next=/ui/workflows"
    partial = api.client.get("/ui/overview/live", headers={"HX-Request": "true"})
    assert partial.headers["HX-Redirect"].startswith("/ui/login")
    # an API key is not a session: pages need the login
    with_key = api.client.get("/ui/", headers=api.admin, follow_redirects=False)
    assert with_key.status_code == 303


def test_an_admin_key_logs_in_with_a_strict_session_cookie(api: Api) -> None:
    answer = log_in(api, next_url="/ui/contacts/ada")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/contacts/ada"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("fm_session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
    assert "max-age=7200" in cookie.lower()
    assert "secure" not in attributes  # public_url is http here
    assert "ada" in page(api, "/ui/contacts/ada").text


def test_the_cookie_is_secure_behind_https(store: SqlStore) -> None:
    with running_api(store, secret_key=SECRET, public_url="https://mail.example.com") as api:
        api.client.base_url = "https://testserver"  # type: ignore[assignment]
        answer = log_in(api)
        assert answer.status_code == 303
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("fm_session=")
        )
        assert "secure" in cookie.lower()


def test_wrong_ingest_and_revoked_keys_are_refused(api: Api) -> None:
    wrong = log_in(api, key="fm_0000000000000000_not-a-real-secret")
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    assert "fm_session" not in wrong.headers.get("set-cookie", "")
    ingest = log_in(api, key=api.ingest_key)
    assert ingest.status_code == 403
    assert "admin key" in ingest.text
    assert "fm_session" not in ingest.headers.get("set-cookie", "")
    other = api.key()
    assert log_in(api, key=other).status_code == 303
    key_id = split_token(other)
    assert key_id is not None
    revoke_key(api.store, key_id[0], api.clock.now())
    answer = api.client.get("/ui/", headers={}, follow_redirects=False)
    assert answer.status_code == 303  # revoking the key ended its session
    assert answer.headers["location"] == "/ui/login"


def test_a_login_post_without_the_forms_token_is_refused(api: Api) -> None:
    login_form(api)
    answer = api.client.post(
        "/ui/login", data={"key": api.admin_key, "csrf": "forged.token"}, headers={}
    )
    assert answer.status_code == 403
    assert "fm_session" not in answer.headers.get("set-cookie", "")


def test_login_never_redirects_off_the_dashboard(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/ui\\..\\x"):
        answer = log_in(api, next_url=target)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/"


def test_a_session_ends_after_its_hours_and_at_logout(ui: Api) -> None:
    token = csrf(page(ui, "/ui/").text)
    ui.clock.advance(timedelta(hours=2, seconds=1))
    expired = ui.client.get("/ui/", headers={}, follow_redirects=False)
    assert expired.status_code == 303
    assert log_in(ui).status_code == 303
    token = csrf(page(ui, "/ui/").text)
    out = ui.client.post("/ui/logout", data={"csrf": token}, headers={}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    assert ui.client.get("/ui/", headers={}, follow_redirects=False).status_code == 303


# --- pages -----------------------------------------------------------------------------


def test_the_overview_shows_health_and_alerts(ui: Api) -> None:
    html = page(ui, "/ui/").text
    pending = re.search(r'data-tile="queued_messages">([\d,]+)<', html)
    assert pending is not None
    assert int(pending[1].replace(",", "")) == len(outbox.list_messages(ui.store, WS))
    assert "Alerts firing" in html
    assert "/ui/static/vendor/uPlot-1.6.32.iife.min.js" in html
    live = page(ui, "/ui/overview/live").text
    assert live.startswith('<div id="live"') and "Pending events" in live


def test_the_workflow_list_shows_modes_and_counts(ui: Api) -> None:
    html = page(ui, "/ui/workflows").text
    row = re.search(r'<tr data-workflow="onboarding">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    assert "active" in cells[2]
    assert cells[3].strip() == "2"  # both contacts entered


def test_the_workflow_page_draws_the_graph_with_live_counts(ui: Api) -> None:
    html = page(ui, "/ui/workflows/onboarding").text
    assert "<svg" in html
    for step in ("hello", "check_plan", "pro_tips", "pause", "later", "end"):
        assert f'data-step="{step}"' in html, step
    hello = re.search(r'data-counts="hello">([^<]*)<', html)
    assert hello is not None and hello[1].startswith("2 in")
    pause = re.search(r'data-counts="pause">([^<]*)<', html)
    assert pause is not None and "1 waiting" in pause[1]  # bob waits three days
    edge = re.search(
        r'data-source="check_plan" data-target="pro_tips">.*?class="edge-label">([^<]*)<',
        html,
        re.S,
    )
    assert edge is not None and edge[1] == "case 1 · 1"
    assert "Recently active runs" in html
    assert re.search(r">ada</a>.*hello → check_plan → pro_tips", html, re.S)
    live = page(ui, "/ui/workflows/onboarding/live").text
    assert live.startswith('<div id="workflow-live"') and "<svg" in live


def test_pause_and_resume_change_the_workflows_mode(ui: Api) -> None:
    token = csrf(page(ui, "/ui/workflows/onboarding").text)
    answer = ui.client.post(
        "/ui/workflows/onboarding/pause",
        data={"csrf": token, "mode": "freeze", "reason": "copy review"},
        headers={},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    [row] = ui.store.workflow_rows(WS)
    assert (row.mode, row.reason) == ("freeze", "copy review")
    html = page(ui, "/ui/workflows/onboarding").text
    assert 'id="resume"' in html and 'id="pause"' not in html
    answer = ui.client.post(
        "/ui/workflows/onboarding/resume", data={"csrf": token}, headers={},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    assert ui.store.workflow_rows(WS)[0].mode == "active"


def test_a_form_with_a_bad_or_missing_csrf_token_changes_nothing(ui: Api) -> None:
    for data in ({"mode": "cancel"}, {"mode": "cancel", "csrf": "forged.token"}):
        answer = ui.client.post("/ui/workflows/onboarding/pause", data=data, headers={})
        assert answer.status_code == 403
        assert "security token" in answer.text
    assert ui.store.workflow_rows(WS)[0].mode == "active"
    # another session's token does not pass either
    other = csrf(page(ui, "/ui/").text)
    assert log_in(ui).status_code == 303
    answer = ui.client.post(
        "/ui/workflows/onboarding/pause", data={"csrf": other, "mode": "drain"}, headers={}
    )
    assert answer.status_code == 403
    assert ui.store.workflow_rows(WS)[0].mode == "active"


def test_the_contact_timeline(ui: Api) -> None:
    html = page(ui, "/ui/contacts/ada").text
    assert 'id="contact-id">ada<' in html
    assert "ada@example.com" in html
    assert "signed_up" in html and "identify" in html
    assert "hello → check_plan → pro_tips" in html
    assert "Hello Ada" in html and "Pro tips" in html
    found = page(ui, "/ui/contacts", q="a").text
    assert 'href="/ui/contacts/ada"' in found and "/ui/contacts/bob" not in found
    by_email = page(ui, "/ui/contacts", q="bob@example.com").text
    assert 'href="/ui/contacts/bob"' in by_email
    assert ui.client.get("/ui/contacts/nobody", headers={}).status_code == 404


def test_export_downloads_the_contacts_data(ui: Api) -> None:
    answer = ui.client.get("/ui/contacts/ada/export", headers={})
    assert answer.status_code == 200
    assert "attachment" in answer.headers["content-disposition"]
    data = answer.json()
    assert data["contact"]["id"] == "ada"
    assert {e["name"] for e in data["events"]} == {"identify", "signed_up"}


def test_erase_needs_the_id_typed_then_removes_the_contact(ui: Api) -> None:
    token = csrf(page(ui, "/ui/contacts/bob").text)
    refused = ui.client.post("/ui/contacts/bob/erase", data={"csrf": token}, headers={})
    assert refused.status_code == 422
    assert ui.store.contact(WS, "bob") is not None
    done = ui.client.post(
        "/ui/contacts/bob/erase", data={"csrf": token, "confirm": "bob"}, headers={}
    )
    assert done.status_code == 200
    assert "Contact bob erased" in done.text
    assert ui.store.contact(WS, "bob") is None
    assert not [m for m in ui.store.messages(WS) if m["contact_id"] == "bob"]
    assert ui.store.contact(WS, "ada") is not None


def test_message_search_and_a_messages_page(ui: Api) -> None:
    by_contact = page(ui, "/ui/messages", contact="ada").text
    assert "Hello Ada" in by_contact and "Pro tips" in by_contact
    assert "Hello Bob" not in by_contact
    by_workflow = page(ui, "/ui/messages", workflow="onboarding", status="queued").text
    assert "Hello Ada" in by_workflow and "Hello Bob" in by_workflow
    assert "No messages found" in page(ui, "/ui/messages", status="dead").text
    [hello] = [
        m for m in outbox.list_messages(ui.store, WS, contact_id="ada") if m["step_id"] == "hello"
    ]
    html = page(ui, f"/ui/messages/{hello['id']}").text
    assert 'id="status">queued' in html
    assert "no template" in html  # a subject-only email: nothing to preview


def test_retrying_a_dead_letter_requeues_it(ui: Api) -> None:
    [hello] = [
        m for m in outbox.list_messages(ui.store, WS, contact_id="bob") if m["step_id"] == "hello"
    ]
    with ui.store.engine.begin() as conn:
        conn.execute(
            sa.update(t.messages)
            .where(t.messages.c.id == hello["id"])
            .values(status="dead", attempts=8, reason="421 try later")
        )
    html = page(ui, "/ui/messages", status="dead").text
    assert f'data-message="{hello["id"]}"' in html and "Retry" in html
    answer = ui.client.post(
        f"/ui/messages/{hello['id']}/retry",
        data={"csrf": csrf(html), "back": "/ui/messages?status=dead"},
        headers={},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/messages?status=dead"
    row = outbox.get_message(ui.store, WS, hello["id"])
    assert row is not None and (row["status"], row["attempts"]) == ("queued", 0)
    [event] = [
        e for e in outbox.message_events(ui.store, WS, hello["id"]) if e["kind"] == "requeued"
    ]
    assert event["detail"]["was"] == "dead"
    assert event["detail"]["by"].startswith("ui:")


def test_the_report_page_and_its_json(ui: Api) -> None:
    html = page(ui, "/ui/report", since="24h").text
    entered = re.search(r'data-tile="entered">([\d,]+)<', html)
    assert entered is not None and entered[1] == "2"
    assert 'href="/ui/workflows/onboarding"' in html
    data = ui.client.get("/ui/report.json", params={"since": "24h"}, headers={}).json()
    assert data["summary"]["entered"] == 2
    assert [w["workflow_id"] for w in data["workflows"]] == ["onboarding"]


def test_pages_stay_in_the_keys_workspace(ui: Api) -> None:
    other = ui.key(Role.ADMIN, "acme")
    assert log_in(ui, key=other).status_code == 303
    assert ui.client.get("/ui/contacts/ada", headers={}).status_code == 404
    assert ui.client.get("/ui/workflows/onboarding", headers={}).status_code == 404
    assert "onboarding" not in page(ui, "/ui/workflows").text
    token = csrf(page(ui, "/ui/").text)
    answer = ui.client.post(
        "/ui/workflows/onboarding/pause", data={"csrf": token, "mode": "cancel"}, headers={}
    )
    assert answer.status_code == 404
    assert ui.store.workflow_rows(WS)[0].mode == "active"


def test_pages_are_not_in_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]
    assert "/v1/dev/mailbox" in paths and "/v1/dev/mailbox/{mail_id}" in paths


def test_static_files_are_served(api: Api) -> None:
    for name in ("app.css", "app.js", "vendor/htmx-2.0.11.min.js", "vendor/uPlot.LICENSE"):
        answer = api.client.get(f"/ui/static/{name}", headers={})
        assert answer.status_code == 200, name
        assert len(answer.content) > 100, name


def test_json_in_pages_cannot_close_its_script_block(ui: Api) -> None:
    from flowmail.dashboard.render import env

    text = env.from_string("{{ value | json_script }}").render(value={"a": "</script><b>"})
    assert "</script>" not in text
    assert json.loads(text) == {"a": "</script><b>"}
