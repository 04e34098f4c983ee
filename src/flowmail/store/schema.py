"""The tables. Every row carries a workspace id; times are UTC microseconds (BIGINT)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

DEFAULT_WORKSPACE = "default"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


class Moment(TypeDecorator[datetime]):
    """An aware datetime stored as integer microseconds since the epoch: fast, portable,
    index-friendly, and never naive."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: int | None, dialect: Any) -> datetime | None:
        return None if value is None else from_micros(value)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()


def _ws() -> sa.Column[str]:
    return sa.Column("workspace_id", sa.String(64), nullable=False, default=DEFAULT_WORKSPACE)


workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Moment, nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    _ws(),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("attributes", JSON, nullable=False),
    sa.Column("created_at", Moment, nullable=False),
    sa.Column("updated_at", Moment, nullable=False),
    sa.Column("wake_at", Moment),  # earliest due timer: a run's wake or a date trigger
    sa.Column("lease_owner", sa.String(100)),
    sa.Column("lease_until", Moment),
    sa.PrimaryKeyConstraint("workspace_id", "id"),
    sa.Index(
        "ix_contacts_wake_at",
        "wake_at",
        postgresql_where=sa.text("wake_at IS NOT NULL"),
        sqlite_where=sa.text("wake_at IS NOT NULL"),
    ),
    sa.Index("ix_contacts_email", "workspace_id", "email"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ws(),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # track identify enroll schedule
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("at", Moment, nullable=False),
    sa.Column("properties", JSON, nullable=False),
    sa.Column("traits", JSON),
    sa.Column("received_at", Moment, nullable=False),
    sa.Column("processed_at", Moment),
    sa.Column("error", sa.Text),
    sa.UniqueConstraint("workspace_id", "id", name="uq_events_id"),
    sa.Index(
        "ix_events_pending",
        "seq",
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    ),
    sa.Index("ix_events_contact", "workspace_id", "contact_id", "at"),
    sa.Index("ix_events_processed", "processed_at"),
)

workflows = sa.Table(
    "workflows",
    metadata,
    _ws(),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", Moment, nullable=False),
    sa.Column("updated_at", Moment, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "id"),
)

workflow_versions = sa.Table(
    "workflow_versions",
    metadata,
    _ws(),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", JSON, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", Moment, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "workflow_id", "version"),
)

runs = sa.Table(
    "runs",
    metadata,
    _ws(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.String(200)),
    sa.Column("wake_at", Moment),
    sa.Column("started_at", Moment, nullable=False),
    sa.Column("ended_at", Moment),
    sa.Column("state", JSON, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "id"),
    sa.Index("ix_runs_contact", "workspace_id", "contact_id"),
    sa.Index("ix_runs_workflow", "workspace_id", "workflow_id", "status"),
    sa.Index(
        "ix_runs_wake_at",
        "wake_at",
        postgresql_where=sa.text("wake_at IS NOT NULL"),
        sqlite_where=sa.text("wake_at IS NOT NULL"),
    ),
)

