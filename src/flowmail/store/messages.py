"""The SQL of the delivery queue: claiming messages, recording what happened to them.

Every function takes a :class:`~flowmail.store.sql.SqlStore` and ``now``. The hot paths
(claim, hand-off, outcomes) are hand-written per dialect and run as plain executemany;
the rest (listing, showing, requeueing) is portable SQLAlchemy Core.

A message's states: ``queued`` -> ``sending`` (recorded *before* the provider is called)
-> ``sent``, or back to ``queued`` for a retry, or ``failed`` (permanent) or ``dead``
(retries used up). The policy may leave it ``queued`` with a later ``send_after``
(deferred) or make it ``skipped``. A ``sending`` message whose lease expired (its sender
died, maybe after the provider took it) becomes ``unknown``. Every change is also a row
in ``message_events``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowmail.engine.state import Run
from flowmail.store import hot
from flowmail.store import schema as t
from flowmail.store.feedback import hash_address
from flowmail.store.schema import DEFAULT_WORKSPACE, from_micros, to_micros
from flowmail.store.sql import SqlStore

MessageKey = tuple[str, str]  # (workspace id, message id)
REQUEUEABLE = ("dead", "failed", "unknown", "skipped")

_COLUMNS = (
    "workspace_id, id, run_id, contact_id, workflow_id, version, step_id, to_address, "
    "template, subject, topic, priority, on_capped, content, status, created_at, send_after, "
    "attempts, rfc_message_id"
)


@dataclass(frozen=True)
class QueuedMessage:
    """A claimed message: what the sender needs to check, render and send it."""

    workspace_id: str
    id: str
    run_id: str
    contact_id: str
    workflow_id: str
    version: int
    step_id: str
    to_address: str | None
    template: str | None
    subject: str
    topic: str
    priority: int
    on_capped: str
    content: str | None
    status: str
    created_at: datetime
    send_after: datetime
    attempts: int
    rfc_message_id: str | None

    @property
    def key(self) -> MessageKey:
        return (self.workspace_id, self.id)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QueuedMessage:
        values = list(row)
        values[15], values[16] = from_micros(values[15]), from_micros(values[16])
        return cls(*values)


@dataclass(frozen=True)
class Handoff:
    """A message about to be handed to a provider."""

    key: MessageKey
    contact_id: str
    rfc_message_id: str
    provider: str
    attempt: int
    template_version: int | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a message: a policy verdict or a provider's answer.

    ``status`` is the new status (sent, queued, skipped, failed, dead); ``kind`` names the
    event recorded (sent, deferred, retry, skipped, failed, dead).
    """

    key: MessageKey
    contact_id: str
    status: str
    kind: str
    reason: str | None = None
    send_after: datetime | None = None
    provider: str | None = None
    provider_id: str | None = None
    detail: dict[str, Any] | None = None
    suppress: tuple[str, str, str] | None = None  # (address, reason, source): a hard bounce


@dataclass(frozen=True)
class Audience:
    """Facts about the contacts of a batch, read in a few queries."""

    contacts: dict[tuple[str, str], dict[str, Any]]  # key -> email, timezone, attributes
    suppressions: dict[tuple[str, str], str]  # (workspace, lower-cased address) -> reason
    consents: dict[tuple[str, str], dict[str, str]]  # contact key -> topic -> status
    recent: dict[tuple[str, str], list[datetime]]  # contact key -> capped hand-off times
    runs: dict[tuple[str, str], Run]  # (workspace, run id) -> the run, for its trigger


def _upsert(store: SqlStore, table: sa.Table) -> Any:
    return (postgresql.insert if store.postgres else sqlite.insert)(table)


def _sql(store: SqlStore, text: str) -> str:
    return hot.for_dialect(text, store.dialect)


# --- claiming --------------------------------------------------------------------------

