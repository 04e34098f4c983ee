"""The SQL of feedback: delivery events on messages, suppressions, consents, and a
contact's export and erasure.

Every function takes a :class:`~flowmail.store.sql.SqlStore`; writes take ``now``.
Deduplication is the database's: a provider event is recorded once per workspace
(``message_events.provider_event_id`` is UNIQUE), and an event fed to the engine has a
deterministic id (``events`` is UNIQUE on it), so a replay changes nothing.

Addresses of erased contacts are kept only as ``sha256:<hex>`` of the lower-cased
address (:func:`hash_address`): :func:`is_suppressed` and :func:`suppression_forms` match
both forms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowmail.store import schema as t
from flowmail.store.notify import CHANNEL
from flowmail.store.records import InboundEvent
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

HASHED = "sha256:"
ERASED_SOURCE = "kept as a hash when the contact was erased"
ENGAGEMENT = ("opened", "clicked")


# --- addresses and suppressions --------------------------------------------------------


def normal_address(email: str) -> str:
    return email.strip().lower()


def hash_address(email: str) -> str:
    """How a suppression of an erased contact's address is kept: ``sha256:<hex>`` of the
    lower-cased address."""
    return HASHED + hashlib.sha256(normal_address(email).encode("utf-8")).hexdigest()


def suppression_forms(email: str) -> tuple[str, str]:
    """The two ``suppressions.email`` values that suppress ``email``: the lower-cased
    address, and its hash (:func:`hash_address`)."""
    return normal_address(email), hash_address(email)


def is_suppressed(store: SqlStore, workspace_id: str, email: str) -> str | None:
    """The reason ``email`` is suppressed in the workspace (in either form), or None."""
    s = t.suppressions
    plain, hashed = suppression_forms(email)
    query = sa.select(s.c.email, s.c.reason).where(
        s.c.workspace_id == workspace_id, s.c.email.in_((plain, hashed))
    )
    with store.reader.connect() as conn:
        rows = {row.email: row.reason for row in conn.execute(query)}
    return rows.get(plain) or rows.get(hashed)


def _insert(store: SqlStore, table: sa.Table) -> Any:
    return (postgresql.insert if store.postgres else sqlite.insert)(table)


def _suppress(store: SqlStore, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        stmt = _insert(store, t.suppressions).on_conflict_do_nothing(
            index_elements=["workspace_id", "email"]
        )
        conn.execute(stmt, list(rows))


# --- finding the message an event is about ---------------------------------------------


@dataclass(frozen=True)
class MessageRef:
    """The outbox row a delivery event belongs to (and so its workspace and contact)."""

    workspace_id: str
    id: str
    run_id: str
    contact_id: str
    workflow_id: str
    step_id: str
    to_address: str | None
    topic: str
    status: str
    created_at: datetime
    sent_at: datetime | None = None  # handed over (opens sooner after are automated)


def _refs(conn: Connection, where: sa.ColumnElement[bool], limit: int) -> list[MessageRef]:
    m = t.messages
    query = sa.select(
        m.c.workspace_id,
        m.c.id,
        m.c.run_id,
        m.c.contact_id,
        m.c.workflow_id,
        m.c.step_id,
        m.c.to_address,
        m.c.topic,
        m.c.status,
        m.c.created_at,
        m.c.sent_at,
    ).where(where)
    return [MessageRef(**row._mapping) for row in conn.execute(query.limit(limit))]


def find_messages(
    store: SqlStore,
    *,
    key: str | None = None,
    rfc_message_id: str | None = None,
    provider_id: str | None = None,
    workspace_id: str | None = None,
    limit: int = 5,
) -> list[MessageRef]:
    """Messages with our key, else with this Message-ID, else with this provider id (in
    ``workspace_id`` if given). More than one means the reference is ambiguous.

    A key is looked up per known workspace first, so that the primary key (workspace,
    id) serves it; the Message-ID and provider id have no index of their own yet.
    """
    m = t.messages
    scope = sa.true() if workspace_id is None else m.c.workspace_id == workspace_id
    with store.reader.connect() as conn:
        if key and workspace_id is None:
            known = {DEFAULT_WORKSPACE, *conn.execute(sa.select(t.workspaces.c.id)).scalars()}
            found = _refs(conn, sa.and_(m.c.workspace_id.in_(sorted(known)), m.c.id == key), limit)
            if found:
                return found
        for column, value in (
            (m.c.id, key),
            (m.c.rfc_message_id, rfc_message_id),
            (m.c.provider_id, provider_id),
        ):
            if value:
                found = _refs(conn, sa.and_(scope, column == value), limit)
                if found:
                    return found
    return []


# --- recording delivery events ---------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One delivery event to record against a message, and what follows from it."""

    message: MessageRef
    kind: str
    at: datetime
    detail: dict[str, Any]
    provider_event_id: str | None = None  # None: every one is recorded (tracking totals)
    status: str | None = None  # the message's new status ...
    status_from: tuple[str, ...] = ()  # ... when its status is one of these
    reason: str | None = None
    suppress: tuple[str, str, str] | None = None  # (address, reason, source)
    consent: tuple[str, str, str] | None = None  # (topic, status, source)
    inbox: InboundEvent | None = None  # fed to the engine (deduplicated on its id)


