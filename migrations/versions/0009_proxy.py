"""Pickup by a proxy: a booking's proxy, and the scan that records a proxy collected
(issue 15 part 3)

Revision ID: 0009_proxy
Revises: 0008_arrival_waves
Create Date: 2026-12-03 22:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0009_proxy"
down_revision = "0008_arrival_waves"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "booking_proxy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("nik_hash", sa.String(length=64), nullable=False),
        sa.Column("nik_last4", sa.String(length=4), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_booking_proxy_booking_id_booking")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_proxy")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_booking_proxy_booking_id")),
    )
    # The limit's count: one person's proxies on one local date.
    op.create_index("ix_booking_proxy_nik_day", "booking_proxy", ["nik_hash", "day"])
    with op.batch_alter_table("scan") as batch_op:
        batch_op.add_column(
            sa.Column("by_proxy", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("scan") as batch_op:
        batch_op.drop_column("by_proxy")
    op.drop_index("ix_booking_proxy_nik_day", table_name="booking_proxy")
    op.drop_table("booking_proxy")