_CLAIM_PG = f"""
UPDATE messages SET lease_owner = ?, lease_until = ?
WHERE (workspace_id, id) IN (
  SELECT workspace_id, id FROM messages
  WHERE status IN ({{statuses}}) AND send_after <= ?
    AND (lease_until IS NULL OR lease_until < ?)
  ORDER BY priority DESC, send_after
  LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING {_COLUMNS}
"""

_CLAIM_SQLITE = f"""
UPDATE messages SET lease_owner = ?, lease_until = ?
WHERE rowid IN (
  SELECT rowid FROM messages
  WHERE status IN ({{statuses}}) AND send_after <= ?
    AND (lease_until IS NULL OR lease_until < ?)
  ORDER BY priority DESC, send_after
  LIMIT ?)
RETURNING {_COLUMNS}
"""


def claim_messages(
    store: SqlStore,
    owner: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    resend_unknown: bool = True,
) -> list[QueuedMessage]:
    """Lease up to ``limit`` due messages, most important first, then oldest first.

    ``unknown`` messages are taken too when the unknown policy is to resend them.
    """
    statuses = "'queued', 'unknown'" if resend_unknown else "'queued'"
    template = _CLAIM_PG if store.postgres else _CLAIM_SQLITE
    sql = _sql(store, template.format(statuses=statuses))
    micros = to_micros(now)
    with store.engine.begin() as conn:
        rows = conn.exec_driver_sql(
            sql, (owner, to_micros(now + lease), micros, micros, limit)
        ).all()
    claimed = [QueuedMessage.from_row(r) for r in rows]
    claimed.sort(key=lambda m: (-m.priority, m.send_after, m.id))
    return claimed


def recover_expired(store: SqlStore, now: datetime) -> list[MessageKey]:
    """``sending`` messages whose lease ran out become ``unknown``: their sender died,
    maybe after the provider took them. The lease owner is kept, so a slow sender that
    does come back can still record that it sent the message."""
    reason = "the sender stopped while handing it over: it may have been sent"
    sql = _sql(
        store,
        "UPDATE messages SET status = 'unknown', reason = ? "
        "WHERE status = 'sending' AND lease_until < ? "
        "RETURNING workspace_id, id, contact_id, attempts, provider",
    )
    with store.engine.begin() as conn:
        rows = conn.exec_driver_sql(sql, (reason, to_micros(now))).all()
        events = [
            (ws, mid, cid, "unknown", {"reason": reason, "attempt": n, "provider": p})
            for ws, mid, cid, n, p in rows
        ]
        _insert_events(store, conn, events, now)
    return [(r[0], r[1]) for r in rows]


def release(store: SqlStore, owner: str, keys: Iterable[MessageKey]) -> None:
    """Give claimed messages back untouched (no provider could take them now)."""
    sql = _sql(
        store,
        "UPDATE messages SET lease_owner = NULL, lease_until = NULL "
        "WHERE workspace_id = ? AND id = ? AND lease_owner = ? "
        "AND status IN ('queued', 'unknown')",
    )
    params = [(ws, mid, owner) for ws, mid in keys]
    if params:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql, params)


# --- what the policy and the renderer need -------------------------------------------