@dataclass(frozen=True)
class Recorded:
    new: bool  # False: a duplicate of a provider event already recorded
    first: bool = False  # the first event of its kind on the message


def record_changes(store: SqlStore, changes: Sequence[Change], now: datetime) -> list[Recorded]:
    """Record delivery events and their consequences, all in one transaction."""
    results: list[Recorded] = []
    fed = False
    with store.engine.begin() as conn:
        for change in changes:
            result = _record(store, conn, change, now)
            results.append(result)
            fed |= result.new and change.inbox is not None
        if fed and store.postgres:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
    return results


def _record(store: SqlStore, conn: Connection, change: Change, now: datetime) -> Recorded:
    e, m = t.message_events, t.messages
    ref = change.message
    earlier = sa.select(sa.literal(1)).where(
        e.c.workspace_id == ref.workspace_id, e.c.message_id == ref.id, e.c.kind == change.kind
    )
    first = conn.execute(earlier.limit(1)).first() is None
    row = {
        "workspace_id": ref.workspace_id,
        "message_id": ref.id,
        "contact_id": ref.contact_id,
        "kind": change.kind,
        "at": change.at,
        "detail": {**change.detail, "first": first} if change.kind in ENGAGEMENT else change.detail,
        "provider_event_id": change.provider_event_id,
    }
    stmt = _insert(store, e).values(row)
    if change.provider_event_id is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["workspace_id", "provider_event_id"])
    if conn.execute(stmt.returning(e.c.seq)).first() is None:
        return Recorded(new=False)
    if change.status is not None:
        conn.execute(
            sa.update(m)
            .where(
                m.c.workspace_id == ref.workspace_id,
                m.c.id == ref.id,
                m.c.status.in_(change.status_from),
            )
            .values(status=change.status, reason=change.reason)
        )
    if change.suppress is not None:
        address, reason, source = change.suppress
        _suppress(store, conn, [_suppression(ref.workspace_id, address, reason, source, now)])
    if change.consent is not None:
        topic, status, source = change.consent
        _set_consent(store, conn, ref.workspace_id, ref.contact_id, topic, status, source, now)
    if change.inbox is not None:
        _feed(store, conn, [change.inbox], now)
    return Recorded(new=True, first=first)


def _suppression(
    workspace_id: str, address: str, reason: str, source: str, now: datetime
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "email": normal_address(address),
        "reason": reason,
        "source": source,
        "created_at": now,
    }


def _feed(store: SqlStore, conn: Connection, events: Sequence[InboundEvent], now: datetime) -> None:
    """Put events in the inbox, in this transaction; a known id changes nothing."""
    stmt = _insert(store, t.events).on_conflict_do_nothing(index_elements=["workspace_id", "id"])
    conn.execute(
        stmt,
        [
            {
                "workspace_id": event.workspace_id,
                "id": event.id,
                "contact_id": event.contact_id,
                "kind": event.kind,
                "name": event.name,
                "at": event.at,
                "properties": event.properties,
                "traits": event.traits,
                "received_at": now,
            }
            for event in events
        ],
    )


# --- consents --------------------------------------------------------------------------


