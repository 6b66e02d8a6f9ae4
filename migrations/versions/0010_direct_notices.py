"""Messages without a booking: a ballot entry's message, a reply to an SMS (issues 16
and 17), and the channel a notice asks for

Revision ID: 0010_direct_notices
Revises: 0009_proxy
Create Date: 2026-12-04 04:20:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0010_direct_notices"
down_revision = "0009_proxy"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notice") as batch_op:
        batch_op.alter_column("booking_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("to_phone", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ref", sa.String(length=80), nullable=True))
        batch_op.add_column(
            sa.Column("via", sa.String(length=16), nullable=False, server_default="")
        )
        batch_op.create_unique_constraint(op.f("uq_notice_ref"), ["ref"])
        # A notice is about a booking, or carries its own recipient and text.
        batch_op.create_check_constraint(
            op.f("ck_notice_about_someone"),
            "booking_id IS NOT NULL OR (to_phone IS NOT NULL AND body IS NOT NULL)",
        )


def downgrade():
    op.execute("DELETE FROM notice WHERE booking_id IS NULL")
    with op.batch_alter_table("notice") as batch_op:
        batch_op.drop_constraint(op.f("ck_notice_about_someone"), type_="check")
        batch_op.drop_constraint(op.f("uq_notice_ref"), type_="unique")
        batch_op.drop_column("via")
        batch_op.drop_column("ref")
        batch_op.drop_column("body")
        batch_op.drop_column("language")
        batch_op.drop_column("to_phone")
        batch_op.alter_column("booking_id", existing_type=sa.Integer(), nullable=False)
