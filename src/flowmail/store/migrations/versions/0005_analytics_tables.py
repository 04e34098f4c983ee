"""analytics tables: hourly counters, credited conversions, split winners, health samples
and alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _seq() -> sa.Column[int]:
    return sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True)


def _ws() -> sa.Column[str]:
    return sa.Column("workspace_id", sa.String(length=64), nullable=False)


def upgrade() -> None:
    op.create_table(
        "stats",
        _ws(),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=500), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id",
            "workflow_id",
            "version",
            "step_id",
            "metric",
            "label",
            "bucket",
            "shard",
        ),
    )
    op.create_table(
        "conversions",
        _seq(),
        _ws(),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("touch", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("workspace_id", "event_id", name="uq_conversions_event"),
    )
    op.create_index("ix_conversions_workflow", "conversions", ["workspace_id", "workflow_id", "at"])
    op.create_table(
        "split_winners",
        _ws(),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "workflow_id", "version", "step_id"),
    )
    op.create_table(
        "health_samples",
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("values", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("at"),
    )
    op.create_table(
        "alerts",
        _seq(),
        _ws(),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_alerts_status", "alerts", ["status", "kind", "subject"])


def downgrade() -> None:
    op.drop_index("ix_alerts_status", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("health_samples")
    op.drop_table("split_winners")
    op.drop_index("ix_conversions_workflow", table_name="conversions")
    op.drop_table("conversions")
    op.drop_table("stats")