def _set_consent(
    store: SqlStore,
    conn: Connection,
    workspace_id: str,
    contact_id: str,
    topic: str,
    status: str,
    source: str | None,
    now: datetime,
    *,
    only_if_changed: bool = False,
) -> bool:
    """Upsert a consent row; with ``only_if_changed`` an existing row of the same status
    is left as it is (its time and source stay). True if a row was written."""
    k = t.consents
    stmt = _insert(store, k).values(
        workspace_id=workspace_id,
        contact_id=contact_id,
        topic=topic,
        status=status,
        at=now,
        source=source,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "contact_id", "topic"],
        set_={
            "status": stmt.excluded.status,
            "at": stmt.excluded.at,
            "source": stmt.excluded.source,
        },
        where=(k.c.status != stmt.excluded.status) if only_if_changed else None,
    )
    # RETURNING, not rowcount: on PostgreSQL the rowcount of an upsert whose WHERE
    # skipped the update is not reliably 0
    return conn.execute(stmt.returning(k.c.topic)).first() is not None


def consents(store: SqlStore, workspace_id: str, contact_id: str) -> list[dict[str, Any]]:
    k = t.consents
    query = (
        sa.select(k.c.topic, k.c.status, k.c.at, k.c.source)
        .where(k.c.workspace_id == workspace_id, k.c.contact_id == contact_id)
        .order_by(k.c.topic)
    )
    with store.reader.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def consent(
    store: SqlStore, workspace_id: str, contact_id: str, topic: str
) -> dict[str, Any] | None:
    found = [c for c in consents(store, workspace_id, contact_id) if c["topic"] == topic]
    return found[0] if found else None


def set_consent(
    store: SqlStore,
    workspace_id: str,
    contact_id: str,
    topic: str,
    status: str,
    source: str | None,
    now: datetime,
    *,
    only_from: tuple[str, ...] | None = None,
    since: datetime | None = None,
) -> bool:
    """Set a contact's consent for a topic. With ``only_from``, only a row that exists
    with one of those statuses (and, with ``since``, that time) changes. True if written."""
    if only_from is None:
        with store.engine.begin() as conn:
            return _set_consent(store, conn, workspace_id, contact_id, topic, status, source, now)
    k = t.consents
    query = sa.update(k).where(
        k.c.workspace_id == workspace_id,
        k.c.contact_id == contact_id,
        k.c.topic == topic,
        k.c.status.in_(only_from),
    )
    if since is not None:
        query = query.where(k.c.at == since)
    with store.engine.begin() as conn:
        return bool(conn.execute(query.values(status=status, at=now, source=source)).rowcount)


@dataclass(frozen=True)
class OptOut:
    """A contact leaving topics (and, with ``address``, every email: a suppression)."""

    workspace_id: str
    contact_id: str
    topics: tuple[str, ...]
    source: str
    address: str | None = None  # suppress this address (reason "unsubscribed")
    message: MessageRef | None = None  # the email the link was in
    inbox: InboundEvent | None = None  # fed to the engine if anything changed
    detail: dict[str, Any] = field(default_factory=dict)


def record_opt_out(store: SqlStore, opt_out: OptOut, now: datetime) -> list[str]:
    """Record an opt-out in one transaction; returns what changed (topics, and ``*`` for a
    new suppression). Nothing changed (a replay): nothing is written or fed."""
    changed: list[str] = []
    s = t.suppressions
    ws = opt_out.workspace_id
    with store.engine.begin() as conn:
        for topic in opt_out.topics:
            if _set_consent(
                store,
                conn,
                ws,
                opt_out.contact_id,
                topic,
                "unsubscribed",
                opt_out.source,
                now,
                only_if_changed=True,
            ):
                changed.append(topic)
        if opt_out.address:
            hashed = hash_address(opt_out.address)
            kept = conn.execute(
                sa.select(s.c.email).where(s.c.workspace_id == ws, s.c.email == hashed)
            ).first()
            row = _suppression(ws, opt_out.address, "unsubscribed", opt_out.source, now)
            stmt = (
                _insert(store, s)
                .values(row)
                .on_conflict_do_nothing(index_elements=["workspace_id", "email"])
            )
            if kept is None and conn.execute(stmt.returning(s.c.email)).first() is not None:
                changed.append("*")
        if not changed:
            return []
        if opt_out.message is not None:
            ref = opt_out.message
            conn.execute(
                sa.insert(t.message_events).values(
                    workspace_id=ref.workspace_id,
                    message_id=ref.id,
                    contact_id=ref.contact_id,
                    kind="unsubscribed",
                    at=now,
                    detail={**opt_out.detail, "topics": changed, "source": opt_out.source},
                )
            )
        if opt_out.inbox is not None:
            _feed(store, conn, [opt_out.inbox], now)
            if store.postgres:
                conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
    return changed


