"""calls keep what Asterisk resolved from a PIDF-LO and when their locations were derived (the
sweep retries the rest); AML messages received late are marked

Revision ID: 0017
Revises: 0011
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("geoloc_effective", sa.String(length=2000), nullable=True))
    op.add_column("calls", sa.Column("geoloc_method", sa.String(length=40), nullable=True))
    op.add_column(
        "calls", sa.Column("locations_done_at", sa.DateTime(timezone=True), nullable=True)
    )
    # The location sweep looks for calls with something to locate that were never done; the
    # index holds only those, so it stays small however many calls there are.
    op.create_index(
        "ix_calls_locations_pending",
        "calls",
        ["offered_at"],
        postgresql_where=sa.text(
            "locations_done_at IS NULL AND (pani_raw IS NOT NULL "
            "OR geoloc_effective IS NOT NULL OR geolocation_raw IS NOT NULL)"
        ),
    )
    op.add_column(
        "aml_messages",
        sa.Column("late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("aml_messages", "late")
    op.drop_index("ix_calls_locations_pending", table_name="calls")
    op.drop_column("calls", "locations_done_at")
    op.drop_column("calls", "geoloc_method")
    op.drop_column("calls", "geoloc_effective")
