"""``flowmail demo``: the traffic model (pure) and the command against a real installation.

The installation is ``flowmail serve``, ``flowmail worker`` and ``flowmail sender`` as
processes on one SQLite file, sending to an aiosmtpd sink, with the example templates and
workflows applied. The demo runs in this process and talks to them over HTTP only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from mailsink import MailSink
from typer.testing import CliRunner

from conftest import new_sqlite_database
from flowmail.api.segment import Batch, check_call
from flowmail.cli import app
from flowmail.demo import Contact, SentMessage, build_plan, react
from flowmail.demo.engagement import APPLE_PREFETCH, READ_AFTER
from flowmail.demo.traffic import SEGMENTS, ZONES, campaigns
from flowmail.store import schema as t
from flowmail.store.keys import Role, create_key
from flowmail.store.sql import SqlStore
from flowmail.webhooks import generic
from processes import run_flowmail, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 9, 15, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"demo-test-secret-0123456789").decode()


# --- the traffic plan (pure) -------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    first, again = build_plan(7, 120, NOW, 14), build_plan(7, 120, NOW, 14)
    assert first == again
    assert [c.body() for c in first.calls] == [c.body() for c in again.calls]
    other = build_plan(8, 120, NOW, 14)
    assert [c.body() for c in other.calls] != [c.body() for c in first.calls]
    assert {c.id for c in other.contacts}.isdisjoint(c.id for c in first.contacts)


def test_each_contact_is_identified_first_then_acts_in_time_order_inside_the_window() -> None:
    plan = build_plan(3, 400, NOW, 14)
    assert plan.end <= NOW and plan.end - plan.start == timedelta(days=14)
    by_contact: dict[str, list[Any]] = {}
    for call in plan.calls:
        by_contact.setdefault(call.user_id, []).append(call)
    assert list(by_contact) == [c.id for c in plan.contacts]  # contact by contact
    zones = {zone for zone, _ in ZONES}
    for contact in plan.contacts:
        calls = by_contact[contact.id]
        assert calls[0].event is None and calls[0].data["email"] == contact.email
        assert calls[0].data["timezone"] == contact.timezone in zones
        assert contact.email.split("@")[1] in (
            "example.com",
            "example.org",
            "example.net",
            "mail.test",
        )
        assert [c.at for c in calls] == sorted(c.at for c in calls)
        assert all(plan.start <= c.at <= plan.end for c in calls)
    message_ids = [c.message_id for c in plan.calls]
    assert len(set(message_ids)) == len(message_ids)


def test_segments_hold_their_share_even_in_a_small_demo() -> None:
    for contacts in (50, 400):
        plan = build_plan(5, contacts, NOW, 14)
        counts = Counter(c.name for c in plan.calls)
        registered = counts["user_registered"]
        assert abs(registered - contacts * SEGMENTS["registered"][0]) <= contacts * 0.05 + 2
        bad = sum(c.bad_address for c in plan.contacts)
        assert abs(bad - contacts * SEGMENTS["bad_address"][0]) <= 1
        trials = counts["trial_started"]
        assert abs(trials - contacts * SEGMENTS["trial"][0]) <= 2
        assert counts["cart_abandoned"] >= contacts * SEGMENTS["shopper"][0] - 2


def test_calls_carry_what_the_example_workflows_read() -> None:
    plan = build_plan(11, 300, NOW, 14)
    people = plan.by_id()
    sources = Counter()
    for call in plan.calls:
        data = call.data
        if call.event is None and "email" in data:
            sources[data["subscription_source"]] += 1
            assert isinstance(data["lifetime_value"], int | float) and data["first_name"]
            if people[call.user_id].bad_address:
                assert data["subscription_source"] == "newsletter_signup"
        elif call.event == "cart_abandoned":
            assert data["cart_id"] and data["items"]
            assert data["cart_total"] == round(
                sum(i["price"] * i["quantity"] for i in data["items"]), 2
            )
        elif call.event == "purchase_completed":
            assert data["revenue"] == data["total"] > 0 and data["order_id"] and data["product"]
            if "cart_id" in data:
                cart = next(c for c in people[call.user_id].carts if c.id == data["cart_id"])
                assert cart.at < call.at and cart.total == data["total"]
        elif call.event == "trial_started":
            ends = datetime.fromisoformat(data["trial_ends_at"]).date()
            assert ends > call.at.date() and data["plan"] in ("Pro", "Team")
        elif call.event == "email_opened":
            assert data["campaign"] in {name for _, name in campaigns(plan.start, plan.end)}
    assert sources.most_common(1)[0][0] == "newsletter_signup"
    vips = [c for c in plan.calls if c.event is None and c.data.get("lifetime_value", 0) > 1000]
    assert vips, "no VIP shoppers: the cart workflow's VIP branch would never run"


def test_every_call_is_one_the_api_accepts() -> None:
    plan = build_plan(2, 150, NOW, 14)
    for stamped in (True, False):
        batch = Batch.model_validate({"batch": [c.body(stamped) for c in plan.calls]})
        problems = [
            p
            for i, call in enumerate(batch.batch)
            for p in check_call(call, f"batch[{i}]", NOW, timedelta(days=1))
        ]
        assert problems == []


def test_batches_hold_whole_contacts() -> None:
    plan = build_plan(4, 200, NOW, 14)
    batches = list(plan.batches(50))
    assert [c for b in batches for c in b] == list(plan.calls)
    assert all(len(b) >= 50 for b in batches[:-1])
    owners = [{c.user_id for c in b} for b in batches]
    for earlier, later in pairwise(owners):
        assert earlier.isdisjoint(later)


# --- reactions to sent emails (pure) ------------------------------------------------------


def _message(
    n: int, contact: Contact, sent: datetime, workflow: str = "welcome_series"
) -> SentMessage:
    return SentMessage(
        id=f"m{n:06d}",
        contact_id=contact.id,
        workflow_id=workflow,
        step_id="welcome_immediate",
        template="welcome_01",
        to_address=contact.email,
        created_at=sent - timedelta(days=2),
        sent_at=sent,
    )


def test_reactions_are_deterministic_ordered_and_never_in_the_future() -> None:
    plan = build_plan(9, 300, NOW, 14)
    sent = NOW - timedelta(minutes=3)
    kinds: Counter[str] = Counter()
    for n, contact in enumerate(plan.contacts):
        message = _message(n, contact, sent)
        reaction = react(9, contact, message, NOW)
        assert reaction == react(9, contact, message, NOW)
        parsed = generic.normalize(json.dumps(list(reaction.events)).encode())  # the real parser
        assert [e.kind for e in parsed] == [e["type"] for e in reaction.events]
        assert all(sent <= e.at <= NOW and e.message_id == message.id for e in parsed)
        times: dict[str, datetime] = {}
        for found in parsed:  # the first of each kind, but for Apple's prefetch
            if found.user_agent != APPLE_PREFETCH:
                times.setdefault(found.kind, found.at)
        if contact.bad_address:
            assert [(e.kind, e.bounce_type) for e in parsed] == [("bounced", "hard")]
        if "opened" in times:
            assert times["opened"] >= sent + READ_AFTER  # not taken for a machine's
            assert times["delivered"] <= times["opened"] <= times.get("clicked", NOW)
        if reaction.purchase is not None:
            assert times["clicked"] <= reaction.purchase.at <= NOW
            assert reaction.purchase.data["revenue"] > 0
        kinds.update(reaction.kinds())
    delivered = kinds["delivered"]
    assert delivered > 250 and kinds["bounced"] >= sum(c.bad_address for c in plan.contacts)
    assert 0.03 < kinds["clicked"] / delivered < 0.25 < kinds["opened"] / delivered < 0.9


# --- the command against a running installation ------------------------------------------


@dataclass
class Install:
    url: str
    db_url: str
    env: dict[str, str]
    folder: Path
    sink: MailSink


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    folder = tmp_path_factory.mktemp("demo")
    db_url = new_sqlite_database(folder)
    with MailSink() as sink:
        env = {
            **os.environ,
            "FLOWMAIL_DATABASE_URL": db_url,
            "FLOWMAIL_SMTP_PORT": str(sink.port),
            "FLOWMAIL_POSTAL_ADDRESS": "Demo Ltd, 1 Test Street, Springfield",
            "FLOWMAIL_GENERIC_WEBHOOK_SECRET": SECRET,
            "FLOWMAIL_POLL_SECONDS": "0.1",
            "FLOWMAIL_RATE_LIMIT_PER_KEY": "5",  # the demo's polling meets some 429s
            "FLOWMAIL_RATE_LIMIT_BURST": "3",
        }
        run_flowmail(env, "templates", "apply", str(ROOT / "templates"), cwd=folder)
        examples = [
            str(p) for p in sorted((ROOT / "examples").glob("*.yaml")) if ".scenario." not in p.name
        ]
        run_flowmail(env, "workflows", "apply", *examples, cwd=folder)
        processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        try:
            for name, args in (
                ("serve", ("serve", "--host", "127.0.0.1", "--port", "0")),
                ("worker", ("worker",)),
                ("sender", ("sender",)),
            ):
                log = folder / f"{name}.log"
                with log.open("wb") as out:
                    command = [sys.executable, "-m", "flowmail", *args]
                    process = subprocess.Popen(
                        command, env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
                    )
                processes.append((process, log))
            url = wait_until_up(*processes[0])
            yield Install(url, db_url, env, folder, sink)
        finally:
            for process, _ in processes:
                process.send_signal(signal.SIGTERM)
            for process, log in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                assert "Traceback" not in log.read_text(), log.read_text()


def _admin_key(db_url: str) -> str:
    store = SqlStore.from_url(db_url)
    try:
        return create_key(store, "default", Role.ADMIN, "demo test", datetime.now(UTC))[1]
    finally:
        store.close()


def _demo(install: Install, *args: str, code: int = 0) -> Any:
    env = {"FLOWMAIL_DATABASE_URL": install.db_url, "FLOWMAIL_GENERIC_WEBHOOK_SECRET": ""}
    result = CliRunner().invoke(app, ["demo", "--api", install.url, *args], env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _rows(db_url: str, query: Any) -> list[Any]:
    store = SqlStore.from_url(db_url)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        store.close()


def _quiet(url: str) -> None:
    """Until the worker and the sender have nothing left to do (twice in a row)."""
    calm, deadline = 0, time.monotonic() + 30
    while calm < 2 and time.monotonic() < deadline:
        queues = httpx.get(f"{url}/health", timeout=5).json()["queues"]
        busy = queues["pending_events"] + queues["due_messages"] + queues["due_wakes"]
        calm = calm + 1 if busy == 0 else 0
        time.sleep(0.3)
    assert calm >= 2, "the worker and the sender did not catch up"


def _count_by(db_url: str, column: Any, *where: Any) -> dict[str, int]:
    query = sa.select(column, sa.func.count()).where(*where).group_by(column)
    return {str(key): int(n) for key, n in _rows(db_url, query)}


def test_the_demo_fills_a_running_installation(
    install: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the key and the webhook secret come from what `flowmail up` leaves in the folder
    monkeypatch.chdir(tmp_path)
    state = {"admin_key": _admin_key(install.db_url), "webhook_secret": SECRET}
    (tmp_path / ".flowmail-up.json").write_text(json.dumps(state))
    result = _demo(install, "--contacts", "50", "--seed", "3", "--wait", "40", "--json")
    summary = json.loads(result.stdout)
    assert summary["settled"] is True and summary["api_errors"] == 0, summary
    assert summary["contacts"] == 50
    planned = summary["events"]["by_name"]
    assert summary["events"]["accepted"] == sum(planned.values()) + summary["purchases"]

    assert summary["retries"] > 0  # 429s, retried after their Retry-After
    _quiet(install.url)  # the purchases' own emails are out too

    db = install.db_url
    stored = _count_by(db, t.events.c.name, t.events.c.id.like("demo-3-%"))  # our messageIds
    bought = planned["purchase_completed"] + summary["purchases"]
    assert stored == {**planned, "purchase_completed": bought}
    contacts = _rows(db, sa.select(t.contacts.c.email).where(t.contacts.c.id.like("demo-3-%")))
    assert len(contacts) == 50 and all(row.email for row in contacts)

    runs = _count_by(db, t.runs.c.workflow_id)
    assert {"welcome_series", "cart_abandonment", "post_purchase"} <= runs.keys(), runs
    trials = _count_by(db, t.date_triggers.c.workflow_id)
    assert trials.get("trial_ending", 0) > 0  # reminders planned for 10:00 local, 3 days before

    statuses = _count_by(db, t.messages.c.status)
    went_out = sum(statuses.get(s, 0) for s in ("sent", "delivered", "bounced", "complained"))
    assert went_out == len(install.sink.received) > 0

    e = t.message_events
    ours = e.c.provider_event_id.like("generic:demo-3-%")
    fed = _count_by(db, e.c.kind, ours)
    assert fed == summary["webhooks"]
    answered = _rows(db, sa.select(sa.func.count(sa.distinct(e.c.message_id))).where(ours))
    assert answered[0][0] == summary["messages_seen"] > 0
    assert {"delivered", "opened", "clicked", "bounced"} <= fed.keys()
    suppressed = _count_by(db, t.suppressions.c.reason)
    assert suppressed.get("hard_bounce", 0) >= 1  # the mistyped addresses


def test_a_refused_key_and_an_unreachable_api_are_plain_errors(
    install: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    refused = _demo(install, "--key", "fm_0000000000000000_nope", "--contacts", "5", code=1)
    assert "the API key was refused" in refused.stderr
    result = CliRunner().invoke(
        app, ["demo", "--api", "http://127.0.0.1:9", "--key", "fm_x", "--contacts", "5"]
    )
    assert result.exit_code == 1 and "cannot reach the flowmail API" in result.stderr
    missing = CliRunner().invoke(app, ["demo", "--contacts", "5"], env={"FLOWMAIL_API_KEY": ""})
    assert missing.exit_code == 1 and "no API key" in missing.stderr
    key, wrong = _admin_key(install.db_url), "whsec_" + base64.b64encode(b"w" * 24).decode()
    args = ("--key", key, "--webhook-secret", wrong, "--contacts", "5", "--seed", "99")
    refused = _demo(install, *args, code=1)
    assert "the webhook secret was refused" in refused.stderr
    assert (
        _rows(install.db_url, sa.select(t.events.c.id).where(t.events.c.id.like("demo-99-%"))) == []
    )
