"""incidents.landmark: the landmark the caller names, apart from the street address

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Callers in a 112 centre's area often give a landmark (a mosque, a market, a school, a bridge)
rather than a street and number; the crew needs both. NULL for incidents recorded before.
Adding a nullable column without a default rewrites nothing and holds its lock for an instant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("landmark", sa.String(length=300), nullable=True))


def downgrade() -> None:
    op.drop_column("incidents", "landmark")
