"""Residents without a smartphone: SMS, USSD and WhatsApp conversations, the inbound
messages already handled, and the channel each booking came through (issue 17)

Revision ID: 0012_channels
Revises: 0011_ballots
Create Date: 2026-12-04 05:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0012_channels"
down_revision = "0011_ballots"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), nullable=False, server_default="web")
        )
    op.create_table(
        "conversation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation")),
        sa.UniqueConstraint("channel", "phone", name="uq_conversation_channel_phone"),
    )
    op.create_index("ix_conversation_expires_at", "conversation", ["expires_at"])
    op.create_table(
        "inbound_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_message")),
        sa.UniqueConstraint("channel", "message_id", name="uq_inbound_message_channel_id"),
    )
    op.create_index("ix_inbound_message_received_at", "inbound_message", ["received_at"])


def downgrade():
    op.drop_index("ix_inbound_message_received_at", table_name="inbound_message")
    op.drop_table("inbound_message")
    op.drop_index("ix_conversation_expires_at", table_name="conversation")
    op.drop_table("conversation")
    with op.batch_alter_table("booking") as batch_op:
        batch_op.drop_column("channel")
