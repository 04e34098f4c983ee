"""The sender against a real SMTP server (aiosmtpd on loopback), on SQLite and PostgreSQL.

queued -> sending -> sent, parsed back; the send-time policy's skips and deferrals;
retries with backoff and the dead letter (450, 421, slow, dropped connections); a 550
hard bounce suppressing the address; the circuit breaker handing over to the secondary
provider; a message left ``sending`` by a dead sender resent with the same Message-ID;
``flowmail messages dead|retry|show``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from mailsink import Handler, MailSink, put_messages
from typer.testing import CliRunner

from flowmail.cli import app
from flowmail.clock import VirtualClock
from flowmail.delivery.breaker import Breakers
from flowmail.delivery.compose import Composer, Identity
from flowmail.delivery.model import Provider
from flowmail.delivery.policy import PolicyConfig, QuietHours
from flowmail.delivery.providers.smtp import SmtpProvider
from flowmail.delivery.sender import Sender, SenderOptions
from flowmail.delivery.setup import template_source
from flowmail.runtime.actions import RetryPolicy
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store import feedback
from flowmail.store import messages as queue
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore
from flowmail.store.templates import save_template
from flowmail.templates.model import Template

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
IDENTITY = Identity(
    "news@flowmail.test", "Flowmail", "https://mail.flowmail.test", "s3cret", "1 Main St, Town"
)
R = TypeVar("R")


def run(main: Callable[[], Awaitable[R]]) -> R:
    return asyncio.run(main())  # type: ignore[arg-type]


def put(store: SqlStore, *messages: dict[str, Any]) -> None:
    put_messages(store, list(messages), T0)


def smtp(sink: MailSink, name: str = "smtp", timeout: float = 0.5) -> SmtpProvider:
    return SmtpProvider(host="127.0.0.1", port=sink.port, connections=2, timeout=timeout, name=name)


def sender(
    store: SqlStore,
    clock: VirtualClock,
    providers: dict[str, Provider],
    tmp: Path,
    secondary: str | None = None,
    **options: Any,
) -> Sender:
    composer = Composer(IDENTITY, template_source(store, tmp / "templates"))
    defaults: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=3, base=timedelta(minutes=1), cap=timedelta(hours=1)),
        "lease": timedelta(seconds=30),
    }
    return Sender(
        store,
        clock,
        providers,
        composer,
        primary=next(iter(providers)),
        secondary=secondary,
        options=SenderOptions(**(defaults | options)),
        breakers=Breakers(threshold=3, cooldown=timedelta(seconds=60)),
    )


def row(store: SqlStore, message_id: str) -> dict[str, Any]:
    found = queue.get_message(store, "default", message_id)
    assert found is not None
    return found


def kinds(store: SqlStore, message_id: str) -> list[str]:
    return [e["kind"] for e in queue.message_events(store, "default", message_id)]


async def drain(s: Sender) -> int:
    try:
        return await s.drain()
    finally:
        await s.close()


# --- the happy path ----------------------------------------------------------------


WELCOME = {
    "id": "welcome",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"template": "welcome"}},
        {"id": "note", "email": {"subject": "A note for {{ contact.first_name }}"}},
    ],
}
WELCOME_TEMPLATE = Template(
    name="welcome",
    subject="Welcome, {{ contact.first_name }}!",
    html=(
        "<html><body><p>Hi {{ contact.first_name }}, read <a href='https://example.com/start'>"
        "this</a>.</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> "
        "{{ postal_address }}</p></body></html>"
    ),
)


def test_queued_to_sent_through_smtp_with_every_header(store: SqlStore, tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    apply_workflow(store, "default", WELCOME, T0)
    save_template(store, "default", WELCOME_TEMPLATE, T0)
    store.ingest(
        [
            InboundEvent("ana", "identify", T0, traits={"email": "ana@example.com",
                         "first_name": "Ana"}, id="i1", kind="identify"),
            InboundEvent("ana", "signed_up", T0, id="e1"),
        ],
        T0,
    )  # fmt: skip
    Worker(store, clock).drain()
    messages = store.messages()
    assert [m["status"] for m in messages] == ["queued", "queued"]
    with MailSink() as sink:
        s = sender(store, clock, {"smtp": smtp(sink)}, tmp_path)
        assert run(lambda: drain(s)) == 2
        received = sink.received
    assert len(received) == 2
    by_subject = {r.parsed()["Subject"]: r for r in received}
    assert set(by_subject) == {"Welcome, Ana!", "A note for Ana"}
    for message in store.messages():
        assert message["status"] == "sent"
        assert message["attempts"] == 1
        assert message["sent_at"] == T0
        assert message["provider"] == "smtp"
        assert message["rfc_message_id"] == f"{message['id']}@flowmail.test"
        assert kinds(store, message["id"]) == ["sending", "sent"]
    welcome = by_subject["Welcome, Ana!"].parsed()
    key = welcome["X-Flowmail-Message"]
    assert welcome["Message-ID"] == f"<{key}@flowmail.test>"
    assert welcome["X-Flowmail-Workflow"] == "welcome"
    assert welcome["X-Flowmail-Step"] == "hello"
    assert welcome["Feedback-ID"] == "hello:welcome:marketing:flowmail"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(welcome["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://mail.flowmail.test/u/")
    assert "<mailto:news@flowmail.test?subject=unsubscribe>" in unsubscribe
    assert welcome["To"] == "ana@example.com"
    html = welcome.get_body(("html",))
    assert html is not None
    body = html.get_content()
    assert "https://mail.flowmail.test/c/" in body  # the link is signed and tracked
    assert unsubscribe[1:].split(">")[0] in body  # the same one-click URL in the body
    assert "1 Main St, Town" in body
    note = by_subject["A note for Ana"].parsed()
    assert note.get_content_type() == "text/plain"
    assert "Unsubscribe: https://mail.flowmail.test/u/" in note.get_content()


def test_transactional_email_has_no_list_unsubscribe(store: SqlStore, tmp_path: Path) -> None:
    put(store, {"id": "r1", "to": "ana@example.com", "topic": "transactional"})
    with MailSink() as sink:
        run(lambda: drain(sender(store, VirtualClock(T0), {"smtp": smtp(sink)}, tmp_path)))
        (received,) = sink.received
    parsed = received.parsed()
    assert parsed["List-Unsubscribe"] is None
    assert parsed["Feedback-ID"] == "s1:wf:transactional:flowmail"


def test_a_missing_template_fails_with_the_reason(store: SqlStore, tmp_path: Path) -> None:
    put(store, {"id": "m1", "to": "ana@example.com", "template": "nowhere"})
    with MailSink() as sink:
        run(lambda: drain(sender(store, VirtualClock(T0), {"smtp": smtp(sink)}, tmp_path)))
        assert sink.received == []
    assert row(store, "m1")["status"] == "failed"
    assert "'nowhere' does not exist" in row(store, "m1")["reason"]


# --- the send-time policy ------------------------------------------------------------


def test_skips_and_deferrals_are_recorded_with_their_reasons(
    store: SqlStore, tmp_path: Path
) -> None:
    clock = VirtualClock(T0)
    queue.add_suppression(store, "default", "Gone@Example.com", "unsubscribed", "test", T0)
    feedback.set_consent(store, "default", "c2", "newsletter", "unsubscribed", "test", T0)
    put(
        store,
        {"id": "gone", "to": "gone@example.com", "contact": "c3"},
        {"id": "no-news", "to": "bo@example.com", "contact": "c2", "topic": "newsletter"},
        *[{"id": f"cap{i}", "to": "cy@example.com", "contact": "c4", "priority": i % 2,
           "at": T0 - timedelta(minutes=10 - i)} for i in range(7)],
        {"id": "skip-when-capped", "to": "cy@example.com", "contact": "c4",
         "on_capped": "skip"},
    )  # fmt: skip
    with MailSink() as sink:
        run(lambda: drain(sender(store, clock, {"smtp": smtp(sink)}, tmp_path)))
        assert len(sink.received) == 5
    assert row(store, "gone")["status"] == "skipped"
    assert row(store, "gone")["reason"] == "the address is suppressed: unsubscribed"
    assert row(store, "no-news")["status"] == "skipped"
    assert "no consent for topic 'newsletter'" in row(store, "no-news")["reason"]
    statuses = {f"cap{i}": row(store, f"cap{i}")["status"] for i in range(7)}
    # priority 1 first (cap1, cap3, cap5), then the oldest of priority 0 (cap0, cap2)
    assert [k for k, v in sorted(statuses.items()) if v == "sent"] == [
        "cap0", "cap1", "cap2", "cap3", "cap5",
    ]  # fmt: skip
    for key in ("cap4", "cap6"):
        deferred = row(store, key)
        assert deferred["status"] == "queued"
        assert deferred["send_after"] == T0 + timedelta(hours=24)
        assert deferred["reason"].startswith("frequency cap")
        (event,) = [e for e in queue.message_events(store, "default", key)]
        assert event["kind"] == "deferred"
        assert event["detail"]["until"] == (T0 + timedelta(hours=24)).isoformat()
    assert row(store, "skip-when-capped")["status"] == "skipped"
    # a day later the deferred ones go
    clock.set(T0 + timedelta(hours=24))
    with MailSink() as sink:
        run(lambda: drain(sender(store, clock, {"smtp": smtp(sink)}, tmp_path)))
        assert sorted(r.parsed()["X-Flowmail-Message"] for r in sink.received) == ["cap4", "cap6"]


def test_quiet_hours_defer_to_the_contacts_morning(store: SqlStore, tmp_path: Path) -> None:
    store.ingest(
        [InboundEvent("c1", "identify", T0, traits={"timezone": "Asia/Tokyo"}, kind="identify")],
        T0,
    )
    Worker(store, VirtualClock(T0)).drain()
    put(store, {"id": "m1", "to": "ana@example.com"})  # 18:00 in Tokyo
    policy = PolicyConfig(quiet_hours=QuietHours.parse("17-9"))
    clock = VirtualClock(T0)
    with MailSink() as sink:
        s = sender(store, clock, {"smtp": smtp(sink)}, tmp_path, policy=policy)
        run(lambda: drain(s))
        assert sink.received == []
    assert row(store, "m1")["send_after"] == datetime(2025, 9, 2, 0, 0, tzinfo=UTC)  # 09:00 JST
    assert row(store, "m1")["reason"] == "quiet hours 17:00-09:00 in Asia/Tokyo"


# --- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("local", ["busy", "closing", "slow", "drop"])
def test_transient_failures_retry_with_backoff_then_go_dead(
    store: SqlStore, tmp_path: Path, local: str
) -> None:
    clock = VirtualClock(T0)
    put(store, {"id": "m1", "to": f"{local}@example.com"})
    waits = []
    with MailSink(Handler(slow_seconds=1.0)) as sink:
        for _ in range(3):
            run(lambda: drain(sender(store, clock, {"smtp": smtp(sink, timeout=0.3)}, tmp_path)))
            message = row(store, "m1")
            if message["status"] == "queued":
                waits.append(message["send_after"] - clock.now())
                clock.set(message["send_after"])
    assert message["status"] == "dead"
    assert message["attempts"] == 3
    assert kinds(store, "m1") == ["sending", "retry", "sending", "retry", "sending", "dead"]
    assert timedelta(seconds=30) <= waits[0] <= timedelta(minutes=1)  # 50-100 % of 1 min
    assert timedelta(minutes=1) <= waits[1] <= timedelta(minutes=2)
    expected = {"busy": "450", "closing": "421", "slow": "timeout", "drop": ""}[local]
    assert expected in message["reason"]
    assert queue.list_messages(store, status="dead")[0]["id"] == "m1"


def test_a_hard_bounce_fails_at_once_and_suppresses_the_address(
    store: SqlStore, tmp_path: Path
) -> None:
    put(store, {"id": "m1", "to": "bounce@example.com"})
    with MailSink() as sink:
        run(lambda: drain(sender(store, VirtualClock(T0), {"smtp": smtp(sink)}, tmp_path)))
    failed = row(store, "m1")
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert "550" in failed["reason"]
    assert kinds(store, "m1") == ["sending", "failed"]
    with store.engine.connect() as conn:
        suppressed = conn.execute(sa.select(t.suppressions)).one()
    assert suppressed.email == "bounce@example.com" and suppressed.reason == "hard_bounce"
    put(store, {"id": "m2", "to": "bounce@example.com", "step": "s2"})
    with MailSink() as sink:
        run(lambda: drain(sender(store, VirtualClock(T0), {"smtp": smtp(sink)}, tmp_path)))
        assert sink.received == []
    assert row(store, "m2")["status"] == "skipped"
    assert row(store, "m2")["reason"] == "the address is suppressed: hard_bounce"


def test_the_circuit_opens_and_the_secondary_provider_takes_over(
    store: SqlStore, tmp_path: Path
) -> None:
    clock = VirtualClock(T0)
    put(store, *[{"id": f"m{i:02}", "to": f"p{i}@example.com", "contact": f"c{i}"}
                 for i in range(12)])  # fmt: skip
    retry = RetryPolicy(max_attempts=8, base=timedelta(minutes=1))

    async def main(primary: MailSink, backup: MailSink) -> None:
        providers: dict[str, Provider] = {"smtp": smtp(primary), "backup": smtp(backup, "backup")}
        s = sender(store, clock, providers, tmp_path, secondary="backup", chunk=4, retry=retry)
        try:
            await s.drain()  # 4 fail on the primary, its circuit opens, 8 go to the backup
            assert s.breakers["smtp"].state(clock.now()) == "open"
            sent = [m for m in store.messages() if m["status"] == "sent"]
            retrying = [m for m in store.messages() if m["status"] == "queued"]
            assert len(sent) == 8 and {m["provider"] for m in sent} == {"backup"}
            assert len(retrying) == 4 and all("421" in m["reason"] for m in retrying)
            for _ in range(10):  # the retries: to the backup while the circuit stays open
                waiting = [m["send_after"] for m in store.messages() if m["status"] == "queued"]
                if not waiting:
                    break
                clock.set(min(waiting))
                await s.drain()
        finally:
            await s.close()

    with MailSink(Handler(down=True)) as primary, MailSink() as backup:
        run(lambda: main(primary, backup))
        assert primary.handler.data_calls == 0
        assert len(backup.received) == 12
    assert {(m["status"], m["provider"]) for m in store.messages()} == {("sent", "backup")}


def test_without_a_secondary_an_open_circuit_leaves_the_queue_alone(
    store: SqlStore, tmp_path: Path
) -> None:
    clock = VirtualClock(T0)
    put(store, *[{"id": f"m{i}", "to": f"p{i}@example.com", "contact": f"c{i}"} for i in range(6)])

    async def main(primary: MailSink) -> None:
        s = sender(store, clock, {"smtp": smtp(primary)}, tmp_path, chunk=3)
        try:
            await s.drain()
            attempts = sorted(m["attempts"] for m in store.messages())
            assert attempts == [0, 0, 0, 1, 1, 1]  # three tried, the circuit opened, three wait
            assert all(m["lease_owner"] is None for m in store.messages())
            assert await s.drain() == 0  # nothing is claimed while the circuit is open
            primary.handler.down = False
            clock.advance(timedelta(seconds=61))  # half-open: one probe, then closed again
            await s.drain()
            assert s.breakers["smtp"].state(clock.now()) == "closed"
        finally:
            await s.close()

    with MailSink(Handler(down=True)) as primary:
        run(lambda: main(primary))
        assert len(primary.received) == 6


# --- exactly once where it can be known ---------------------------------------------


def _die_while_sending(store: SqlStore, now: datetime, lease: timedelta) -> list[str]:
    """What a sender killed right after handing messages over leaves behind."""
    claimed = queue.claim_messages(store, "dead-sender", now, 10, lease)
    handoffs = [
        queue.Handoff(m.key, m.contact_id, f"{m.id}@flowmail.test", "smtp", 1) for m in claimed
    ]
    return [k[1] for k in queue.mark_sending(store, "dead-sender", handoffs, now, lease)]


def test_an_unknown_send_is_resent_with_the_same_message_id(
    store: SqlStore, tmp_path: Path
) -> None:
    clock = VirtualClock(T0)
    put(store, {"id": "m1", "to": "ana@example.com"})
    assert _die_while_sending(store, T0, timedelta(seconds=30)) == ["m1"]
    with MailSink() as sink:
        run(lambda: drain(sender(store, clock, {"smtp": smtp(sink)}, tmp_path)))
        assert sink.received == [] and row(store, "m1")["status"] == "sending"  # lease holds
        clock.advance(timedelta(seconds=31))
        run(lambda: drain(sender(store, clock, {"smtp": smtp(sink)}, tmp_path)))
        (received,) = sink.received
    assert received.message_id == "m1@flowmail.test"
    assert row(store, "m1")["status"] == "sent"
    assert row(store, "m1")["attempts"] == 2
    assert kinds(store, "m1") == ["sending", "unknown", "sending", "sent"]


def test_hold_keeps_an_unknown_send_for_a_person(store: SqlStore, tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    put(store, {"id": "m1", "to": "ana@example.com"})
    _die_while_sending(store, T0, timedelta(seconds=30))
    clock.advance(timedelta(minutes=5))
    with MailSink() as sink:
        hold = sender(store, clock, {"smtp": smtp(sink)}, tmp_path, resend_unknown=False)
        run(lambda: drain(hold))
        assert sink.received == []
        assert row(store, "m1")["status"] == "unknown"
        assert queue.requeue(store, "default", ["m1"], clock.now()) == ["m1"]
        hold = sender(store, clock, {"smtp": smtp(sink)}, tmp_path, resend_unknown=False)
        run(lambda: drain(hold))
        assert [r.message_id for r in sink.received] == ["m1@flowmail.test"]
    assert kinds(store, "m1") == ["sending", "unknown", "requeued", "sending", "sent"]


def test_a_late_sender_still_records_what_it_sent(store: SqlStore) -> None:
    """The lease ran out and the message was marked unknown, but nobody took it over:
    the first sender's answer still counts, so it is not sent twice."""
    put(store, {"id": "m1", "to": "ana@example.com"})
    _die_while_sending(store, T0, timedelta(seconds=30))
    assert queue.recover_expired(store, T0 + timedelta(minutes=1)) == [("default", "m1")]
    outcome = queue.Outcome(("default", "m1"), "c1", "sent", "sent", provider="smtp")
    assert queue.record_outcomes(store, "dead-sender", [outcome], T0 + timedelta(minutes=1))
    assert row(store, "m1")["status"] == "sent"


