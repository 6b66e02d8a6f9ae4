"""Admin: schedules with a publish time, closed slots, household (KK) limit, audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The audit log is append-only: the database itself refuses to change or remove a row.
PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_entry is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_entry_no_update BEFORE UPDATE OR DELETE ON audit_entry
  FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
  FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only();
"""
SQLITE_GUARDS = (
    """CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
    """CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
    # INSERT OR REPLACE deletes the old row without firing delete triggers.
    """CREATE TRIGGER audit_entry_no_replace BEFORE INSERT ON audit_entry
       WHEN EXISTS (SELECT 1 FROM audit_entry WHERE id = NEW.id)
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
)


def upgrade():
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_point_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("weekdays", sa.String(length=7), nullable=False),
        sa.Column("start_time", sa.Time(), nullable=False),
        sa.Column("end_time", sa.Time(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("publish_days_before", sa.Integer(), nullable=False),
        sa.Column("publish_time", sa.Time(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("capacity >= 0", name=op.f("ck_schedule_capacity_not_negative")),
        sa.CheckConstraint("end_time > start_time", name=op.f("ck_schedule_ends_after_start")),
        sa.CheckConstraint(
            "publish_days_before >= 0", name=op.f("ck_schedule_publish_days_not_negative")
        ),
        sa.CheckConstraint("slot_minutes > 0", name=op.f("ck_schedule_slot_minutes_positive")),
        sa.ForeignKeyConstraint(
            ["market_point_id"],
            ["market_point.id"],
            name=op.f("fk_schedule_market_point_id_market_point"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule")),
    )
    op.create_index(
        op.f("ix_schedule_market_point_id"), "schedule", ["market_point_id"], unique=False
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("market_point_id", sa.Integer(), nullable=True),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user_account.id"], name=op.f("fk_audit_entry_actor_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["market_point_id"],
            ["market_point.id"],
            name=op.f("fk_audit_entry_market_point_id_market_point"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
    )
    op.create_index(op.f("ix_audit_entry_action"), "audit_entry", ["action"], unique=False)
    op.create_index(op.f("ix_audit_entry_actor_id"), "audit_entry", ["actor_id"], unique=False)
    op.create_index(op.f("ix_audit_entry_at"), "audit_entry", ["at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARD)
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)

    op.create_table(
        "household",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kk_hash", sa.String(length=64), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household")),
        sa.UniqueConstraint("kk_hash", name=op.f("uq_household_kk_hash")),
    )
    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(sa.Column("kk_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_booking_kk_hash"), ["kk_hash"], unique=False)
    with op.batch_alter_table("waiting_list_entry") as batch_op:
        batch_op.add_column(sa.Column("kk_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("market_point") as batch_op:
        batch_op.add_column(
            sa.Column(
                "household_limit", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )
    with op.batch_alter_table("slot") as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_slot_schedule_id"), ["schedule_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_slot_schedule_id_schedule"), "schedule", ["schedule_id"], ["id"]
        )


def downgrade():
    with op.batch_alter_table("waiting_list_entry") as batch_op:
        batch_op.drop_column("kk_hash")
    with op.batch_alter_table("booking") as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_kk_hash"))
        batch_op.drop_column("kk_hash")
    op.drop_table("household")
    with op.batch_alter_table("slot") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_slot_schedule_id_schedule"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_slot_schedule_id"))
        batch_op.drop_column("schedule_id")
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("market_point") as batch_op:
        batch_op.drop_column("household_limit")
    op.drop_table("audit_entry")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_entry_append_only()")
    op.drop_index(op.f("ix_schedule_market_point_id"), table_name="schedule")
    op.drop_table("schedule")
