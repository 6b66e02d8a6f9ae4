"""Scan nonces (a resent scan is a no-op), offline sync times, undone check-ins, gate conflicts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_RESULTS = "result IN ('admitted','refused','wait')"
NEW_RESULTS = "result IN ('admitted','refused','wait','undone')"


def upgrade():
    with op.batch_alter_table("scan") as batch_op:
        batch_op.add_column(sa.Column("nonce", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
    # Scans logged before nonces existed get one of their own, then the column is a
    # NOT NULL guard (a NULL would slip past the unique constraint).
    op.execute("UPDATE scan SET nonce = 'legacy-' || CAST(id AS VARCHAR(20))")
    with op.batch_alter_table("scan") as batch_op:
        batch_op.alter_column("nonce", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint(op.f("ck_scan_result_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_scan_result_known"), NEW_RESULTS)
        batch_op.create_unique_constraint(
            op.f("uq_scan_user_device_nonce"), ["user_id", "device", "nonce"]
        )

    op.create_table(
        "gate_conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("market_point_id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_gate_conflict_booking_id_booking")
        ),
        sa.ForeignKeyConstraint(
            ["market_point_id"],
            ["market_point.id"],
            name=op.f("fk_gate_conflict_market_point_id_market_point"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["user_account.id"],
            name=op.f("fk_gate_conflict_resolved_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scan.id"], name=op.f("fk_gate_conflict_scan_id_scan")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_conflict")),
        sa.UniqueConstraint("scan_id", name=op.f("uq_gate_conflict_scan_id")),
    )
    op.create_index(
        op.f("ix_gate_conflict_detected_at"), "gate_conflict", ["detected_at"], unique=False
    )
    op.create_index(
        op.f("ix_gate_conflict_market_point_id"),
        "gate_conflict",
        ["market_point_id"],
        unique=False,
    )


def downgrade():
    op.drop_index(op.f("ix_gate_conflict_market_point_id"), table_name="gate_conflict")
    op.drop_index(op.f("ix_gate_conflict_detected_at"), table_name="gate_conflict")
    op.drop_table("gate_conflict")
    op.execute("DELETE FROM scan WHERE result = 'undone'")
    with op.batch_alter_table("scan") as batch_op:
        batch_op.drop_constraint(op.f("uq_scan_user_device_nonce"), type_="unique")
        batch_op.drop_constraint(op.f("ck_scan_result_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_scan_result_known"), OLD_RESULTS)
        batch_op.drop_column("synced_at")
        batch_op.drop_column("nonce")
