"""Outbox relay (due times, claims, retries), message language, personal-data purge

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 05:30:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BOOKING_ACTIVE = "status IN ('confirmed','checked_in','checked_out')"
WAITING = "status = 'waiting'"
OLD_NOTICE = "status IN ('pending','sent','failed')"
NEW_NOTICE = "status IN ('pending','sending','sent','failed','void')"


def upgrade():
    # Partial unique indexes are dropped and made again around SQLite's table copy,
    # which would not carry their WHERE clause over.
    op.drop_index(
        "uq_booking_active_resident_slot",
        table_name="booking",
        sqlite_where=sa.text(BOOKING_ACTIVE),
        postgresql_where=sa.text(BOOKING_ACTIVE),
    )
    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), server_default="id", nullable=False)
        )
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("resident_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "uq_booking_active_resident_slot",
        "booking",
        ["slot_id", "resident_id"],
        unique=True,
        sqlite_where=sa.text(BOOKING_ACTIVE),
        postgresql_where=sa.text(BOOKING_ACTIVE),
    )

    op.drop_index(
        "uq_waiting_list_entry_resident_slot",
        table_name="waiting_list_entry",
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    with op.batch_alter_table("waiting_list_entry") as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), server_default="id", nullable=False)
        )
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("resident_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "uq_waiting_list_entry_resident_slot",
        "waiting_list_entry",
        ["slot_id", "resident_id"],
        unique=True,
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )

    with op.batch_alter_table("notice") as batch_op:
        batch_op.drop_constraint(op.f("ck_notice_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notice_status_known"), NEW_NOTICE)
        # Existing rows were owed from their creation.
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("last_error", sa.String(length=300), server_default="", nullable=False)
        )
    op.execute("UPDATE notice SET due_at = created_at")
    with op.batch_alter_table("notice") as batch_op:
        batch_op.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index("ix_notice_status_due_at", ["status", "due_at"], unique=False)


def downgrade():
    purged = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT (SELECT count(*) FROM booking WHERE resident_id IS NULL)"
                " + (SELECT count(*) FROM waiting_list_entry WHERE resident_id IS NULL)"
            )
        )
        .scalar()
    )
    if purged:
        # 0002 requires every booking to name its resident; purged rows no longer do.
        raise RuntimeError(
            f"{purged} bookings or waiting-list entries were purged; 0002 cannot hold them"
        )
    with op.batch_alter_table("notice") as batch_op:
        batch_op.drop_index("ix_notice_status_due_at")
        batch_op.drop_column("last_error")
        batch_op.drop_column("channel")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("attempts")
        batch_op.drop_column("due_at")
    op.execute("UPDATE notice SET status = 'pending' WHERE status = 'sending'")
    op.execute("DELETE FROM notice WHERE status = 'void'")
    with op.batch_alter_table("notice") as batch_op:
        batch_op.drop_constraint(op.f("ck_notice_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notice_status_known"), OLD_NOTICE)
    for table, where in (("waiting_list_entry", WAITING), ("booking", BOOKING_ACTIVE)):
        index = (
            f"uq_{table}_resident_slot"
            if table != "booking"
            else ("uq_booking_active_resident_slot")
        )
        op.drop_index(
            index, table_name=table, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
        )
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("purged_at")
            batch_op.drop_column("language")
            batch_op.alter_column("resident_id", existing_type=sa.Integer(), nullable=False)
        op.create_index(
            index,
            table,
            ["slot_id", "resident_id"],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
