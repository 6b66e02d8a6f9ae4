"""Gate conflicts keep the person inside until they leave (issue 14 item 4)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:30:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("gate_conflict") as batch_op:
        batch_op.add_column(sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("gate_conflict") as batch_op:
        batch_op.drop_column("left_at")