# --- the command line ---------------------------------------------------------------


def test_messages_dead_retry_and_show(
    store: SqlStore, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock(T0)
    put(store, {"id": "m1", "to": "busy@example.com"})
    with MailSink() as sink:
        for _ in range(3):
            run(lambda: drain(sender(store, clock, {"smtp": smtp(sink)}, tmp_path)))
            clock.set(row(store, "m1")["send_after"])
    assert row(store, "m1")["status"] == "dead"
    monkeypatch.setenv("FLOWMAIL_DATABASE_URL", db_url)
    cli = CliRunner()
    result = cli.invoke(app, ["messages", "dead", "--json"])
    assert result.exit_code == 0, result.output
    (dead,) = json.loads(result.output)
    assert dead["id"] == "m1" and dead["attempts"] == 3 and "450" in dead["reason"]
    result = cli.invoke(app, ["messages", "retry", "m1", "nope"])
    assert result.exit_code == 1
    assert "m1: queued" in result.output and "nope" in result.output
    assert row(store, "m1")["status"] == "queued" and row(store, "m1")["attempts"] == 0
    result = cli.invoke(app, ["messages", "show", "m1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [e["kind"] for e in shown["events"]][-2:] == ["dead", "requeued"]
    result = cli.invoke(app, ["messages", "list", "--status", "queued"])
    assert result.exit_code == 0 and "m1" in result.output
    result = cli.invoke(app, ["messages", "show", "nope"])
    assert result.exit_code == 1 and "no message" in result.output