def load_audience(
    store: SqlStore, messages: Sequence[QueuedMessage], now: datetime, window: timedelta
) -> Audience:
    """Contacts, suppressions, consents, recent capped sends and run triggers of a batch."""
    contact_keys = sorted({(m.workspace_id, m.contact_id) for m in messages})
    forms: dict[tuple[str, str], str] = {}  # a stored form of an address -> the address
    for m in messages:
        if m.to_address:
            low = m.to_address.lower()
            for form in (m.to_address, low, hash_address(m.to_address)):
                forms[(m.workspace_id, form)] = low
    addresses = sorted(forms)
    runs = sorted({(m.workspace_id, m.run_id) for m in messages})
    batch = {m.key for m in messages}
    audience = Audience({}, {}, {}, {}, {})
    with store.reader.connect() as conn:
        for ws, ids in _grouped(contact_keys):
            _load_contacts(conn, audience, ws, ids)
            _load_recent(conn, audience, ws, ids, now - window, batch)
        for ws, emails in _grouped(addresses):
            s = t.suppressions
            query = sa.select(s.c.email, s.c.reason)
            for email, reason in conn.execute(
                query.where(s.c.workspace_id == ws, s.c.email.in_(emails))
            ):
                audience.suppressions.setdefault((ws, forms[(ws, email)]), reason)
        for ws, ids in _grouped(runs):
            r = t.runs
            query = sa.select(r.c.id, r.c.state).where(r.c.workspace_id == ws, r.c.id.in_(ids))
            for run_id, state in conn.execute(query):
                audience.runs[(ws, run_id)] = Run.from_dict(state)
    return audience


def _load_contacts(conn: Connection, audience: Audience, ws: str, ids: list[str]) -> None:
    c, k = t.contacts, t.consents
    query = sa.select(c.c.id, c.c.email, c.c.timezone, c.c.attributes)
    for cid, email, timezone, attributes in conn.execute(
        query.where(c.c.workspace_id == ws, c.c.id.in_(ids))
    ):
        audience.contacts[(ws, cid)] = {
            "email": email,
            "timezone": timezone,
            "attributes": dict(attributes or {}),
        }
    consents = sa.select(k.c.contact_id, k.c.topic, k.c.status)
    for row in conn.execute(consents.where(k.c.workspace_id == ws, k.c.contact_id.in_(ids))):
        audience.consents.setdefault((ws, row.contact_id), {})[row.topic] = row.status


def _load_recent(
    conn: Connection,
    audience: Audience,
    ws: str,
    ids: list[str],
    since: datetime,
    batch: set[MessageKey],
) -> None:
    """Hand-off times of capped messages to these contacts since ``since`` (sent, being
    sent or unknown: a failed attempt clears its time)."""
    m = t.messages
    query = sa.select(m.c.id, m.c.contact_id, m.c.sent_at).where(
        m.c.workspace_id == ws,
        m.c.contact_id.in_(ids),
        m.c.sent_at > since,
        m.c.topic != "transactional",
    )
    for mid, cid, sent_at in conn.execute(query):
        if (ws, mid) not in batch:
            audience.recent.setdefault((ws, cid), []).append(sent_at)