def request_confirmation(
    store: SqlStore,
    workspace_id: str,
    contact_id: str,
    topic: str,
    source: str,
    message: dict[str, Any],
    now: datetime,
) -> None:
    """Double opt-in: the consent becomes ``pending`` and the confirmation email is queued
    (``message``: a ``messages`` row), in one transaction."""
    with store.engine.begin() as conn:
        _set_consent(store, conn, workspace_id, contact_id, topic, "pending", source, now)
        conn.execute(
            _insert(store, t.messages)
            .values(message)
            .on_conflict_do_nothing(index_elements=["workspace_id", "id"])
        )
        conn.execute(
            sa.insert(t.message_events).values(
                workspace_id=workspace_id,
                message_id=message["id"],
                contact_id=contact_id,
                kind="queued",
                at=now,
                detail={"reason": f"double opt-in for topic {topic!r}"},
            )
        )
        if store.postgres:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


# --- complaint rates -------------------------------------------------------------------


def complaint_counts(
    store: SqlStore, workspace_id: str, workflow_id: str, since: datetime
) -> tuple[int, int]:
    """(emails of the workflow handed to a provider since ``since``, how many of them
    drew a complaint since then)."""
    m, e = t.messages, t.message_events
    sent = sa.select(sa.func.count()).where(
        m.c.workspace_id == workspace_id, m.c.workflow_id == workflow_id, m.c.sent_at >= since
    )
    complained = (
        sa.select(sa.func.count(sa.distinct(e.c.message_id)))
        .select_from(
            e.join(m, sa.and_(m.c.workspace_id == e.c.workspace_id, m.c.id == e.c.message_id))
        )
        .where(
            e.c.workspace_id == workspace_id,
            e.c.kind == "complained",
            e.c.at >= since,
            m.c.workflow_id == workflow_id,
        )
    )
    with store.reader.connect() as conn:
        return int(conn.execute(sent).scalar_one()), int(conn.execute(complained).scalar_one())


# --- a contact's data: export and erasure ----------------------------------------------


def _rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


def _addresses(contact: dict[str, Any], messages: Iterable[dict[str, Any]]) -> list[str]:
    found = {contact.get("email")} | {m.get("to_address") for m in messages}
    return sorted({a for a in found if isinstance(a, str) and a.strip()})


def _suppressions_of(workspace_id: str, addresses: Sequence[str]) -> sa.Select[Any]:
    s = t.suppressions
    forms = sorted({f for a in addresses for f in (a, *suppression_forms(a))})
    return sa.select(s).where(s.c.workspace_id == workspace_id, s.c.email.in_(forms))


# what an export shows of each table: (table, leaving out, order); rows of the contact
_EXPORTED: dict[str, tuple[sa.Table, tuple[str, ...], tuple[str, ...]]] = {
    "events": (t.events, ("seq", "contact_id", "processed_at", "error"), ("at", "seq")),
    "runs": (t.runs, ("contact_id", "wake_at"), ("started_at", "id")),
    "journal": (t.journal, ("seq", "contact_id"), ("at", "seq")),
    "messages": (t.messages, ("contact_id", "lease_owner", "lease_until"), ("created_at", "id")),
    "delivery": (t.message_events, ("seq", "contact_id"), ("seq",)),
    "consents": (t.consents, ("contact_id",), ("topic",)),
    "date_triggers": (t.date_triggers, ("contact_id",), ("workflow_id",)),
}
_CONTACT_FIELDS = ("id", "email", "timezone", "attributes", "created_at", "updated_at")


def _of_contact(
    conn: Connection, name: str, workspace_id: str, contact_id: str
) -> list[dict[str, Any]]:
    table, hidden, order = _EXPORTED[name]
    columns = [c for c in table.c if c.name not in (*hidden, "workspace_id")]
    query = (
        sa.select(*columns)
        .where(table.c.workspace_id == workspace_id, table.c.contact_id == contact_id)
        .order_by(*(table.c[o] for o in order))
    )
    return _rows(conn, query)


