"""cell towers (OpenCelliD layout) for network-cell locations; when a location was confirmed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cell_towers",
        sa.Column("radio", sa.String(length=8), nullable=False),
        sa.Column("mcc", sa.SmallInteger(), nullable=False),
        sa.Column("net", sa.Integer(), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.Integer(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("range_m", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("changeable", sa.Boolean(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=True),
        sa.Column("average_signal", sa.Integer(), nullable=True),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("lat BETWEEN -90 AND 90", name=op.f("ck_cell_towers_lat_range")),
        sa.CheckConstraint("lon BETWEEN -180 AND 180", name=op.f("ck_cell_towers_lon_range")),
        sa.CheckConstraint("range_m >= 0", name=op.f("ck_cell_towers_range_positive")),
        sa.PrimaryKeyConstraint("radio", "mcc", "net", "area", "cell", name=op.f("pk_cell_towers")),
    )
    op.add_column("locations", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("locations", "confirmed_at")
    op.drop_table("cell_towers")
