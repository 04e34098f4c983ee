"""message claim index: the sender takes the most important due messages first

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_queue", table_name="messages")
    op.create_index("ix_messages_claim", "messages", ["status", "priority", "send_after"])


def downgrade() -> None:
    op.drop_index("ix_messages_claim", table_name="messages")
    op.create_index("ix_messages_queue", "messages", ["status", "send_after"])
