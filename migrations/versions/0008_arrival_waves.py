"""Arrival waves inside a slot: a booking's arrival time (issue 15 part 2)

Revision ID: 0008_arrival_waves
Revises: 0007_stock
Create Date: 2026-12-03 22:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0008_arrival_waves"
down_revision = "0007_stock"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(sa.Column("arrive_at", sa.DateTime(timezone=True), nullable=True))
    # Bookings made before waves arrive at their slot's start, as they were told.
    op.execute(
        "UPDATE booking SET arrive_at = "
        "(SELECT slot.starts_at FROM slot WHERE slot.id = booking.slot_id)"
    )
    with op.batch_alter_table("booking") as batch_op:
        batch_op.alter_column(
            "arrive_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade():
    with op.batch_alter_table("booking") as batch_op:
        batch_op.drop_column("arrive_at")
