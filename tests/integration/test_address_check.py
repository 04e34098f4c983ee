"""An invalid email address is never saved on a contact, and nothing is queued to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from flowmail.clock import VirtualClock
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store import schema as t
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
WELCOME = {
    "id": "welcome",
    "trigger": {"event": "identify"},
    "steps": [{"id": "hello", "email": {"subject": "Welcome"}}],
}


def _identify(contact: str, email: str, at: datetime, event_id: str) -> InboundEvent:
    return InboundEvent(contact, "identify", at, traits={"email": email}, id=event_id,
                        kind="identify")  # fmt: skip


def test_identify_with_an_invalid_address_saves_nothing_and_sends_nothing(
    store: SqlStore,
) -> None:
    apply_workflow(store, "default", WELCOME, T0)
    store.ingest(
        [
            _identify("bad", "not an address", T0, "i1"),
            _identify("good", "Ana@Example.COM", T0, "i2"),
        ],
        T0,
    )
    Worker(store, VirtualClock(T0)).drain()
    bad, good = store.contact("default", "bad"), store.contact("default", "good")
    assert bad is not None and bad.email is None
    assert good is not None and good.email == "Ana@example.com"  # normalised
    assert [(m["contact_id"], m["to_address"]) for m in store.messages()] == [
        ("good", "Ana@example.com")
    ]
    with store.engine.connect() as conn:
        warnings = conn.execute(
            sa.select(t.journal.c.contact_id, t.journal.c.detail).where(
                t.journal.c.action == "warning"
            )
        ).all()
    notes = [detail["message"] for contact, detail in warnings if contact == "bad"]
    assert any("'not an address' is not a valid email address" in n for n in notes)
    assert "contact has no email address; email skipped" in notes
    # a later bad address does not replace a good one
    later = T0 + timedelta(hours=1)
    store.ingest([_identify("good", "ana@", later, "i3")], later)
    Worker(store, VirtualClock(later)).drain()
    good = store.contact("default", "good")
    assert good is not None and good.email == "Ana@example.com"
