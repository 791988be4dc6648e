"""where this database's record starts: calls Asterisk recorded before it are not reconciled

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_start",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_record_start_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_start")),
    )
    # A database migrated now starts its record now; an existing one keeps every call it has
    # and reconciles from where its cursor stands, whatever this time says.
    op.execute("INSERT INTO record_start (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("record_start")
