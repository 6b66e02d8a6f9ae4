"""Stock per market point and day; a booking's packages and their handout (issue 15)

Revision ID: 0007_stock
Revises: 0006
Create Date: 2026-12-03 22:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0007_stock"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "stock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_point_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("packages", sa.Integer(), nullable=False),
        sa.Column("per_booking", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("reserved", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("handed_out", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("packages >= 0", name=op.f("ck_stock_packages_not_negative")),
        sa.CheckConstraint("per_booking >= 1", name=op.f("ck_stock_per_booking_positive")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_stock_reserved_not_negative")),
        sa.CheckConstraint("reserved <= packages", name=op.f("ck_stock_reserved_within_packages")),
        sa.CheckConstraint("handed_out >= 0", name=op.f("ck_stock_handed_out_not_negative")),
        sa.CheckConstraint(
            "handed_out <= reserved", name=op.f("ck_stock_handed_out_within_reserved")
        ),
        sa.UniqueConstraint("market_point_id", "day", name="uq_stock_point_day"),
        sa.ForeignKeyConstraint(
            ["market_point_id"],
            ["market_point.id"],
            name=op.f("fk_stock_market_point_id_market_point"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock")),
    )
    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(
            sa.Column("packages", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("handed_out_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("booking") as batch_op:
        batch_op.drop_column("handed_out_at")
        batch_op.drop_column("packages")
    op.drop_table("stock")