def export_contact(store: SqlStore, workspace_id: str, contact_id: str) -> dict[str, Any] | None:
    """Everything held about a contact, or None if there is no such contact."""
    c = t.contacts
    with store.reader.connect() as conn:
        found = conn.execute(
            sa.select(*(c.c[f] for f in _CONTACT_FIELDS)).where(
                c.c.workspace_id == workspace_id, c.c.id == contact_id
            )
        ).first()
        if found is None:
            return None
        contact = dict(found._mapping)
        data = {name: _of_contact(conn, name, workspace_id, contact_id) for name in _EXPORTED}
        suppressed = _rows(
            conn, _suppressions_of(workspace_id, _addresses(contact, data["messages"]))
        )
    by_message: dict[str, list[dict[str, Any]]] = {}
    for event in data.pop("delivery"):
        by_message.setdefault(event.pop("message_id"), []).append(event)
    for message in data["messages"]:
        message["events"] = by_message.get(message["id"], [])
    return {
        "contact": contact,
        **data,
        "suppressions": [
            {key: value for key, value in row.items() if key != "workspace_id"}
            for row in suppressed
        ],
    }


def erase_contact(
    store: SqlStore, workspace_id: str, contact_id: str, now: datetime
) -> dict[str, int] | None:
    """Delete a contact and everything about it, in one transaction; returns rows deleted
    per table (``suppressions_hashed``: opt-outs kept, as hashes), or None if unknown.

    What keeps honouring an opt-out stays, as :func:`hash_address` of the address: every
    suppression of the contact's addresses, and a suppression (``unsubscribed``) for an
    address whose contact had left a topic.
    """
    c, m, k, s = t.contacts, t.messages, t.consents, t.suppressions
    ws = workspace_id
    with store.engine.begin() as conn:
        query = sa.select(c.c.email).where(c.c.workspace_id == ws, c.c.id == contact_id)
        if store.postgres:
            query = query.with_for_update()
        found = conn.execute(query).first()
        if found is None:
            return None
        sent = _rows(
            conn,
            sa.select(m.c.to_address).where(m.c.workspace_id == ws, m.c.contact_id == contact_id),
        )
        addresses = _addresses({"email": found.email}, sent)
        kept = [
            row
            for row in _rows(conn, _suppressions_of(ws, addresses))
            if not str(row["email"]).startswith(HASHED)
        ]
        opted_out = conn.execute(
            sa.select(sa.func.count()).where(
                k.c.workspace_id == ws, k.c.contact_id == contact_id, k.c.status == "unsubscribed"
            )
        ).scalar_one()
        counts = _delete_everything(conn, ws, contact_id)
        if kept:
            conn.execute(
                sa.delete(s).where(
                    s.c.workspace_id == ws, s.c.email.in_([r["email"] for r in kept])
                )
            )
        hashed = {
            hash_address(row["email"]): _suppression(
                ws, row["email"], row["reason"], ERASED_SOURCE, row["created_at"]
            )
            for row in kept
        }
        if opted_out:
            for address in addresses:
                hashed.setdefault(
                    hash_address(address),
                    _suppression(ws, address, "unsubscribed", ERASED_SOURCE, now),
                )
        _suppress(store, conn, [{**row, "email": key} for key, row in hashed.items()])
        counts["suppressions_hashed"] = len(hashed)
    return counts


def _delete_everything(conn: Connection, ws: str, contact_id: str) -> dict[str, int]:
    r, a, me, m = t.runs, t.actions, t.message_events, t.messages
    runs = sa.select(r.c.id).where(r.c.workspace_id == ws, r.c.contact_id == contact_id)
    messages = sa.select(m.c.id).where(m.c.workspace_id == ws, m.c.contact_id == contact_id)
    counts = {
        "actions": conn.execute(
            sa.delete(a).where(a.c.workspace_id == ws, a.c.run_id.in_(runs))
        ).rowcount,
        "message_events": conn.execute(
            sa.delete(me).where(
                me.c.workspace_id == ws,
                sa.or_(me.c.contact_id == contact_id, me.c.message_id.in_(messages)),
            )
        ).rowcount,
        "journal": conn.execute(
            sa.delete(t.journal).where(
                t.journal.c.workspace_id == ws,
                sa.or_(t.journal.c.contact_id == contact_id, t.journal.c.run_id.in_(runs)),
            )
        ).rowcount,
    }
    for table in (t.messages, t.runs, t.events, t.date_triggers, t.consents):
        counts[table.name] = conn.execute(
            sa.delete(table).where(table.c.workspace_id == ws, table.c.contact_id == contact_id)
        ).rowcount
    c = t.contacts
    counts["contacts"] = conn.execute(
        sa.delete(c).where(c.c.workspace_id == ws, c.c.id == contact_id)
    ).rowcount
    return counts
