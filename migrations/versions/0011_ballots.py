"""Ballot rounds: ballots, their entries, the slots a ballot holds, and the
Idempotency-Key of an entry (issue 16)

Revision ID: 0011_ballots
Revises: 0010_direct_notices
Create Date: 2026-12-04 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0011_ballots"
down_revision = "0010_direct_notices"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ballot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_point_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("list_hash", sa.String(length=64), nullable=True),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("closes_at > opens_at", name=op.f("ck_ballot_closes_after_opening")),
        sa.CheckConstraint("places >= 0", name=op.f("ck_ballot_places_not_negative")),
        sa.ForeignKeyConstraint(
            ["market_point_id"],
            ["market_point.id"],
            name=op.f("fk_ballot_market_point_id_market_point"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballot")),
        sa.UniqueConstraint("market_point_id", "day", name="uq_ballot_point_day"),
    )
    op.create_index(op.f("ix_ballot_closes_at"), "ballot", ["closes_at"])
    op.create_table(
        "ballot_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("nik_last4", sa.String(length=4), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("kk_hash", sa.String(length=64), nullable=True),
        sa.Column("preferences", sa.String(length=40), nullable=False),
        sa.Column("elderly", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('entered','won','waiting','not_drawn')",
            name=op.f("ck_ballot_entry_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ballot_id"], ["ballot.id"], name=op.f("fk_ballot_entry_ballot_id_ballot")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_ballot_entry_booking_id_booking")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_ballot_entry_resident_id_resident")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballot_entry")),
        sa.UniqueConstraint("code", name=op.f("uq_ballot_entry_code")),
        sa.UniqueConstraint("ballot_id", "resident_id", name="uq_ballot_entry_resident"),
    )
    op.create_index(
        "uq_ballot_entry_household", "ballot_entry", ["ballot_id", "kk_hash"], unique=True
    )
    with op.batch_alter_table("slot") as batch_op:
        batch_op.add_column(sa.Column("ballot_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_slot_ballot_id"), ["ballot_id"])
    with op.batch_alter_table("idempotency_key") as batch_op:
        batch_op.add_column(sa.Column("ballot_entry_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_idempotency_key_ballot_entry_id_ballot_entry"),
            "ballot_entry",
            ["ballot_entry_id"],
            ["id"],
        )


def downgrade():
    with op.batch_alter_table("idempotency_key") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_idempotency_key_ballot_entry_id_ballot_entry"), type_="foreignkey"
        )
        batch_op.drop_column("ballot_entry_id")
    with op.batch_alter_table("slot") as batch_op:
        batch_op.drop_index(batch_op.f("ix_slot_ballot_id"))
        batch_op.drop_column("ballot_id")
    op.drop_index("uq_ballot_entry_household", table_name="ballot_entry")
    op.drop_table("ballot_entry")
    op.drop_index(op.f("ix_ballot_closes_at"), table_name="ballot")
    op.drop_table("ballot")