def _grouped(keys: Sequence[tuple[str, str]], size: int = 500) -> Iterable[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for ws, value in keys:
        groups.setdefault(ws, []).append(value)
    for ws, values in groups.items():
        for start in range(0, len(values), size):
            yield ws, values[start : start + size]


# --- hand-off and outcomes -----------------------------------------------------------

_HANDOFF = """
UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_until = ?, sent_at = ?,
  rfc_message_id = ?, provider = ?, template_version = ?, fallback = ?, reason = NULL
WHERE workspace_id = ? AND id = ?
"""

_EVENT = """
INSERT INTO message_events (workspace_id, message_id, contact_id, kind, at, detail)
VALUES (?, ?, ?, ?, ?, ?)
"""


def mark_sending(
    store: SqlStore, owner: str, handoffs: Sequence[Handoff], now: datetime, lease: timedelta
) -> list[MessageKey]:
    """Record that these messages are being handed over, before they are. Returns the
    keys whose lease was still ours: only those may be sent."""
    if not handoffs:
        return []
    micros, until = to_micros(now), to_micros(now + lease)
    with store.engine.begin() as conn:
        owned = _owned(store, conn, owner, [h.key for h in handoffs], ("queued", "unknown"))
        mine = [h for h in handoffs if h.key in owned]
        if mine:
            conn.exec_driver_sql(
                _sql(store, _HANDOFF),
                [
                    (
                        until,
                        micros,
                        h.rfc_message_id,
                        h.provider,
                        h.template_version,
                        h.fallback,
                        h.key[0],
                        h.key[1],
                    )
                    for h in mine
                ],
            )
            events = [
                (*h.key, h.contact_id, "sending", {"attempt": h.attempt, "provider": h.provider})
                for h in mine
            ]
            _insert_events(store, conn, events, now)
    return [h.key for h in mine]


_OUTCOME = """
UPDATE messages SET status = ?, reason = ?, send_after = COALESCE(?, send_after),
  sent_at = CASE WHEN ? = 'sent' THEN ? ELSE NULL END,
  provider = COALESCE(?, provider), provider_id = COALESCE(?, provider_id),
  lease_owner = NULL, lease_until = NULL
WHERE workspace_id = ? AND id = ?
"""


def record_outcomes(
    store: SqlStore,
    owner: str,
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    states: tuple[str, ...] = ("sending", "unknown"),
) -> list[MessageKey]:
    """Write outcomes (and hard-bounce suppressions) for messages whose lease is ours.

    ``states`` are the statuses an outcome may replace: ``sending`` and ``unknown`` for a
    provider's answer; ``queued`` and ``unknown`` for a policy verdict before hand-off.
    """
    if not outcomes:
        return []
    micros = to_micros(now)
    with store.engine.begin() as conn:
        owned = _owned(store, conn, owner, [o.key for o in outcomes], states)
        mine = [o for o in outcomes if o.key in owned]
        if mine:
            conn.exec_driver_sql(
                _sql(store, _OUTCOME),
                [
                    (
                        o.status,
                        o.reason,
                        None if o.send_after is None else to_micros(o.send_after),
                        o.status,
                        micros,
                        o.provider,
                        o.provider_id,
                        o.key[0],
                        o.key[1],
                    )
                    for o in mine
                ],
            )
            events = [(*o.key, o.contact_id, o.kind, _detail(o)) for o in mine]
            _insert_events(store, conn, events, now)
            bounces = [(o.key[0], *o.suppress) for o in mine if o.suppress is not None]
            if bounces:
                _suppress(store, conn, bounces, now)
    return [o.key for o in mine]


def _detail(outcome: Outcome) -> dict[str, Any]:
    detail = dict(outcome.detail or {})
    if outcome.reason is not None:
        detail.setdefault("reason", outcome.reason)
    if outcome.send_after is not None and outcome.status == "queued":
        detail.setdefault("until", outcome.send_after.isoformat())
    if outcome.provider is not None:
        detail.setdefault("provider", outcome.provider)
    if outcome.provider_id is not None:
        detail.setdefault("provider_id", outcome.provider_id)
    return detail


def _owned(
    store: SqlStore,
    conn: Connection,
    owner: str,
    keys: Sequence[MessageKey],
    states: tuple[str, ...],
) -> set[MessageKey]:
    """The keys still leased by ``owner`` in one of ``states``, locked for this transaction."""
    m = t.messages
    owned: set[MessageKey] = set()
    for ws, ids in _grouped(sorted(set(keys))):
        query = sa.select(m.c.workspace_id, m.c.id).where(
            m.c.workspace_id == ws,
            m.c.id.in_(ids),
            m.c.lease_owner == owner,
            m.c.status.in_(states),
        )
        if store.postgres:
            query = query.with_for_update()
        owned.update((row[0], row[1]) for row in conn.execute(query))
    return owned


def _insert_events(
    store: SqlStore,
    conn: Connection,
    events: Sequence[tuple[str, str, str, str, dict[str, Any]]],
    now: datetime,
) -> None:
    if events:
        micros = to_micros(now)
        conn.exec_driver_sql(
            _sql(store, _EVENT),
            [
                (ws, mid, cid, kind, micros, hot.dumps(detail))
                for ws, mid, cid, kind, detail in events
            ],
        )


def _suppress(
    store: SqlStore, conn: Connection, rows: Sequence[tuple[str, str, str, str]], now: datetime
) -> None:
    """Add suppressions (workspace, address, reason, source); an existing one stays."""
    stmt = _upsert(store, t.suppressions).on_conflict_do_nothing(
        index_elements=["workspace_id", "email"]
    )
    conn.execute(
        stmt,
        [
            {
                "workspace_id": ws,
                "email": address.lower(),
                "reason": reason,
                "source": source,
                "created_at": now,
            }
            for ws, address, reason, source in rows
        ],
    )


def add_suppression(
    store: SqlStore, workspace_id: str, address: str, reason: str, source: str, now: datetime
) -> None:
    with store.engine.begin() as conn:
        _suppress(store, conn, [(workspace_id, address, reason, source)], now)


def next_due(store: SqlStore, *, resend_unknown: bool = True) -> datetime | None:
    """When the earliest waiting message falls due (for sleeping until then)."""
    m = t.messages
    statuses = ("queued", "unknown") if resend_unknown else ("queued",)
    with store.reader.connect() as conn:
        due = conn.execute(
            sa.select(sa.func.min(m.c.send_after)).where(m.c.status.in_(statuses))
        ).scalar()
        expiry = conn.execute(
            sa.select(sa.func.min(m.c.lease_until)).where(m.c.status == "sending")
        ).scalar()
    times = [from_micros(x) if isinstance(x, int) else x for x in (due, expiry) if x is not None]
    return min(times) if times else None


def list_messages(
    store: SqlStore,
    workspace_id: str = DEFAULT_WORKSPACE,
    *,
    status: str | None = None,
    contact_id: str | None = None,
    workflow_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    m = t.messages
    query = sa.select(m).where(m.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(m.c.status == status)
    if contact_id is not None:
        query = query.where(m.c.contact_id == contact_id)
    if workflow_id is not None:
        query = query.where(m.c.workflow_id == workflow_id)
    query = query.order_by(m.c.created_at.desc(), m.c.id).limit(limit)
    with store.reader.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def message_events(store: SqlStore, workspace_id: str, message_id: str) -> list[dict[str, Any]]:
    e = t.message_events
    query = (
        sa.select(e)
        .where(e.c.workspace_id == workspace_id, e.c.message_id == message_id)
        .order_by(e.c.seq)
    )
    with store.reader.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def get_message(store: SqlStore, workspace_id: str, message_id: str) -> dict[str, Any] | None:
    m = t.messages
    with store.reader.connect() as conn:
        row = conn.execute(
            sa.select(m).where(m.c.workspace_id == workspace_id, m.c.id == message_id)
        ).first()
    return None if row is None else dict(row._mapping)


def requeue(
    store: SqlStore, workspace_id: str, ids: Sequence[str], now: datetime, by: str = "cli"
) -> list[str]:
    """Send dead, failed, unknown or skipped messages again, from a fresh attempt count.
    Returns the ids requeued; others (queued, sending, sent, missing) are left alone."""
    m = t.messages
    done: list[str] = []
    with store.engine.begin() as conn:
        for chunk in _grouped([(workspace_id, i) for i in ids]):
            query = sa.select(m.c.id, m.c.contact_id, m.c.status).where(
                m.c.workspace_id == workspace_id,
                m.c.id.in_(chunk[1]),
                m.c.status.in_(REQUEUEABLE),
            )
            if store.postgres:
                query = query.with_for_update()
            rows = conn.execute(query).all()
            if not rows:
                continue
            conn.execute(
                sa.update(m)
                .where(m.c.workspace_id == workspace_id, m.c.id.in_([r.id for r in rows]))
                .values(
                    status="queued",
                    send_after=now,
                    attempts=0,
                    reason=None,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            events = [
                (workspace_id, r.id, r.contact_id, "requeued", {"was": r.status, "by": by})
                for r in rows
            ]
            _insert_events(store, conn, events, now)
            done += [r.id for r in rows]
    return done