journal = sa.Table(
    "journal",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ws(),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("step_id", sa.String(200)),
    sa.Column("at", Moment, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", JSON, nullable=False),
    sa.Index("ix_journal_run", "workspace_id", "run_id", "seq"),  # a run's previous row
    sa.Index("ix_journal_contact", "workspace_id", "contact_id"),
    sa.Index("ix_journal_at", "at"),
)

messages = sa.Table(
    "messages",
    metadata,
    _ws(),
    sa.Column("id", sa.String(64), nullable=False),  # the idempotency key: run, step, visit
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("to_address", sa.String(320)),
    sa.Column("template", sa.String(200)),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("on_capped", sa.String(8), nullable=False),
    sa.Column("content", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Moment, nullable=False),
    sa.Column("send_after", Moment, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("reason", sa.Text),
    sa.Column("lease_owner", sa.String(100)),
    sa.Column("lease_until", Moment),
    sa.Column("sent_at", Moment),
    sa.Column("rfc_message_id", sa.String(255)),  # the Message-ID header, stable on resend
    sa.Column("template_version", sa.Integer),
    sa.Column("provider", sa.String(32)),
    sa.Column("provider_id", sa.String(255)),
    sa.Column("fallback", sa.Text),  # why a fallback template or default was used
    sa.PrimaryKeyConstraint("workspace_id", "id"),
    sa.Index("ix_messages_claim", "status", "priority", "send_after"),
    sa.Index("ix_messages_rfc_id", "rfc_message_id"),  # webhooks find messages by these
    sa.Index("ix_messages_provider_id", "provider_id"),
    sa.Index("ix_messages_workflow_sent", "workspace_id", "workflow_id", "sent_at"),
    sa.Index("ix_messages_contact", "workspace_id", "contact_id", "created_at"),
    sa.Index("ix_messages_run", "workspace_id", "run_id"),
)

actions = sa.Table(
    "actions",
    metadata,
    _ws(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("step_id", sa.String(200)),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", Moment, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("lease_owner", sa.String(100)),
    sa.Column("lease_until", Moment),
    sa.Column("created_at", Moment, nullable=False),
    sa.Column("done_at", Moment),
    sa.PrimaryKeyConstraint("workspace_id", "id"),
    sa.Index("ix_actions_due", "status", "next_attempt_at"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    _ws(),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("created_at", Moment, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "email"),
)

date_triggers = sa.Table(
    "date_triggers",
    metadata,
    _ws(),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("fire_at", Moment, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "workflow_id", "contact_id"),
    sa.Index("ix_date_triggers_contact", "workspace_id", "contact_id"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    _ws(),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("zone", sa.String(64), nullable=False),  # "*" for a one-off `at`
    sa.Column("next_at", Moment),
    sa.PrimaryKeyConstraint("workspace_id", "workflow_id", "zone"),
    sa.Index("ix_schedules_next", "next_at"),
)

message_events = sa.Table(
    "message_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ws(),
    sa.Column("message_id", sa.String(64), nullable=False),  # messages.id
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),  # queued deferred skipped sent ...
    sa.Column("at", Moment, nullable=False),
    sa.Column("detail", JSON, nullable=False),
    sa.Column("provider_event_id", sa.String(255)),  # dedup of provider webhooks
    sa.UniqueConstraint("workspace_id", "provider_event_id", name="uq_message_events_provider"),
    sa.Index("ix_message_events_message", "workspace_id", "message_id"),
    sa.Index("ix_message_events_contact", "workspace_id", "contact_id", "at"),
)

templates = sa.Table(
    "templates",
    metadata,
    _ws(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("mjml", sa.Text),
    sa.Column("defaults", JSON, nullable=False),
    sa.Column("fallback", sa.String(200)),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", Moment, nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "name", "version"),
)

consents = sa.Table(
    "consents",
    metadata,
    _ws(),
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # subscribed unsubscribed pending
    sa.Column("at", Moment, nullable=False),
    sa.Column("source", sa.Text),
    sa.PrimaryKeyConstraint("workspace_id", "contact_id", "topic"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # the public part, shown in lists
    _ws(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # admin or ingest
    sa.Column("secret_hash", sa.String(128), nullable=False),  # sha256 of the secret part
    sa.Column("created_at", Moment, nullable=False),
    sa.Column("revoked_at", Moment),
    sa.Index("ix_api_keys_workspace", "workspace_id"),
)

heartbeats = sa.Table(
    "heartbeats",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("seen_at", Moment, nullable=False),
    sa.Column("info", JSON, nullable=False),
)

# --- analytics -----------------------------------------------------------------------

stats = sa.Table(
    "stats",
    metadata,
    _ws(),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),  # "" for the workflow as a whole
    sa.Column("metric", sa.String(32), nullable=False),  # run:<action>, msg:<kind>, ...
    sa.Column("label", sa.String(500), nullable=False),  # "" or a link, a skip code, a target
    sa.Column("bucket", Moment, nullable=False),  # the hour the counts fell in
    sa.Column("shard", sa.Integer, nullable=False),  # spreads concurrent writers' row locks
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint(
        "workspace_id", "workflow_id", "version", "step_id", "metric", "label", "bucket", "shard"
    ),
    sa.Index("ix_stats_metric", "workspace_id", "metric", "bucket"),  # charts across workflows
)

conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ws(),
    sa.Column("event_id", sa.String(200), nullable=False),  # events.id of the goal event
    sa.Column("contact_id", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("at", Moment, nullable=False),
    sa.Column("value", sa.Float, nullable=False),  # revenue; 0 without a revenue/value
    sa.Column("message_id", sa.String(64), nullable=False),  # the email credited
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("touch", sa.String(8), nullable=False),  # sent or click
    sa.UniqueConstraint("workspace_id", "event_id", name="uq_conversions_event"),
    sa.Index("ix_conversions_workflow", "workspace_id", "workflow_id", "at"),
)

split_winners = sa.Table(
    "split_winners",
    metadata,
    _ws(),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("decided_at", Moment, nullable=False),
    sa.Column("detail", JSON, nullable=False),  # the rates and p-value it was decided on
    sa.PrimaryKeyConstraint("workspace_id", "workflow_id", "version", "step_id"),
)

health_samples = sa.Table(
    "health_samples",
    metadata,
    sa.Column("at", Moment, primary_key=True),  # one per minute, whichever process takes it
    sa.Column("values", JSON, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ws(),
    sa.Column("kind", sa.String(32), nullable=False),  # queue_depth lag error_rate ...
    sa.Column("subject", sa.String(200), nullable=False),  # "" or the workflow concerned
    sa.Column("status", sa.String(16), nullable=False),  # firing or resolved
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("started_at", Moment, nullable=False),
    sa.Column("resolved_at", Moment),
    sa.Index("ix_alerts_status", "status", "kind", "subject"),
)
