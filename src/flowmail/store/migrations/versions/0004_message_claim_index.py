"""message indexes: the sender's claim (most important due messages first) and the
lookups of provider webhooks (Message-ID, provider id, complaint rate per workflow)

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
    op.create_index("ix_messages_rfc_id", "messages", ["rfc_message_id"])
    op.create_index("ix_messages_provider_id", "messages", ["provider_id"])
    op.create_index(
        "ix_messages_workflow_sent", "messages", ["workspace_id", "workflow_id", "sent_at"]
    )


def downgrade() -> None:
    for name in ("ix_messages_workflow_sent", "ix_messages_provider_id", "ix_messages_rfc_id"):
        op.drop_index(name, table_name="messages")
    op.drop_index("ix_messages_claim", table_name="messages")
    op.create_index("ix_messages_queue", "messages", ["status", "send_after"])
